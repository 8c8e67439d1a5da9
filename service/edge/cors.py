"""CORS with refusals in JSON: Starlette answers a refused preflight in plain text, and every
error answer of this service is a JSON object."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response


class JsonCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k not in ("content-type", "content-length")}
        return JSONResponse({"error": "cors-refused", "message": f"{bytes(response.body).decode()}."},
                            status_code=response.status_code, headers=headers)
