"""OTLP/HTTP logs source: the real OpenTelemetry SDK with its OTLP/HTTP (protobuf) log exporter against a real
collector process, plus hand-made OTLP/JSON bodies (hex trace ids, int64 as strings)."""

from __future__ import annotations

import gzip
import json

import duckdb
import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.support import Collector, create_token, metric_sum, parse_metrics

NS = 1_763_632_800_000_000_000  # 2025-11-20T10:00:00Z in ns


@pytest.fixture
def collector(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    ingest = create_token(tokens, "otel", "ingest")
    admin = create_token(tokens, "admin", "ingest,read,admin")
    col = Collector(db=tmp_path / "o.duckdb", tokens_file=tokens, token=admin).start()
    col.ingest_token = ingest  # type: ignore[attr-defined]
    yield col
    col.stop()


def rows(col, sql: str):
    col.stop()
    con = duckdb.connect(str(col.db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def sdk_records():
    """Log records built by the real SDK (LoggerProvider -> processor), captured before export."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "nb-scheduler", "team": "ml",
                                                        "deployment.environment.name": "prod"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    log = provider.get_logger("notebook.scheduler", "1.0")
    log.emit(event_name="notebook.run.started", timestamp=NS, severity_number=SeverityNumber.INFO,
             attributes={"run_id": "r-1", "notebook_id": "nb-churn", "trigger": "scheduled"})
    log.emit(event_name="notebook.run.failed", timestamp=NS + 42_500_000_000, severity_number=SeverityNumber.ERROR,
             body="run failed", attributes={
                 "run_id": "r-1", "notebook_id": "nb-churn", "attempt": 1, "duration_seconds": 42.5,
                 "exception.type": "KeyError",
                 "exception.message": "missing key; token ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"})
    log.emit(timestamp=NS + 1, severity_number=SeverityNumber.INFO, body="just a log line")  # not an event
    log.emit(timestamp=NS + 2, body="cell done", attributes={  # CI/CD semantic conventions
        "cicd.pipeline.name": "nb-ci-check", "cicd.pipeline.run.id": "ci-77", "cicd.pipeline.result": "success",
        "duration_seconds": 8.0})
    log.emit(event_name="notebook.run.succeeded", timestamp=NS + 3, attributes={"run_id": "r-2"})  # no notebook_id
    provider.force_flush()
    return memory.get_finished_logs()


def test_real_sdk_exporter_protobuf(collector):
    records = sdk_records()
    exporter = OTLPLogExporter(endpoint=collector.url + "/v1/logs", compression=Compression.Gzip,
                               headers={"Authorization": f"Bearer {collector.ingest_token}"})
    assert exporter.export(records) == LogRecordExportResult.SUCCESS
    assert exporter.export(records) == LogRecordExportResult.SUCCESS  # a re-sent export: nothing counted twice

    # The same request body the exporter sends, to read the OTLP answer: partial success, one record rejected.
    body = encode_logs(records).SerializeToString()
    r = httpx.post(collector.url + "/v1/logs", content=body, headers={
        "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {collector.ingest_token}"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    answer = ExportLogsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_log_records == 1
    assert "data.notebook_id" in answer.partial_success.error_message

    m = parse_metrics(httpx.get(collector.url + "/metrics", headers=collector.headers).text)
    assert metric_sum(m, "notebook_run_attempts_total", outcome="failed", team="ml", environment="prod") == 1
    assert metric_sum(m, "notebook_run_attempts_total", outcome="succeeded", trigger="ci") == 1
    assert metric_sum(m, "observatory_native_records_ignored_total", channel="otlp",
                      reason="not_an_observatory_event") == 3
    assert metric_sum(m, "observatory_events_ingested_total", source="otlp://nb-scheduler") == 3
    dl = httpx.get(collector.url + "/v1/dead-letters", headers=collector.headers).json()["items"]
    assert [(d["channel"], d["item_index"], d["reason"]) for d in dl] == [("otlp", 4, "missing")] * 3

    got = rows(collector, "SELECT type, run_id, notebook_id, team, environment, trigger, "
                          "strftime(time, '%Y-%m-%dT%H:%M:%S.%f'), data->>'error_type', data->>'error_message', "
                          "data->>'duration_seconds' FROM events ORDER BY time, type")
    assert got == [
        ("notebook.run.started", "r-1", "nb-churn", "ml", "prod", "scheduled", "2025-11-20T10:00:00.000000",
         None, None, None),
        ("notebook.run.succeeded", "ci-77", "nb-ci-check", "ml", "prod", "ci", "2025-11-20T10:00:00.000000",
         None, None, "8.0"),
        ("notebook.run.failed", "r-1", "nb-churn", "ml", "prod", None, "2025-11-20T10:00:42.500000",
         "KeyError", "missing key; token [REDACTED:github_token]", "42.5"),
    ]


def json_body(**record_overrides):
    record = {
        "timeUnixNano": str(NS + 5_000_000_000), "observedTimeUnixNano": str(NS + 5_100_000_000),
        "severityNumber": 9, "severityText": "INFO", "eventName": "notebook.kernel.died",
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "body": {"stringValue": "kernel died"},
        "attributes": [
            {"key": "kernel_id", "value": {"stringValue": "k-42"}},
            {"key": "reason", "value": {"stringValue": "oom"}},
            {"key": "exit_code", "value": {"intValue": "137"}},
            {"key": "observatory.owner", "value": {"stringValue": "ann"}},
            {"key": "tags", "value": {"kvlistValue": {"values": [{"key": "pool", "value": {"stringValue": "gpu"}}]}}},
        ],
        **record_overrides,
    }
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "hub-a"}},
                                    {"key": "team", "value": {"stringValue": "research"}}]},
        "scopeLogs": [{"scope": {"name": "jupyter.kernels"}, "logRecords": [
            record,
            {"timeUnixNano": str(NS), "body": {"stringValue": "unrelated"}},
            {"eventName": "notebook.kernel.started", "timeUnixNano": "not-a-number",
             "attributes": [{"key": "kernel_id", "value": {"stringValue": "k-43"}}]},
        ]}],
    }]}


def test_hand_made_json_body_and_protobuf_twin(collector):
    headers = {"Authorization": f"Bearer {collector.ingest_token}", "Content-Type": "application/json"}
    r = httpx.post(collector.url + "/v1/logs", json=json_body(), headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    partial = r.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "timeUnixNano" in partial["errorMessage"]

    # gzip, and the same record again: stored once
    r2 = httpx.post(collector.url + "/v1/logs", content=gzip.compress(json.dumps(json_body()).encode()),
                    headers={**headers, "Content-Encoding": "gzip"})
    assert r2.status_code == 200

    # The protobuf encoding of the same record gets the same event id (parse the JSON with the hex fix).
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    import base64

    doc = json_body()
    doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"] = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][:1]
    rec = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    rec["traceId"] = base64.b64encode(bytes.fromhex(rec["traceId"])).decode()
    rec["spanId"] = base64.b64encode(bytes.fromhex(rec["spanId"])).decode()
    pb = json_format.ParseDict(doc, ExportLogsServiceRequest())
    r3 = httpx.post(collector.url + "/v1/logs", content=pb.SerializeToString(), headers={
        "Authorization": f"Bearer {collector.ingest_token}", "Content-Type": "application/x-protobuf"})
    assert r3.status_code == 200 and not ExportLogsServiceResponse.FromString(r3.content).HasField("partial_success")

    bad = httpx.post(collector.url + "/v1/logs", content=b"{not json", headers=headers)
    assert bad.status_code == 400 and "message" in bad.json()
    assert httpx.post(collector.url + "/v1/logs", content=b"x", headers={
        **headers, "Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(collector.url + "/v1/logs", json=json_body()).status_code == 401

    m = parse_metrics(httpx.get(collector.url + "/metrics", headers=collector.headers).text)
    assert metric_sum(m, "notebook_kernel_crashes_total", team="research", reason="oom") == 1
    got = rows(collector, "SELECT source, kernel_id, owner, team, data->>'exit_code', data->'tags', "
                          "strftime(time, '%H:%M:%S') FROM events")
    assert got == [("otlp://hub-a", "k-42", "ann", "research", "137", '{"pool":"gpu"}', "10:00:05")]
