"""Reading a request body within the size limit, as JSON only."""

from __future__ import annotations

from fastapi import Request

from ..hook_request import RequestError


async def read_body(request: Request, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise RequestError(413, "too-large", f"The request body is larger than {max_bytes} bytes.")
    body = await request.body()
    if len(body) > max_bytes:
        raise RequestError(413, "too-large", f"The request body is larger than {max_bytes} bytes.")
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", "application/fhir+json", ""):
        raise RequestError(415, "unsupported-media-type", "Send the hook request as application/json.")
    return body
