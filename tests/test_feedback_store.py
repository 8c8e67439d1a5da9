"""Feedback is never lost, on SQLite and on a real PostgreSQL: 1,000 concurrent posts over HTTP are
all answered 200 and all stored, and still there after the process is killed (SIGKILL) and a new
app starts; repeats are stored once; rejected posts store nothing. Also the JWT replay store."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from service.edge.app import create_app
from service.edge.feedback import FeedbackStore
from service.settings import Settings
from service.store import Database, SqlReplayStore, open_database
from tests.conftest import make_settings
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.support.conformance import error_code, error_fields, error_text

URL = "/cds-services/mbc-patient-view/feedback"


def item(card: str, ts: str = "2026-11-22T10:00:00Z") -> dict[str, object]:
    return {"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": f"s-{card}"}], "outcomeTimestamp": ts}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "postgresql":
        return make_settings(tmp_path, database_url=request.getfixturevalue("postgres_url"))
    return make_settings(tmp_path)


async def open_db(settings: Settings) -> Database:
    url = settings.database_url.get_secret_value() if settings.database_url else None
    return await open_database(url, settings.feedback_db)


async def stored(settings: Settings) -> list[dict[str, object]]:
    db = await open_db(settings)
    try:
        return await FeedbackStore(db).all()
    finally:
        await db.close()


def restarted_all(settings: Settings) -> list[dict[str, object]]:
    with TestClient(create_app(settings)) as client:
        return client.portal.call(client.app.state.feedback.all)


class ServiceProcess:
    """The service as a real uvicorn process, configured only by environment variables (as deployed)."""

    def __init__(self, settings: Settings, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MBC_") and k != "DATABASE_URL"}
        env.update(MBC_FEEDBACK_DB=settings.feedback_db, MBC_AUTH_REQUIRED="false", MBC_LOG_LEVEL="warning")
        if settings.database_url:
            env["DATABASE_URL"] = settings.database_url.get_secret_value()
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "service.edge.app:app_factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"service did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, so only what was committed before each answer survives."""
        self.proc.kill()
        self.proc.wait()
        self._log.close()


def post_concurrently(port: int, bodies: list[bytes], threads: int = 32) -> list[int]:
    # http.client in a thread pool: light enough that the server, not the client, sets the pace.
    local = threading.local()

    def post(body: bytes) -> int:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local.conn.request("POST", URL, body, {"Content-Type": "application/json"})
        response = local.conn.getresponse()
        response.read()
        return response.status

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, bodies))


def test_concurrent_posts_all_stored_and_kept_across_crash(store_settings: Settings, tmp_path: Path) -> None:
    n = 1000
    bodies = [orjson.dumps({"feedback": [item(f"card-{i}")]}) for i in range(n)]
    service = ServiceProcess(store_settings, tmp_path / "service.log")
    try:
        started = time.perf_counter()
        statuses = post_concurrently(service.port, bodies)
        elapsed = time.perf_counter() - started
        assert statuses == [200] * n
        # Read through a second connection while the service still runs, as another replica would.
        assert len(asyncio.run(stored(store_settings))) == n
    finally:
        service.kill()
    print(f"\n{n} concurrent feedback posts ({'postgresql' if store_settings.database_url else 'sqlite'}): {elapsed:.2f}s")

    rows = restarted_all(store_settings)
    assert sorted(r["card"] for r in rows) == sorted(f"card-{i}" for i in range(n))
    assert rows[0]["accepted_suggestions"] == [{"id": f"s-{rows[0]['card']}"}]
    assert rows[0]["outcome_timestamp"] == "2026-11-22T10:00:00+00:00"
    assert Path(store_settings.feedback_db).exists() == (store_settings.database_url is None)


def test_repeats_are_stored_once_and_still_answered_200(store_settings: Settings) -> None:
    with TestClient(create_app(store_settings)) as client:
        batch = {"feedback": [item("c1"), item("c2"), item("c1")]}
        assert client.post(URL, json=batch).status_code == 200
        assert client.post(URL, json=batch).status_code == 200
        # Same instant spelled differently; another outcome or time is a different feedback.
        same = item("c1", "2026-11-22T11:00:00+01:00")
        overridden = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z"}
        later = item("c1", "2026-11-22T10:00:01Z")
        r = client.post(URL, json={"feedback": [same, overridden, later]})
        assert r.status_code == 200 and r.json() == {"stored": 3}
    rows = restarted_all(store_settings)
    assert [(r["card"], r["outcome"], r["outcome_timestamp"]) for r in rows] == [
        ("c1", "accepted", "2026-11-22T10:00:00+00:00"),
        ("c2", "accepted", "2026-11-22T10:00:00+00:00"),
        ("c1", "overridden", "2026-11-22T10:00:00+00:00"),
        ("c1", "accepted", "2026-11-22T10:00:01+00:00"),
    ]


def test_rejected_feedback_stores_nothing(store_settings: Settings) -> None:
    no_suggestions = {"card": "c3", "outcome": "accepted", "outcomeTimestamp": "2026-11-22T10:00:00Z"}
    bad_outcome = {"card": "c4", "outcome": "maybe", "outcomeTimestamp": "2026-11-22T10:00:00Z"}
    with TestClient(create_app(store_settings)) as client:
        r = client.post(URL, json={"feedback": [no_suggestions]})
        assert r.status_code == 400 and error_code(r) == "invalid-feedback" and error_fields(r) == {"feedback[0]"}
        assert "acceptedSuggestions" in error_text(r)
        for body in ({"feedback": [item("ok"), bad_outcome]}, {"feedback": []}, {"feedback": [item("ok"), {"card": "c5"}]}):
            assert client.post(URL, json=body).status_code == 400
        assert client.post(URL, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
        assert client.portal.call(client.app.state.feedback.all) == []
        assert client.portal.call(client.app.state.db.ping) is None


@pytest.fixture
async def db(store_settings: Settings) -> AsyncIterator[Database]:
    database = await open_db(store_settings)
    yield database
    await database.close()


async def test_replay_store_first_use_then_replay(db: Database, store_settings: Settings) -> None:
    replay = SqlReplayStore(db)
    exp = time.time() + 300
    assert await replay.first_use("jti-1", "https://ehr.example", exp) is True
    assert await replay.first_use("jti-1", "https://ehr.example", exp) is False
    assert await replay.first_use("jti-2", "https://ehr.example", exp) is True
    assert await replay.first_use("jti-1", "https://other.example", exp) is True
    # Another replica (its own connection or pool) sees the same ids.
    other = await open_db(store_settings)
    try:
        assert await SqlReplayStore(other).first_use("jti-1", "https://ehr.example", exp) is False
    finally:
        await other.close()


async def test_replay_store_concurrent_uses_one_wins(db: Database) -> None:
    replay = SqlReplayStore(db)
    results = await asyncio.gather(*(replay.first_use("race", "iss", time.time() + 60) for _ in range(40)))
    assert results.count(True) == 1


async def test_replay_store_prunes_expired_ids(db: Database) -> None:
    now = time.time()
    for jti in ("old-1", "old-2", "old-3"):
        await db.execute("INSERT INTO jwt_replay (iss, jti, expires_at) VALUES ($1, $2, $3)", "iss", jti, now - 10)
    replay = SqlReplayStore(db, prune_interval=3600)
    assert await replay.first_use("old-1", "iss", now + 60) is True  # an expired row no longer blocks its id
    assert await replay.first_use("new", "iss", now + 60) is True  # pruned on the first call only
    assert sorted(r[0] for r in await db.fetch("SELECT jti FROM jwt_replay")) == ["new", "old-1"]
    await db.execute("INSERT INTO jwt_replay (iss, jti, expires_at) VALUES ($1, $2, $3)", "iss", "old-4", now - 1)
    assert await replay.prune() == 1


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59-00:01", "0001-01-01T00:00:00+23:59"])
def test_out_of_range_timestamp_is_400_naming_the_field_not_503(store_settings: Settings, timestamp: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Valid RFC 3339 text, but no UTC datetime exists for it: bad input the EHR must not retry forever,
    and no "database unavailable" alarm for the operator."""
    good, bad = item("in-range"), item("out-of-range", timestamp)
    with TestClient(create_app(store_settings)) as client:
        r = client.post(URL, json={"feedback": [good, bad]})
        assert r.status_code == 400 and error_code(r) == "invalid-feedback"
        assert error_fields(r) == {"feedback[1].outcomeTimestamp"} and "out of range" in error_text(r)
        assert client.portal.call(client.app.state.feedback.all) == []  # nothing half stored
        edge = "9999-12-31T23:59:59Z" if timestamp.startswith("9999") else "0001-01-01T00:00:00Z"
        assert client.post(URL, json={"feedback": [item("edge", edge)]}).status_code == 200  # the extremes themselves are fine
        assert [s["card"] for s in client.portal.call(client.app.state.feedback.all)] == ["edge"]
    assert not [r for r in caplog.records if "database unavailable" in r.getMessage()]
