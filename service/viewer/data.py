"""What the viewer shows: the patient read through the shared FHIR client, one mapping, the cards.

The same queries as the patient-view hook (its prefetch templates), the same fetcher (deadline,
retries, caps, faults as reasons), ``build_picture``, ``evaluate`` and ``mappings.timeline``: the
page draws what this returns and decides nothing clinical itself.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt

from cds_hooks.cards import EVIDENCE_EXTENSION
from cds_hooks.catalog import services
from cds_hooks.evaluate import Gap, each_card
from cds_hooks.knowledge import knowledge
from mappings.build import build_picture
from mappings.timeline import timeline

from ..edge.hook_request import RequestError
from ..edge.prefetch import resolve_template
from ..fhir_client import Budget, FhirFetcher, run_all


OPTIONS_EXTENSION = "mbc-cds-hooks.therapy-options"


@dataclass
class PatientData:
    resources: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    fetch_ms: float = 0.0


def _queries() -> tuple[Any, ...]:
    return services()["mbc-patient-view"].queries


async def read_patient(fetcher: FhirFetcher, server: str, patient: str, token: str | None, deadline: float) -> PatientData:
    """Every patient-view query, concurrently, under one deadline. A required query refused with
    401 or 403 means the token is not (or no longer) good: nothing can be shown, so RequestError."""
    budget = Budget.start(deadline)
    context = {"patientId": patient}
    jobs = {}
    for q in _queries():
        relative = resolve_template(q.template, context)
        if relative:
            jobs[q.key] = fetcher.read(server, relative, token, budget=budget)
    started = time.perf_counter()
    results = await run_all(jobs, deadline)
    out = PatientData(fetch_ms=(time.perf_counter() - started) * 1000)
    for q in _queries():
        result = results.get(q.key)
        if result is None:
            continue
        if q.required and result.status == 401:
            raise RequestError(401, "fhir-token-refused", "The FHIR server refused the access token (HTTP 401): it has "
                              "expired or was revoked. Open the viewer again from the patient's chart.")
        if q.required and result.status == 403:
            raise RequestError(403, "fhir-access-denied", "The FHIR server denied access to this patient's data (HTTP 403).")
        out.resources.extend(result.resources)
        if result.problem:
            out.gaps.append(Gap(q.key, result.problem, q.feeds))
    return out


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # CommonMark without raw HTML: card text is escaped, and link URLs are checked by markdown-it
    # (no javascript: or data: links), so the page can insert the result as HTML.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _card_view(card: dict[str, Any]) -> dict[str, Any]:
    evidence = (card.get("extension") or {}).get(EVIDENCE_EXTENSION) or []
    return {
        "uuid": card["uuid"], "rule": card["source"]["topic"]["code"], "indicator": card["indicator"],
        "summary": card["summary"], "detailHtml": _markdown().render(card.get("detail", "")),
        "source": {"label": card["source"]["label"], "url": card["source"]["url"]}, "evidence": evidence,
    }


def payload(data: PatientData, *, today: date, fhir_server: str | None, patient: str, mode: str) -> dict[str, Any]:
    """The answer of ``POST /viewer/api/picture`` (and of the local demo): picture, timeline, cards, gaps."""
    picture = build_picture(data.resources, today=today)
    # Every rule that fired, each card in full: what does not fit a hook answer is shown here (card economy).
    cards = each_card("patient-view", picture, today=today, hook_instance=str(uuid.uuid4()), gaps=data.gaps)
    options = next((c["extension"][OPTIONS_EXTENSION] for c in cards
                    if OPTIONS_EXTENSION in (c.get("extension") or {})), None)
    return {
        "mode": mode,
        "fhirServer": fhir_server,
        "patient": patient,
        "today": today.isoformat(),
        "resourcesRead": len(data.resources),
        "fetchMs": round(data.fetch_ms, 1),
        "gaps": [{"key": g.key, "reason": g.reason, "feeds": g.feeds} for g in data.gaps],
        "picture": picture.to_json(),
        "timeline": timeline(picture, today),
        "therapyOptions": options,
        # The options' names as the card words them (the extension keeps the contract's fields only).
        "optionNames": {o["id"]: o["text"] for o in knowledge().therapy_options},
        "cards": [_card_view(c) for c in cards],
    }
