"""Run in a child process by tests/test_telemetry.py: install OpenTelemetry SDK providers globally
(in-memory exporters for traces, metrics and logs), call an app, print what was exported as JSON.

``python -m tests.support.otel_probe service|bare`` calls the service (create_app) or a bare
FastAPI app with default telemetry (the control that shows the probe sees leaks).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PATIENT = "PATIENT-7f3a9c"


def main(which: str) -> None:
    spans, reader, logs = InMemorySpanExporter(), InMemoryMetricReader(), InMemoryLogRecordExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    logger = LoggerProvider()
    logger.add_log_record_processor(SimpleLogRecordProcessor(logs))
    _logs.set_logger_provider(logger)

    if which == "service":
        from service.edge.app import create_app
        from tests.conftest import hook_request, make_settings

        app = create_app(make_settings(Path(tempfile.mkdtemp())))
        body = hook_request("patient-view", PATIENT, prefetch={"conditions": None, "observations": None})
    else:
        app = FastAPI()

        @app.post("/cds-services/{sid}")
        async def hook(sid: str, request: Request) -> dict[str, Any]:
            raise RuntimeError(f"failed for {(await request.json())['context']['patientId']}")

        body = {"context": {"patientId": PATIENT}}
    with TestClient(app, raise_server_exceptions=False) as client:
        client.post("/cds-services/mbc-patient-view", json=body)  # 412: the id is in the body only
        client.post(f"/cds-services/mbc-patient-view?patient={PATIENT}", json=body)
        client.get(f"/cds-services/{PATIENT}")  # an id in the path
        client.get("/cds-services")
    exported = {
        "spans": [{"name": s.name, "attributes": dict(s.attributes or {})} for s in spans.get_finished_spans()],
        "metrics": reader.get_metrics_data().to_json() if reader.get_metrics_data() else "",
        "logs": [str(r.log_record.body) + json.dumps(dict(r.log_record.attributes or {}), default=str) for r in logs.get_finished_logs()],
    }
    text = json.dumps(exported, default=str)
    print(json.dumps({"spans": len(exported["spans"]), "metric_points": text.count("data_points"),
                      "logs": len(exported["logs"]), "patient_id_exported": PATIENT in text}))


if __name__ == "__main__":
    main(sys.argv[1])
