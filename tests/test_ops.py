"""Operations: readiness, Prometheus metrics, the OpenAPI document, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import fixtures
from cds_hooks.catalog import services
from service.edge.app import create_app
from service.fhir_client import FetchLimits, FhirFetcher
from tests.conftest import hook_request, rule_codes
from tests.support.conformance import error_code, error_fields

ROOT = Path(__file__).resolve().parents[1]
BASE = "https://ehr.example.org/fhir"
PATIENT = "mbc-hrpos-bone-1"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient | httpx.Client) -> tuple[str, Samples]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _bundle(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


# --- readiness -----------------------------------------------------------------------------------

def test_healthz_and_readyz_answer_200(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready" and r.json()["checks"]["database"] == "ok"


def test_readyz_is_503_json_when_the_database_is_unreachable(client):
    client.portal.call(client.app.state.db.close)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == "application/json"
    assert error_code(r) == "not-ready" and error_fields(r) == {"database"}
    assert r.json()["issue"][0]["diagnostics"].startswith("unreachable")
    assert client.get("/healthz").status_code == 200  # alive, only not ready


def test_lifespan_closes_the_http_client_and_the_store(settings):
    app = create_app(settings)
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200
        http = app.state.fetcher.client
    assert http.is_closed
    with pytest.raises(Exception):
        asyncio.run(app.state.db.ping())  # closed


# --- metrics -------------------------------------------------------------------------------------

def test_metrics_count_hooks_cards_fhir_calls_and_feedback(client):
    patient = fixtures.load(fixtures.PATIENTS / f"{PATIENT}.json")
    _, before = scrape(client)
    by_type = {t: [r for r in patient if r["resourceType"] == t] for t in ("Patient", "Condition", "Observation")}
    with respx.mock(assert_all_called=False) as router:
        router.get(url__regex=rf"{BASE}/Patient[/?].*").mock(return_value=httpx.Response(200, json=by_type["Patient"][0]))
        router.get(url__regex=rf"{BASE}/Condition[/?].*").mock(return_value=httpx.Response(200, json=_bundle(by_type["Condition"])))
        router.get(url__regex=rf"{BASE}/Observation[/?].*").mock(return_value=httpx.Response(404))
        router.get(url__regex=rf"{BASE}/.*").mock(return_value=httpx.Response(200, json=_bundle([])))
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", PATIENT, fhir_server=BASE, token="secret-token"))
    assert r.status_code == 200
    codes = rule_codes(r.json())
    assert "mbc-summary" in codes and "data-incomplete" in codes
    assert client.post("/cds-services/no-such-service", json={}).status_code == 404
    feedback = {"feedback": [
        {"card": r.json()["cards"][0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z"},
        {"card": "c-2", "outcome": "accepted", "acceptedSuggestions": [{"id": "s-1"}], "outcomeTimestamp": "2026-11-22T10:00:00Z"},
    ]}
    assert client.post("/cds-services/mbc-patient-view/feedback", json=feedback).status_code == 200

    text, after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    pv = {"service": "mbc-patient-view", "hook": "patient-view"}
    assert delta("mbc_hook_requests_total", **pv, status="200") == 1
    assert delta("mbc_hook_duration_seconds_count", **pv) == 1
    assert delta("mbc_hook_duration_seconds_bucket", **pv, le="+Inf") == 1
    assert delta("mbc_hook_requests_total", service="unknown", hook="unknown", status="404") == 1
    for code in codes:
        assert delta("mbc_cards_total", service="mbc-patient-view", rule=code) == 1
    assert delta("mbc_fhir_request_duration_seconds_count", outcome="ok") >= 3
    assert delta("mbc_fhir_request_duration_seconds_count", outcome="http-4xx") == 1  # 404 is not retried
    assert delta("mbc_feedback_total", service="mbc-patient-view", outcome="overridden") == 1
    assert delta("mbc_feedback_total", service="mbc-patient-view", outcome="accepted") == 1
    for secret in (PATIENT, "secret-token", "ehr.example.org", "c-2"):  # no patient, token, URL or card id
        assert secret not in text


@pytest.mark.parametrize("reply,outcome", [
    (httpx.Response(503), "http-5xx"),
    (httpx.Response(401), "http-4xx"),
    (httpx.Response(200, content=b"<html>"), "invalid"),
    (httpx.ConnectError("refused"), "network"),
    (httpx.ReadTimeout("slow"), "timeout"),
])
async def test_each_fhir_get_is_counted_by_outcome(client, reply, outcome):
    _, before = scrape(client)
    async with httpx.AsyncClient() as http:
        fetcher = FhirFetcher(http, limits=FetchLimits(retries=1, backoff_seconds=0.001))
        with respx.mock() as router:
            route = router.get(f"{BASE}/Patient/p1")
            route.mock(side_effect=reply) if isinstance(reply, Exception) else route.mock(return_value=reply)
            result = await fetcher.read(BASE, "Patient/p1", None)
    assert result.problem
    _, after = scrape(client)
    attempts = 2 if outcome in ("http-5xx", "network", "timeout") else 1  # transient failures are retried once
    name = "mbc_fhir_request_duration_seconds_count"
    assert value(after, name, outcome=outcome) - value(before, name, outcome=outcome) == attempts


# --- OpenAPI -------------------------------------------------------------------------------------

def test_openapi_documents_the_cds_hooks_request_and_cards(client):
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for name in ("HookRequest", "FhirAuthorization", "PatientViewContext", "OrderSelectContext", "OrderSignContext",
                 "CdsServiceResponse", "Card", "Source", "Suggestion", "Action", "Link", "Coding", "OperationOutcome", "Issue"):
        assert name in schemas, name
    assert schemas["Card"]["properties"]["summary"]["maxLength"] == 140
    op = doc["paths"]["/cds-services/{service_id}"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/HookRequest"} in body["allOf"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CdsServiceResponse"}
    assert {"400", "404", "412", "413", "415"} <= set(op["responses"])
    refs: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            refs.update(v for k, v in node.items() if k == "$ref" and isinstance(v, str))
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    collect(doc)
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(schemas), "every $ref resolves"
    assert {"/healthz", "/readyz", "/metrics"} <= set(doc["paths"])


def test_the_documented_body_does_not_change_validation(client):
    r = client.post("/cds-services/mbc-patient-view", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid-json"  # still 400, not FastAPI's 422


# --- graceful shutdown, one worker and several -------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _SlowFhir(BaseHTTPRequestHandler):
    """A FHIR server that takes ``delay`` seconds for every search (empty Bundles)."""

    called = threading.Event()  # reset by each test
    delay = 4.5

    def do_GET(self) -> None:  # noqa: N802
        self.called.set()
        time.sleep(self.delay)
        body = b'{"resourceType": "Bundle", "type": "searchset"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_drains_then_stops_and_exits_0_on_sigterm(tmp_path, workers):
    """SIGTERM: /readyz turns 503 at once while calls are still answered (with Connection: close) for
    MBC_DRAIN_SECONDS; then the listener closes, the call still in flight gets its answer within
    MBC_SHUTDOWN_GRACE_SECONDS, and the process exits 0. With 2 workers the supervisor forwards the
    signal and each worker drains the same way."""
    port, drain, grace = _free_port(), 2.5, 5
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR") and not k.startswith("MBC_")}
    env.update(MBC_PORT=str(port), MBC_WORKERS=str(workers), MBC_AUTH_REQUIRED="false", MBC_LOG_LEVEL="warning",
               MBC_FEEDBACK_DB=str(tmp_path / "feedback.sqlite3"), MBC_SHUTDOWN_GRACE_SECONDS=str(grace),
               MBC_DRAIN_SECONDS=str(drain), MBC_HOOK_DEADLINE_SECONDS="8")
    _SlowFhir.called.clear()
    fhir = ThreadingHTTPServer(("127.0.0.1", 0), _SlowFhir)
    threading.Thread(target=fhir.serve_forever, daemon=True).start()
    # Its own process group: if the test fails, the cleanup also ends the workers of a killed supervisor.
    proc = subprocess.Popen([sys.executable, "-m", "service.kit.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "service did not become ready"
                time.sleep(0.2)
            patient = fixtures.load(fixtures.PATIENTS / f"{PATIENT}.json")
            prefetch = fixtures.prefetch_for(patient, [q.key for q in services()["mbc-patient-view"].queries])
            full = hook_request("patient-view", PATIENT, prefetch=prefetch)
            first = http.post("/cds-services/mbc-patient-view", json=full)
            assert "mbc-summary" in rule_codes(first.json()) and first.headers.get("connection") != "close"
            for _ in range(6):  # with 2 workers (multiprocess mode): both workers' figures, whichever answers
                _, samples = scrape(http)
                assert value(samples, "mbc_hook_requests_total", service="mbc-patient-view", hook="patient-view", status="200") == 1

            # A call in flight when SIGTERM arrives, whose FHIR reads outlast the drain period.
            answer: dict[str, httpx.Response] = {}
            slow = hook_request("patient-view", PATIENT, fhir_server=f"http://127.0.0.1:{fhir.server_port}",
                                prefetch={"patient": prefetch["patient"]})
            caller = threading.Thread(target=lambda: answer.update(r=http.post("/cds-services/mbc-patient-view", json=slow)))
            caller.start()
            assert _SlowFhir.called.wait(10)  # the call is in flight: the service is reading FHIR
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with httpx.Client(base_url=base, timeout=5) as other:  # a second client, as a balancer's checker
                # At once: one worker takes the signal itself; the supervisor of 2 forwards it on its next
                # 0.5 s tick (uvicorn's Multiprocess loop).
                while other.get("/readyz").status_code == 200:
                    assert time.monotonic() - started < 1.0 + 0.5 * (workers > 1), "readyz must turn 503 at once"
                    time.sleep(0.02)
                for _ in range(2 * workers):  # every worker turned not-ready, whichever answers
                    seen = other.get("/readyz")
                    assert seen.status_code == 503 and error_fields(seen) == {"drain"}, seen.text
                during = other.post("/cds-services/mbc-patient-view", json=full)  # still answered while draining
                assert during.status_code == 200 and "mbc-summary" in rule_codes(during.json())
                assert during.headers["connection"] == "close"  # keep-alive clients move to another replica
                if workers == 1:  # then the listener closes (with 2 workers the supervisor keeps the socket open)
                    time.sleep(max(0.0, started + drain + 0.5 - time.monotonic()))
                    assert proc.poll() is None  # still finishing the slow call
                    with pytest.raises(httpx.ConnectError):
                        other.get("/healthz")
            assert proc.wait(timeout=drain + grace + 5) == 0
            assert drain <= time.monotonic() - started < drain + grace + 1
            caller.join(timeout=5)
        assert answer["r"].status_code == 200 and "cards" in answer["r"].json()
    finally:
        if proc.poll() != 0:  # still running, or killed: end its workers too (a clean exit 0 ended them)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        fhir.shutdown()


def test_invalid_settings_stop_start_up_with_a_clear_error_that_hides_secrets(tmp_path):
    """An operator sees which setting is wrong; the log never shows the DATABASE_URL password."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("MBC_")}
    env.update(DATABASE_URL="mysql://cds:s3cret-pw@db:3306/cds", MBC_HOOK_DEADLINE_SECONDS="-1")
    proc = subprocess.run([sys.executable, "-m", "service.kit.cli", "serve"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "database_url" in out and "postgresql://" in out and "hook_deadline_seconds" in out
    assert "s3cret-pw" not in out


def test_feedback_during_a_database_outage_is_503_with_retry_after_not_500(client):
    client.portal.call(client.app.state.db.close)
    body = {"feedback": [{"card": "c-outage", "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}
    r = client.post("/cds-services/mbc-patient-view/feedback", json=body)
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert error_code(r) == "store-unavailable"
