"""The FHIR queries the mapping reads, as CDS Hooks prefetch templates.

One table serves both the discovery document (prefetch) and the service's own fetches when a
key was not prefetched, so the two can never drift apart. The Observation query asks only for
the codes in the code tables: a full Observation history (vital signs, labs) is thousands of
resources the rules never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .codes import tables

PATIENT_TOKEN = "{{context.patientId}}"


@dataclass(frozen=True)
class Query:
    key: str
    template: str
    feeds: str  # what the cards learn from it, for the data-incomplete card
    required: bool  # without it no card can be trusted: 412 when it cannot be obtained


@lru_cache(maxsize=1)
def queries() -> tuple[Query, ...]:
    codes = ",".join(f"{system}|{code}" for system, code in tables().observation_codes())
    p = PATIENT_TOKEN
    return (
        Query("patient", f"Patient/{p}", "age and sex", False),
        Query("conditions", f"Condition?patient={p}", "breast cancer diagnosis and metastatic sites", True),
        Query("observations", f"Observation?patient={p}&code={codes}",
              "receptor status, biomarker results, LVEF, ECOG, weight and menopausal status", True),
        Query("specimens", f"Specimen?patient={p}", "whether receptor results came from the primary tumour or a metastasis", False),
        Query("medicationRequests", f"MedicationRequest?patient={p}", "treatment history and active medications", False),
        Query("medicationStatements", f"MedicationStatement?patient={p}", "treatment history and active medications", False),
        Query("medicationAdministrations", f"MedicationAdministration?patient={p}", "treatment history and active medications", False),
        Query("procedures", f"Procedure?patient={p}", "staging imaging and ovarian ablation (oophorectomy, ovarian irradiation)", False),
    )


def query(key: str) -> Query:
    return next(q for q in queries() if q.key == key)
