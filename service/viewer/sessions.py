"""Viewer launches and sessions, kept server-side in the service's database.

A launch (between the redirect to the authorization server and its callback) holds the PKCE
verifier; a session (after the token exchange) holds the access token. Both live in the
``viewer_sessions`` table of the existing store (SQLite, or PostgreSQL shared by every replica),
each row encrypted with Fernet (``cryptography``: AES-CBC with an HMAC, timestamped) and keyed by
the SHA-256 of a random handle. The browser holds only the handle (an HttpOnly cookie; for a
launch, the OAuth ``state``); the database holds only ciphertext. Nothing here logs.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from ..store import Database

LAUNCH = "launch"
SESSION = "session"
_PRUNE_INTERVAL_SECONDS = 60.0


def _row_id(kind: str, handle: str) -> str:
    return f"{kind}:{hashlib.sha256(handle.encode()).hexdigest()}"


class SessionStore:
    def __init__(self, db: Database, key: bytes | None = None):
        self._db = db
        # Without a configured key (one process, SQLite): a key per process start; sessions end with it.
        self._fernet = Fernet(key or Fernet.generate_key())
        self._next_prune = 0.0

    async def put(self, kind: str, data: dict[str, Any], ttl_seconds: float, handle: str | None = None) -> str:
        """Store ``data`` for ``ttl_seconds``; returns the handle that reads it back."""
        handle = handle or secrets.token_urlsafe(32)
        now = time.time()
        await self._db.execute(
            "INSERT INTO viewer_sessions (id, data, expires_at) VALUES ($1, $2, $3)",
            _row_id(kind, handle), self._fernet.encrypt(orjson.dumps(data)).decode("ascii"), now + ttl_seconds,
        )
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_INTERVAL_SECONDS
            await self._db.execute("DELETE FROM viewer_sessions WHERE expires_at < $1", now)
        return handle

    async def get(self, kind: str, handle: str) -> dict[str, Any] | None:
        """The data, or None when unknown, expired, or not readable with this key."""
        rows = await self._db.fetch("SELECT data, expires_at FROM viewer_sessions WHERE id = $1", _row_id(kind, handle))
        if not rows or float(rows[0][1]) < time.time():
            return None
        try:
            value = orjson.loads(self._fernet.decrypt(str(rows[0][0]).encode("ascii")))
        except (InvalidToken, orjson.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None

    async def take(self, kind: str, handle: str) -> dict[str, Any] | None:
        """Read once: of two concurrent callbacks with the same state, only one gets the launch."""
        data = await self.get(kind, handle)
        deleted = await self.drop(kind, handle)
        return data if deleted == 1 else None

    async def drop(self, kind: str, handle: str) -> int:
        return await self._db.execute("DELETE FROM viewer_sessions WHERE id = $1", _row_id(kind, handle))
