"""The six real records in ../shared/realdata (used in place) give the right picture and cards.

Expected values were worked out by reading each file (tests/expected/realdata.yaml says why).
"""

from __future__ import annotations

import os
import uuid
from datetime import date

import pytest
import yaml

import fixtures
from cds_hooks.cards import visible_rules
from cds_hooks.evaluate import each_card, evaluate
from mappings.build import build_picture
from mappings.codes import lookup_observation, lookup_condition
from tests.conftest import REALDATA
from tests.support.therapy import check_therapy

EXPECTED = yaml.safe_load((fixtures.HERE.parent / "tests" / "expected" / "realdata.yaml").read_text())
TODAY = date(2026, 11, 22)

if not REALDATA.is_dir() and os.environ.get("CI"):
    raise RuntimeError(f"{REALDATA} is missing: CI must run with shared/ beside the checkout")
pytestmark = pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata not present (set MBC_REALDATA)")


def _picture(name):
    resources = fixtures.load(REALDATA / name, TODAY)
    pic = build_picture(resources, today=TODAY)
    cards = evaluate("patient-view", pic, hook_instance=str(uuid.uuid4()), today=TODAY)
    return pic, pic.to_json(), visible_rules(cards)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_picture(name):
    exp = EXPECTED[name]
    pic, js, _ = _picture(name)
    assert js["patient"] == f"Patient/{exp['patient_id']}"
    assert js["breastCancer"] == exp["breastCancer"]
    assert js["metastatic"] == exp["metastatic"]
    assert js["subtype"] == exp["subtype"]
    assert js["er"]["status"] == exp["er_status"]
    assert js["pr"]["status"] == exp["pr_status"]
    assert js["her2"]["status"] == exp["her2_status"]
    assert js["her2"]["category"] == exp["her2_category"]
    assert js["sites"] == sorted(exp.get("sites") or [])
    assert js["visceral"] == exp.get("visceral", False)
    assert js["priorTherapyClasses"] == sorted(exp["priorTherapyClasses"])
    assert js["discordance"] == (exp.get("discordance") or [])
    for marker in ("er", "pr", "her2"):
        assert set(exp[f"{marker}_evidence"]) <= set(r["evidence"] for r in js["receptorHistory"]), marker
    for key, value in (exp.get("genomics") or {}).items():
        if key not in ("gBRCA", "PIK3CA", "ESR1", "AKT1", "PTEN", "PD-L1"):
            continue
        found = pic.biomarker(key)
        assert bool(found) == (value is not None), key


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lines_of_therapy(name):
    """Lines, early treatment and endocrine resistance as worked out by reading each record (realdata.yaml)."""
    exp = EXPECTED[name]
    pic, js, _ = _picture(name)
    assert [ln["agents"] for ln in js["lines"]] == exp["lines"]
    assert [ln["agents"] for ln in js["earlyTreatment"]] == exp["early_treatment"]
    assert js["endocrineResistance"] == exp["endocrine_resistance"]


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if "therapy" in EXPECTED[n]))
def test_therapy_options(name):
    """therapy-options.line and its options for the metastatic records (same checks as the fixture manifest)."""
    exp = EXPECTED[name]
    pic = build_picture(fixtures.load(REALDATA / name, TODAY), today=TODAY)
    cards = each_card("patient-view", pic, today=TODAY)
    check_therapy({"id": name, "why": "tests/expected/realdata.yaml", "therapy": exp["therapy"]}, {"cards": cards})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_unmapped_codes_are_listed_not_dropped(name):
    exp = EXPECTED[name]
    _, js, _ = _picture(name)
    listed = {(u["system"], u["code"]) for u in js["unmapped"]}
    for example in exp.get("expected_unmapped_examples") or []:
        known = lookup_observation(example["system"], str(example["code"]))[0] or lookup_condition(example["system"], str(example["code"]))
        if not known:
            assert (example["system"], str(example["code"])) in listed, example


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cards(name):
    exp = EXPECTED[name]
    _, _, codes = _picture(name)
    for item in exp["cards_expected"]:
        assert item["code"] in codes, item
    for item in exp["cards_not_expected"]:
        assert item["code"] not in codes, item
