"""A misbehaving FHIR server on 127.0.0.1, for tests of how the service survives it.

Raw HTTP/1.1 over asyncio streams (not a framework) because the faults live below what a framework
lets a handler do: never answering, trickling bytes, cutting a response short with a TCP reset.

The fault is chosen by the URL: ``server.base(mode, target)`` is a fhirServer under which queries
for resource type ``target`` (or every type, with ``"all"``) misbehave as ``mode`` says, while the
other types are served normally from the resources given at start. Modes:

``ok`` normal; ``hang`` never answers; ``slow`` trickles the body a byte at a time; ``flaky`` 500
once per URL, then 200; ``error`` always 500; ``retry-after`` 429 with Retry-After: 1 once per
URL, then 200; ``rate-limited`` always 429 with Retry-After: 120; ``unauthorized`` 401;
``malformed`` 200 with broken JSON; ``truncated`` half the body, then a TCP reset; ``wrong-type``
a transaction-response Bundle; ``endless`` every page links to a new page; ``loop`` page B links
back to the first page; ``huge`` a 60 MB page, chunked (no Content-Length); ``huge-declared`` a
Content-Length of 60 MB; ``other-host`` a next link to ``localhost`` instead of ``127.0.0.1``.

``server.hits(mode, target)`` counts the requests that reached a fault, server side, so tests can
see whether the service retried; requests that followed the other-host link count as
``hits("evil", target)``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

Resource = dict[str, Any]
HUGE_BYTES = 60_000_000
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


class BadFhirServer:
    def __init__(self, resources: list[Resource]):
        self.resources = resources
        self.counts: Counter[tuple[str, str]] = Counter()
        self.per_url: Counter[str] = Counter()
        self.first_url: dict[tuple[str, str], str] = {}
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()  # hanging and trickling answers end when the server stops
        self.handlers: set[asyncio.Task[None]] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop).result(timeout=10)
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.smart_configuration: Resource | None = None  # served as {base}/.well-known/smart-configuration when set

    # --- API for tests -------------------------------------------------------------------------

    def base(self, mode: str, target: str = "Observation") -> str:
        return f"{self.url}/{mode}/{target}/fhir"

    def hits(self, mode: str, target: str = "Observation") -> int:
        return self.counts[(mode, target)]

    def reset_counts(self) -> None:
        self.counts.clear()
        self.per_url.clear()
        self.first_url.clear()

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            self.stopping.set()
            await asyncio.wait_for(asyncio.gather(*self.handlers, return_exceptions=True), 5)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    # --- HTTP ----------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while not self.stopping.is_set():
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
                if not await self._answer(target, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, IndexError):
            pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None) -> bool:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Content-Type: application/fhir+json",
                 f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return True

    async def _answer(self, target: str, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False closes the connection."""
        parts = urlsplit(target)
        segments = parts.path.strip("/").split("/")
        if len(segments) < 4 or segments[2] != "fhir":
            return await self._send(writer, 404, b'{"resourceType":"OperationOutcome"}')
        if segments[3:] == [".well-known", "smart-configuration"] and self.smart_configuration is not None:
            return await self._send(writer, 200, orjson.dumps(self.smart_configuration))
        mode, fault_type, rtype = segments[0], segments[1], segments[3]
        base = f"{self.url}/{mode}/{fault_type}/fhir"
        if mode == "evil" or mode == "ok" or (fault_type not in (rtype, "all")):
            if mode == "evil":
                self.counts[("evil", fault_type)] += 1
            return await self._send(writer, 200, orjson.dumps(self._normal(rtype, segments[4:])))
        self.counts[(mode, fault_type)] += 1
        self.per_url[target] += 1
        page = parse_qs(parts.query).get("_page", [None])[0]
        if page is None:
            self.first_url.setdefault((mode, rtype), f"{self.url}{target}")
        return await self._fault(mode, target, rtype, page, base, writer)

    def _normal(self, rtype: str, rest: list[str]) -> Resource:
        of_type = [r for r in self.resources if r.get("resourceType") == rtype]
        if rest:  # a read: Type/id
            return next((r for r in of_type if r.get("id") == rest[0]), {"resourceType": "OperationOutcome"})
        return _bundle(of_type)

    async def _fault(self, mode: str, target: str, rtype: str, page: str | None, base: str, writer: asyncio.StreamWriter) -> bool:
        normal = orjson.dumps(self._normal(rtype, []))
        first = self.per_url[target] == 1
        if mode == "hang":
            await self.stopping.wait()
            return False
        if mode == "slow":
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {len(normal)}\r\n\r\n".encode())
            for i in range(len(normal)):
                if self.stopping.is_set():
                    break
                writer.write(normal[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.1)
            return False
        if mode == "flaky" and first or mode == "error":
            return await self._send(writer, 500, b'{"resourceType":"OperationOutcome"}')
        if mode == "retry-after" and first:
            return await self._send(writer, 429, b"", {"Retry-After": "1"})
        if mode == "rate-limited":
            return await self._send(writer, 429, b"", {"Retry-After": "120"})
        if mode == "unauthorized":
            return await self._send(writer, 401, b"")
        if mode == "malformed":
            return await self._send(writer, 200, b'{"resourceType": "Bundle", "entry": [{"resource": ')
        if mode == "truncated":
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(normal)}\r\n\r\n".encode() + normal[: len(normal) // 2])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            writer.transport.abort()
            return False
        if mode == "wrong-type":
            return await self._send(writer, 200, orjson.dumps({**orjson.loads(normal), "type": "transaction-response"}))
        if mode == "endless":
            n = int(page or 0) + 1
            return await self._send(writer, 200, orjson.dumps(self._paged(rtype, f"{base}/{rtype}?_page={n}")))
        if mode == "loop":
            nxt = f"{base}/{rtype}?_page=B" if page is None else self.first_url[(mode, rtype)]
            return await self._send(writer, 200, orjson.dumps(self._paged(rtype, nxt)))
        if mode == "other-host":
            evil = f"http://localhost:{self.port}/evil/{rtype}/fhir/{rtype}?_page=2"
            return await self._send(writer, 200, orjson.dumps(self._paged(rtype, evil)))
        if mode in ("huge", "huge-declared"):
            await self._huge(writer, chunked=mode == "huge")
            return False
        return await self._send(writer, 200, normal)  # flaky / retry-after after the first time

    def _paged(self, rtype: str, next_url: str) -> Resource:
        bundle = self._normal(rtype, [])
        bundle["link"] = [{"relation": "next", "url": next_url}]
        return bundle

    async def _huge(self, writer: asyncio.StreamWriter, chunked: bool) -> None:
        """60 MB of a valid searchset Bundle, written until done or until the client hangs up."""
        entry = b'{"resource":{"resourceType":"Basic","id":"pad","code":{"text":"' + b"x" * 1000 + b'"}}},'
        head, tail = b'{"resourceType":"Bundle","type":"searchset","entry":[', b'{"resource":{"resourceType":"Basic"}}]}'
        count = (HUGE_BYTES - len(head) - len(tail)) // len(entry) + 1
        size = len(head) + count * len(entry) + len(tail)
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n{framing}\r\n\r\n".encode())

        def frame(data: bytes) -> bytes:
            return f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data

        try:
            writer.write(frame(head))
            block = entry * 256
            for _ in range(count // 256):
                writer.write(frame(block))
                await writer.drain()
            writer.write(frame(entry * (count % 256) + tail) + (b"0\r\n\r\n" if chunked else b""))
            await writer.drain()
        except ConnectionError:
            pass


def _bundle(resources: list[Resource]) -> Resource:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{r['resourceType']}/{r.get('id')}", "resource": r} for r in resources]}
