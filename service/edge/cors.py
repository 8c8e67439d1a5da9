"""CORS with refusals as OperationOutcome: Starlette answers a refused preflight in plain text, and
every error answer of this service is an OperationOutcome (responses.error)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from .responses import error


class JsonCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k not in ("content-type", "content-length")}
        reason = bytes(response.body).decode()  # e.g. "Disallowed CORS origin, headers"
        return error(response.status_code, "cors-refused", f"{reason}.", [{"problem": reason}], headers=headers)
