"""The service against a real misbehaving FHIR server on 127.0.0.1 (tests/support/bad_fhir.py).

Whatever the FHIR server does, the hook answers 200 within its deadline (plus 1 s), with a
data-incomplete card that names the query that failed and with the cards the rest still supports.
Retries are checked by counting requests on the server side.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import fixtures
from service.edge.app import create_app
from tests.conftest import hook_request, make_settings
from tests.support.bad_fhir import BadFhirServer

PATIENT = "mbc-hrpos-bone-1"
DEADLINE = 2.0


@pytest.fixture(scope="module")
def bad_server() -> Iterator[BadFhirServer]:
    server = BadFhirServer(fixtures.load(fixtures.PATIENTS / f"{PATIENT}.json"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("faults"), hook_deadline_seconds=DEADLINE)
    with TestClient(create_app(settings)) as c:
        yield c


def call(client: TestClient, base: str, token: str | None = "tok-faults") -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", PATIENT, fhir_server=base, token=token))
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert elapsed < DEADLINE + 1, f"took {elapsed:.2f} s"
    return {c["source"]["topic"]["code"]: c for c in r.json()["cards"]}, elapsed


@pytest.fixture(autouse=True)
def _fresh_counts(bad_server: BadFhirServer) -> None:
    bad_server.reset_counts()


@pytest.mark.parametrize("mode,reason,attempts", [
    ("hang", "deadline", 1),
    ("slow", "deadline", 1),
    ("error", "HTTP 500 (3 attempts)", 3),
    ("rate-limited", "rate limiting (HTTP 429)", 1),  # Retry-After: 120 is past the deadline: not retried
    ("unauthorized", "refused access (HTTP 401)", 1),
    ("malformed", "not JSON", 1),
    ("truncated", "broke off", 3),
    ("wrong-type", "type 'transaction-response'", 1),
    ("endless", "only the first 20 were read", 20),
    ("loop", "next links loop", None),
    ("huge", "larger than 50 MB", 1),
    ("huge-declared", "larger than 50 MB", 1),
    ("other-host", "outside the FHIR server", 1),
])
def test_fault_gives_a_data_incomplete_card_in_time(app_client, bad_server, mode, reason, attempts):
    cards, _ = call(app_client, bad_server.base(mode, "Observation"))
    assert "data-incomplete" in cards, list(cards)
    detail = cards["data-incomplete"]["detail"]
    assert reason in detail and "`observations`" in detail and "receptor status" in detail
    assert "mbc-summary" in cards  # Conditions and the rest were read: what can still be said, is
    if attempts is not None:
        assert bad_server.hits(mode) == attempts
    if mode == "other-host":
        assert bad_server.hits("evil") == 0  # the token never went to another host


@pytest.mark.parametrize("mode", ["flaky", "retry-after"])
def test_transient_failures_are_retried_to_complete_data(app_client, bad_server, mode):
    cards, elapsed = call(app_client, bad_server.base(mode, "Observation"))
    assert "data-incomplete" not in cards
    assert "biopsy-reassessment" in cards  # the receptor results were read after the retry
    assert bad_server.hits(mode) == 2
    if mode == "retry-after":
        assert elapsed >= 1.0  # Retry-After: 1 was honoured


def test_every_query_hanging_still_answers_in_time(app_client, bad_server):
    cards, _ = call(app_client, bad_server.base("hang", "all"))
    assert "data-incomplete" in cards and "`conditions`" in cards["data-incomplete"]["detail"]


def test_resource_bound_keeps_the_first_resources(tmp_path, bad_server):
    settings = make_settings(tmp_path, hook_deadline_seconds=DEADLINE, fhir_max_resources=10)
    with TestClient(create_app(settings)) as client:
        cards, _ = call(client, bad_server.base("endless", "Observation"))
    assert "only the first 10 were read" in cards["data-incomplete"]["detail"]
    assert "biopsy-reassessment" in cards  # the 10 kept hold the receptor results
    assert bad_server.hits("endless") == 2  # 8 per page: the second page filled the bound


def test_retries_can_be_switched_off(tmp_path, bad_server):
    settings = make_settings(tmp_path, hook_deadline_seconds=DEADLINE, fhir_retries=0)
    with TestClient(create_app(settings)) as client:
        cards, _ = call(client, bad_server.base("flaky", "Observation"))
    assert "HTTP 500" in cards["data-incomplete"]["detail"] and bad_server.hits("flaky") == 1
