"""Hostile input: thousands of generated requests against the ASGI app, none may give a 5xx.

Three kinds of request, in shares of MBC_FUZZ_EXAMPLES (default 2000, all three together):
random JSON and bytes to every POST route; valid hook requests built from the fixtures, then
mutated (fields deleted, retyped, emptied); and random methods, paths, content types and headers
under /cds-services. Every answer must be below 500, carry an X-Request-ID, and every non-2xx
answer must be a FHIR OperationOutcome with one of our error codes (tests/support/conformance.py). Outbound FHIR reads (a mutated request may name fhirServer)
are answered by respx, so nothing leaves the process.

Longer run: ``MBC_FUZZ_EXAMPLES=50000 .venv/bin/python -m pytest -q tests/test_fuzz.py``; add
``MBC_FUZZ_RAISE=1`` to see the traceback of a 500 instead of its JSON body.
"""

from __future__ import annotations

import copy
import os
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import respx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures
from service.edge.app import create_app
from tests.conftest import SERVICE_FOR_HOOK, case_request, make_settings
from tests.support.conformance import assert_operation_outcome, error_code, error_fields

EXAMPLES = int(os.environ.get("MBC_FUZZ_EXAMPLES", "2000"))
SHARES = {"random": 0.3, "mutated": 0.45, "envelope": 0.25}
ROUTES = [f"/cds-services/{s}" for s in SERVICE_FOR_HOOK.values()] + [f"/cds-services/{s}/feedback" for s in SERVICE_FOR_HOOK.values()]
FHIR_BASE = "https://ehr.example.org/fhir"
KEYS = ["hook", "hookInstance", "context", "prefetch", "fhirServer", "fhirAuthorization", "access_token", "patientId",
        "userId", "draftOrders", "selections", "entry", "resource", "resourceType", "feedback", "card", "outcome", "extension"]
SENT = {"count": 0}
STATUSES: Counter[tuple[str, int]] = Counter()  # (test kind, status): shows how deep the requests got


def _base_requests() -> list[tuple[str, dict[str, Any]]]:
    """One valid request per manifest case, with full prefetch, as (route, body)."""
    return [(f"/cds-services/{SERVICE_FOR_HOOK[case['hook']]}", case_request(case)) for case in fixtures.manifest()]


BASES = _base_requests()

json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20) | st.sampled_from(KEYS))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings_ = make_settings(tmp_path_factory.mktemp("fuzz"), hook_deadline_seconds=1.0, fhir_retries=0)
    with respx.mock(assert_all_called=False) as router:
        router.route().mock(return_value=httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"}))
        with TestClient(create_app(settings_), raise_server_exceptions=bool(os.environ.get("MBC_FUZZ_RAISE"))) as client:
            yield client


def send(client: TestClient, kind: str, method: str, path: str, content: bytes | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    SENT["count"] += 1
    r = client.request(method, path, content=content, headers=headers)
    STATUSES[(kind, r.status_code)] += 1
    assert r.status_code < 500, (method, path, r.status_code, r.text[:500])
    assert r.headers.get("x-request-id"), (method, path, r.status_code)
    assert_operation_outcome(r)  # every non-2xx answer: an OperationOutcome with one of our error codes
    return r


def run(test: Any, kind: str) -> None:
    """Run a hypothesis test for its share of the examples, and check that many requests went out."""
    examples = max(1, int(EXAMPLES * SHARES[kind]))
    before = SENT["count"]
    settings(max_examples=examples, deadline=None, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])(test)()
    assert SENT["count"] - before >= examples


def test_random_bodies(app_client: TestClient) -> None:
    @given(route=st.sampled_from(ROUTES), body=json_value | st.binary(max_size=200).map(lambda b: b"raw:" + b), ctype=st.sampled_from(["application/json", "application/fhir+json"]))
    def one(route: str, body: Any, ctype: str) -> None:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        send(app_client, "random", "POST", route, content, {"content-type": ctype})

    run(one, "random")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(body: dict[str, Any], path: tuple[Any, ...], op: str, value: Any) -> None:
    if not path:
        return
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    else:
        parent[last] = value


OPS = st.sampled_from(["delete", "replace", "replace", "duplicate", "empty"])
EMPTY = st.sampled_from([None, "", [], {}, 0, -1, True, "x" * 200, "Patient/", "\u0000", "9" * 40])


def test_mutated_hook_requests(app_client: TestClient) -> None:
    paths = [list(_paths(body)) for _, body in BASES]

    @given(data=st.data(), which=st.integers(0, len(BASES) - 1), fetch=st.booleans())
    def one(data: st.DataObject, which: int, fetch: bool) -> None:
        route, base = BASES[which]
        body = copy.deepcopy(base)
        if fetch:  # some keys read from a (mocked) FHIR server instead, with a token
            body["fhirServer"] = FHIR_BASE
            body["fhirAuthorization"] = {"access_token": "fuzz-token", "token_type": "Bearer", "expires_in": 30, "scope": "patient/*.read", "subject": "fuzz"}
            for key in data.draw(st.lists(st.sampled_from(sorted(body["prefetch"])), max_size=4)):
                body["prefetch"].pop(key, None)
        for _ in range(data.draw(st.integers(1, 4))):
            candidates = [p for p in paths[which] if _exists(body, p)] if not fetch else list(_paths(body))
            # Resources dominate the tree: a third each for the envelope, the context (draft orders), anywhere.
            shallow = [p for p in candidates if len(p) <= 3]
            in_context = [p for p in candidates if p[:1] == ("context",)]
            pool = data.draw(st.sampled_from([c for c in (shallow, in_context, candidates) if c]))
            path = data.draw(st.sampled_from(pool))
            op = data.draw(OPS)
            _mutate(body, path, op, data.draw(EMPTY if op == "empty" else json_value))
        send(app_client, "mutated", "POST", route, orjson.dumps(body), {"content-type": "application/json"})

    run(one, "mutated")
    answered = sum(n for (kind, status), n in STATUSES.items() if kind == "mutated" and status == 200)
    assert answered >= 0.2 * EXAMPLES * SHARES["mutated"], STATUSES  # most mutations still reach the rules


def _exists(body: Any, path: tuple[Any, ...]) -> bool:
    node = body
    for step in path:
        if isinstance(node, dict) and step in node or isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return False
    return True


SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@", max_size=16)
CTYPES = ["application/json", "application/fhir+json", "application/json; charset=utf-8", "text/plain", "application/xml",
          "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "", "application/json;;", "*/*"]


def test_methods_paths_and_content_types(app_client: TestClient) -> None:
    valid = orjson.dumps(BASES[0][1])

    @given(
        method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
        path=st.sampled_from(["/cds-services", "/cds-services/", *ROUTES]) | st.sampled_from(ROUTES)
        | st.lists(SEGMENT, min_size=1, max_size=4).map(lambda s: "/cds-services/" + "/".join(s)),
        query=st.none() | SEGMENT,
        ctype=st.sampled_from(CTYPES) | st.text(alphabet=string.printable.strip(), max_size=30),
        body=st.sampled_from([None, b"", b"{}", b"[]", b"null", valid]) | st.binary(max_size=64),
        request_id=st.none() | st.text(alphabet=string.ascii_letters + "-_ <>\"'", max_size=80),
        cors=st.none() | st.fixed_dictionaries({
            "origin": st.sampled_from(["https://sandbox.cds-hooks.org", "https://evil.example", "null"]),
            "access-control-request-method": st.sampled_from(["POST", "GET", "PUT", "TRACE"]),
            "access-control-request-headers": st.sampled_from(["content-type", "authorization, x-request-id", "x-evil"]),
        }),
    )
    def one(method: str, path: str, query: str | None, ctype: str, body: bytes | None, request_id: str | None,
            cors: dict[str, str] | None) -> None:
        headers = {"content-type": ctype, **(cors or {})}
        if request_id is not None:
            headers["x-request-id"] = request_id
        r = send(app_client, "envelope", method, path + (f"?{query}" if query else ""), body if method not in ("GET", "HEAD") else None, headers)
        echoed = r.headers["x-request-id"]
        assert echoed == request_id if request_id and len(request_id) <= 64 and all(c.isalnum() or c in "-_" for c in request_id) else len(echoed) == 32

    run(one, "envelope")
    print(sorted(STATUSES.items()))


def test_too_many_prefetch_resources_is_413_json(tmp_path: Any) -> None:
    route, body = BASES[0]
    big = copy.deepcopy(body)
    big["prefetch"]["observations"]["entry"] = [{"resource": {"resourceType": "Observation", "id": str(i)}} for i in range(60)]
    with TestClient(create_app(make_settings(tmp_path, max_prefetch_resources=50))) as client:
        r = client.post(route, json=big)
        ok = client.post(route, json=body)
    assert r.status_code == 413 and error_code(r) == "too-many-resources"
    assert error_fields(r) == {"prefetch"}
    assert ok.status_code == 200


def test_too_many_draft_orders_is_413_json(tmp_path: Any) -> None:
    route, body = next((r, b) for r, b in BASES if "draftOrders" in b["context"])
    big = copy.deepcopy(body)
    entries = big["context"]["draftOrders"]["entry"]
    big["context"]["draftOrders"]["entry"] = entries * (6 // len(entries) + 1)
    with TestClient(create_app(make_settings(tmp_path, max_draft_orders=5))) as client:
        r = client.post(route, json=big)
    assert r.status_code == 413 and error_code(r) == "too-many-orders"
    assert error_fields(r) == {"context.draftOrders.entry"}


@pytest.mark.parametrize("depth", [200, 1000, 2000, 100_000])
def test_deep_nesting_is_answered_or_refused(app_client: TestClient, depth: int) -> None:
    """orjson refuses past 1024 levels (400); below that the rules must cope (200), and the
    picture echoed in the card extension must still serialise."""
    route, body = BASES[0]
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    raw = orjson.dumps({**body, "extension": {"x": "DEEP"}}).replace(b'"DEEP"', nested)
    raw = raw.replace(b'"resourceType":"Condition"', b'"resourceType":"Condition","note":' + nested, 1)
    r = send(app_client, "deep", "POST", route, raw, {"content-type": "application/json"})
    assert r.status_code == (200 if depth <= 1000 else 400)
