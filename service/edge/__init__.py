"""The HTTP edge: the CDS Hooks endpoints, their security, validation and operations routes."""
