"""CDS Hooks feedback (POST /cds-services/{id}/feedback): validated, then stored durably.

SQLite in WAL mode by default: every post is committed before the answer goes out, so an
acknowledged feedback survives a crash or restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .hook_request import RequestError


class Coding(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(min_length=1)
    system: str | None = None
    display: str | None = None


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")
    reason: Coding | None = None
    userComment: str | None = None


class AcceptedSuggestion(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime

    @model_validator(mode="after")
    def _accepted_needs_suggestions(self) -> "FeedbackItem":
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when outcome is 'accepted'")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)


def parse_feedback(body: bytes) -> list[FeedbackItem]:
    try:
        data = orjson.loads(body or b"null")
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "invalid-json", f"The feedback body is not valid JSON: {exc.msg}.") from None
    try:
        return FeedbackRequest.model_validate(data).feedback
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors(include_url=False, include_input=False)]
        raise RequestError(400, "invalid-feedback", "The feedback does not match CDS Hooks 2.0.", details) from None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    card TEXT NOT NULL,
    outcome TEXT NOT NULL,
    accepted_suggestions TEXT,
    override_reason TEXT,
    outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL
)
"""


class FeedbackStore:
    """One SQLite connection behind a lock; writes run in a thread so the event loop stays free."""

    def __init__(self, path: str):
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def _insert(self, service: str, items: list[FeedbackItem]) -> int:
        now = datetime.now(timezone.utc).isoformat()
        rows = [
            (
                service, i.card, i.outcome,
                orjson.dumps([s.model_dump(exclude_none=True) for s in i.acceptedSuggestions]).decode() if i.acceptedSuggestions else None,
                orjson.dumps(i.overrideReason.model_dump(exclude_none=True)).decode() if i.overrideReason else None,
                i.outcomeTimestamp.isoformat(), now,
            )
            for i in items
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO feedback (service, card, outcome, accepted_suggestions, override_reason, outcome_timestamp, received_at) VALUES (?,?,?,?,?,?,?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    async def add(self, service: str, items: list[FeedbackItem]) -> int:
        return await asyncio.to_thread(self._insert, service, items)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT service, card, outcome, accepted_suggestions, override_reason, outcome_timestamp FROM feedback ORDER BY id")
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()
