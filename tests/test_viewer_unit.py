"""The viewer's parts alone: timeline data, SMART choices, sessions, settings, routes, the summary link, the demo command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import ValidationError

import fixtures
from cds_hooks.evaluate import evaluate
from mappings.build import build_picture
from mappings.timeline import therapy_lines, timeline
from service.edge.app import create_app
from service.edge.hook_request import RequestError
from service.store import SqliteDatabase
from service.viewer.routes import CSP, parse_picture_request
from service.viewer.sessions import LAUNCH, SESSION, SessionStore
from service.viewer.smart import choose_scope, read_configuration
from tests.support.conformance import error_code
from tests.conftest import hook_request, make_settings

DAY = date(2026, 11, 1)  # the fixtures' anchor: dates as written


def picture(patient: str):
    return build_picture(fixtures.load(fixtures.PATIENTS / f"{patient}.json", DAY), today=DAY)


# --- timeline (mappings/timeline.py) ----------------------------------------------------------

def test_receptor_conversion_is_marked_on_the_later_sample():
    samples = timeline(picture("mbc-discordant-1"), DAY)["receptors"]
    assert [(s["date"], s["specimen"], s["site"]) for s in samples] == [("2019-05-02", "primary", "breast"), ("2026-06-20", "metastasis", "liver")]
    first, second = (s["markers"] for s in samples)
    assert list(first) == ["ER", "PR", "HER2"] and not any("changedFrom" in m for m in first.values())
    assert "changedFrom" not in second["ER"]  # 80% -> 60%: still positive
    assert second["PR"]["changedFrom"] == "PR positive 30%" and second["PR"]["short"] == "PR- 0%"
    assert second["HER2"]["changedFrom"] == "HER2 0 (IHC 0)" and second["HER2"]["label"] == "HER2-low (IHC 1+)"
    assert second["HER2"]["evidence"] == ["Observation/mbc-discordant-1-her2-liver"]


def test_lines_fall_back_to_regimens_early_treatment_is_line_zero():
    t = timeline(picture("mbc-tnbc-brain-1"), DAY)
    lines = [(ln["line"], ln["setting"], ln["agents"], ln["start"], ln["end"], ln["ongoing"]) for ln in t["lines"]]
    assert lines == [
        (0, "early", ["cyclophosphamide", "doxorubicin"], "2022-03-01", "2022-04-12", False),
        (1, "metastatic", ["paclitaxel", "pembrolizumab"], "2025-02-17", "2025-12-01", False),
        (2, "metastatic", ["sacituzumab govitecan"], "2026-01-05", None, True),
    ]
    assert t["currentLine"]["line"] == 2 and t["currentLine"]["evidence"] == ["MedicationRequest/mbc-tnbc-brain-1-sacituzumab"]
    assert [(s["site"], s["firstSeen"]) for s in t["sites"]] == [("lung", "2025-01-15"), ("brain", "2026-09-22")]
    assert [(v["value"], v["date"]) for v in t["lvef"]] == [(64.0, "2022-02-22"), (58.0, "2026-08-30")]
    assert [p["date"] for p in t["progressions"]] == ["2025-12-10", "2026-09-22"]
    # germline BRCA1 and BRCA2 on one day are one gBRCA fact with both resources
    gbrca = [b for b in t["biomarkers"] if b["marker"] == "gBRCA"]
    assert len(gbrca) == 1 and len(gbrca[0]["evidence"]) == 2 and gbrca[0]["germline"] is True


def test_lines_come_from_the_therapy_lines_when_the_picture_has_them():
    pic = picture("mbc-tnbc-brain-1")
    line = SimpleNamespace(line=1, agents=["paclitaxel", "pembrolizumab"], start=date(2025, 2, 17), end=None, setting="metastatic",
                           evidence=["MedicationRequest/x"], stop_reason="progression")
    early = SimpleNamespace(line=0, agents=["doxorubicin"], start=date(2022, 3, 1), end=date(2022, 4, 12), setting="early",
                            evidence=[], stop_reason=None)
    pic.lines = [line]  # type: ignore[attr-defined]  # issue 12's ClinicalPicture.lines
    pic.early_treatment = [early]  # type: ignore[attr-defined]
    out = therapy_lines(pic)
    assert [(ln["line"], ln["ongoing"], ln["stopReason"]) for ln in out] == [(0, False, None), (1, True, "progression")]


def test_every_event_names_its_resources_and_regional_nodes_are_not_distant():
    t = timeline(picture("mbc-early-1"), DAY)
    assert t["sites"] and all(s["regional"] for s in t["sites"])
    assert all(e["evidence"] for e in t["events"]), [e for e in t["events"] if not e["evidence"]]
    assert [e["date"] for e in t["events"] if e["date"]] == sorted(e["date"] for e in t["events"] if e["date"])


# --- SMART choices (service/viewer/smart.py) --------------------------------------------------

def test_scopes_v2_when_listed_else_v1():
    assert choose_scope(True, ehr_launch=True) == "launch openid fhirUser patient/*.rs"
    assert choose_scope(False, ehr_launch=True) == "launch openid fhirUser patient/*.read"
    assert choose_scope(True, ehr_launch=False) == "launch/patient openid fhirUser patient/*.rs"
    config = {"authorization_endpoint": "https://as/auth", "token_endpoint": "https://as/token"}
    assert read_configuration("https://f", {**config, "capabilities": ["permission-v2"]}).v2
    assert not read_configuration("https://f", {**config, "capabilities": ["permission-v1"]}).v2
    assert not read_configuration("https://f", config).v2


@pytest.mark.parametrize("config, error", [
    ([], "smart-configuration-invalid"),
    ({"token_endpoint": "https://as/token"}, "smart-configuration-invalid"),
    ({"authorization_endpoint": "javascript:alert(1)", "token_endpoint": "https://as/token"}, "smart-configuration-invalid"),
    ({"authorization_endpoint": "https://as/auth", "token_endpoint": "https://as/token", "code_challenge_methods_supported": ["plain"]},
     "pkce-unsupported"),
])
def test_unusable_smart_configuration(config: Any, error: str):
    with pytest.raises(RequestError) as caught:
        read_configuration("https://f", config)
    assert caught.value.status == 502 and caught.value.error == error


# --- sessions (service/viewer/sessions.py) ----------------------------------------------------

async def test_sessions_are_encrypted_single_use_for_launches_and_expire(tmp_path: Path):
    db = SqliteDatabase(str(tmp_path / "s.sqlite3"))
    store = SessionStore(db, Fernet.generate_key())
    handle = await store.put(SESSION, {"accessToken": "secret-token-123", "patient": "p"}, 60)
    assert (await store.get(SESSION, handle))["accessToken"] == "secret-token-123"
    rows = await db.fetch("SELECT id, data FROM viewer_sessions")
    assert handle not in rows[0][0] and "secret-token-123" not in rows[0][1]  # only a hash and ciphertext
    assert await store.get(LAUNCH, handle) is None  # kinds do not mix
    assert await SessionStore(db, Fernet.generate_key()).get(SESSION, handle) is None  # another key reads nothing

    await store.put(LAUNCH, {"verifier": "v"}, 60, handle="state-1")
    assert await store.take(LAUNCH, "state-1") == {"verifier": "v"}
    assert await store.take(LAUNCH, "state-1") is None  # a replayed callback finds nothing

    old = await store.put(SESSION, {"x": 1}, -1)
    assert await store.get(SESSION, old) is None
    await db.close()


# --- settings -------------------------------------------------------------------------------

def test_viewer_settings_are_checked(tmp_path: Path):
    s = make_settings(tmp_path, viewer_fhir_servers=["https://fhir.example.org/r4/", "http://127.0.0.1:8090/fhir"])
    assert s.viewer_fhir_servers == ["https://fhir.example.org/r4", "http://127.0.0.1:8090/fhir"]
    for bad in (["http://fhir.example.org/r4"], ["https://fhir.example.org/r4?x=1"], ["ftp://x"]):
        with pytest.raises(ValidationError):
            make_settings(tmp_path, viewer_fhir_servers=bad)
    with pytest.raises(ValidationError, match="MBC_VIEWER_SESSION_KEY"):
        make_settings(tmp_path, viewer_enabled=True, workers=2)
    make_settings(tmp_path, viewer_enabled=True, workers=2, viewer_session_key=Fernet.generate_key().decode())
    with pytest.raises(ValidationError, match="Fernet key"):
        make_settings(tmp_path, viewer_session_key="not-a-key")
    with pytest.raises(ValidationError) as caught:
        make_settings(tmp_path, viewer_session_key="not-a-key")
    assert "not-a-key" not in str(caught.value)  # secrets are not echoed


# --- routes (in-process) ----------------------------------------------------------------------

def test_page_and_assets_are_served_with_a_strict_csp(tmp_path: Path):
    with TestClient(create_app(make_settings(tmp_path, viewer_enabled=True))) as client:
        page = client.get("/viewer/")
        assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
        assert "default-src 'self'" in CSP and "unsafe" not in CSP
        assert 'src="static/viewer.js"' in page.text and "http" not in page.text.split("<body", 1)[0].replace('http-equiv', '')
        assert client.get("/viewer/static/viewer.js").headers["content-type"].startswith("text/javascript")
        missing = client.get("/viewer/static/other.js")
        assert missing.status_code == 404 and error_code(missing) == "not-found"
        assert client.get("/viewer", follow_redirects=False).headers["location"] == "/viewer/"


def test_viewer_off_by_default(tmp_path: Path):
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert client.get("/viewer/").status_code == 404
        assert client.post("/viewer/api/picture", json={}).status_code == 404


def test_launch_and_callback_refusals(tmp_path: Path):
    settings = make_settings(tmp_path, viewer_enabled=True, viewer_fhir_servers=["https://a.example.org/fhir", "https://b.example.org/fhir"])
    with TestClient(create_app(settings)) as client:
        cases = [
            ("/viewer/launch", 400, "missing-iss"),  # standalone with two servers: which one?
            ("/viewer/launch?launch=abc", 400, "missing-iss"),
            ("/viewer/launch?iss=https://a.example.org/fhir&launch=", 400, "invalid-launch"),
            ("/viewer/launch?iss=https://evil.example.org/fhir&launch=abc", 403, "fhir-server-not-allowed"),
            ("/viewer/callback?code=abc", 400, "missing-state"),
            ("/viewer/callback?code=abc&state=unknown", 400, "unknown-launch"),
            ("/viewer/callback?error=access_denied&state=unknown", 403, "authorization-refused"),
        ]
        for url, status, err in cases:
            response = client.get(url, follow_redirects=False)
            assert (response.status_code, error_code(response)) == (status, err), url


def test_callback_only_in_the_browser_that_launched(tmp_path: Path):
    """A launch's state is bound to a cookie: a callback link sent to someone else gives no session."""
    settings = make_settings(tmp_path, viewer_enabled=True, viewer_fhir_servers=["https://a.example.org/fhir"])
    with TestClient(create_app(settings)) as client:
        sessions = client.app.state.viewer_sessions  # type: ignore[attr-defined]
        pending = {"iss": "https://a.example.org/fhir", "tokenEndpoint": "https://as.example.org/token", "verifier": "v" * 64,
                   "redirectUri": "http://testserver/viewer/callback"}
        client.portal.call(sessions.put, LAUNCH, pending, 60, "state-of-another-browser")
        response = client.get("/viewer/callback?code=abc&state=state-of-another-browser", follow_redirects=False)
        assert (response.status_code, error_code(response)) == (400, "launch-not-from-this-browser")
        assert "set-cookie" not in response.headers
        again = client.get("/viewer/callback?code=abc&state=state-of-another-browser", follow_redirects=False)
        assert error_code(again) == "unknown-launch"  # single use, even when refused


@pytest.mark.parametrize("body, ok", [
    (b"", True), (b"{}", True), (b'{"fhirServer": "https://x/fhir", "patient": "p-1.2"}', True),
    (b"{", False), (b"null", False), (b'{"patient": "a/b"}', False), (b'{"token": "t"}', False), (b'{"patient": 1}', False),
])
def test_picture_request_body(body: bytes, ok: bool):
    if ok:
        parse_picture_request(body)
    else:
        with pytest.raises(RequestError) as caught:
            parse_picture_request(body)
        assert caught.value.status == 400


# --- the summary card's smart link --------------------------------------------------------------

def test_summary_card_gets_the_smart_link_only_when_asked():
    pic = picture("mbc-tnbc-brain-1")
    cards = evaluate("patient-view", pic, hook_instance="h", today=DAY, viewer_url="https://cds.example.org/viewer/launch")
    links = {c["source"]["topic"]["code"]: [link for link in c.get("links", []) if link["type"] == "smart"] for c in cards}
    assert [link["url"] for link in links.pop("mbc-summary")] == ["https://cds.example.org/viewer/launch"]
    assert not any(links.values())
    plain = evaluate("patient-view", pic, hook_instance="h", today=DAY)
    assert not any(link["type"] == "smart" for c in plain for link in c.get("links", []))


def test_hook_answer_links_the_viewer_at_the_public_base_url(tmp_path: Path):
    resources = fixtures.load(fixtures.PATIENTS / "mbc-tnbc-brain-1.json")
    body = hook_request("patient-view", "mbc-tnbc-brain-1", prefetch=fixtures.prefetch_for(resources, ["patient", "conditions", "observations"]))
    for enabled, base, want in ((True, "https://cds.example.org", ["https://cds.example.org/viewer/launch"]),
                                (True, None, ["http://testserver/viewer/launch"]), (False, "https://cds.example.org", [])):
        with TestClient(create_app(make_settings(tmp_path, viewer_enabled=enabled, public_base_url=base))) as client:
            cards = client.post("/cds-services/mbc-patient-view", json=body).json()["cards"]
        summary = next(c for c in cards if c["source"]["topic"]["code"] == "mbc-summary")
        assert [link["url"] for link in summary.get("links", []) if link["type"] == "smart"] == want


# --- the demo command -----------------------------------------------------------------------------

def test_viewer_command_serves_a_bundle_on_loopback():
    bundle = fixtures.PATIENTS / "mbc-her2pos-pretreated-1.json"
    process = subprocess.Popen([sys.executable, "-m", "service.kit.cli", "viewer", "--bundle", str(bundle), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/viewer/")
        assert "default-src 'self'" in httpx.get(url, timeout=10).headers["content-security-policy"]
        data = httpx.post(url + "api/picture", json={}, timeout=10).json()
        assert data["mode"] == "demo" and data["patient"] == "mbc-her2pos-pretreated-1"
        assert [s["site"] for s in data["timeline"]["sites"]] == ["lung", "brain"]
        assert "brain-metastasis" in [c["rule"] for c in data["cards"]]
        assert json.loads(json.dumps(data)) == data
    finally:
        process.terminate()
        process.wait(timeout=10)
