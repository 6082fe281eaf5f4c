"""Self-observability: OTLP traces of request -> validate -> redact -> commit when OTEL_* is set, JSON logs with
request ids."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.telemetry import otlp_configured
from tests.support import Collector, event, free_port

pytestmark = pytest.mark.integration


class OTLPReceiver:
    """A minimal OTLP/HTTP trace receiver (protobuf), decoding with the official proto classes."""

    def __init__(self) -> None:
        self.spans: list = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    req = ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    for rs in req.resource_spans:
                        for ss in rs.scope_spans:
                            receiver.spans.extend(ss.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_traces_are_exported_over_otlp_when_configured(tmp_path):
    rx = OTLPReceiver()
    col = Collector(tmp_path / "o.duckdb", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{rx.port}", "OTEL_BSP_SCHEDULE_DELAY": "100"})
    col.start()
    try:
        r = httpx.post(col.url + "/v1/events", json=[event("a", "platform.probe", {"target": "ui", "ok": True})],
                       headers={"X-Request-ID": "trace-me"})
        assert r.status_code == 200
        deadline = time.monotonic() + 15
        names = set()
        while time.monotonic() < deadline:
            names = {s.name for s in rx.spans}
            if {"POST /v1/events", "ingest.validate", "ingest.redact", "writer.commit"} <= names:
                break
            time.sleep(0.2)
    finally:
        col.stop()
        rx.close()
    assert {"POST /v1/events", "ingest.parse", "ingest.validate", "ingest.redact", "ingest.await_commit",
            "writer.commit"} <= names
    by_name = {s.name: s for s in rx.spans}
    request = by_name["POST /v1/events"]
    for child in ("ingest.validate", "ingest.redact", "ingest.await_commit"):
        assert by_name[child].trace_id == request.trace_id
    commit = by_name["writer.commit"]
    assert any(link.trace_id == request.trace_id for link in commit.links), "commit span links to the request"


def test_tracing_is_off_without_otel_variables(monkeypatch):
    for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(k, raising=False)
    assert otlp_configured() is False


def test_logs_are_json_with_request_ids_and_no_payloads(tmp_path):
    col = Collector(tmp_path / "o.duckdb").start()
    try:
        payload_marker = "very-distinctive-notebook-id-42"
        httpx.post(col.url + "/v1/events", headers={"X-Request-ID": "rid-777"}, json=[
            event("a", "notebook.promoted", {"notebook_id": payload_marker})])
    finally:
        col.stop()
    lines = [json.loads(line) for line in col.logs().splitlines() if line.startswith("{")]
    req = [entry for entry in lines if entry.get("msg") == "request" and entry.get("request_id") == "rid-777"]
    assert req and req[0]["path"] == "/v1/events" and req[0]["status"] == 200
    assert payload_marker not in col.logs()
