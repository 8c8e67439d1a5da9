"""One id per request, so a log line can be matched to an EHR's call without logging the call.

An incoming ``X-Request-ID`` is kept only when it is a short token of safe characters (an EHR's
correlation id); anything else, which could smuggle text into the logs, is replaced by a new id.
The id is echoed in the response header and added to every log line of the request.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import request_id_var

_SAFE = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
HEADER = b"x-request-id"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == HEADER), b"")
        rid = incoming.decode("ascii") if _SAFE.fullmatch(incoming) else uuid.uuid4().hex
        request_id_var.set(rid)  # the request's own task context: not reset, so the 500 handler still sees it

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode("ascii"))]}
            await send(message)

        await self.app(scope, receive, send_with_id)
