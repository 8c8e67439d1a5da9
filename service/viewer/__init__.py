"""The MBC timeline viewer: a SMART on FHIR app served by the service (routes, SMART client, sessions, page)."""
