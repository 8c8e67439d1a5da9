"""JWK Sets of trusted EHRs: read from allow-listed URLs or static config, cached, refreshed at a bounded rate.

Only the URLs an issuer is configured with ever reach this module, so a token cannot make the
service fetch from an address of its choosing, and a flood of made-up ``kid`` values costs at
most one fetch per URL per refresh interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from joserfc.jwk import JWKRegistry, Key

log = logging.getLogger("mbc_cds_hooks.auth")

KeyMap = dict[str, list[Key]]
MAX_JWKS_BYTES = 256_000
# Private and symmetric members are dropped: the service only ever verifies.
_SECRET_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
_KTY_FOR_ALG = {"E": "EC", "R": "RSA", "P": "RSA"}


class KeySetError(ValueError):
    """A JWK Set could not be read."""


def parse_key_set(data: Any) -> KeyMap:
    """Public RSA/EC signing keys by kid; an unreadable or symmetric entry is skipped, never trusted."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeySetError("not a JWK Set")
    keys: KeyMap = {}
    for item in data["keys"]:
        if not isinstance(item, dict) or item.get("kty") not in {"RSA", "EC"} or not isinstance(item.get("kid"), str):
            continue
        if item.get("use", "sig") != "sig":
            continue
        try:
            key = JWKRegistry.import_key({k: v for k, v in item.items() if k not in _SECRET_MEMBERS})
        except Exception:  # joserfc/cryptography raise several types for a malformed key
            continue
        keys.setdefault(item["kid"], []).append(key)
    return keys


def load_static(jwks: dict[str, Any] | None, jwks_file: str | None) -> KeyMap:
    """Static keys, read at start-up so a broken file stops the service instead of every call."""
    keys: KeyMap = {}
    for data in ([jwks] if jwks else []) + ([orjson.loads(Path(jwks_file).read_bytes())] if jwks_file else []):
        for kid, found in parse_key_set(data).items():
            keys.setdefault(kid, []).extend(found)
    if (jwks or jwks_file) and not keys:
        raise KeySetError("static JWK Set holds no usable RSA or EC signing key")
    return keys


def pick(keys: KeyMap, kid: str, alg: str) -> Key | None:
    """The key for this kid that fits the algorithm (its kty, and its own alg when the JWK states one)."""
    for key in keys.get(kid, ()):
        if key.key_type == _KTY_FOR_ALG.get(alg[:1]) and key.get("alg") in (None, alg):
            return key
    return None


@dataclass
class _Entry:
    keys: KeyMap = field(default_factory=dict)
    fetched: float = float("-inf")
    attempted: float = float("-inf")
    kid_refetched: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KeySetCache:
    """Keys per jku URL: kept for ``ttl`` seconds; refetched on an unknown kid at most once per ``interval``,
    and a failing host is retried at most once per ``interval``.

    A failed refresh keeps the last good keys, so a brief outage of the EHR's JWKS host does not
    lock the EHR out; with nothing cached the call is refused (401), never a 500.
    """

    def __init__(self, client: httpx.AsyncClient, ttl: float, interval: float, timeout: float,
                 clock: Callable[[], float] = time.monotonic):
        self._client, self._ttl, self._interval, self._clock = client, ttl, interval, clock
        self._timeout = httpx.Timeout(timeout)
        self._entries: dict[str, _Entry] = {}

    async def find(self, url: str, kid: str, alg: str) -> Key | None:
        entry = self._entries.setdefault(url, _Entry())
        key = pick(entry.keys, kid, alg)
        if key is not None and not self._stale(entry):
            return key
        async with entry.lock:  # concurrent calls with the same unknown kid share one fetch
            key, now = pick(entry.keys, kid, alg), self._clock()
            if self._stale(entry):  # first use, TTL over, or last fetch failed: retry a failing host once per interval
                if now - entry.attempted < self._interval:
                    return key
            elif key is not None or now - entry.kid_refetched < self._interval:
                return key
            else:  # unknown kid on a fresh set: maybe the EHR rotated its keys
                entry.kid_refetched = now
            await self._refresh(url, entry)
            return pick(entry.keys, kid, alg)

    def _stale(self, entry: _Entry) -> bool:
        return self._clock() - entry.fetched >= self._ttl

    async def _refresh(self, url: str, entry: _Entry) -> None:
        entry.attempted = self._clock()
        try:
            entry.keys = await self._fetch(url)
            entry.fetched = self._clock()
        except Exception as exc:  # any failure here must end in a 401, not a 500
            log.warning("jwks fetch failed", extra={"event": "auth", "jku": url, "error": type(exc).__name__})

    async def _fetch(self, url: str) -> KeyMap:
        body = bytearray()
        async with self._client.stream("GET", url, timeout=self._timeout, follow_redirects=False,
                                       headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise KeySetError(f"HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise KeySetError("JWK Set too large")
        return parse_key_set(orjson.loads(body))
