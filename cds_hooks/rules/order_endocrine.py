"""Endocrine order checks: gonadal suppression for premenopausal women and for men, and ribociclib
with tamoxifen. Suppression is read by mappings.suppression (GnRH depots whose product-specific
interval covers today; bilateral oophorectomy or ovarian irradiation)."""

from __future__ import annotations

from datetime import date

from mappings.picture import ClinicalPicture
from mappings.suppression import GNRH_CLASS, Suppression, gonadal_suppression

from ..cards import Draft, Fact
from ..describe import age_years, when
from ..drafts import DraftOrder
from ..knowledge import Knowledge
from .order_common import capital, names, order_fact


def _suppression_facts(s: Suppression) -> list[Fact]:
    facts = [Fact(f"GnRH agonist no longer covering today: {d.words()}", [d.reference]) for d in s.lapsed]
    facts += [Fact(f"GnRH agonist of unknown strength: {d.words()}; whether it still covers today cannot be told", [d.reference])
              for d in s.unknown]
    facts += [Fact(f"Oophorectomy on {when(p.get('date'))} recorded without laterality ({p.get('text')}): not counted as ablation",
                   [p["evidence"]]) for p in s.oophorectomy_unspecified]
    if not facts:
        facts.append(Fact("No GnRH agonist, bilateral oophorectomy or ovarian irradiation on record"))
    return facts


def _sex_fact(pic: ClinicalPicture) -> Fact:
    basis = "birth sex, US Core extension" if pic.birth_sex in ("male", "female") else "Patient.gender"
    other = f"; Patient.gender {pic.gender}" if pic.birth_sex in ("male", "female") and pic.gender and pic.gender != pic.sex else ""
    return Fact(f"Sex: {pic.sex} ({basis}{other})", [pic.patient] if pic.patient else [])


def endocrine_premenopausal(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    rule = k.rule("order-endocrine-premenopausal")
    targets = [o for o in orders if o.selected and o.drug_class in rule["classes"]]
    if not targets or pic.sex == "male":  # men: order-endocrine-male
        return []
    age = age_years(pic, today)
    if pic.menopause == "premenopausal":
        status = Fact("Menopausal status: premenopausal", [pic.menopause_evidence] if pic.menopause_evidence else [])
    elif pic.menopause == "unknown" and age is not None and age < rule["age_postmenopausal"]:
        status = Fact(f"Menopausal status not recorded; age {age} (under {rule['age_postmenopausal']})", [pic.patient] if pic.patient else [])
    else:
        return []
    if any(o.drug_class == GNRH_CLASS for o in orders):
        return []
    suppression = gonadal_suppression(pic, today)
    if suppression.suppressed:
        return []
    who = "a premenopausal woman" if pic.menopause == "premenopausal" else f"a woman aged {age} with no menopausal status recorded"
    return [Draft("order-endocrine-premenopausal",
                  f"{capital(names(targets))} ordered for {who}, without active ovarian suppression or ablation",
                  [*(order_fact(o) for o in targets), status, *_suppression_facts(suppression)], rule["guidance"],
                  key="|".join(o.reference for o in targets))]


def endocrine_male(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    rule = k.rule("order-endocrine-male")
    targets = [o for o in orders if o.selected and o.drug_class == "aromatase-inhibitor"]
    if not targets or pic.sex != "male":
        return []
    if any(o.drug_class == GNRH_CLASS for o in orders):
        return []
    suppression = gonadal_suppression(pic, today)
    if suppression.active:
        return []
    lapsed = [f for f in _suppression_facts(suppression) if "oophorectomy" not in f.text.lower()]
    if not (suppression.lapsed or suppression.unknown):
        lapsed = [Fact("No GnRH agonist on record")]
    return [Draft("order-endocrine-male", f"{capital(names(targets))} ordered for a man without an active GnRH agonist",
                  [*(order_fact(o) for o in targets), _sex_fact(pic), *lapsed], rule["guidance"],
                  key="|".join(o.reference for o in targets))]


def ribociclib_tamoxifen(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    rule = k.rule("order-ribociclib-tamoxifen")
    first, second = rule["ingredients"]
    drafted = {name: [o for o in orders if o.ingredient == name] for name in (first, second)}
    active = {name: [t for t in pic.treatments if t.active and t.ingredient == name] for name in (first, second)}
    ordered = drafted[first] + drafted[second]
    if not any(o.selected for o in ordered):
        return []
    pair = all(drafted[n] or active[n] for n in (first, second)) and (drafted[first] or drafted[second])
    if not pair:
        return []
    facts = [order_fact(o) for o in ordered]
    facts += [Fact(f"Active: {t.ingredient} since {when(t.start)}", t.evidence[:2]) for n in (first, second) for t in active[n]
              if not drafted[n]]
    return [Draft("order-ribociclib-tamoxifen", "Ribociclib with tamoxifen: not indicated together (QT prolongation); use an aromatase inhibitor or fulvestrant",
                  facts, rule["guidance"], key="|".join(o.reference for o in ordered))]
