"""The integration kit (load, explain from a server, keys, hook) against a real FHIR server and a live service.

The module starts its own FHIR test server (or uses FHIR_TEST_BASE_URL, e.g. a HAPI FHIR you run),
so the session server that other tests reset is not touched. Every load is idempotent, so an
external server can be used again and again.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from typer.testing import CliRunner

import fixtures
from cds_hooks.cards import visible_rules
from service.kit.cli import app
from service.kit.dev_keys import load_private
from service.kit.hook_client import Signer, fetch_prefetch
from service.kit.loader import Loader, ordered, read_entries
from service.settings import Settings
from tests.conftest import ENGINES, REALDATA, TODAY, LiveService, make_settings, start_engine
from tests.support.fhir_server import FhirTestServer, modules_installed, node_available

pytestmark = pytest.mark.integration

runner = CliRunner()
DAY = TODAY.isoformat()
ISSUER = "https://ehr.example.org/kit-test"
RSA_ISSUER = "https://epic.example.org/kit-test"
PATIENT_CASES = [c for c in fixtures.manifest() if c["hook"] == "patient-view"]
REALDATA_FILES = sorted(REALDATA.glob("*.json")) if REALDATA.is_dir() else []
if not REALDATA_FILES and os.environ.get("CI"):
    raise RuntimeError(f"{REALDATA} is missing: CI must run with shared/ beside the checkout")


def _need_node() -> None:
    if not node_available():
        pytest.skip("node not found: the FHIR test server needs Node.js")
    if not modules_installed():
        pytest.fail("fhir-test-server/node_modules missing: run `npm ci --prefix fhir-test-server`")


class Server:
    """Base URL and a client for reading back what was loaded."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Accept": "application/fhir+json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.client = httpx.Client(headers=headers, timeout=60)

    def read(self, ref: str) -> dict[str, Any]:
        response = self.client.get(f"{self.base_url}/{ref}")
        response.raise_for_status()
        return response.json()

    def count(self, rtype: str) -> int:
        return self.client.get(f"{self.base_url}/{rtype}", params={"_summary": "count"}).json()["total"]


@pytest.fixture(scope="module", params=ENGINES)
def fhir(request: pytest.FixtureRequest) -> Iterator[Server]:
    """Each engine of FHIR_TEST_ENGINES, its own instance (the session one is reset by other tests)."""
    own = start_engine(request.param)
    server = Server(own.base_url, getattr(own, "token", None))
    yield server
    server.client.close()
    own.stop()


def invoke(*args: str) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def load_cli(server: Server, *args: str) -> Any:
    token = ("--token", server.token) if server.token else ()
    return invoke("load", "--fhir-base", server.base_url, *token, *args)


@pytest.fixture(scope="module")
def fixtures_loaded(fhir: Server) -> Server:
    result = load_cli(fhir, "--today", DAY, fixtures.PATIENTS)
    assert result.exit_code == 0, result.output
    return fhir


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"} | {"meta": {k: v for k, v in (resource.get("meta") or {}).items()
                                                                        if k not in ("versionId", "lastUpdated")}}


def _snapshot(server: Server, refs: list[str]) -> dict[str, dict[str, Any]]:
    return {ref: server.read(ref) for ref in refs}


TYPES = ("Patient", "Condition", "Observation", "Specimen", "MedicationRequest", "MedicationStatement",
         "MedicationAdministration", "Procedure")


# --- load ------------------------------------------------------------------------------------------

def test_load_twice_changes_nothing(fixtures_loaded: Server) -> None:
    """A second load of every fixture leaves every resource as it was and adds none.

    Medplum (the test server) gives every PUT a new meta.versionId even when nothing changed
    (HAPI FHIR keeps the version of a no-op update), so content is compared without meta.versionId
    and meta.lastUpdated; resource counts per type show that nothing was created twice.
    """
    server = fixtures_loaded
    entries = [e for path in sorted(fixtures.PATIENTS.glob("*.json")) for e in read_entries(path, TODAY)]
    refs = [e.ref for e in entries]
    before, counts = _snapshot(server, refs), {t: server.count(t) for t in TYPES}
    result = load_cli(server, "--today", DAY, *sorted(fixtures.PATIENTS.glob("*.json")))
    assert result.exit_code == 0, result.output
    assert f"{len(entries)} resources from {len(list(fixtures.PATIENTS.glob('*.json')))} file(s)" in result.output
    after = _snapshot(server, refs)
    assert {r: _content(v) for r, v in after.items()} == {r: _content(v) for r, v in before.items()}
    assert {t: server.count(t) for t in TYPES} == counts
    for entry in entries:  # what is stored is what the file says, dates rolled to today
        assert _content(after[entry.ref]) == _content(entry.resource), entry.ref


@pytest.mark.parametrize("mode", ["transaction", "batch", "put"])
def test_every_write_mode_in_small_chunks(fhir: Server, mode: str) -> None:
    path = fixtures.PATIENTS / "mbc-her2pos-pretreated-1.json"
    result = load_cli(fhir, "--today", DAY, "--mode", mode, "--chunk-size", "4", path)
    assert result.exit_code == 0, result.output
    assert f"({mode})" in result.output
    for entry in read_entries(path, TODAY):
        assert _content(fhir.read(entry.ref)) == _content(entry.resource)


def test_rejected_entry_is_named(fhir: Server, tmp_path: Path) -> None:
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6f1c1b0e-1111-4a6e-9a55-0c1f3d6e7a01", "resource": {"resourceType": "Patient", "gender": "female"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:6f1c1b0e-2222-4a6e-9a55-0c1f3d6e7a02",
         "resource": {"resourceType": "Observation", "id": "kit-bad-obs", "code": {"text": "no status"},
                      "subject": {"reference": "urn:uuid:6f1c1b0e-1111-4a6e-9a55-0c1f3d6e7a01"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = load_cli(fhir, path)
    assert result.exit_code == 1
    assert f"{path} entry 1 (Observation/kit-bad-obs): HTTP 400" in result.output
    assert "Observation.status" in result.output  # the server's OperationOutcome, as it said it
    # The good entry went in under the uuid of its fullUrl, never by POST.
    assert fhir.read("Patient/6f1c1b0e-1111-4a6e-9a55-0c1f3d6e7a01")["gender"] == "female"


def test_unreadable_file_and_unreachable_server(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    result = invoke("load", "--fhir-base", "http://127.0.0.1:9/fhir", junk, fixtures.PATIENTS / "mbc-tnbc-1.json")
    assert result.exit_code == 1
    assert "junk.json" in result.output and "failed: ConnectError" in result.output


class Refusing(httpx.BaseTransport):
    """The real server behind a proxy that refuses some write modes, as many servers do."""

    def __init__(self, refuse: set[str]):
        self.refuse = refuse
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metadata"):
            return httpx.Response(404)
        if request.method == "POST":
            kind = json.loads(request.read()).get("type")
            if kind in self.refuse:
                return httpx.Response(501, json={"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-supported", "diagnostics": f"{kind} not supported"}]})
        return self.inner.handle_request(request)


@pytest.mark.parametrize("refuse,expected", [({"transaction"}, "batch"), ({"transaction", "batch"}, "put")])
def test_falls_back_when_the_server_refuses_a_mode(fhir: Server, refuse: set[str], expected: str) -> None:
    entries = read_entries(fixtures.PATIENTS / "mbc-weight-1.json", TODAY)
    headers = {"Authorization": f"Bearer {fhir.token}"} if fhir.token else {}
    with httpx.Client(transport=Refusing(refuse), headers=headers, timeout=60) as client:
        loader = Loader(client, fhir.base_url, chunk_size=5)
        assert loader.mode == "transaction"  # no CapabilityStatement: try the best first
        written, rejected = loader.load(entries)
    assert (written, rejected, loader.mode) == (len(entries), [], expected)


def test_urn_uuid_bundles_and_arrays_get_stable_ids(tmp_path: Path) -> None:
    pid, oid = "urn:uuid:0b0c6a52-5a43-4c35-9e0c-4d3c2b1a0001", "urn:uuid:0b0c6a52-5a43-4c35-9e0c-4d3c2b1a0002"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": oid, "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                      "subject": {"reference": pid}, "meta": {"versionId": "7", "profile": ["p"]}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": pid, "resource": {"resourceType": "Patient", "id": "own-id"}, "request": {"method": "POST", "url": "Patient"}},
    ]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    entries = read_entries(path, None)
    obs = next(e for e in entries if e.resource["resourceType"] == "Observation")
    assert obs.ref == "Observation/0b0c6a52-5a43-4c35-9e0c-4d3c2b1a0002"  # no id: the fullUrl's uuid
    assert obs.resource["subject"] == {"reference": "Patient/own-id"}  # the resource's own id wins
    assert obs.resource["meta"] == {"profile": ["p"]}  # server-assigned meta dropped
    assert [e.ref for e in ordered(entries)] == ["Patient/own-id", obs.ref]  # targets first
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"resourceType": "Condition", "id": "c1", "subject": {"reference": "urn:uuid:p1"}},
                                 {"resourceType": "Patient", "id": "p1"}]))
    assert read_entries(array, None)[0].resource["subject"] == {"reference": "Patient/p1"}


def test_token_is_sent_as_bearer(tmp_path: Path) -> None:
    _need_node()
    with FhirTestServer(env={"FHIR_TEST_REQUIRE_TOKEN": "kit-secret"}) as server:
        path = fixtures.PATIENTS / "mbc-early-1.json"
        refused = invoke("load", "--fhir-base", server.base_url, path)
        assert refused.exit_code == 1 and "refused access (HTTP 401)" in refused.output
        result = invoke("load", "--fhir-base", server.base_url, "--token", "kit-secret", path)
        assert result.exit_code == 0, result.output
        assert server.search("Patient/mbc-early-1")["id"] == "mbc-early-1"


# --- explain from the server ---------------------------------------------------------------------

def _explain_json(*args: str) -> dict[str, Any]:
    result = invoke("explain", "--json", "--today", DAY, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _codes(out: dict[str, Any]) -> set[str]:
    return set(visible_rules(out["cards"]))


@pytest.mark.parametrize("case", PATIENT_CASES, ids=[c["id"] for c in PATIENT_CASES])
def test_explain_fixture_patients_from_the_server(fixtures_loaded: Server, case: dict[str, Any]) -> None:
    token = ("--token", fixtures_loaded.token) if fixtures_loaded.token else ()
    out = _explain_json("--fhir-base", fixtures_loaded.base_url, "--patient", case["patient"], *token)
    codes = _codes(out)
    assert set(case["expect"]) <= codes, case["id"]
    assert not set(case["absent"]) & codes, case["id"]


def test_explain_human_output_from_the_server(fixtures_loaded: Server) -> None:
    token = ("--token", fixtures_loaded.token) if fixtures_loaded.token else ()
    result = invoke("explain", "--today", DAY, "--fhir-base", fixtures_loaded.base_url, "--patient", "mbc-discordant-1", *token)
    assert result.exit_code == 0, result.output
    for text in ("Receptor history", "Metastatic sites", "Treatments", "receptor-discordance", "Every rule that fired, in full",
                 "Observation/mbc-discordant-1-pr-liver", "Discordance PR"):
        assert text in result.output, text


def test_explain_unknown_patient_is_an_error(fhir: Server) -> None:
    result = invoke("explain", "--fhir-base", fhir.base_url, "--patient", "kit-no-such-patient")
    assert result.exit_code == 1
    assert "could not read Patient/kit-no-such-patient" in result.output


@pytest.mark.skipif(not REALDATA_FILES, reason="../shared/realdata not present (set MBC_REALDATA)")
@pytest.mark.parametrize("path", REALDATA_FILES, ids=[p.name for p in REALDATA_FILES])
def test_real_records_load_and_explain_like_the_file(fhir: Server, path: Path) -> None:
    result = load_cli(fhir, "--no-roll", path)
    assert result.exit_code == 0, result.output
    from_file = _explain_json("--bundle", path)
    patient = from_file["picture"]["patient"].split("/", 1)[1]
    token = ("--token", fhir.token) if fhir.token else ()
    from_server = _explain_json("--fhir-base", fhir.base_url, "--patient", patient, *token)
    a, b = from_file["picture"], from_server["picture"]
    for key in ("patient", "breastCancer", "metastatic", "subtype", "sites", "visceral", "priorTherapyClasses"):
        assert a[key] == b[key], key
    for marker in ("er", "pr", "her2"):
        assert a[marker]["status"] == b[marker]["status"], marker
    assert _codes(from_file) == _codes(from_server)


# --- keys and hook -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def key_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = {}
    for alg in ("ES384", "RS384"):
        out = tmp_path_factory.mktemp(f"keys-{alg}")
        result = invoke("keys", "--out", out, "--alg", alg)
        assert result.exit_code == 0, result.output
        dirs[alg] = out
    return dirs


def test_keys_files(key_dirs: dict[str, Path], tmp_path: Path) -> None:
    for alg, out in key_dirs.items():
        assert (out / "private.pem").stat().st_mode & 0o777 == 0o600
        jwks = json.loads((out / "jwks.json").read_text())
        (public,) = jwks["keys"]
        assert public["alg"] == alg and public["use"] == "sig" and public["kid"]
        assert "d" not in public  # public part only
        key, key_alg = load_private(out / "private.pem")
        assert key_alg == alg and key.thumbprint() == public["kid"]
    result = invoke("keys", "--out", key_dirs["ES384"])
    assert result.exit_code == 2 and "already exists" in result.output
    named = invoke("keys", "--out", tmp_path / "named", "--kid", "dev-1")
    assert named.exit_code == 0 and json.loads((tmp_path / "named" / "jwks.json").read_text())["keys"][0]["kid"] == "dev-1"


def test_token_shape(key_dirs: dict[str, Path]) -> None:
    """The JWT the hook command sends: the sandbox's header and claims, verifiable with jwks.json."""
    key, alg = load_private(key_dirs["ES384"] / "private.pem")
    signer = Signer(key, alg, key.thumbprint(), ISSUER, "https://ehr.example.org/jwks.json")
    aud = "https://cds.example.org/cds-services/mbc-patient-view"
    token = signer.token(aud)
    keys = KeySet.import_key_set(json.loads((key_dirs["ES384"] / "jwks.json").read_text()))
    decoded = jwt.decode(token, keys, algorithms=[alg])
    assert decoded.header == {"alg": "ES384", "typ": "JWT", "kid": key.thumbprint(), "jku": "https://ehr.example.org/jwks.json"}
    claims = decoded.claims
    assert claims["iss"] == ISSUER and claims["aud"] == aud and claims["exp"] - claims["iat"] == 300
    assert uuid.UUID(claims["jti"]) and set(claims) == {"iss", "aud", "exp", "iat", "jti"}


@pytest.fixture(scope="module")
def secured_service(tmp_path_factory: pytest.TempPathFactory, key_dirs: dict[str, Path]) -> Iterator[LiveService]:
    overrides: dict[str, Any] = {}
    if {"auth_required", "trusted_issuers"} <= set(Settings.model_fields):
        overrides = {"auth_required": True, "trusted_issuers": [
            {"iss": ISSUER, "jwks_file": str(key_dirs["ES384"] / "jwks.json")},
            {"iss": RSA_ISSUER, "jwks_file": str(key_dirs["RS384"] / "jwks.json")},
        ]}
    service = LiveService(make_settings(tmp_path_factory.mktemp("kit-live"), **overrides))
    service.auth = bool(overrides)  # type: ignore[attr-defined]
    yield service
    service.stop()


def _hook(service: LiveService, server: Server, key_dir: Path | None, iss: str, *args: str) -> Any:
    signing = ("--key", key_dir / "private.pem", "--iss", iss) if key_dir else ()
    token = ("--token", server.token) if server.token else ()
    return invoke("hook", "--service-url", service.base_url, "--fhir-base", server.base_url, "--today", DAY,
                  *signing, *token, *args)


@pytest.mark.parametrize("alg,iss", [("ES384", ISSUER), ("RS384", RSA_ISSUER)])
@pytest.mark.parametrize("prefetch", [True, False])
def test_hook_patient_view(secured_service: LiveService, fixtures_loaded: Server, key_dirs: dict[str, Path],
                           alg: str, iss: str, prefetch: bool) -> None:
    case = next(c for c in PATIENT_CASES if c["id"] == "pv-tnbc-1")
    result = _hook(secured_service, fixtures_loaded, key_dirs[alg], iss, "--service", "mbc-patient-view",
                   "--patient", case["patient"], "--json", *(("--prefetch",) if prefetch else ()))
    assert result.exit_code == 0, result.output
    codes = set(visible_rules(json.loads(result.stdout)["cards"]))
    assert set(case["expect"]) <= codes and not set(case["absent"]) & codes


def test_hook_order_select_and_table(secured_service: LiveService, fixtures_loaded: Server, key_dirs: dict[str, Path]) -> None:
    result = _hook(secured_service, fixtures_loaded, key_dirs["ES384"], ISSUER, "--service", "mbc-order-select",
                   "--patient", "mbc-tnbc-1", "--prefetch", "--orders", fixtures.ORDERS / "mbc-tnbc-1-letrozole.json")
    assert result.exit_code == 0, result.output
    assert "order-receptor-mismatch" in result.output and "Cards from mbc-order-select" in result.output
    missing = _hook(secured_service, fixtures_loaded, key_dirs["ES384"], ISSUER, "--service", "mbc-order-sign", "--patient", "mbc-tnbc-1")
    assert missing.exit_code == 1 and "--orders" in missing.output


def test_prefetch_is_resolved_from_discovery(fixtures_loaded: Server) -> None:
    from cds_hooks.catalog import discovery

    templates = next(s for s in discovery()["services"] if s["id"] == "mbc-patient-view")["prefetch"]
    with httpx.Client(timeout=30) as client:
        got, problems = fetch_prefetch(client, fixtures_loaded.base_url, templates,
                                       {"patientId": "mbc-tnbc-1", "userId": "Practitioner/x"}, fixtures_loaded.token)
    assert problems == [] and set(got) == set(templates)
    assert got["patient"]["id"] == "mbc-tnbc-1"
    assert got["conditions"]["type"] == "searchset" and got["conditions"]["total"] == len(got["conditions"]["entry"]) > 0


def test_hook_is_refused_without_a_valid_token(secured_service: LiveService, fixtures_loaded: Server, key_dirs: dict[str, Path]) -> None:
    if not secured_service.auth:  # type: ignore[attr-defined]
        pytest.skip("the service has no JWT settings yet")
    unsigned = _hook(secured_service, fixtures_loaded, None, ISSUER, "--service", "mbc-patient-view", "--patient", "mbc-tnbc-1")
    assert unsigned.exit_code == 1
    printed = json.loads(unsigned.stdout)  # the service's OperationOutcome is printed
    assert printed["resourceType"] == "OperationOutcome" and printed["issue"][0]["details"]["coding"][0]["code"] == "unauthorized"
    untrusted = _hook(secured_service, fixtures_loaded, key_dirs["ES384"], RSA_ISSUER, "--service", "mbc-patient-view",
                      "--patient", "mbc-tnbc-1")
    assert untrusted.exit_code == 1  # right key, issuer that does not own it
    key, alg = load_private(key_dirs["ES384"] / "private.pem")
    url = f"{secured_service.base_url}/cds-services"
    good = Signer(key, alg, key.thumbprint(), ISSUER).token(url)
    assert secured_service.client.get("/cds-services", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    head, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "exp": claims["exp"] + 600, "jti": str(uuid.uuid4())}).encode())
    forged = forged.rstrip(b"=").decode()  # a longer life and a fresh jti, under the old signature
    for tampered in (f"{head}.{forged}.{signature}", f"{head}.{payload}.{signature[:-4]}AAAA"):
        response = secured_service.client.get("/cds-services", headers={"Authorization": f"Bearer {tampered}"})
        assert response.status_code == 401, tampered


def test_readme_walkthrough_table_matches_the_fixture_manifest():
    """The card list an integrator reads in README is what the fixture tests assert."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    cases = yaml.safe_load((root / "fixtures" / "manifest.yaml").read_text())
    expect: dict[tuple[str, str, str], set[str]] = {}
    for c in cases:  # a patient may have several cases (e.g. one asserting only its therapy options)
        expect.setdefault((c["patient"], c["hook"], Path(c.get("draft_orders") or "").name), set()).update(c["expect"])
    rows = re.findall(r"^\s+\| `([\w-]+)` \| ([^|]+) \| ([^|]+) \|$", (root / "README.md").read_text(), re.M)
    assert len(rows) >= 15
    for patient, hooks, cards in rows:
        if hooks.strip() == "patient-view":
            listed = re.sub(r"\(.*?\)", "", cards).strip()
            named = set() if listed == "none" else {c.strip() for c in listed.split(",")}
            assert named == expect[(patient, "patient-view", "")], patient
        else:  # "order-select `file.json` / order-sign `file.json`" against "card / card"
            pairs = zip(re.findall(r"(order-\w+) `([\w.-]+)`", hooks), [c.strip() for c in cards.split("/")])
            for (hook, file), card_text in pairs:
                card = re.match(r"[a-z0-9-]+", card_text).group(0)
                assert card in expect[(patient, hook, file)], (patient, file)
