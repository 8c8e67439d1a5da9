"""CDS Hooks feedback (POST /cds-services/{id}/feedback): validated whole, then stored durably.

Every post is committed (SQLite or PostgreSQL, see store.py) before the answer goes out, so an
acknowledged feedback survives a crash, a restart or the loss of the replica that took it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds_hooks.overrides import unknown_code

from .hook_request import RequestError, json_body, validation_details
from ..store import Database


def _utc(moment: datetime) -> datetime:
    # One spelling per instant, so the unique index sees "Z" and "+00:00" repeats as one.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


class Coding(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(min_length=1)
    system: str | None = None
    display: str | None = None

    @model_validator(mode="after")
    def _known_in_its_system(self) -> "Coding":
        # HL7's non-adherence reason codes and ours are checked; other systems are the client's own.
        problem = unknown_code(self.system, self.code)
        if problem:
            raise ValueError(problem)
        return self


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")
    reason: Coding | None = None
    userComment: str | None = None

    @model_validator(mode="after")
    def _reason_or_comment(self) -> "OverrideReason":
        if self.reason is None and not self.userComment:  # CDS Hooks 3.0 ballot invariant cds-fb-3
            raise ValueError("an overrideReason needs a reason, a userComment, or both")
        return self


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

    @field_validator("outcomeTimestamp")
    @classmethod
    def _in_utc_range(cls, moment: datetime) -> datetime:
        """Stored in UTC (spec: outcomeTimestamp is UTC): an instant that has no UTC datetime
        (9999-12-31T23:59:59-00:01) is bad input, a 400 naming the field, not a database failure."""
        try:
            return _utc(moment)
        except OverflowError:
            raise ValueError("out of range: this instant is outside years 1-9999 in UTC") from None

    @model_validator(mode="after")
    def _accepted_needs_suggestions(self) -> "FeedbackItem":
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when outcome is 'accepted'")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)


def parse_feedback(body: bytes) -> list[FeedbackItem]:
    data = json_body(body, "feedback", "invalid-feedback", 'The feedback body is empty; send {"feedback": [...]}.', "feedback")
    try:
        return FeedbackRequest.model_validate(data).feedback
    except ValidationError as exc:
        raise RequestError(400, "invalid-feedback", "The feedback does not match CDS Hooks 2.0.", validation_details(exc)) from None


# 7 columns x at most 1,000 items (FeedbackRequest) stays under both drivers' 32,767 parameters.
_COLUMNS = ("service", "card", "outcome", "accepted_suggestions", "override_reason", "outcome_timestamp", "received_at")


class FeedbackStore:
    """Feedback rows in the shared :class:`~service.store.Database`.

    A post is one INSERT statement, committed before ``add`` returns: an answered post is never
    lost, and a failed one is not half stored. A repeat of the same (service, card, outcome,
    outcomeTimestamp) is skipped by the unique index, so client retries are harmless.
    """

    def __init__(self, db: Database):
        self._db = db

    async def add(self, service: str, items: list[FeedbackItem]) -> int:
        """Store the items; return how many were new (repeats are already stored)."""
        now = datetime.now(timezone.utc)
        args: list[Any] = []
        for i in items:
            args += [
                service, i.card, i.outcome,
                orjson.dumps([s.model_dump(exclude_none=True) for s in i.acceptedSuggestions]).decode() if i.acceptedSuggestions else None,
                orjson.dumps(i.overrideReason.model_dump(exclude_none=True)).decode() if i.overrideReason else None,
                i.outcomeTimestamp, now,  # already UTC (validated)
            ]
        width = len(_COLUMNS)
        values = ", ".join("(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(len(items)))
        return await self._db.execute(
            f"INSERT INTO feedback ({', '.join(_COLUMNS)}) VALUES {values} ON CONFLICT DO NOTHING", *args
        )

    async def all(self) -> list[dict[str, Any]]:
        rows = await self._db.fetch(f"SELECT {', '.join(_COLUMNS[:-1])} FROM feedback ORDER BY id")
        return [
            {
                "service": service, "card": card, "outcome": outcome,
                "accepted_suggestions": orjson.loads(accepted) if accepted else None,
                "override_reason": orjson.loads(reason) if reason else None,
                "outcome_timestamp": ts.isoformat() if isinstance(ts, datetime) else ts,
            }
            for service, card, outcome, accepted, reason, ts in rows
        ]
