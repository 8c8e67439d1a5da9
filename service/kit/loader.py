"""Putting fixtures and real records into any FHIR R4 server, idempotently.

Every resource is written as ``PUT Type/id`` with its own id (never POST), so loading the same
files twice leaves the server as it was (servers may still bump ``meta.versionId``). urn:uuid
references are rewritten to ``Type/id`` and resources are sent in dependency order, so chunks can
be cut anywhere: servers that enforce referential integrity (HAPI) find every target already
stored. Transactions are preferred, then batch, then single PUTs, from the CapabilityStatement or
by falling back when the server refuses the richer form.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson

import fixtures

Resource = dict[str, Any]
MODES = ("transaction", "batch", "put")


class LoadError(Exception):
    """The load cannot go on at all (server unreachable, token refused)."""


@dataclass(frozen=True)
class Entry:
    file: str
    index: int  # position in the file (Bundle.entry or array), for error messages
    resource: Resource

    @property
    def ref(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


@dataclass(frozen=True)
class Rejected:
    entry: Entry
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.entry.file} entry {self.entry.index} ({self.entry.ref}): HTTP {self.status}: {self.text}"


@dataclass
class Report:
    files: int = 0
    written: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    mode: str = ""
    fatal: str | None = None  # why the load stopped early (server unreachable, token refused)

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.unreadable and not self.fatal


def outcome_text(body: Any) -> str:
    """An OperationOutcome in one line: what each issue says and where."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return (body if isinstance(body, str) else orjson.dumps(body).decode())[:500]
    parts = []
    for issue in body.get("issue") or []:
        text = (issue.get("details") or {}).get("text") or issue.get("diagnostics") or issue.get("code", "")
        where = ", ".join(issue.get("expression") or issue.get("location") or [])
        parts.append(f"{issue.get('severity', 'error')}: {text}" + (f" at {where}" if where else ""))
    return "; ".join(parts) or "OperationOutcome without issues"


def _stable_id(resource: Resource, full_url: Any, file: str, index: int) -> str:
    """The id to PUT under: the resource's own, else the fullUrl's, else one derived from its place."""
    if isinstance(resource.get("id"), str) and resource["id"]:
        return resource["id"]
    if isinstance(full_url, str):
        for prefix in ("urn:uuid:", "urn:oid:"):
            if full_url.startswith(prefix):
                return full_url[len(prefix):]
        parts = full_url.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == resource.get("resourceType"):
            return parts[-1]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mbc-cds-hooks:{Path(file).name}#{index}"))


def _clean(resource: Resource, rid: str) -> Resource:
    """Server-assigned meta is dropped: a stale versionId in a PUT body can make servers refuse it."""
    out = {**resource, "id": rid}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def read_entries(path: str | Path, today: date | None) -> list[Entry]:
    """The resources of a Bundle or JSON array, with stable ids and relative references.

    ``today`` rolls fixture dates (see ``fixtures.rolled``); None loads the dates as written.
    """
    name = str(path)
    data = fixtures.read_json(path)
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        if today is not None:
            data = fixtures.rolled(data, today)
        raw = []
        for i, e in enumerate(data.get("entry") or []):
            if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
                continue
            if str((e.get("request") or {}).get("method", "PUT")).upper() in ("DELETE", "GET", "HEAD"):
                continue
            raw.append((i, e.get("fullUrl"), e["resource"]))
    elif isinstance(data, list):
        raw = [(i, None, r) for i, r in enumerate(data)]
    elif isinstance(data, dict) and isinstance(data.get("resourceType"), str):
        raw = [(0, None, data)]
    else:
        raise ValueError("not a FHIR Bundle, resource or JSON array of resources")
    items, targets = [], {}
    for i, full_url, res in raw:
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            continue
        rid = _stable_id(res, full_url, name, i)
        ref = f"{res['resourceType']}/{rid}"
        if isinstance(full_url, str) and full_url:
            targets[full_url] = ref
        targets.setdefault(f"urn:uuid:{rid}", ref)
        items.append((i, rid, res))
    latest = {f"{r['resourceType']}/{rid}": (i, rid, r) for i, rid, r in items}  # a repeated id: the last wins
    return [Entry(name, i, fixtures.rewrite_references(_clean(r, rid), targets)) for i, rid, r in sorted(latest.values(), key=lambda t: t[0])]


def _refs(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                out.add(v)
            else:
                _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def ordered(entries: list[Entry]) -> list[Entry]:
    """Referenced resources before the resources that point at them (file order otherwise; cycles broken)."""
    known = {e.ref for e in entries}
    deps = {e.ref: (_refs(e.resource, set()) & known) - {e.ref} for e in entries}
    done: set[str] = set()
    out: list[Entry] = []
    pending = list(entries)
    while pending:
        ready = [e for e in pending if deps[e.ref] <= done] or pending[:1]
        out.extend(ready)
        done.update(e.ref for e in ready)
        taken = {id(e) for e in ready}
        pending = [e for e in pending if id(e) not in taken]
    return out


def _ok(status: Any) -> bool:
    return str(status).strip().startswith("2")


class Loader:
    """Writes entries to one server in chunks, choosing and falling back between write modes."""

    def __init__(self, client: httpx.Client, base: str, chunk_size: int = 50, mode: str | None = None):
        self.client = client
        self.base = base.rstrip("/")
        self.chunk_size = chunk_size
        self.mode = mode or self._detect_mode()

    def _send(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        try:
            response = self.client.request(method, url, content=orjson.dumps(body),
                                           headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
        except httpx.HTTPError as exc:
            raise LoadError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (401, 403):
            raise LoadError(f"{method} {url}: the FHIR server refused access (HTTP {response.status_code}); check --token")
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def _detect_mode(self) -> str:
        """The richest write the CapabilityStatement declares; a transaction when it says nothing."""
        try:
            response = self.client.get(f"{self.base}/metadata", headers={"Accept": "application/fhir+json"})
            body = response.json() if response.is_success else {}
        except (httpx.HTTPError, ValueError):
            body = {}
        codes = {i.get("code") for rest in (body.get("rest") or []) if isinstance(rest, dict)
                 for i in rest.get("interaction") or [] if isinstance(i, dict)} if isinstance(body, dict) else set()
        if "transaction" in codes or not codes:
            return "transaction"
        return "batch" if "batch" in codes else "put"

    def write(self, chunk: list[Entry]) -> list[Rejected]:
        """Write one chunk; the rejected entries, each with the server's reason."""
        if self.mode == "put":
            return self._put_each(chunk)
        status, body = self._bundle(self.mode, chunk)
        if self._answered(status, body, chunk):
            return self._entry_failures(chunk, body)
        # Refused as a whole: the server lacks this mode, or an entry is bad. The next mode tells which,
        # entry by entry; when it stores everything, the richer mode was the problem and is dropped.
        used, rejected = ("put", self._put_each(chunk)) if self.mode == "batch" else self._batch_or_put(chunk)
        if not rejected:
            self.mode = used
        return rejected

    def _batch_or_put(self, chunk: list[Entry]) -> tuple[str, list[Rejected]]:
        status, body = self._bundle("batch", chunk)
        if self._answered(status, body, chunk):
            return "batch", self._entry_failures(chunk, body)
        return "put", self._put_each(chunk)

    def _put_each(self, chunk: list[Entry]) -> list[Rejected]:
        rejected = []
        for entry in chunk:
            status, body = self._send("PUT", f"{self.base}/{entry.ref}", entry.resource)
            if not _ok(status):
                rejected.append(Rejected(entry, str(status), outcome_text(body)))
        return rejected

    def _bundle(self, kind: str, chunk: list[Entry]) -> tuple[int, Any]:
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [
            {"fullUrl": f"{self.base}/{e.ref}", "resource": e.resource, "request": {"method": "PUT", "url": e.ref}} for e in chunk]}
        return self._send("POST", self.base, bundle)

    @staticmethod
    def _answered(status: int, body: Any, chunk: list[Entry]) -> bool:
        return _ok(status) and isinstance(body, dict) and len(body.get("entry") or []) == len(chunk)

    @staticmethod
    def _entry_failures(chunk: list[Entry], body: Resource) -> list[Rejected]:
        rejected = []
        for entry, result in zip(chunk, body.get("entry") or []):
            response = (result or {}).get("response") or {}
            if not _ok(response.get("status", "")):
                rejected.append(Rejected(entry, str(response.get("status", "?")), outcome_text(response.get("outcome"))))
        return rejected

    def load(self, entries: list[Entry], advance: Callable[[int], None] = lambda n: None) -> tuple[int, list[Rejected]]:
        """Write entries chunk by chunk: (entries stored, rejected entries).

        Stops after the first chunk with a rejected entry: later chunks may point at it.
        """
        written = 0
        entries = ordered(entries)
        for start in range(0, len(entries), self.chunk_size):
            chunk = entries[start:start + self.chunk_size]
            rejected = self.write(chunk)
            advance(len(chunk))
            written += len(chunk) - len(rejected)
            if rejected:
                return written, rejected
        return written, []


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a directory stands for the *.json files in it."""
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    return out


def load_files(paths: list[Path], base: str, *, token: str | None = None, today: date | None = None,
               chunk_size: int = 50, mode: str | None = None, progress: bool = True) -> Report:
    """Load every file into the server; one file's failure does not stop the others."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    report = Report()
    parsed: list[tuple[Path, list[Entry]]] = []
    for path in expand(paths):
        try:
            parsed.append((path, read_entries(path, today)))
        except (OSError, ValueError) as exc:
            report.unreadable.append(f"{path}: {exc}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    total = sum(len(e) for _, e in parsed)
    console = Console(stderr=True)
    with httpx.Client(headers=headers, timeout=120) as client, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not progress, transient=True,
    ) as bar:
        task = bar.add_task("loading", total=total)
        try:
            loader = Loader(client, base, chunk_size, mode)
            report.mode = loader.mode
            for path, entries in parsed:
                bar.update(task, description=path.name)
                written, rejected = loader.load(entries, lambda n: bar.advance(task, n))
                report.mode = loader.mode
                report.files += 1
                report.written += written
                report.rejected.extend(rejected)
        except LoadError as exc:
            report.fatal = str(exc)
    return report
