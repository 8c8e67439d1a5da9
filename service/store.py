"""Durable storage shared by feedback and JWT replay protection: SQLite or PostgreSQL.

SQLite (WAL, synchronous=FULL) suits one host; PostgreSQL (``DATABASE_URL``) is the store that
several replicas share. Both sit behind :class:`Database`, so callers write one SQL text with
``$1`` placeholders and get the affected row count back after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg

log = logging.getLogger("mbc_cds_hooks")

Dialect = Literal["sqlite", "postgresql"]

# One text per dialect: the tables are the same, only the types differ. Idempotent, so every
# replica runs it at start-up.
_SCHEMA: dict[Dialect, list[str]] = {
    "sqlite": [
        """CREATE TABLE IF NOT EXISTS feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            service TEXT NOT NULL,
            card TEXT NOT NULL,
            outcome TEXT NOT NULL,
            accepted_suggestions TEXT,
            override_reason TEXT,
            outcome_timestamp TEXT NOT NULL,
            received_at TEXT NOT NULL
        )""",
        # Files written before the unique index may hold repeats: keep the first of each, once.
        """DELETE FROM feedback WHERE NOT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'feedback_once')
            AND id NOT IN (SELECT MIN(id) FROM feedback GROUP BY service, card, outcome, outcome_timestamp)""",
        "CREATE UNIQUE INDEX IF NOT EXISTS feedback_once ON feedback (service, card, outcome, outcome_timestamp)",
        """CREATE TABLE IF NOT EXISTS jwt_replay (
            iss TEXT NOT NULL,
            jti TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (iss, jti)
        )""",
        "CREATE INDEX IF NOT EXISTS jwt_replay_expiry ON jwt_replay (expires_at)",
        # The timeline viewer's launches and sessions (service/viewer/sessions.py): ciphertext only.
        "CREATE TABLE IF NOT EXISTS viewer_sessions (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at REAL NOT NULL)",
        "CREATE INDEX IF NOT EXISTS viewer_sessions_expiry ON viewer_sessions (expires_at)",
    ],
    "postgresql": [
        """CREATE TABLE IF NOT EXISTS feedback (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            service TEXT NOT NULL,
            card TEXT NOT NULL,
            outcome TEXT NOT NULL,
            accepted_suggestions JSONB,
            override_reason JSONB,
            outcome_timestamp TIMESTAMPTZ NOT NULL,
            received_at TIMESTAMPTZ NOT NULL
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS feedback_once ON feedback (service, card, outcome, outcome_timestamp)",
        """CREATE TABLE IF NOT EXISTS jwt_replay (
            iss TEXT NOT NULL,
            jti TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (iss, jti)
        )""",
        "CREATE INDEX IF NOT EXISTS jwt_replay_expiry ON jwt_replay (expires_at)",
        "CREATE TABLE IF NOT EXISTS viewer_sessions (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX IF NOT EXISTS viewer_sessions_expiry ON viewer_sessions (expires_at)",
    ],
}

_SCHEMA_LOCK = 0x4D4243  # pg_advisory lock key: replicas starting together create the schema one at a time
# The tables and indexes the DDL above creates, read from it so the list cannot drift.
_SCHEMA_OBJECTS = sorted(set(re.findall(r"CREATE (?:UNIQUE )?(?:TABLE|INDEX) IF NOT EXISTS (\w+)", " ".join(_SCHEMA["postgresql"]))))
_RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0)  # waits between connection attempts after a failed start; the last repeats


class StoreUnavailable(Exception):
    """The database did not answer: callers answer 503 so the EHR retries, instead of a 500 or a lost write."""


# What a database failure looks like from either driver (closed or broken connection, server error,
# timeout). Anything else raised while storing is a bug: a 500, never reported as the database being down.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class Database(Protocol):
    """What the stores need: a committed statement with its row count, a query, a health check."""

    dialect: Dialect

    async def execute(self, sql: str, *args: Any) -> int: ...
    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]: ...
    async def ping(self, timeout: float = 2.0) -> None: ...
    async def close(self) -> None: ...


def _sqlite_value(value: Any) -> Any:
    # Explicit adapter: the sqlite3 default datetime adapter is deprecated since Python 3.12.
    return value.astimezone(timezone.utc).isoformat() if isinstance(value, datetime) else value


class SqliteDatabase:
    """One connection behind a lock; statements run in a thread so the event loop stays free.

    Autocommit: each statement is its own transaction, flushed to disk (synchronous=FULL) before
    ``execute`` returns. WAL plus a busy timeout let several worker processes share the file.
    """

    dialect: Dialect = "sqlite"

    def __init__(self, path: str, synchronous: Literal["FULL", "NORMAL"] = "FULL"):
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._lock = threading.Lock()
        self._closed = False
        count = f"SELECT count(*) FROM sqlite_master WHERE name IN ({', '.join('?' * len(_SCHEMA_OBJECTS))})"
        before = self._db.execute(count, _SCHEMA_OBJECTS).fetchone()[0]
        for statement in _SCHEMA["sqlite"]:
            self._db.execute(statement)
        self.schema_created = self._db.execute(count, _SCHEMA_OBJECTS).fetchone()[0] - before

    @staticmethod
    def _sql(sql: str) -> str:
        return re.sub(r"\$(\d+)", r"?\1", sql)

    def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            return self._db.execute(self._sql(sql), [_sqlite_value(a) for a in args]).rowcount

    def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(self._sql(sql), [_sqlite_value(a) for a in args]).fetchall()

    async def execute(self, sql: str, *args: Any) -> int:
        return await asyncio.to_thread(self._execute, sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._fetch, sql, args)

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise unless the database answers within ``timeout`` seconds (readiness)."""
        await asyncio.wait_for(self.fetch("SELECT 1"), timeout)

    async def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


class PostgresDatabase:
    """An asyncpg pool; statements outside an explicit transaction commit on their own."""

    dialect: Dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool
        self.schema_created = 0  # tables and indexes this process created (0: the schema was there)

    @classmethod
    async def connect(cls, url: str, pool_size: int = 10, timeout: float = 10.0) -> "PostgresDatabase":
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size, timeout=timeout, command_timeout=timeout)
        try:
            created = await cls._create_schema(pool)
        except BaseException:
            await pool.close()
            raise
        db = cls(pool)
        db.schema_created = created
        return db

    @staticmethod
    async def _create_schema(pool: asyncpg.Pool) -> int:
        """Create what is missing, under a transaction-scoped advisory lock: replicas (or ``migrate``
        runs) starting together take turns, and all but the first find the schema complete and run
        no DDL at all (so a role without CREATE rights can serve once the schema exists)."""
        count = ("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname = current_schema() AND c.relname = ANY($1::text[])")
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            before = await conn.fetchval(count, _SCHEMA_OBJECTS)
            if before == len(_SCHEMA_OBJECTS):
                created = 0
            else:
                for statement in _SCHEMA["postgresql"]:
                    await conn.execute(statement)
                created = await conn.fetchval(count, _SCHEMA_OBJECTS) - before
        log.info("database schema created" if created else "database schema present",
                 extra={"event": "schema", "objects_created": created, "objects": len(_SCHEMA_OBJECTS)})
        return int(created)

    async def execute(self, sql: str, *args: Any) -> int:
        status = await self._pool.execute(sql, *args)  # e.g. "INSERT 0 3", "DELETE 2"
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(record.values()) for record in await self._pool.fetch(sql, *args)]

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise unless the database answers within ``timeout`` seconds (readiness)."""
        await asyncio.wait_for(self._pool.fetchval("SELECT 1"), timeout)

    async def close(self) -> None:
        await self._pool.close()


class DeferredDatabase:
    """PostgreSQL that may not answer yet when a replica starts (the database restarting, a network
    policy not yet applied): the replica starts anyway, ``/readyz`` reports not-ready with the
    reason, and the pool is opened in the background as soon as the database answers.

    Until then every statement raises :class:`StoreUnavailable`, which callers already turn into
    503 ``store-unavailable`` with Retry-After: feedback is refused rather than lost, and with auth
    on the JWT replay check fails closed. Calls that need no database (hooks with auth off) work.
    """

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 10, retry_seconds: tuple[float, ...] = _RETRY_SECONDS):
        self._url = url
        self._pool_size = pool_size
        self._retry_seconds = retry_seconds
        self._db: PostgresDatabase | None = None
        self._task: asyncio.Task[None] | None = None
        self.reason = "not connected yet"

    async def open(self) -> "DeferredDatabase":
        """One attempt now; if it fails, keep trying in the background."""
        if not await self._attempt():
            self._task = asyncio.create_task(self._retry(), name="database-connect")
        return self

    async def _attempt(self) -> bool:
        try:
            self._db = await PostgresDatabase.connect(self._url, self._pool_size)
        except Exception as exc:  # noqa: BLE001 - whatever the cause, the replica stays up and says why
            # The type name only: a driver message may carry the host or user, never needed here.
            self.reason = type(exc).__name__
            log.warning("database unreachable; retrying in the background",
                        extra={"event": "store", "error": self.reason})
            return False
        log.info("database connected", extra={"event": "store"})
        return True

    async def _retry(self) -> None:
        attempt = 0
        while True:
            await asyncio.sleep(self._retry_seconds[min(attempt, len(self._retry_seconds) - 1)])
            attempt += 1
            if await self._attempt():
                return

    @property
    def schema_created(self) -> int:
        return self._db.schema_created if self._db else 0

    def _ready(self) -> PostgresDatabase:
        if self._db is None:
            raise StoreUnavailable(f"not connected since start-up: {self.reason}; retrying")
        return self._db

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._ready().execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self._ready().fetch(sql, *args)

    async def ping(self, timeout: float = 2.0) -> None:
        await self._ready().ping(timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._db is not None:
            await self._db.close()


async def open_database(url: str | None, sqlite_path: str, pool_size: int = 10, *, wait: bool = True) -> Database:
    """PostgreSQL when a URL is given, else the SQLite file; the schema exists on return.

    ``wait=False`` (the service's start-up): a PostgreSQL that does not answer yet does not stop the
    process; see :class:`DeferredDatabase`. A SQLite file that cannot be opened is a configuration
    error and still stops it.
    """
    if url:
        if not wait:
            return await DeferredDatabase(url, pool_size).open()
        return await PostgresDatabase.connect(url, pool_size)
    return await asyncio.to_thread(SqliteDatabase, sqlite_path)


async def open_replay_database(db: Database, sqlite_path: str) -> Database:
    """Where JWT ids go: the shared PostgreSQL pool, or a second connection to the SQLite file.

    The SQLite connection commits with synchronous=NORMAL (WAL): a commit survives a crash or a
    kill -9 of the process, only an OS crash or power loss may forget the last ids, at about 25 us a
    call instead of 170 us for a flushed commit (measured here); feedback keeps synchronous=FULL.
    """
    if db.dialect == "postgresql":
        return db
    return await asyncio.to_thread(SqliteDatabase, sqlite_path, "NORMAL")


class SqlReplayStore:
    """JWT ids seen before, in the shared database, so a token replayed to another replica fails too.

    Same interface as the in-memory ``ReplayStore`` in auth.py. A row whose expiry has passed no
    longer blocks its id (the token itself has expired by then) and is pruned now and then.
    """

    def __init__(self, db: Database, prune_interval: float = 60.0):
        self.db = db
        self._prune_interval = prune_interval
        self._next_prune = 0.0

    async def first_use(self, jti: str, iss: str, expires_at: float) -> bool:
        now = time.time()
        inserted = await self.db.execute(
            "INSERT INTO jwt_replay (iss, jti, expires_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (iss, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE jwt_replay.expires_at < $4",
            iss, jti, float(expires_at), now,
        )
        if now >= self._next_prune:
            self._next_prune = now + self._prune_interval
            await self.prune(now)
        return inserted > 0

    async def prune(self, now: float | None = None) -> int:
        return await self.db.execute("DELETE FROM jwt_replay WHERE expires_at < $1", time.time() if now is None else now)
