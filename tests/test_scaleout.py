"""Several replicas behind a real load balancer lose no call during a rolling restart (issue 16).

Real parts only: a throwaway PostgreSQL, replicas that are ``mbc-cds-hooks serve`` processes (auth
on, a trusted test EHR with generated keys; r1 with 2 workers, so the supervisor's signal
forwarding is under test too), Debian's HAProxy in front (``tests/support/haproxy.py``), and a
fifth replica whose database does not answer, which HAProxy must never send a call to. While
signed hook calls and feedback flow, r1 is sent SIGTERM and restarted, then r2. Asserted: no hook
call or feedback post failed, every feedback item is stored exactly once, a ``jti`` accepted by
one replica is refused by the others, the schema was created once by replicas that started
together, and every stop exited 0. The figures are printed (MBC_SCALEOUT_REPLICAS=1|2|3 picks how
many replicas serve; README "Scale-out" quotes runs of each).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

import fixtures
from cds_hooks.catalog import services
from service.store import open_database
from tests.conftest import hook_request
from tests.support.haproxy import CHECK_INTER_MS, FALL, Haproxy, haproxy_binary
from tests.support.load import HOOK_PATH, figures, run_in_thread
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.support.replicas import Replica, free_port, make_ehr, service_env

PATIENT = "mbc-hrpos-bone-1"
REPLICAS = int(os.environ.get("MBC_SCALEOUT_REPLICAS", "3"))
DRAIN_SECONDS = 2.0  # above HAProxy's detection time: FALL x CHECK_INTER_MS = 1 s
WARM_UP_SECONDS, SETTLE_SECONDS, MIN_LOAD_SECONDS = 3.0, 2.0, 20.0


def _stored_cards(url: str) -> Counter[str]:
    async def read() -> Counter[str]:
        db = await open_database(url, "")
        try:
            return Counter(card for (card,) in await db.fetch("SELECT card FROM feedback"))
        finally:
            await db.close()

    return asyncio.run(read())


def test_rolling_restart_behind_haproxy_loses_no_call(postgres_url: str, tmp_path: Path,  # noqa: F811
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert 1 <= REPLICAS <= 3 and DRAIN_SECONDS * 1000 > FALL * CHECK_INTER_MS
    haproxy_binary()  # skip (or fail in CI) before starting anything
    ehr = make_ehr(tmp_path / "ehr")
    names = [f"r{i}" for i in range(1, REPLICAS + 1)]
    ports = {name: free_port() for name in [*names, "nodb"]}
    balancer = Haproxy(ports, tmp_path)
    common = dict(MBC_TRUSTED_ISSUERS=ehr.trusted, MBC_PUBLIC_BASE_URL=balancer.url, MBC_LOG_LEVEL="info",
                  MBC_DRAIN_SECONDS=str(DRAIN_SECONDS), MBC_SHUTDOWN_GRACE_SECONDS="10",
                  MBC_FEEDBACK_DB=str(tmp_path / "unused.sqlite3"))
    replicas = {name: Replica(name, ports[name], service_env(
        DATABASE_URL=postgres_url, MBC_WORKERS="2" if name == "r1" else "1", **common), tmp_path) for name in names}
    nodb = Replica("nodb", ports["nodb"], service_env(
        DATABASE_URL=f"postgresql://mbc:unused@127.0.0.1:{free_port()}/mbc", **common), tmp_path)
    stop = threading.Event()
    try:
        for replica in [*replicas.values(), nodb]:  # all at once, on an empty database
            replica.start()
        for name, replica in replicas.items():
            replica.wait_ready()
            balancer.wait_status(name, "UP")
        assert httpx.get(f"{nodb.url}/healthz", timeout=5).status_code == 200
        balancer.wait_status("nodb", "DOWN")

        patient = fixtures.load(fixtures.PATIENTS / f"{PATIENT}.json")
        prefetch = fixtures.prefetch_for(patient, [q.key for q in services()["mbc-patient-view"].queries])
        thread, load = run_in_thread(balancer.url, ehr.signer, hook_request("patient-view", PATIENT, prefetch=prefetch), stop)
        began = time.monotonic()
        time.sleep(WARM_UP_SECONDS)
        windows: list[tuple[float, float]] = []
        for name in names[:2] if REPLICAS > 1 else []:  # one replica alone cannot restart without dropping calls
            replica = replicas[name]
            signalled = time.monotonic()
            replica.sigterm()
            assert replica.wait_exit() == 0, replica.log_tail()
            replica.start()
            replica.wait_ready()
            windows.append((signalled, balancer.wait_status(name, "UP")))
            time.sleep(SETTLE_SECONDS)
        time.sleep(max(0.0, began + MIN_LOAD_SECONDS - time.monotonic()))
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert balancer.states()["nodb"] == "DOWN"

        # The figures, whatever the verdict below.
        hooks = [c for c in load.calls if c.kind == "hook"]
        overall, restarting = figures(hooks), figures(hooks, windows)
        served = {name: sum(r.get("event") == "hook" for r in replica.log_records()) for name, replica in replicas.items()}
        with capsys.disabled():
            print(f"\n[scale-out] {REPLICAS} replicas ({', '.join(f'{n}: {c} hook calls' for n, c in served.items())}), "
                  f"HAProxy, 8 concurrent signed callers, {time.monotonic() - began:.0f} s: "
                  f"{overall['calls']} hook calls, {len(load.failures('hook'))} failed, {overall['per_second']:.0f}/s, "
                  f"p50 {overall['p50_ms']:.1f} ms, p99 {overall['p99_ms']:.1f} ms; "
                  f"{len(load.stored_cards())} feedback posts, {len(load.failures('feedback'))} failed; "
                  f"{len(windows)} restarts, during them {restarting['calls']} calls, p50 {restarting['p50_ms']:.1f} ms, "
                  f"p99 {restarting['p99_ms']:.1f} ms")

        failed = load.failures()
        assert not failed, Counter((c.kind, c.status, c.error) for c in failed)
        assert len(hooks) > 100 and len(load.stored_cards()) > 10

        # Every feedback item answered 200 is stored exactly once, and nothing else is.
        stored = _stored_cards(postgres_url)
        assert sorted(stored.elements()) == sorted(load.stored_cards())
        assert set(stored.values()) == {1}

        # A jti accepted by one replica is refused by every other.
        token = ehr.signer.token(balancer.url + HOOK_PATH)
        first, *others = list(replicas.values())
        body = hook_request("patient-view", PATIENT, prefetch=prefetch)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.post(first.url + HOOK_PATH, json=body, headers=headers, timeout=10).status_code == 200
        for other in others:
            assert httpx.post(other.url + HOOK_PATH, json=body, headers=headers, timeout=10).status_code == 401

        # Started together on an empty database: one replica created the schema, the others found it.
        logs = {name: replica.log_records() for name, replica in replicas.items()}
        created = [n for n, records in logs.items() for r in records if r.get("message") == "database schema created"]
        assert len(created) == 1, created
        assert all(not [r for r in records if "text" in r] for records in logs.values()), "every log line is JSON"
    finally:
        stop.set()
        for replica in [*replicas.values(), nodb]:
            replica.stop()
        balancer.stop()
