"""FHIR R4 resources to the clinical picture: pure functions, code tables as data."""

from .build import build_picture
from .picture import ClinicalPicture

__all__ = ["ClinicalPicture", "build_picture"]
