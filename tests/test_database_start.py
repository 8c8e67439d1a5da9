"""Start-up against PostgreSQL with several replicas: the schema is created once when processes
start together, and a replica that cannot reach the database stays up, says why it is not ready,
refuses what needs the database with 503 (never a 500 or an exit), and recovers by itself."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx

import fixtures
from service.edge.feedback import FeedbackStore
from service.store import open_database
from tests.conftest import hook_request, rule_codes
from tests.support.postgres import PostgresCluster, postgres_cluster, postgres_url, require_bin  # noqa: F401  (fixtures)
from tests.support.conformance import error_code, error_fields, error_text
from tests.support.replicas import ROOT, Replica, free_port, make_ehr, service_env

PATIENT = "mbc-hrpos-bone-1"
SERVICE = "/cds-services/mbc-patient-view"


def test_migrate_run_by_three_processes_at_once_creates_the_schema_once(postgres_url: str) -> None:  # noqa: F811
    env = service_env(DATABASE_URL=postgres_url)
    procs = [subprocess.Popen([sys.executable, "-m", "service.kit.cli", "migrate"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    from service.store import _SCHEMA_OBJECTS

    created = f"schema created in PostgreSQL (DATABASE_URL): {len(_SCHEMA_OBJECTS)} tables and indexes"
    assert sum(created in o for o in outputs) == 1, outputs
    assert sum("schema present in PostgreSQL" in o for o in outputs) == 2, outputs
    again = subprocess.run([sys.executable, "-m", "service.kit.cli", "migrate"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "schema present" in again.stdout
    assert postgres_url.split("@")[0].split(":")[-1] not in again.stdout + again.stderr  # no password shown


def test_migrate_without_a_database_fails_with_a_clear_message_and_no_secret(tmp_path: Path) -> None:
    env = service_env(DATABASE_URL=f"postgresql://mbc:s3cret-pw@127.0.0.1:{free_port()}/mbc")
    done = subprocess.run([sys.executable, "-m", "service.kit.cli", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "the database did not answer" in done.stderr and "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr


def test_a_replica_without_postgresql_stays_up_not_ready_and_recovers_when_it_comes_back(tmp_path: Path) -> None:
    bin_dir = require_bin()
    pg_port, password = free_port(), secrets.token_urlsafe(16)
    ehr = make_ehr(tmp_path / "ehr")
    replica = Replica("r1", free_port(), service_env(
        DATABASE_URL=f"postgresql://mbc:{password}@127.0.0.1:{pg_port}/postgres", MBC_TRUSTED_ISSUERS=ehr.trusted,
        MBC_LOG_LEVEL="info", MBC_DRAIN_SECONDS="0", MBC_FEEDBACK_DB=str(tmp_path / "unused.sqlite3"),
    ), tmp_path)
    patient = fixtures.load(fixtures.PATIENTS / f"{PATIENT}.json")
    body = hook_request("patient-view", PATIENT, prefetch=fixtures.prefetch_for(patient, ["patient", "conditions", "observations"]))
    feedback = {"feedback": [{"card": "card-after-outage", "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}

    def signed(http: httpx.Client, path: str, json: object) -> httpx.Response:
        url = f"{replica.url}{path}"
        return http.post(url, json=json, headers={"Authorization": f"Bearer {ehr.signer.token(url)}"})

    cluster: PostgresCluster | None = None
    replica.start()
    try:
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:  # alive: the process answers although the database does not
                assert replica.proc is not None and replica.proc.poll() is None, replica.log_tail()
                try:
                    if http.get(f"{replica.url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the replica did not start without its database"
                time.sleep(0.1)
            ready = http.get(f"{replica.url}/readyz")
            assert ready.status_code == 503 and error_code(ready) == "not-ready" and error_fields(ready) == {"database"}
            assert "unreachable (not connected since start-up: " in error_text(ready) and "retrying" in error_text(ready), ready.text

            # Auth on: the jti replay check needs the database, so it fails closed, as 503, not 401/500.
            refused = signed(http, SERVICE, body)
            assert refused.status_code == 503 and error_code(refused) == "store-unavailable"
            assert refused.headers["retry-after"] == "5"
            assert signed(http, f"{SERVICE}/feedback", feedback).status_code == 503

            cluster = PostgresCluster(bin_dir, port=pg_port, password=password)  # the database comes back
            replica.wait_ready(timeout=30)
            answered = signed(http, SERVICE, body)
            assert answered.status_code == 200 and "mbc-summary" in rule_codes(answered.json())
            assert signed(http, f"{SERVICE}/feedback", feedback).json() == {"stored": 1}
        replica.sigterm()
        assert replica.wait_exit() == 0

        async def stored() -> list[dict[str, object]]:
            db = await open_database(cluster.url("postgres"), "")
            try:
                return await FeedbackStore(db).all()
            finally:
                await db.close()

        assert [row["card"] for row in asyncio.run(stored())] == ["card-after-outage"]
        records = replica.log_records()
        assert not [r for r in records if "text" in r], "every log line is JSON (no traceback)"
        assert any(r.get("message") == "database unreachable; retrying in the background" for r in records)
        assert any(r.get("message") == "database connected" for r in records)
        assert password not in replica.log_path.read_text()
    finally:
        replica.stop()
        if cluster is not None:
            cluster.stop()
