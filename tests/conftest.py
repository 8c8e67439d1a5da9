"""Shared test fixtures: the app in-process, a real uvicorn service, and a real FHIR R4 server.

Integration tests talk to a real FHIR server process over HTTP: each engine of FHIR_TEST_ENGINES
(default both: Medplum's engine behind fhir-test-server/server.cjs, and sekmet-fhir) started here,
or any external server named by FHIR_TEST_BASE_URL (HAPI FHIR, a public sandbox) instead.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

import fixtures
from cds_hooks.catalog import services
from service.edge.app import create_app
from service.settings import Settings
from tests.support.conformance import check_every_answer
from tests.support.fhir_server import FhirServerError, FhirTestServer, modules_installed, node_available
from tests.support.sekmet_server import SekmetServer, sekmet_installed

# ../shared/realdata beside the checkout (CI clones with shared/ beside it); MBC_REALDATA overrides.
REALDATA = Path(os.environ.get("MBC_REALDATA") or Path(__file__).resolve().parents[2] / "shared" / "realdata")
TODAY = datetime.now(timezone.utc).date()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    # auth off by default here; tests/test_auth.py turns it on with its own issuers and keys
    values: dict[str, Any] = {"feedback_db": str(tmp_path / "feedback.sqlite3"), "auth_required": False}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        check_every_answer(c)  # every non-2xx answer any test gets is an OperationOutcome
        yield c


class ExternalFhirServer:
    """A FHIR server the tester runs (FHIR_TEST_BASE_URL): no reset, loading by PUT transactions."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.token = os.environ.get("FHIR_TEST_TOKEN") or None
        headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.client = httpx.Client(headers=headers, timeout=60)

    def reset(self) -> None:  # fixtures use stable ids and PUT: reloading is idempotent
        pass

    def post_bundle(self, bundle: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(self.base_url, json=bundle)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.client.close()


ENGINES = ["external"] if os.environ.get("FHIR_TEST_BASE_URL") else \
    [e.strip() for e in os.environ.get("FHIR_TEST_ENGINES", "medplum,sekmet").split(",") if e.strip()]


def start_engine(engine: str) -> Any:
    """A started FHIR server of the named engine; fails (never skips) when its install is missing."""
    if engine == "external":
        return ExternalFhirServer(os.environ["FHIR_TEST_BASE_URL"])
    try:
        if engine == "medplum":
            if not node_available():
                pytest.skip("node not found: the FHIR test server needs Node.js")
            if not modules_installed():
                pytest.fail("fhir-test-server/node_modules missing: run `npm ci --prefix fhir-test-server` (the README test command does)")
            return FhirTestServer()
        if engine == "sekmet":
            if not sekmet_installed():
                pytest.fail(".venv-sekmet missing: `make test` installs sekmet-fhir there")
            return SekmetServer()
    except FhirServerError as exc:
        pytest.fail(f"FHIR test server ({engine}) did not start: {exc}")
    raise pytest.UsageError(f"FHIR_TEST_ENGINES: unknown engine {engine!r} (medplum, sekmet)")


@pytest.fixture(scope="session", params=ENGINES)
def fhir_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Every integration test runs once per engine."""
    server = start_engine(request.param)
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveService:
    """The service under a real uvicorn server on 127.0.0.1, in a background thread."""

    def __init__(self, settings: Settings):
        self.port = _free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("service did not start")
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.base_url, timeout=30)
        check_every_answer(self.client)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    service = LiveService(make_settings(tmp_path_factory.mktemp("live")))
    yield service
    service.stop()


def hook_request(hook: str, patient_id: str, *, fhir_server: str | None = None, token: str | None = None,
                 prefetch: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": patient_id, **(context or {})},
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "cds-service"}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def rule_codes(response_json: dict[str, Any]) -> list[str]:
    """Every rule code the answer carries (topic codes, and the rules a merged or summary card lists)."""
    from cds_hooks.cards import visible_rules

    return visible_rules(response_json["cards"])


def today() -> date:
    return TODAY


SERVICE_FOR_HOOK = {"patient-view": "mbc-patient-view", "order-select": "mbc-order-select", "order-sign": "mbc-order-sign"}


def case_request(case: dict[str, Any], fhir_base: str | None = None) -> dict[str, Any]:
    """The hook request of one fixtures/manifest.yaml case: full prefetch, or none when ``fhir_base`` is given."""
    service = services()[SERVICE_FOR_HOOK[case["hook"]]]
    context: dict[str, Any] = {}
    if case["hook"] != "patient-view":
        context["draftOrders"] = fixtures.rolled(fixtures.read_json(fixtures.HERE / case["draft_orders"]), today())
        if case["hook"] == "order-select":
            context["selections"] = case["selections"]
    if fhir_base:
        return hook_request(case["hook"], case["patient"], fhir_server=fhir_base, context=context)
    resources = fixtures.load(fixtures.HERE / case["file"], today())
    prefetch = fixtures.prefetch_for(resources, [q.key for q in service.queries])
    return hook_request(case["hook"], case["patient"], prefetch=prefetch, context=context)
