"""Biomarker reading: germline vs somatic BRCA1/2, PD-L1 scores with their assay, each from a small resource."""

from __future__ import annotations

from datetime import date

import pytest

from mappings.build import build_picture

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
HGNC = "http://www.genenames.org/geneId"
BC = {"resourceType": "Condition", "id": "bc", "code": {"coding": [{"system": SCT, "code": "254837009"}]}, "onsetDateTime": "2024-01-01"}


def obs(oid, code, **extra):
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": "2026-09-01", **extra}


def answer(code, text=None):
    concept = {"coding": [{"system": LOINC, "code": code}]}
    if text:
        concept["text"] = text
    return {"valueCodeableConcept": concept}


def comp(code, value, system=LOINC):
    return {"code": {"coding": [{"system": system, "code": code}]}, "valueCodeableConcept": {"coding": [value]}}


GENE_BRCA2 = comp("48018-6", {"system": HGNC, "code": "HGNC:1101"})
SOMATIC = comp("48002-0", {"system": LOINC, "code": "LA6684-0"})
GERMLINE = comp("48002-0", {"system": LOINC, "code": "LA6683-2"})
PRESENT = answer("LA9633-4")


def biomarkers(*resources):
    return build_picture([BC, *resources], today=date(2026, 11, 1)).biomarkers


# -- germline vs somatic -------------------------------------------------------------------

@pytest.mark.parametrize("components,marker,germline,basis", [
    ([GENE_BRCA2, SOMATIC], "sBRCA", False, "source-class"),
    ([GENE_BRCA2, GERMLINE], "gBRCA", True, "source-class"),
    ([GENE_BRCA2], "BRCA", None, None),  # origin not recorded: neither germline nor somatic is assumed
])
def test_brca_variant_origin_from_genomic_source_class(components, marker, germline, basis):
    [b] = biomarkers(obs("v", "69548-6", component=components, **PRESENT))
    assert (b.marker, b.result, b.germline, b.origin_basis, b.gene) == (marker, "detected", germline, basis, "BRCA2")


def test_germline_test_code_is_germline_unless_the_result_says_otherwise():
    [b] = biomarkers(obs("g", "38530-2", **answer("LA6577-6")))
    assert (b.marker, b.result, b.germline, b.origin_basis) == ("gBRCA", "negative", True, "test-code")
    [s] = biomarkers(obs("s", "38530-2", component=[SOMATIC], **answer("LA6576-8")))
    assert (s.marker, s.germline) == ("sBRCA", False)


def test_origin_from_the_test_name_or_the_report():
    [named] = biomarkers(obs("v", "69548-6", component=[GENE_BRCA2], method={"text": "Tumor-only NGS panel"}, **PRESENT))
    assert (named.marker, named.origin_basis) == ("sBRCA", "test-name")
    report = {"resourceType": "DiagnosticReport", "id": "r", "status": "final", "code": {"text": "Hereditary cancer germline panel"},
              "result": [{"reference": "Observation/v"}]}
    [from_report] = biomarkers(obs("v", "69548-6", component=[GENE_BRCA2], **PRESENT), report)
    assert (from_report.marker, from_report.germline, from_report.origin_basis) == ("gBRCA", True, "report")
    panel = obs("p", "51969-4", component=[SOMATIC], hasMember=[{"reference": "Observation/v"}])
    [from_panel] = biomarkers(obs("v", "69548-6", component=[GENE_BRCA2], **PRESENT), panel)
    assert (from_panel.marker, from_panel.origin_basis) == ("sBRCA", "report")


# -- PD-L1 ---------------------------------------------------------------------------------

def pdl1(code="83052-1", **extra):
    return biomarkers(obs("p", code, **extra))


def test_pdl1_cps_5_from_a_component_is_a_cps_of_5_whatever_the_positive_says():
    [b] = pdl1(component=[{"code": {"text": "PD-L1 combined positive score (CPS)"}, "valueQuantity": {"value": 5, "unit": "{score}"}}],
               **answer("LA6576-8", "Positive"))
    assert (b.result, b.score_type, b.value, b.assay) == ("positive", "CPS", 5.0, "22C3")


def test_pdl1_cps_15_from_the_result_text():
    [b] = pdl1(**answer("LA6576-8", "Positive (CPS 15)"), method={"text": "PD-L1 IHC 22C3 pharmDx"})
    assert (b.score_type, b.value, b.assay) == ("CPS", 15.0, "22C3")


def test_pdl1_tps_30_percent_on_the_tumour_cell_code():
    [b] = pdl1("83053-9", valueQuantity={"value": 30, "unit": "%", "code": "%"}, method={"text": "clone 28-8"})
    assert (b.score_type, b.value, b.assay) == ("TPS", 30.0, "28-8")


def test_pdl1_sp142_immune_cells_1_percent():
    [b] = pdl1("83057-0", valueString="IC 1% (positive)")
    assert (b.score_type, b.value, b.assay, b.result) == ("IC", 1.0, "SP142", "positive")


def test_pdl1_bare_positive_has_no_score():
    [b] = pdl1(**answer("LA6576-8", "Positive"))
    assert (b.result, b.score_type, b.value, b.assay) == ("positive", None, None, "22C3")


def test_pdl1_number_without_a_named_score_is_not_called_cps():
    [b] = pdl1(valueQuantity={"value": 12, "unit": "{score}"})
    assert (b.score_type, b.value) == (None, 12.0)
    [named] = pdl1(valueQuantity={"value": 12, "unit": "CPS"})
    assert (named.score_type, named.value) == ("CPS", 12.0)


def test_pdl1_upper_bound_and_category_are_not_scores():
    [below] = pdl1(valueString="CPS < 10")
    assert (below.score_type, below.value, below.comparator) == ("CPS", None, "<")
    [category] = pdl1("83057-0", valueString="IC1, 22C3 not done")
    assert (category.score_type, category.value, category.assay) == (None, None, "SP142")


def test_pdl1_two_scores_in_one_report():
    found = pdl1(valueString="TPS 30%, combined positive score 40")
    assert sorted((b.score_type, b.value) for b in found) == [("CPS", 40.0), ("TPS", 30.0)]
    assert {b.to_json()["scoreType"] for b in found} == {"CPS", "TPS"}


# -- biomarker-gbrca card --------------------------------------------------------------------

def gbrca_card(*resources):
    from cds_hooks.evaluate import each_card

    met = {"resourceType": "Condition", "id": "m", "code": {"coding": [{"system": SCT, "code": "94381002"}]}, "onsetDateTime": "2026-05-01"}
    her2 = obs("h", "85319-2", **answer("LA6111-4"))
    pic = build_picture([BC, met, her2, *resources], today=date(2026, 11, 1))
    found = [c for c in each_card("patient-view", pic, today=date(2026, 11, 1))
             if c["source"]["topic"]["code"] == "biomarker-gbrca"]
    return found[0] if found else None


def test_gbrca_card_names_a_somatic_result_as_not_qualifying():
    card = gbrca_card(obs("v", "69548-6", component=[GENE_BRCA2, SOMATIC], **PRESENT))
    assert "BRCA2 variant detected" in card["detail"] and "does not qualify for a PARP inhibitor" in card["detail"]
    assert "tumour-only" in card["summary"]


def test_gbrca_card_names_a_result_of_unknown_origin():
    card = gbrca_card(obs("v", "69548-6", component=[GENE_BRCA2], **PRESENT))
    assert "origin not recorded" in card["detail"]


def test_a_germline_result_silences_the_card():
    assert gbrca_card(obs("g", "50995-0", **answer("LA6577-6")), obs("v", "69548-6", component=[GENE_BRCA2, SOMATIC], **PRESENT)) is None
    assert gbrca_card(obs("v", "69548-6", component=[GENE_BRCA2, GERMLINE], **PRESENT)) is None


def test_pdl1_percent_text_on_the_tumour_cell_code_is_a_tps_and_clone_digits_are_no_score():
    [b] = pdl1("83053-9", valueString="22C3: 30% of viable tumour cells")
    assert (b.score_type, b.value, b.assay) == ("TPS", 30.0, "22C3")
    [clone_only] = pdl1(valueString="22C3 positive")
    assert (clone_only.score_type, clone_only.value, clone_only.result) == (None, None, "positive")
