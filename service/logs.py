"""Structured JSON logs, one object per line, without PHI.

Handwritten (30 lines) instead of a logging library: the stdlib formatter needs only to emit
the ``extra`` fields the service passes, and those fields are chosen at each call site to carry
no patient identifiers, names, tokens or payloads.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

import orjson

# Record attributes that are not extra fields; uvicorn's "color_message" is its message again with
# ANSI colour escapes, which have no place in a JSON line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
# Set per HTTP request by service.edge.request_id; every line logged while serving it carries the id.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# Loggers of libraries whose INFO lines carry URLs, and so patient ids, of FHIR queries.
_QUIET = ("httpx", "httpcore", "uvicorn.access")


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id_var.get()
        if rid and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


logging.getLogger("mbc_cds_hooks").addFilter(_RequestId())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("mbc_cds_hooks")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's own lines (start-up, shutdown, errors) in the same JSON shape, so one parser reads all."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "service.logs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            # Access lines carry request paths, and so could carry identifiers: off (see _QUIET).
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
