"""Code tables, loaded once from the CSV files in ``mappings/data``.

The tables are data, reviewed with their sources (data/README.md); this module only indexes
them for fast lookup. Lookups are by (system, code); a code that arrives with a wrong or missing
system (old Synthea sends a SNOMED code under the LOINC system) is still found when the code
alone is unambiguous, and the caller is told so.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HGNC = "http://www.genenames.org/geneId"

# Other spellings of the same code systems seen in real data.
SYSTEM_ALIASES = {
    "http://snomed.info/sct/": SNOMED,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "http://loinc.org/": LOINC,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
    "https://www.genenames.org/geneId": HGNC,
    "http://www.genenames.org": HGNC,
}


def norm_system(system: str) -> str:
    return SYSTEM_ALIASES.get(system, system)


def _rows(name: str) -> list[dict[str, str]]:
    path = DATA / name
    with path.open(newline="", encoding="utf-8") as fh:
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(fh)]


@dataclass(frozen=True)
class ConditionCode:
    concept: str
    site: str
    marker: str
    status: str
    display: str


@dataclass
class Tables:
    observation: dict[tuple[str, str], str] = field(default_factory=dict)
    answer: dict[tuple[str, str], str] = field(default_factory=dict)
    condition_exact: dict[tuple[str, str], list[ConditionCode]] = field(default_factory=dict)
    condition_prefix: dict[str, list[tuple[str, list[ConditionCode]]]] = field(default_factory=dict)
    body_site: dict[tuple[str, str], str] = field(default_factory=dict)
    site_keywords: list[tuple[str, str]] = field(default_factory=list)
    rxnorm: dict[str, str] = field(default_factory=dict)
    strength_mg: dict[str, float] = field(default_factory=dict)  # product RxCUI -> mg per dose unit (syringe, vial)
    drug_class: dict[str, str] = field(default_factory=dict)
    drug_names: list[tuple[str, str]] = field(default_factory=list)
    sites: dict[str, dict[str, str]] = field(default_factory=dict)
    genes: dict[str, str] = field(default_factory=dict)  # HGNC id or symbol (upper) -> biomarker
    gene_symbols: dict[str, str] = field(default_factory=dict)  # HGNC id or symbol (upper) -> symbol
    procedure_keywords: list[tuple[str, str]] = field(default_factory=list)
    genomic_origin: list[tuple[re.Pattern[str], bool]] = field(default_factory=list)  # word pattern -> germline?
    complication_keywords: list[tuple[str, str]] = field(default_factory=list)  # lower-case keyword -> complication kind
    pdl1_codes: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (system, code) -> (assay, score type)
    pdl1_terms: list[tuple[re.Pattern[str], str, str]] = field(default_factory=list)  # word pattern -> (assay, score type)
    condition_keywords: list[tuple[str, str]] = field(default_factory=list)
    gnrh_intervals: dict[tuple[str, float], tuple[int, str, str]] = field(default_factory=dict)  # (ingredient, mg) -> (n, unit, product)
    # code alone -> key, for codes sent with a wrong system; None where the code is ambiguous
    observation_by_code: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    answer_by_code: dict[str, tuple[str, str] | None] = field(default_factory=dict)

    def observation_codes(self, concepts: set[str] | None = None) -> list[tuple[str, str]]:
        return sorted(k for k, c in self.observation.items() if concepts is None or c in concepts)


def _by_code(keys: list[tuple[str, str]]) -> dict[str, tuple[str, str] | None]:
    """Code-alone index for codes long enough to be unambiguous across systems.

    Short codes (AJCC "4", a bare "1") mean different things in different systems and are
    never matched without their system.
    """
    out: dict[str, tuple[str, str] | None] = {}
    for key in keys:
        if len(key[1]) < 5:
            continue
        out[key[1]] = None if key[1] in out else key
    return out


def _word(term: str) -> re.Pattern[str]:
    """A term matched as whole words ("ic" must not match "clinic")."""
    return re.compile(r"(?<![a-z0-9])" + re.escape(term.lower()) + r"(?![a-z0-9])")


@lru_cache(maxsize=1)
def tables() -> Tables:
    t = Tables()
    for row in _rows("observation_codes.csv"):
        t.observation[(norm_system(row["system"]), row["code"])] = row["concept"]
    for row in _rows("answer_codes.csv"):
        t.answer[(norm_system(row["system"]), row["code"])] = row["meaning"]
    prefix: dict[str, dict[str, list[ConditionCode]]] = {}
    for row in _rows("condition_codes.csv"):
        entry = ConditionCode(row["concept"], row.get("site", ""), row.get("marker", ""), row.get("status", ""), row.get("display", ""))
        system = norm_system(row["system"])
        if row.get("match", "exact") == "prefix":
            prefix.setdefault(system, {}).setdefault(row["code"].upper(), []).append(entry)
        else:
            t.condition_exact.setdefault((system, row["code"].upper()), []).append(entry)
    for system, entries in prefix.items():
        t.condition_prefix[system] = sorted(entries.items(), key=lambda kv: -len(kv[0]))
    for row in _rows("body_sites.csv"):
        t.body_site[(norm_system(row["system"]), row["code"])] = row["site"]
    kws = _rows("site_keywords.csv")
    kws.sort(key=lambda r: (int(r.get("priority") or 100), -len(r["keyword"])))
    t.site_keywords = [(r["keyword"].lower(), r["site"]) for r in kws]
    for row in _rows("rxnorm_codes.csv"):
        t.rxnorm[row["rxcui"]] = row["ingredient"].lower()
        if row.get("strength_mg"):
            t.strength_mg[row["rxcui"]] = float(row["strength_mg"])
    names: list[tuple[str, str]] = []
    for row in _rows("drug_classes.csv"):
        ingredient = row["ingredient"].lower()
        t.drug_class[ingredient] = row["class"]
        for name in {ingredient, *(n.strip().lower() for n in row.get("names", "").split(";") if n.strip())}:
            names.append((name, ingredient))
    t.drug_names = sorted(names, key=lambda kv: -len(kv[0]))
    for row in _rows("sites.csv"):
        t.sites[row["site"]] = row
    for row in _rows("genes.csv"):
        t.genes[row["hgnc_id"].upper()] = row["biomarker"]
        t.genes[row["symbol"].upper()] = row["biomarker"]
        t.gene_symbols[row["hgnc_id"].upper()] = t.gene_symbols[row["symbol"].upper()] = row["symbol"]
    pk = _rows("procedure_keywords.csv")
    pk.sort(key=lambda r: (int(r.get("priority") or 100), -len(r["keyword"])))
    t.procedure_keywords = [(r["keyword"].lower(), r["kind"]) for r in pk]
    t.complication_keywords = [(r["keyword"].lower(), r["kind"]) for r in _rows("complication_keywords.csv")]
    for row in _rows("genomic_origin.csv"):
        t.genomic_origin.append((_word(row["term"]), row["origin"] == "germline"))
    for row in _rows("pdl1_terms.csv"):
        if row.get("code"):
            t.pdl1_codes[(norm_system(row["system"]), row["code"])] = (row["assay"], row["score_type"])
        else:
            t.pdl1_terms.append((_word(row["term"]), row["assay"], row["score_type"]))
    ck = _rows("condition_keywords.csv")
    t.condition_keywords = sorted(((r["keyword"].lower(), r["concept"]) for r in ck), key=lambda kv: -len(kv[0]))
    for row in _rows("gnrh_intervals.csv"):
        t.gnrh_intervals[(row["ingredient"].lower(), float(row["dose_mg"]))] = (int(row["interval"]), row["unit"], row["product"])
    t.observation_by_code = _by_code(list(t.observation))
    t.answer_by_code = _by_code(list(t.answer))
    return t


def lookup_observation(system: str, code: str) -> tuple[str | None, bool]:
    """(concept, system_mismatch) for an Observation code."""
    t = tables()
    concept = t.observation.get((norm_system(system), code))
    if concept is not None:
        return concept, False
    key = t.observation_by_code.get(code)
    if key is not None:
        return t.observation[key], True
    return None, False


def lookup_answer(system: str, code: str) -> str | None:
    t = tables()
    meaning = t.answer.get((norm_system(system), code))
    if meaning is None:
        key = t.answer_by_code.get(code)
        meaning = t.answer[key] if key is not None else None
    return meaning


def lookup_condition(system: str, code: str) -> list[ConditionCode]:
    """Exact match first, else the longest matching prefix (ICD-10-CM families)."""
    t = tables()
    system = norm_system(system)
    code = code.upper()
    exact = t.condition_exact.get((system, code))
    if exact:
        return exact
    for prefix, entries in t.condition_prefix.get(system, ()):
        if code.startswith(prefix):
            return entries
    return []


def lookup_body_site(system: str, code: str) -> str | None:
    return tables().body_site.get((norm_system(system), code))


def _first_keyword(pairs: list[tuple[str, str]], text: str) -> str | None:
    """The value of the first (keyword, value) pair whose keyword occurs in ``text`` (tables keep their priority order)."""
    low = text.lower()
    for keyword, value in pairs:
        if keyword in low:
            return value
    return None


def site_from_text(text: str) -> str | None:
    return _first_keyword(tables().site_keywords, text)


def ingredient_for_rxcui(rxcui: str) -> str | None:
    return tables().rxnorm.get(rxcui)


def strength_for_rxcui(rxcui: str) -> float | None:
    """mg in one dose unit of a product code, where the table states it (e.g. Prolia's 60 mg syringe)."""
    return tables().strength_mg.get(rxcui)


def ingredient_from_text(text: str) -> str | None:
    low = text.lower()
    for name, ingredient in tables().drug_names:
        if name in low:
            return ingredient
    return None


def drug_class(ingredient: str) -> str | None:
    return tables().drug_class.get(ingredient)


def is_visceral(site: str) -> bool:
    return tables().sites.get(site, {}).get("visceral") == "yes"


def biomarker_for_gene(code_or_symbol: str) -> str | None:
    """Biomarker name for an HGNC id ("HGNC:3467") or gene symbol ("ESR1")."""
    key = code_or_symbol.strip().upper()
    if key and not key.startswith("HGNC:") and key.isdigit():
        key = f"HGNC:{key}"
    return tables().genes.get(key)


def gene_symbol(code_or_symbol: str) -> str | None:
    """The HGNC symbol ("BRCA2") of a gene the tables know, from its HGNC id or symbol."""
    key = code_or_symbol.strip().upper()
    if key and not key.startswith("HGNC:") and key.isdigit():
        key = f"HGNC:{key}"
    return tables().gene_symbols.get(key)


def procedure_kind(text: str) -> str | None:
    return _first_keyword(tables().procedure_keywords, text)


def variant_origin(text: str) -> bool | None:
    """True (germline) or False (somatic, tumour-only) when a test name or code text states the origin."""
    low = text.lower()
    found = {germline for pattern, germline in tables().genomic_origin if pattern.search(low)}
    return found.pop() if len(found) == 1 else None  # both named ("germline and somatic panel"): unknown


def pdl1_code(system: str, code: str) -> tuple[str, str] | None:
    """(assay, score type) a PD-L1 LOINC code names ("" where it names none)."""
    return tables().pdl1_codes.get((norm_system(system), code))


def pdl1_terms(text: str) -> tuple[list[str], list[str]]:
    """The PD-L1 assays (clones) and score types a text names, in the table's order."""
    low = text.lower()
    assays: list[str] = []
    scores: list[str] = []
    for pattern, assay, score in tables().pdl1_terms:
        if pattern.search(low):
            if assay and assay not in assays:
                assays.append(assay)
            if score and score not in scores:
                scores.append(score)
    return assays, scores


def complications_from_text(text: str) -> set[str]:
    """Complications of bone metastases a Condition's name states (pathological fracture, cord compression, ...)."""
    low = text.lower()
    return {kind for keyword, kind in tables().complication_keywords if keyword in low}



def condition_flag(text: str) -> str | None:
    """Concept of a Condition known only by keywords (condition_keywords.csv), from its code's text."""
    return _first_keyword(tables().condition_keywords, text)


def gnrh_interval(ingredient: str, dose_mg: float | None) -> tuple[int, str, str] | None:
    """(interval, unit d|wk|mo, product) of a GnRH agonist depot of this strength; None when the table lacks it."""
    if dose_mg is None:
        return None
    return tables().gnrh_intervals.get((ingredient, round(dose_mg, 2)))


def gnrh_products(ingredient: str) -> list[tuple[float, int, str, str]]:
    """(mg, interval, unit, product) of every depot of one GnRH agonist in the table."""
    return sorted((mg, *v) for (ing, mg), v in tables().gnrh_intervals.items() if ing == ingredient)
