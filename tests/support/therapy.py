"""The therapy-options extension checked against an expectation (the fixture manifest's `therapy`,
tests/expected/realdata.yaml): used by the HTTP fixture tests and the real-record tests."""

from __future__ import annotations

from typing import Any

from cds_hooks.cards import visible_rules


def _offered(option: dict[str, Any]) -> bool:
    return option["met"] and not option["given"]


def check_therapy(case: dict[str, Any], answer: dict[str, Any]) -> None:
    """The therapy-options extension against the manifest's `therapy` (fixtures/README.md)."""
    want = case["therapy"]
    # The therapy-options card, or the summary that lists it when it did not fit (card economy).
    cards = [c for c in answer["cards"] if "mbc-cds-hooks.therapy-options" in (c.get("extension") or {})]
    assert len(cards) == 1, case["id"]
    assert "therapy-options" in visible_rules(cards), case["id"]
    ext = cards[0]["extension"]["mbc-cds-hooks.therapy-options"]
    assert ext["version"] == "1" and ext["lineBasis"], case["id"]
    assert ext["line"] == want["line"], f"{case['id']}: line {ext['line']}, expected {want['line']} ({case['why']})"
    options = {o["id"]: o for o in ext["options"]}
    following = {o["id"]: o for o in ext.get("nextOptions", [])}
    for o in [*ext["options"], *ext.get("nextOptions", [])]:
        assert set(o) >= {"id", "agents", "classes", "requires", "met", "given", "givenAgents", "evidence", "source"}, o
    if "no_next" in want:
        assert ("nextOptions" not in ext) == want["no_next"], f"{case['id']}: nextOptions {'absent' if 'nextOptions' not in ext else 'present'}"
    else:  # on a line now (no progression since it began) exactly when next options are expected
        assert ("nextOptions" in ext) == any(k.startswith("next_") for k in want), case["id"]
    for key, pool, offered in (("offered", options, True), ("not_offered", options, False),
                               ("next_offered", following, True), ("next_not_offered", following, False)):
        for oid in want.get(key, []):
            assert (oid in pool and _offered(pool[oid])) == offered, f"{case['id']}: {key} {oid}: {pool.get(oid)}"
    both = {**following, **options}
    for oid in want.get("given", []):
        assert oid in both and both[oid]["given"], f"{case['id']}: {oid} should be given: {both.get(oid)}"
    for oid in want.get("not_given", []):
        assert oid in both and not both[oid]["given"], f"{case['id']}: {oid} should not be given: {both.get(oid)}"
