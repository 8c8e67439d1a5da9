"""Reading a request body within the size limit, as JSON only."""

from __future__ import annotations

from fastapi import Request

from ..responses import RequestError


def _too_large(max_bytes: int, size: str) -> RequestError:
    return RequestError(413, "too-large", f"The request body is larger than {max_bytes} bytes.",
                        [{"problem": f"the body has {size} bytes; this service accepts at most {max_bytes} (MBC_MAX_BODY_BYTES)"}])


async def read_body(request: Request, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes, length)
    body = await request.body()
    if len(body) > max_bytes:
        raise _too_large(max_bytes, str(len(body)))
    raw = request.headers.get("content-type", "application/json")
    ctype = raw.split(";")[0].strip().lower()
    if ctype not in ("application/json", "application/fhir+json", ""):
        raise RequestError(415, "unsupported-media-type", "Send the request as application/json.",
                           [{"problem": f"Content-Type {raw[:100]!r} is not application/json or application/fhir+json"}])
    return body
