"""Durable storage shared by feedback and JWT replay protection: SQLite or PostgreSQL.

SQLite (WAL, synchronous=FULL) suits one host; PostgreSQL (``DATABASE_URL``) is the store that
several replicas share. Both sit behind :class:`Database`, so callers write one SQL text with
``$1`` placeholders and get the affected row count back after the commit.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg

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
    ],
}

_SCHEMA_LOCK = 0x4D4243  # pg_advisory lock key: replicas starting together create the schema one at a time


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
        for statement in _SCHEMA["sqlite"]:
            self._db.execute(statement)

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

    @classmethod
    async def connect(cls, url: str, pool_size: int = 10, timeout: float = 10.0) -> "PostgresDatabase":
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size, timeout=timeout, command_timeout=timeout)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            for statement in _SCHEMA["postgresql"]:
                await conn.execute(statement)
        return cls(pool)

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


async def open_database(url: str | None, sqlite_path: str, pool_size: int = 10) -> Database:
    """PostgreSQL when a URL is given, else the SQLite file; the schema exists on return."""
    if url:
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
