"""FastAPI's built-in OpenTelemetry telemetry is off: no span, metric or log record leaves the
service, so no patient id can, even when an OpenTelemetry SDK is configured in the process.

Each probe runs in its own process (OpenTelemetry's global providers can be set once per process):
the control, a bare FastAPI app with default telemetry, shows the probe does see a patient id leak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _probe(which: str, **env: str) -> dict[str, object]:
    import os

    out = subprocess.run([sys.executable, "-m", "tests.support.otel_probe", which], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_probe_sees_what_default_fastapi_telemetry_exports():
    bare = _probe("bare")
    assert bare["spans"] and bare["patient_id_exported"] is True


@pytest.mark.parametrize("env", [{}, {"FASTAPI_OTEL_AUTO_CONFIGURE": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}])
def test_the_service_exports_nothing_even_with_an_sdk_configured(env):
    assert _probe("service", **env) == {"spans": 0, "metric_points": 0, "logs": 0, "patient_id_exported": False}
