"""Per-call cost of a signed call's two extra steps, in-process (no HTTP): JWT verification and the
jti replay store, SQLite (the default, synchronous=NORMAL) and PostgreSQL (a throwaway cluster).

Complements bench/run.py, whose signed rows give the end-to-end cost under load; this splits it.
Medians of repeated batches; CPU and waits both count (the stores do I/O).

    .venv/bin/python bench/auth_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from joserfc import jwt  # noqa: E402

from service.edge.auth import Authenticator  # noqa: E402
from service.kit.dev_keys import generate, load_private  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store import SqlReplayStore, open_database, open_replay_database  # noqa: E402

ISS = "https://bench-ehr.example.test"
AUD = "http://127.0.0.1:8080/cds-services/mbc-patient-view"


class NoReplayStore:
    """Every jti is new: verification alone."""

    async def first_use(self, jti: str, iss: str, expires_at: float) -> bool:
        return True


async def per_call(step: Any, items: list[Any], batches: int) -> float:
    """Median microseconds per call over ``batches`` equal slices of ``items``."""
    size = len(items) // batches
    times = []
    for b in range(batches):
        chunk = items[b * size:(b + 1) * size]
        started = time.perf_counter()
        for item in chunk:
            await step(item)
        times.append((time.perf_counter() - started) / len(chunk) * 1e6)
    return statistics.median(times)


async def main(quick: bool) -> None:
    n, batches = (600, 3) if quick else (3000, 5)
    with tempfile.TemporaryDirectory(prefix="mbc-auth-cost-") as tmp:
        files = generate(Path(tmp) / "keys", alg="ES384")
        key, alg = load_private(files.private)
        settings = Settings(auth_required=True, trusted_issuers=[{"iss": ISS, "jwks_file": str(files.jwks)}],
                            feedback_db=str(Path(tmp) / "feedback.sqlite3"))
        auth = Authenticator(settings, replay=NoReplayStore())
        now = int(time.time())

        def token() -> str:
            claims = {"iss": ISS, "aud": AUD, "exp": now + 3000, "iat": now, "jti": str(uuid.uuid4())}
            return jwt.encode({"alg": alg, "typ": "JWT", "kid": files.kid}, claims, key, algorithms=[alg])

        tokens = [token() for _ in range(n)]
        print(f"ES384 JWT verification (joserfc: header, allow-lists, signature, claims): "
              f"{await per_call(lambda t: auth.verify(t, AUD), tokens, batches):.0f} us/call")

        db = await open_database(None, str(Path(tmp) / "feedback.sqlite3"))
        replay_db = await open_replay_database(db, str(Path(tmp) / "feedback.sqlite3"))
        sqlite_store = SqlReplayStore(replay_db)
        jtis = [str(uuid.uuid4()) for _ in range(n)]
        print(f"jti replay store, SQLite (synchronous=NORMAL, via a worker thread): "
              f"{await per_call(lambda j: sqlite_store.first_use(j, ISS, now + 3000), jtis, batches):.0f} us/call")
        await replay_db.close()
        await db.close()

        from tests.support.postgres import PostgresCluster, PostgresError, find_bin

        bin_dir = find_bin()
        if bin_dir is None:
            print("jti replay store, PostgreSQL: not measured (no server binaries)")
            return
        try:
            cluster = PostgresCluster(bin_dir)
        except PostgresError as exc:
            print(f"jti replay store, PostgreSQL: not measured ({exc})")
            return
        try:
            pg = await open_database(cluster.create_database("authcost"), "", 10)
            pg_store = SqlReplayStore(pg)
            jtis = [str(uuid.uuid4()) for _ in range(n)]
            print(f"jti replay store, PostgreSQL (asyncpg pool, loopback TCP, committed): "
                  f"{await per_call(lambda j: pg_store.first_use(j, ISS, now + 3000), jtis, batches):.0f} us/call")
            await pg.close()
        finally:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
