"""Synthetic metastatic breast cancer patients of a chosen size, for the benchmark.

One HR+/HER2+ patient with bone, liver and lung metastases, treated weekly for years (THP, then
trastuzumab + pertuzumab + letrozole, then PATINA-style trastuzumab + letrozole + palbociclib).
The bulk of a large chart is what a real prefetch returns for such a patient: per weekly infusion
visit a weight, a MedicationRequest per drug per cycle and a MedicationAdministration per IV dose;
ECOG every 3 weeks, LVEF every 12 weeks, a receptor panel every year (N=3,000 spans 14 years).
Only Observation codes the service's query asks for are generated, so every resource generated
is one the service receives. Resources carry the usual EHR padding (meta, identifier, category,
encounter, performer): about 1 KB each, near the reference payload's 1.3 KB.

Deterministic: the same N gives the same bytes (fixed anchor date, no randomness).

    .venv/bin/python bench/patients.py            # writes bench/results/request-n{50,300,3000}.json
"""

from __future__ import annotations

import sys
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cds_hooks.catalog import services  # noqa: E402
from fixtures import prefetch_for  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (50, 300, 3000)
SERVICE_ID = "mbc-patient-view"
ANCHOR = date(2026, 11, 1)  # "today" of the generated chart; fixed so the output never changes
LOINC, SNOMED, UCUM = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
THP_WEEKS, PATINA_FROM_WEEK = 18, 18 + 104

Resource = dict[str, Any]


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        out["text"] = text
    return out


class _Chart:
    """Accumulates resources with the shared boilerplate of one patient's chart."""

    def __init__(self, pid: str) -> None:
        self.pid = pid
        self.resources: list[Resource] = []

    def add(self, rtype: str, rid: str, when: date, body: dict[str, Any], profile: str | None = None) -> Resource:
        res: Resource = {
            "resourceType": rtype,
            "id": f"{self.pid}-{rid}",
            "meta": {"versionId": "1", "lastUpdated": f"{when.isoformat()}T12:00:00Z",
                     **({"profile": [profile]} if profile else {})},
            "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.798268", "value": f"{rid}-{self.pid}"}],
        }
        if rtype != "Patient":
            res["subject"] = {"reference": f"Patient/{self.pid}", "display": "Bench Patient"}
        res.update(body)
        self.resources.append(res)
        return res

    def obs(self, rid: str, when: date, code: tuple[str, str, str], category: str, value: dict[str, Any],
            specimen: str | None = None, profile: str | None = None) -> Resource:
        body: dict[str, Any] = {
            "status": "final",
            "category": [_cc(OBS_CAT, category, category.replace("-", " ").title())],
            "code": _cc(code[0], code[1], code[2]),
            "encounter": {"reference": f"Encounter/{self.pid}-enc-{when.isoformat()}"},
            "effectiveDateTime": f"{when.isoformat()}T09:30:00Z",
            "issued": f"{when.isoformat()}T15:12:00Z",
            "performer": [{"reference": "Practitioner/bench-oncologist", "display": "Dr. Bench Oncologist"}],
            **value,
        }
        if specimen:
            body["specimen"] = {"reference": f"Specimen/{self.pid}-{specimen}"}
        return self.add("Observation", rid, when, body, profile)

    def condition(self, rid: str, when: date, code: tuple[str, str], text: str, category: str) -> Resource:
        return self.add("Condition", rid, when, {
            "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
            "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
            "category": [_cc("http://terminology.hl7.org/CodeSystem/condition-category", category, category)],
            "code": _cc(SNOMED, code[0], code[1], text),
            "onsetDateTime": when.isoformat(), "recordedDate": when.isoformat(),
        }, "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-primary-cancer-condition")

    def receptors(self, tag: str, when: date, specimen: str) -> None:
        """ER presence and percent, PR presence, HER2 IHC: one pathology report's panel."""
        pos, neg = ("LA6576-8", "Positive"), ("LA6577-6", "Negative")
        mcode = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-tumor-marker-test"
        self.obs(f"er-{tag}", when, (LOINC, "85337-4", "Estrogen receptor Ag [Presence] in Breast cancer specimen by Immune stain"),
                 "laboratory", {"valueCodeableConcept": _cc(LOINC, *pos, pos[1])}, specimen, mcode)
        self.obs(f"er-pct-{tag}", when, (LOINC, "85329-1", "Cells.estrogen receptor/100 cells in Breast cancer specimen by Immune stain"),
                 "laboratory", {"valueQuantity": {"value": 90, "unit": "%", "system": UCUM, "code": "%"}}, specimen, mcode)
        self.obs(f"pr-{tag}", when, (LOINC, "85339-0", "Progesterone receptor Ag [Presence] in Breast cancer specimen by Immune stain"),
                 "laboratory", {"valueCodeableConcept": _cc(LOINC, *neg, neg[1])}, specimen, mcode)
        self.obs(f"her2-{tag}", when, (LOINC, "85319-2", "HER2 [Presence] in Breast cancer specimen by Immune stain"),
                 "laboratory", {"valueCodeableConcept": _cc(LOINC, *pos, pos[1])}, specimen, mcode)

    def specimen(self, rid: str, when: date, text: str, site: tuple[str, str]) -> None:
        self.add("Specimen", rid, when, {
            "status": "available", "type": {"text": text},
            "collection": {"collectedDateTime": when.isoformat(), "bodySite": _cc(SNOMED, site[0], site[1])},
        })

    def procedure(self, rid: str, when: date, text: str) -> None:
        self.add("Procedure", rid, when, {"status": "completed", "code": {"text": text},
                                          "performedDateTime": when.isoformat()})

    def med(self, rid: str, when: date, drug: tuple[str, str], dose: str, days: int, active: bool) -> None:
        end = when + timedelta(days=days - 1)
        self.add("MedicationRequest", rid, when, {
            "status": "active" if active else "completed", "intent": "order",
            "category": [_cc("http://terminology.hl7.org/CodeSystem/medicationrequest-category", "outpatient", "Outpatient")],
            "medicationCodeableConcept": _cc(RXNORM, drug[0], drug[1], drug[1].capitalize()),
            "encounter": {"reference": f"Encounter/{self.pid}-enc-{when.isoformat()}"},
            "authoredOn": f"{when.isoformat()}T08:45:00Z",
            "requester": {"reference": "Practitioner/bench-oncologist", "display": "Dr. Bench Oncologist"},
            "reasonReference": [{"reference": f"Condition/{self.pid}-breast-cancer"}],
            "dosageInstruction": [{"text": dose, "timing": {"repeat": {
                "boundsPeriod": {"start": when.isoformat(), "end": end.isoformat()}}}}],
        })


    def administration(self, rid: str, when: date, drug: tuple[str, str], request: str) -> None:
        self.add("MedicationAdministration", rid, when, {
            "status": "completed",
            "medicationCodeableConcept": _cc(RXNORM, drug[0], drug[1], drug[1].capitalize()),
            "context": {"reference": f"Encounter/{self.pid}-enc-{when.isoformat()}"},
            "effectiveDateTime": f"{when.isoformat()}T10:30:00Z",
            "performer": [{"actor": {"reference": "Practitioner/bench-nurse", "display": "Infusion nurse"}}],
            "request": {"reference": f"MedicationRequest/{self.pid}-{request}"},
            "dosage": {"route": _cc(SNOMED, "47625008", "Intravenous route"), "text": "IV infusion"},
        })


TRASTUZUMAB = ("224905", "trastuzumab")
PERTUZUMAB = ("1298944", "pertuzumab")
PACLITAXEL = ("583214", "paclitaxel product")
LETROZOLE = ("72965", "letrozole")
PALBOCICLIB = ("1601374", "palbociclib")


def _week_items(week: int) -> list[tuple[str, Any]]:
    """What one weekly infusion visit adds to the chart, in order (dates are filled in later).

    Trastuzumab is given on its weekly schedule (2 mg/kg) throughout, so every week has a visit;
    each IV dose has its order and its administration record, as an EHR's MAR keeps them.
    """
    items: list[tuple[str, Any]] = [("weight", None)]
    if week % 3 == 0:
        items.append(("ecog", None))
    if week % 12 == 0:
        items.append(("lvef", None))
    if week % 52 == 51:
        items.append(("receptors", None))
    items.append(("iv", (TRASTUZUMAB, "2 mg/kg IV weekly", 7)))
    if week < THP_WEEKS:
        items.append(("iv", (PACLITAXEL, "80 mg/m2 IV weekly", 7)))
    if week % 3 == 0 and week < PATINA_FROM_WEEK:
        items.append(("iv", (PERTUZUMAB, "420 mg IV every 3 weeks", 21)))
    if week >= THP_WEEKS and week % 4 == 0:
        items.append(("med", (LETROZOLE, "2.5 mg orally once daily", 28)))
        if week >= PATINA_FROM_WEEK:
            items.append(("med", (PALBOCICLIB, "125 mg orally once daily, 21 days of 28", 28)))
    return items


def generate(n: int) -> list[Resource]:
    """A chart of exactly ``n`` prefetchable resources (n >= 30)."""
    if n < 30:
        raise ValueError("n must be at least 30 (the fixed part of the chart)")
    pid = f"bench-n{n}"
    chart = _Chart(pid)
    fixed = 23  # resources added below before the weekly visits
    plan: list[tuple[int, str, Any]] = []
    week = 0
    size = {"receptors": 4, "iv": 2}
    while fixed + sum(size.get(kind, 1) for _, kind, _ in plan) < n:
        for kind, arg in _week_items(week):
            plan.append((week, kind, arg))
        week += 1
    weeks = week
    first_visit = ANCHOR - timedelta(days=7 * weeks)
    metastasis = first_visit - timedelta(days=21)
    diagnosis = metastasis - timedelta(days=3 * 365)

    chart.add("Patient", "patient", diagnosis, {
        "name": [{"use": "official", "family": "Bench", "given": [f"N{n}"]}], "gender": "female",
        "birthDate": (diagnosis - timedelta(days=52 * 365)).isoformat(),
    })
    chart.resources[0]["id"] = pid
    chart.condition("breast-cancer", diagnosis, ("254837009", "Malignant neoplasm of breast (disorder)"),
                    "Invasive ductal carcinoma, left breast", "problem-list-item")
    chart.specimen("spec-breast", diagnosis - timedelta(days=4), "Core needle biopsy tissue, breast", ("76752008", "Breast"))
    chart.procedure("biopsy-breast", diagnosis - timedelta(days=4), "Ultrasound-guided core needle biopsy of breast")
    chart.receptors("primary", diagnosis, "spec-breast")
    for site, code, text in (("bone", "94222008", "Secondary malignant neoplasm of bone"),
                             ("liver", "94381002", "Secondary malignant neoplasm of liver"),
                             ("lung", "94391008", "Secondary malignant neoplasm of lung")):
        chart.condition(f"met-{site}", metastasis, (code, text), text, "encounter-diagnosis")
    chart.procedure("ct-staging", metastasis - timedelta(days=10), "CT of chest, abdomen and pelvis with contrast")
    chart.procedure("bone-scan", metastasis - timedelta(days=8), "Bone scintigraphy, whole body")
    chart.procedure("biopsy-liver", metastasis - timedelta(days=5), "Ultrasound-guided core needle biopsy of liver lesion")
    chart.specimen("spec-liver", metastasis - timedelta(days=5), "Core needle biopsy tissue, liver lesion", ("10200004", "Liver"))
    chart.receptors("liver", metastasis, "spec-liver")
    chart.obs("menopause", metastasis, (SNOMED, "161712005", "Menopause, function (observable entity)"), "exam",
              {"valueCodeableConcept": _cc(SNOMED, "76498008", "Postmenopausal state", "Postmenopausal")})
    chart.obs("ecog-baseline", metastasis, (LOINC, "89247-1", "ECOG Performance Status score"), "survey",
              {"valueInteger": 1}, profile="http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-ecog-performance-status")
    chart.obs("lvef-baseline", metastasis, (LOINC, "10230-1", "Left ventricular Ejection fraction"), "imaging",
              {"valueQuantity": {"value": 64, "unit": "%", "system": UCUM, "code": "%"}})
    chart.obs("weight-baseline", metastasis, (LOINC, "29463-7", "Body weight"), "vital-signs",
              {"valueQuantity": {"value": 68.0, "unit": "kg", "system": UCUM, "code": "kg"}},
              profile="http://hl7.org/fhir/StructureDefinition/bodyweight")
    assert len(chart.resources) == fixed, len(chart.resources)

    for wk, kind, arg in plan:
        if len(chart.resources) >= n:
            break
        when = first_visit + timedelta(days=7 * wk)
        tag = when.isoformat()
        if kind == "weight":
            chart.obs(f"weight-{tag}", when, (LOINC, "29463-7", "Body weight"), "vital-signs",
                      {"valueQuantity": {"value": round(68.0 - (wk % 40) * 0.1, 1), "unit": "kg", "system": UCUM, "code": "kg"}},
                      profile="http://hl7.org/fhir/StructureDefinition/bodyweight")
        elif kind == "ecog":
            chart.obs(f"ecog-{tag}", when, (LOINC, "89247-1", "ECOG Performance Status score"), "survey",
                      {"valueInteger": 1 if wk % 9 else 0},
                      profile="http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-ecog-performance-status")
        elif kind == "lvef":
            chart.obs(f"lvef-{tag}", when, (LOINC, "10230-1", "Left ventricular Ejection fraction"), "imaging",
                      {"valueQuantity": {"value": 60 + wk % 5, "unit": "%", "system": UCUM, "code": "%"}})
        elif kind == "receptors":
            chart.receptors(f"re-{tag}", when, "spec-liver")
        else:
            drug, dose, days = arg
            rid = f"{drug[1].split()[0]}-{tag}"
            chart.med(rid, when, drug, dose, days, active=when + timedelta(days=days) > ANCHOR)
            if kind == "iv":
                chart.administration(f"{rid}-admin", when, drug, rid)
    del chart.resources[n:]  # the last visit may overshoot by up to 3
    return chart.resources


def hook_request(resources: list[Resource]) -> dict[str, Any]:
    """A patient-view request as an EHR sends it: every prefetch key of the service filled."""
    keys = [q.key for q in services()[SERVICE_ID].queries]
    pid = resources[0]["id"]
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{pid}")),
        "context": {"userId": "Practitioner/bench-oncologist", "patientId": pid},
        "prefetch": prefetch_for(resources, keys),
    }


def prefetched_count(request: dict[str, Any]) -> int:
    total = 0
    for value in request["prefetch"].values():
        total += len(value.get("entry") or []) if value.get("resourceType") == "Bundle" else 1
    return total


def request_path(n: int) -> Path:
    return RESULTS / f"request-n{n}.json"


def write_requests(sizes: tuple[int, ...] = SIZES) -> dict[int, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in sizes:
        request = hook_request(generate(n))
        count = prefetched_count(request)
        if count != n:  # an Observation code outside the query would silently shrink the chart
            raise RuntimeError(f"N={n}: only {count} resources survive the prefetch filter")
        path = request_path(n)
        path.write_bytes(orjson.dumps(request))
        out[n] = path
    return out


if __name__ == "__main__":
    for n, path in write_requests().items():
        print(f"N={n}: {path.relative_to(ROOT)} {path.stat().st_size / 1024:.0f} KB")
