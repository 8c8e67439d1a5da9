"""The HTTP edge: FastAPI app, settings, FHIR client. Knows nothing clinical."""
