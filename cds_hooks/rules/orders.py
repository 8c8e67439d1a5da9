"""order-select and order-sign rules: the draft medication orders against the patient's picture.

Drafts are read by cds_hooks.drafts (RequestGroups, contained and bundled MedicationRequests and
Medications). Every rule answers with at most one card per draft order: one card per order, or
one card naming every order it concerns. The rules by topic: cardiac (LVEF, anthracyclines),
order_dose (trastuzumab schedules), order_endocrine (suppression, ribociclib + tamoxifen); this
module holds the receptor mismatch, combination chemotherapy and lung toxicity checks.
"""

from __future__ import annotations

from datetime import date

from mappings.picture import ClinicalPicture
from mappings.receptor_support import SampleSeen
from mappings.treatments import read_intent

from ..cards import Draft, Fact
from ..describe import HER2_CATEGORY_WORDS, when
from ..drafts import DraftOrder
from ..knowledge import Knowledge
from .cardiac import anthracycline_her2, cardiac_monitoring
from .order_common import capital, delete, names, order_fact
from .order_dose import trastuzumab_dose
from .order_endocrine import endocrine_male, endocrine_premenopausal, ribociclib_tamoxifen
from .safety import mismatch

CYTOTOXIC = {"anthracycline", "taxane", "platinum", "antimetabolite", "other-chemotherapy"}
_SPECIMEN = {"primary": "primary tumour", "metastasis": "metastasis", "unknown": "sample site not recorded"}


def _sample_fact(s: SampleSeen) -> Fact:
    status = s.status.replace("-", " ")
    if s.marker == "HER2" and s.status == "negative" and s.category in HER2_CATEGORY_WORDS:
        status = f"negative, {HER2_CATEGORY_WORDS[s.category]}"
    elif s.marker == "HER2" and s.status == "equivocal":
        status = "equivocal (IHC 2+, no conclusive ISH)"
    marker = "ER and PR together" if s.marker == "HR" else s.marker
    return Fact(f"{marker} {status}, {s.date or 'date not recorded'}, {_SPECIMEN.get(s.specimen, s.specimen)}", list(s.evidence))


def receptor_mismatch(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    out = []
    for o in orders:
        if not o.selected:
            continue
        found = mismatch([o.drug_class], pic, o.ingredient)
        if found is None:
            continue
        samples = [_sample_fact(s) for s in found.samples] or [Fact("No tested sample on record")]
        if found.note:
            samples.append(Fact(found.note))
        rule = k.rule("order-receptor-mismatch")
        out.append(Draft("order-receptor-mismatch", f"{capital(o.ingredient)} ordered: {found.words}",
                         [order_fact(o), *samples], [*rule["guidance"], rule["by_kind"][found.kind]], delete([o]), key=o.reference))
    return out


def combination_chemotherapy(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    """Metastatic disease only: combinations are the standard of early, curative-intent treatment."""
    rule = k.rule("order-combination-chemotherapy")
    if not pic.metastatic:
        return []
    cytotoxic = {o.ingredient: o for o in orders if o.drug_class in CYTOTOXIC}
    if len(cytotoxic) < 2:
        return []
    if any(read_intent(o.resource) == "curative" for o in cytotoxic.values()):
        return []
    partners = set(rule["exceptions_with_classes"])
    if any(o.drug_class in partners for o in orders) or pic.active_classes() & partners:
        return []
    if any(f.concept == "visceral-crisis" for f in pic.flagged_conditions):
        return []
    drugs = " + ".join(sorted(cytotoxic))
    return [Draft("order-combination-chemotherapy", f"{capital(drugs)} together for metastatic disease: sequential single agents are preferred outside visceral crisis",
                  [order_fact(o) for o in cytotoxic.values()]
                  + [Fact(f"Metastatic disease since {when(pic.metastasis_date)}", pic.metastatic_evidence[:3]),
                     Fact("No visceral crisis or rapidly progressive visceral disease recorded as a condition")],
                  rule["guidance"], key="|".join(o.reference for o in cytotoxic.values()))]


def interstitial_lung_disease(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    rule = k.rule("order-interstitial-lung-disease")
    targets = [o for o in orders if o.selected and o.ingredient == rule["ingredient"]]
    if not targets:
        return []
    recorded = [f for f in pic.flagged_conditions if f.concept == rule["condition_concept"]]
    facts = [order_fact(o) for o in targets]
    if recorded:
        facts += [Fact(f"Recorded: {f.text}, {when(f.date)}" + (f", {f.clinical_status}" if f.clinical_status else ""), [f.reference])
                  for f in recorded]
        summary = f"{capital(names(targets))} ordered with pneumonitis or interstitial lung disease on record: high risk of fatal ILD"
        indicator = "warning"
    else:
        facts.append(Fact("No pneumonitis or interstitial lung disease recorded as a condition"))
        summary = f"{capital(names(targets))}: boxed warning for interstitial lung disease; monitor for cough, dyspnoea and fever"
        indicator = None
    return [Draft("order-interstitial-lung-disease", summary, facts, rule["guidance"], indicator=indicator,
                  key="|".join(o.reference for o in targets))]


RULES = (
    anthracycline_her2,
    cardiac_monitoring,
    receptor_mismatch,
    trastuzumab_dose,
    endocrine_premenopausal,
    endocrine_male,
    ribociclib_tamoxifen,
    interstitial_lung_disease,
    combination_chemotherapy,
)
