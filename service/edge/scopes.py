"""What the EHR's token may read: ``fhirAuthorization.scope`` in SMART App Launch v1 and v2 syntax.

v1: ``patient/Observation.read``, ``user/*.read``, ``patient/*.*`` (read covers read and search).
v2: ``patient/Observation.rs``, ``system/*.cruds``, and granular ``patient/Observation.rs?category=...``
(a query narrows the grant: the server returns only part of that type). Context may be ``patient``,
``user`` or ``system``. Scopes that name no resource (``launch``, ``openid``, ``fhirUser``,
``offline_access``) grant no data.

Hand-written (about 40 lines): the only PyPI package for it, fhir-smart-scopes 0.0.2 (2023), is an
unmaintained pre-release. The grammar is SMART App Launch 2.2 "Scopes for requesting clinical data"
(hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), v1 forms included.

A scope string with no resource scope at all tells nothing about data access (some EHRs list only
launch scopes there): then nothing is restricted, and the FHIR server's own 401/403 decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(\?.*)?$")


class Access(Enum):
    FULL = "full"
    PARTIAL = "partial"  # only through scopes narrowed by a query (v2 granular scopes)
    NONE = "none"


@dataclass(frozen=True)
class _Grant:
    resource: str  # a type or "*"
    interactions: frozenset[str]  # "r" read, "s" search
    query: str | None


@dataclass(frozen=True)
class Scopes:
    grants: tuple[_Grant, ...] | None  # None: the scope string names no resource, nothing is restricted

    @classmethod
    def parse(cls, scope: str | None) -> Scopes:
        grants = []
        for token in (scope or "").split():
            match = _SCOPE.match(token)
            if not match:
                continue
            _, resource, perms, query = match.groups()
            if perms in ("read", "*"):  # v1: read (or all) covers read and search
                interactions = frozenset("rs")
            elif perms == "write" or not perms:
                interactions = frozenset()
            else:  # v2 letters, in the order c r u d s
                interactions = frozenset(perms) & frozenset("rs")
            grants.append(_Grant(resource, interactions, query[1:] if query else None))
        return cls(tuple(grants) if grants else None)

    def access(self, resource: str, interaction: str) -> Access:
        """FULL, PARTIAL or NONE for ``interaction`` ("r" read, "s" search) on ``resource``."""
        if self.grants is None:
            return Access.FULL
        matching = [g for g in self.grants if g.resource in ("*", resource) and interaction in g.interactions]
        if any(g.query is None for g in matching):
            return Access.FULL
        return Access.PARTIAL if matching else Access.NONE

    def narrowing(self, resource: str) -> str:
        """The query parameters that narrow the grants of ``resource`` (for a PARTIAL message)."""
        return "; ".join(sorted({g.query for g in self.grants or () if g.resource in ("*", resource) and g.query}))
