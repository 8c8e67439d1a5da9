"""Logs carry no PHI and no secrets, and every hook call is one line that says what happened.

Every fixture case goes through the HTTP API twice, with full prefetch and with the service
reading a (mocked) FHIR server with a bearer token, some reads failing and retried; every log
line written meanwhile, as the JSON formatter renders it at DEBUG, must contain none of the
fixtures' patient ids, names, identifier values, birth dates, resource ids, nor the token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import respx
from fastapi.testclient import TestClient

import fixtures
from service.edge.app import create_app
from service.logs import JsonFormatter, configure_logging
from tests.conftest import hook_request, make_settings, today
from tests.test_fuzz import BASES

FHIR_BASE = "https://ehr.example.org/fhir"
TOKEN = "sekret-access-token-7f3a"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Lines]:
    """The production logging set-up at DEBUG, plus a handler on the service logger and on root."""
    service_log, root = logging.getLogger("mbc_cds_hooks"), logging.getLogger()
    saved = (service_log.handlers[:], service_log.level, service_log.propagate, root.level,
             {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "uvicorn.access")})
    configure_logging("debug")
    root.setLevel(logging.DEBUG)
    handler = Lines()
    service_log.addHandler(handler)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    service_log.handlers[:], service_log.level, service_log.propagate, root.level = saved[:4]
    for name, level in saved[4].items():
        logging.getLogger(name).setLevel(level)


def _secrets() -> set[str]:
    out = {TOKEN}
    for path in [*fixtures.PATIENTS.glob("*.json"), *fixtures.ORDERS.glob("*.json")]:
        data = fixtures.read_json(path)
        for r in fixtures.resources_of(fixtures.rolled(data, today()) if isinstance(data, dict) else data):
            out.add(r.get("id"))
            if r.get("resourceType") == "Patient":
                out.add(r.get("birthDate"))
                out.update(i.get("value") for i in r.get("identifier") or [])
                for name in r.get("name") or []:
                    out.update([name.get("family"), name.get("text"), *(name.get("given") or [])])
    return {s for s in out if isinstance(s, str) and s}


def _serve(resources_by_patient: dict[str, list[dict[str, Any]]], flaky: set[str]):
    """A respx side effect playing a FHIR server: searches by patient, reads by id; first Observation search of some patients fails."""
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        parts = urlsplit(str(request.url))
        rtype, *rest = parts.path.removeprefix(urlsplit(FHIR_BASE).path).strip("/").split("/")
        pid = rest[0] if rest else parse_qs(parts.query).get("patient", [""])[0]
        if rtype == "Observation" and pid in flaky:
            flaky.discard(pid)
            return httpx.Response(503, headers={"Retry-After": "0"})
        if pid == "mbc-hrpos-bone-1" and rtype == "Procedure":
            return httpx.Response(401)
        of_type = [r for r in resources_by_patient.get(pid, []) if r["resourceType"] == rtype]
        if rest:
            return httpx.Response(200, json=of_type[0]) if of_type else httpx.Response(404, json={"resourceType": "OperationOutcome"})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in of_type]})
    return answer


def test_no_phi_or_secret_in_any_log_line(tmp_path, captured):
    by_patient = {p.stem: fixtures.load(p, today()) for p in fixtures.PATIENTS.glob("*.json")}
    flaky = set(list(by_patient)[::3])
    responses = []
    with respx.mock(assert_all_called=False) as router, TestClient(create_app(make_settings(tmp_path)), raise_server_exceptions=False) as client:
        router.get(url__startswith=FHIR_BASE).mock(side_effect=_serve(by_patient, flaky))
        for route, body in BASES:
            responses.append(client.post(route, json=body))  # full prefetch
            fetching = {**body, "prefetch": {}, "fhirServer": FHIR_BASE,
                        "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 30, "scope": "patient/*.read", "subject": "x"}}
            responses.append(client.post(route, json=fetching, headers={"X-Request-ID": "ehr-corr-1"}))
        # rejected calls log too, without echoing what was sent
        pid = "mbc-hrpos-bone-1"
        responses.append(client.post("/cds-services/mbc-patient-view", json={**hook_request("patient-view", pid), "hook": 5}))
        responses.append(client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", pid)))  # 412
        responses.append(client.post(f"/cds-services/{pid}", json=hook_request("patient-view", pid)))  # unknown service
    assert sum(r.status_code == 200 for r in responses) == 2 * len(BASES)
    assert any("data-incomplete" in r.text for r in responses) and any("biopsy-reassessment" in r.text for r in responses)

    text = "\n".join(captured.lines)
    leaked = sorted(s for s in _secrets() if re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", text))
    assert not leaked, f"logged: {leaked[:10]}"

    hooks = [orjson.loads(line) for line in captured.lines if '"event":"hook"' in line]
    assert len(hooks) == len(responses)
    for entry, response in zip(hooks, responses):
        assert entry["request_id"] == response.headers["x-request-id"]
        assert entry["status"] == response.status_code
        assert {"service", "outcome"} <= entry.keys()
        if entry["status"] != 404:
            assert {"hook", "latency_ms", "cards"} <= entry.keys()
        assert "patientId" not in entry and "hookInstance" not in entry
    assert {h["outcome"] for h in hooks} == {"complete", "data-incomplete", "rejected"}
    assert sum(h.get("fhir_retries", 0) for h in hooks) >= 1
    assert any(h["request_id"] == "ehr-corr-1" for h in hooks)


def test_library_loggers_are_quiet():
    """httpx logs every request URL (with the patient id) at INFO; the service keeps it at WARNING."""
    saved = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "uvicorn.access")}
    service_log = logging.getLogger("mbc_cds_hooks")
    kept = (service_log.handlers[:], service_log.level, service_log.propagate)
    try:
        configure_logging("debug")
        assert all(not logging.getLogger(n).isEnabledFor(logging.INFO) for n in saved)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        service_log.handlers[:], service_log.level, service_log.propagate = kept


def test_uvicorn_access_log_is_off(monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from service.kit.cli import app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert seen["access_log"] is False


def test_a_real_serve_writes_only_json_lines_uvicorn_included(tmp_path):
    """What an operator's log shipper sees from `mbc-cds-hooks serve`: one JSON object per line, from start to stop."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("MBC_")}
    env.update(MBC_PORT=str(port), MBC_AUTH_REQUIRED="false", MBC_LOG_LEVEL="info", MBC_DRAIN_SECONDS="0.5",
               MBC_FEEDBACK_DB=str(tmp_path / "feedback.sqlite3"))
    proc = subprocess.Popen([sys.executable, "-m", "service.kit.cli", "serve"], cwd=Path(__file__).resolve().parents[1],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    patient_id = "mbc-hrpos-bone-1"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, "service did not start"
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            patient = fixtures.load(fixtures.PATIENTS / f"{patient_id}.json")
            body = hook_request("patient-view", patient_id, prefetch=fixtures.prefetch_for(patient, ["patient", "conditions", "observations"]))
            assert http.post("/cds-services/mbc-patient-view", json=body).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in out.decode().splitlines() if line.strip()]
    records = [orjson.loads(line) for line in lines]  # raises on any plain-text line
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r["logger"].startswith("uvicorn") and "Uvicorn running" in r["message"] for r in records)
    assert any(r.get("event") == "hook" and r.get("status") == 200 for r in records)
    assert any(r.get("event") == "shutdown" and r["message"] == "draining" for r in records)
    assert any(r["logger"].startswith("uvicorn") and "shutdown" in r["message"].lower() for r in records)
    assert patient_id not in out.decode()
    assert "\x1b[" not in out.decode() and "\\u001b" not in out.decode(), "ANSI escapes in the JSON log"
    assert not [r for r in records if "color_message" in r]  # uvicorn's coloured copy of the message is dropped
