"""Everything that is not clinical: the HTTP edge (``edge/``), the integrator's kit (``kit/``), and
what they share: settings, the one FHIR-fetch layer (``fhir_client``), the database, logs and metrics."""
