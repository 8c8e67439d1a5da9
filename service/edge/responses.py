"""JSON answers of the HTTP edge: orjson-encoded, and one shape for every error."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response


class JSONResponse(Response):
    """orjson instead of the stdlib encoder: the card extension carries the whole picture."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, err: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": err, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status)
