"""The clinical picture: what the rules may know about a patient, with the evidence for each fact.

Plain dataclasses (not pydantic models) because one is built on every hook call and most of it
is never serialised; ``to_json`` gives the contract's ``mbc-cds-hooks.clinical-picture`` object.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date
from typing import Any, cast

PICTURE_VERSION = "1"


def _without_nulls(value: Any, keep_null: set[str], inside: set[str], within: bool = False) -> Any:
    """``value`` with every ``None`` member removed, except ``keep_null`` keys of objects under ``inside``.

    On every patient-view call over the whole picture: exact type checks, and lists of plain values
    (evidence references, agents, sites) are returned as they are.
    """
    kind = type(value)
    if kind is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if v is None:
                if within and k in keep_null:
                    out[k] = None
                continue
            vt = type(v)
            out[k] = _without_nulls(v, keep_null, inside, within or k in inside) if vt is dict or vt is list else v
        return out
    if kind is list:
        if not value or type(value[0]) not in (dict, list):
            return value if None not in value else [v for v in value if v is not None]
        return [_without_nulls(v, keep_null, inside, within) for v in value if v is not None]
    return value


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class ReceptorResult:
    """One ER, PR or HER2 result as read from one Observation (or one of its components)."""

    marker: str  # ER | PR | HER2
    reference: str
    date: date | None
    specimen: str = "unknown"  # primary | metastasis | unknown
    specimen_basis: str = "none"  # specimen-site | observation-bodysite | related-condition | date | none
    specimen_site: str | None = None
    specimen_date: datetime.date | None = None  # module-qualified: the field ``date`` above shadows the class
    sample_key: str = ""  # groups results of one sample (specimen, else date)
    status: str = "unknown"  # ER: positive|low-positive|negative|unknown; PR: positive|negative|unknown; HER2: positive|negative|equivocal|unknown
    percent: float | None = None
    her2_ihc: str | None = None  # 0 | 1+ | 2+ | 3+
    her2_ish: str | None = None  # amplified | not-amplified | equivocal (as the lab stated it)
    her2_ratio: float | None = None
    her2_copies: float | None = None
    comparator: str | None = None  # "<", ">", ... when the number came as "less than 1.8" (Synthea FISH text)
    ultralow: bool = False
    kind: str = "presence"  # presence | percent | ihc | ish | ratio | copies | interpretation | condition
    preliminary: bool = False
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "marker": self.marker,
            "status": self.status,
            "date": _iso(self.date),
            "specimen": self.specimen,
            "evidence": self.reference,
            "kind": self.kind,
        }
        if self.percent is not None:
            out["percent"] = self.percent
        if self.her2_ihc:
            out["ihc"] = self.her2_ihc
        if self.her2_ish:
            out["ish"] = self.her2_ish
        if self.her2_ratio is not None:
            out["ratio"] = self.her2_ratio
        if self.her2_copies is not None:
            out["copies"] = self.her2_copies
        if self.specimen_site:
            out["specimenSite"] = self.specimen_site
        if self.specimen_date:  # collection date; "date" is the result's own (often days later)
            out["specimenDate"] = _iso(self.specimen_date)
        if self.preliminary:
            out["preliminary"] = True
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class MarkerStatus:
    """The current status of one marker, decided from the most recent sample."""

    marker: str
    status: str = "unknown"
    percent: float | None = None
    category: str = "unknown"  # HER2 only: 0 | ultralow | low | positive | unknown
    ihc: str | None = None
    ish: str | None = None  # amplified | not-amplified | group 2-4 | equivocal | ratio-only | copies-only
    ratio: float | None = None  # HER2 only: HER2/CEP17 ratio and average HER2 copies per cell, as reported
    copies: float | None = None
    date: date | None = None
    specimen: str = "unknown"
    evidence: list[str] = field(default_factory=list)
    source: str = "none"  # observation | condition | none
    conflict: str | None = None
    preliminary: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "percent": self.percent,
            "date": _iso(self.date),
            "specimen": self.specimen,
            "evidence": self.evidence,
        }
        if self.marker == "HER2":
            out = {"status": self.status, "category": self.category, "ihc": self.ihc, "ish": self.ish,
                   "date": _iso(self.date), "specimen": self.specimen, "evidence": self.evidence}
            if self.ratio is not None:
                out["ratio"] = self.ratio
            if self.copies is not None:
                out["copies"] = self.copies
        out["source"] = self.source
        if self.conflict:
            out["conflict"] = self.conflict
        if self.preliminary:
            out["preliminary"] = True
        return out


@dataclass
class Metastasis:
    site: str
    reference: str
    date: date | None
    basis: str  # code | bodySite | text
    display: str = ""
    regional: bool = False


@dataclass
class MedicationUse:
    """One medication record (request, statement or administration) of an anticancer or supportive drug.

    The raw events behind ``Treatment``: rules that need a dose or the date of one administration
    (a depot's interval, the last trastuzumab dose, lines of therapy) read these. Dose and intent
    are read from the record only when a rule asks (most records are never asked: cycles of
    chemotherapy are hundreds of records), so the mapping's per-resource cost stays flat.
    """

    ingredient: str
    drug_class: str
    start: date | None
    end: date | None
    active: bool
    reference: str
    basis: str  # how the drug was identified: code | name
    resource_type: str = "MedicationRequest"  # MedicationRequest | MedicationStatement | MedicationAdministration
    resource: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    concept: dict[str, Any] | None = field(default=None, repr=False, compare=False)  # the medication's CodeableConcept

    @cached_property
    def dose(self) -> tuple[float | None, str | None, str | None]:
        """(amount, unit, basis) of one dose: basis dosage | strength | text; unit as sent (mg, mg/kg, ...)."""
        from .treatments import read_dose

        return read_dose(self.resource, self.concept)

    @cached_property
    def intent(self) -> str | None:
        """curative | palliative (mCODE procedure intent); None when not recorded."""
        from .treatments import read_intent

        return read_intent(self.resource)

    @cached_property
    def stop_reason(self) -> str | None:
        """Why it was stopped (mCODE termination reason): completed | no-response | not-tolerated | patient-choice | other."""
        from .treatments import read_stop_reason

        return read_stop_reason(self.resource)

    def dose_mg(self) -> float | None:
        """The dose in mg when it was recorded in mg (or g/ug); None for mg/kg, mg/m2 or no dose."""
        amount, unit, _ = self.dose
        factor = {"mg": 1.0, "milligram": 1.0, "milligrams": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}.get((unit or "").strip().lower())
        return amount * factor if amount is not None and factor is not None else None


@dataclass
class Treatment:
    """One anticancer or supportive drug, summed over all its orders and statements."""

    ingredient: str
    drug_class: str
    start: date | None
    end: date | None
    active: bool
    evidence: list[str] = field(default_factory=list)


@dataclass
class Measurement:
    value: float | str | None
    date: date | None
    reference: str
    unit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "date": _iso(self.date), "evidence": self.reference}


@dataclass
class BiomarkerResult:
    """A result of a biomarker test (gBRCA, sBRCA, BRCA, PD-L1, PIK3CA, ESR1, AKT1, PTEN, PALB2).

    BRCA1/2: ``marker`` is "gBRCA" only for a germline result (genomic source class germline, or a
    germline test code whose origin is not stated otherwise), "sBRCA" for a somatic or tumour-only
    result, "BRCA" when the origin is not recorded; ``germline`` keeps True/False/None.
    PD-L1: ``value`` is the score of ``score_type`` (CPS | TPS | IC) read with ``assay`` (22C3, SP142,
    28-8, SP263) where the data names them; a score reported as "< n" keeps value None (an upper
    bound is not a score a threshold may be checked against) and says so in ``comparator``.
    """

    marker: str
    result: str  # positive | negative | detected | not-detected | unknown
    date: date | None
    reference: str
    germline: bool | None = None
    value: float | None = None
    detail: str | None = None
    score_type: str | None = None  # PD-L1: CPS | TPS | IC
    assay: str | None = None  # PD-L1 clone: 22C3 | SP142 | 28-8 | SP263
    comparator: str | None = None  # PD-L1 score reported with <, <=, >, >=
    origin_basis: str | None = None  # how germline/somatic was decided: source-class | report | test-code | test-name
    gene: str | None = None  # the gene tested where the marker groups several (BRCA1, BRCA2, BRCA1/2)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"marker": self.marker, "result": self.result, "date": _iso(self.date), "evidence": self.reference}
        if self.germline is not None:
            out["germline"] = self.germline
        if self.origin_basis:
            out["originBasis"] = self.origin_basis
        if self.gene:
            out["gene"] = self.gene
        if self.score_type:
            out["scoreType"] = self.score_type
        if self.value is not None:
            out["value"] = self.value
        if self.comparator:
            out["comparator"] = self.comparator
        if self.assay:
            out["assay"] = self.assay
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Complication:
    """A complication of bone metastases recorded as a problem (Condition), by code or by its name."""

    kind: str  # pathological-fracture | spinal-cord-compression | hypercalcaemia
    reference: str
    date: date | None
    basis: str  # code | text
    display: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "date": _iso(self.date), "evidence": self.reference, "basis": self.basis, "display": self.display}


@dataclass
class LabResult:
    """A laboratory value the rules read (calcium, albumin), as reported, with its upper reference limit."""

    test: str  # calcium-total | calcium-corrected | albumin
    value: float
    unit: str | None
    date: date | None
    reference: str
    high: float | None = None  # upper limit of the reference range, in ``unit``

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "value": self.value, "unit": self.unit, "high": self.high, "date": _iso(self.date),
                "evidence": self.reference}


@dataclass
class FlaggedCondition:
    """A Condition recognised by a keyword of condition_keywords.csv (no verified code exists for it)."""

    concept: str  # interstitial-lung-disease | visceral-crisis
    reference: str
    date: date | None
    text: str
    clinical_status: str  # as recorded (active, resolved, ...); "" when not stated


@dataclass
class TherapyLine:
    """One regimen line: a line of therapy for metastatic disease (line >= 1) or early treatment (line 0).

    Built by ``mappings.lines`` from ``medication_uses``; ``evidence`` names the first and last record
    of each drug's course (every record is listed under ``treatments``).
    """

    line: int  # 1 = first line for metastatic disease; 0 = early (adjuvant/neoadjuvant) treatment
    agents: list[str]  # generic names, lower case, in the order they began
    start: date | None
    end: date | None  # None while ongoing
    setting: str  # metastatic | adjuvant | neoadjuvant | early
    evidence: list[str] = field(default_factory=list)
    stop_reason: str | None = None  # progression | no-response | not-tolerated | completed | patient-choice | other
    basis: str = "first"  # why the line began: first | progression | regimen-change | early
    classes: list[str] = field(default_factory=list)
    endocrine_start: date | None = None  # when its first endocrine agent began (may join later: maintenance)

    @property
    def ongoing(self) -> bool:
        return self.end is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "agents": self.agents, "start": _iso(self.start), "end": _iso(self.end),
                               "evidence": self.evidence, "setting": self.setting}
        if self.stop_reason:
            out["stopReason"] = self.stop_reason
        return out


@dataclass
class Progression:
    """Disease progression as recorded: mCODE disease status "worsened", a new metastatic site, or a
    drug stopped for no response (mCODE treatment termination reason)."""

    date: date | None
    kind: str  # disease-status | new-site | treatment-stopped (relapse: only as endocrine_progression)
    evidence: list[str] = field(default_factory=list)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"date": _iso(self.date), "kind": self.kind, "evidence": self.evidence}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Unmapped:
    reference: str
    system: str
    code: str
    display: str = ""
    count: int = 1
    reason: str = "code not in the code tables"


@dataclass
class ClinicalPicture:
    patient: str | None = None
    birth_date: date | None = None
    gender: str | None = None  # Patient.gender (administrative gender)
    birth_sex: str | None = None  # US Core birth sex extension: male | female | unknown; None when absent
    breast_cancer: bool = False
    breast_cancer_evidence: list[str] = field(default_factory=list)
    diagnosis_date: date | None = None
    metastatic: bool = False
    metastatic_evidence: list[str] = field(default_factory=list)
    metastasis_date: date | None = None
    metastases: list[Metastasis] = field(default_factory=list)
    er: MarkerStatus = field(default_factory=lambda: MarkerStatus("ER"))
    pr: MarkerStatus = field(default_factory=lambda: MarkerStatus("PR"))
    her2: MarkerStatus = field(default_factory=lambda: MarkerStatus("HER2"))
    receptor_history: list[ReceptorResult] = field(default_factory=list)
    discordance: list[dict[str, Any]] = field(default_factory=list)
    treatments: list[Treatment] = field(default_factory=list)
    medication_uses: list[MedicationUse] = field(default_factory=list)  # every record behind ``treatments``, by start date
    lines: list[TherapyLine] = field(default_factory=list)  # lines of therapy for metastatic disease, in order
    early_treatment: list[TherapyLine] = field(default_factory=list)  # adjuvant / neoadjuvant regimens (line 0)
    progressions: list[Progression] = field(default_factory=list)  # by date
    endocrine_resistance: str = "unknown"  # primary | secondary | none | unknown (ABC; mappings.lines)
    endocrine_resistance_basis: str = ""  # the facts that decided it, in words
    endocrine_resistance_evidence: list[str] = field(default_factory=list)
    endocrine_progression: Progression | None = None  # the last progression on endocrine therapy (or relapse during adjuvant ET)
    lvef: list[Measurement] = field(default_factory=list)
    weight: list[Measurement] = field(default_factory=list)
    ecog: Measurement | None = None
    menopause: str = "unknown"  # premenopausal | postmenopausal | unknown
    menopause_evidence: str | None = None
    biomarkers: list[BiomarkerResult] = field(default_factory=list)
    grade: Measurement | None = None
    progression: list[Measurement] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)
    complications: list[Complication] = field(default_factory=list)  # pathological fracture, cord compression, hypercalcaemia
    labs: list[LabResult] = field(default_factory=list)  # calcium and albumin, oldest first
    flagged_conditions: list[FlaggedCondition] = field(default_factory=list)
    hr_override: tuple[str, list[str]] | None = None  # combined ER+PR result when neither is known alone
    unmapped: list[Unmapped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    # -- derived facts -----------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        return sorted({m.site for m in self.metastases if not m.regional})

    @property
    def visceral(self) -> bool:
        from .codes import is_visceral

        return any(is_visceral(s) for s in self.sites)

    @property
    def hr_status(self) -> str:
        """HR-positive means ER or PR at least 1% (ASCO/CAP 2020)."""
        if self.er.status in ("positive", "low-positive") or self.pr.status == "positive":
            return "positive"
        if self.er.status == "negative" and self.pr.status == "negative":
            return "negative"
        if self.er.status == "unknown" and self.pr.status == "unknown" and self.hr_override:
            return self.hr_override[0]
        return "unknown"

    @property
    def subtype(self) -> str:
        hr, her2 = self.hr_status, self.her2.status
        if her2 == "positive":
            return {"positive": "HR+/HER2+", "negative": "HR-/HER2+"}.get(hr, "unknown")
        if her2 == "negative":
            return {"positive": "HR+/HER2-", "negative": "TNBC"}.get(hr, "unknown")
        return "unknown"

    @property
    def sex(self) -> str:
        """male | female | unknown: birth sex where recorded (the physiology endocrine therapy acts on), else Patient.gender."""
        if self.birth_sex in ("male", "female"):
            return self.birth_sex
        return self.gender if self.gender in ("male", "female") else "unknown"

    @cached_property
    def receptor_samples(self) -> dict[str, list[Any]]:
        """Per marker, one consolidated status per tested sample, oldest first (``receptors.SampleStatus``).

        Computed on demand (order hooks and therapy options ask) from ``receptor_history``; set the
        history before the first call.
        """
        from .receptors import consolidate

        return consolidate(self.receptor_history)

    @property
    def prior_therapy_classes(self) -> list[str]:
        return sorted({t.drug_class for t in self.treatments})

    @property
    def current_line(self) -> TherapyLine | None:
        """The latest line for metastatic disease, if any (ongoing or not)."""
        return self.lines[-1] if self.lines else None

    def active_classes(self) -> set[str]:
        return {t.drug_class for t in self.treatments if t.active}

    def latest(self, items: list[Measurement]) -> Measurement | None:
        dated = [m for m in items if m.date is not None]
        return max(dated, key=lambda m: cast(date, m.date)) if dated else (items[-1] if items else None)

    def biomarker(self, *markers: str) -> list[BiomarkerResult]:
        return [b for b in self.biomarkers if b.marker in markers]

    def to_extension(self) -> dict[str, Any]:
        """The contract's ``mbc-cds-hooks.clinical-picture`` object: ``to_json`` without null members.

        JSON consumers (and CDS Hooks, which forbids null values in its own objects) expect an
        unknown member to be absent. The one documented exception: the ``end`` of a line of therapy
        (and of early treatment) is ``null`` while it runs (contract, "lines"): there null means "ongoing".
        """
        return _without_nulls(self.to_json(), keep_null={"end"}, inside={"lines", "earlyTreatment"})

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PICTURE_VERSION,
            "patient": self.patient,
            "breastCancer": self.breast_cancer,
            "sex": self.sex,
            "metastatic": self.metastatic,
            "subtype": self.subtype,
            "er": self.er.to_json(),
            "pr": self.pr.to_json(),
            "her2": self.her2.to_json(),
            "sites": self.sites,
            "visceral": self.visceral,
            "metastasisDate": _iso(self.metastasis_date),
            "metastases": [
                {"site": m.site, "date": _iso(m.date), "evidence": m.reference, "basis": m.basis, "regional": m.regional}
                for m in self.metastases
            ],
            "receptorHistory": [r.to_json() for r in self.receptor_history],
            "discordance": self.discordance,
            "priorTherapyClasses": self.prior_therapy_classes,
            "treatments": [
                # Weekly cycles give hundreds of orders per drug: the first few references, and the count.
                {"drug": t.ingredient, "class": t.drug_class, "start": _iso(t.start), "end": _iso(t.end), "active": t.active,
                 "evidence": t.evidence[:5], "evidenceCount": len(t.evidence)}
                for t in self.treatments
            ],
            "lines": [line.to_json() for line in self.lines],
            "earlyTreatment": [line.to_json() for line in self.early_treatment],
            "progressions": [p.to_json() for p in self.progressions],
            "endocrineResistance": self.endocrine_resistance,
            "lvef": [m.to_json() for m in self.lvef],
            "ecog": self.ecog.to_json() if self.ecog else None,
            "menopause": {"status": self.menopause, "evidence": self.menopause_evidence},
            "biomarkers": [b.to_json() for b in self.biomarkers],
            "grade": self.grade.to_json() if self.grade else None,
            "complications": [c.to_json() for c in self.complications],
            "labs": [lab.to_json() for lab in self.labs],
            **({"flaggedConditions": [
                {"concept": f.concept, "date": _iso(f.date), "text": f.text, "clinicalStatus": f.clinical_status, "evidence": f.reference}
                for f in self.flagged_conditions]} if self.flagged_conditions else {}),
            "unmapped": [
                {"reference": u.reference, "system": u.system, "code": u.code, "display": u.display, "count": u.count, "reason": u.reason}
                for u in self.unmapped
            ],
            "warnings": self.warnings,
        }
