"""OTLP/HTTP logs -> our events (the route is collector/api/otlp.py: `POST /v1/logs`, `application/x-protobuf`
and `application/json`, gzip).

Which log records become events:

* a record whose `event_name` (LogRecord field 12; the deprecated `event.name` attribute also works) is one of
  our event types, e.g. `notebook.run.succeeded`;
* a record carrying `cicd.pipeline.*` attributes (OTel CI/CD semantic conventions): `cicd.pipeline.result`
  success -> `notebook.run.succeeded`, failure/error -> `failed`, timeout -> `timed_out`, cancellation ->
  `cancelled`; else `cicd.pipeline.run.state` pending -> `queued`, executing -> `started`. run_id =
  `cicd.pipeline.run.id`, notebook_id = `cicd.pipeline.name` (unless a `notebook_id` attribute says), trigger ci.

Every other record is counted (`observatory_native_records_ignored_total{channel="otlp"}`) and ignored.

The event's `data` is built from, in increasing priority: the resource attributes that name a field of the
type (`team`, `environment` …), a map `body`, and the record's attributes (keys without a dot, or with an
`observatory.` prefix, e.g. `observatory.team`). `exception.type|message|stacktrace` fill error_type,
error_message and traceback; `session.id` fills session_id; `deployment.environment(.name)` fills environment.
The event time is `time_unix_nano` (else `observed_time_unix_nano`). The source is `otlp://<service.name>`
(or `cloudevents.event_source`). The id is `cloudevents.event_id` when given, else a digest of the record,
its scope and its resource, so a re-sent export is not counted twice; the protobuf and JSON encodings of the
same record get the same id.

Answers follow the OTLP spec: 200 with an `ExportLogsServiceResponse` in the request's encoding, with
`partial_success{rejected_log_records, error_message}` when some records became events that broke the contract
(they are dead-lettered); 400/413/415 with a `google.rpc.Status` for unreadable requests; 429/503 with
Retry-After when the write queue is full.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from typing import Any, Iterator

import orjson

from collector.contract.body import BodyError
from collector.contract.events import DATA_MODELS, EVENT_TYPES, CommonData
from collector.sources.common import Ignored, MappingError, NativeBatch, rfc3339

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CICD_RESULT = {"success": "succeeded", "failure": "failed", "error": "failed", "timeout": "timed_out",
               "cancellation": "cancelled"}
CICD_STATE = {"pending": "queued", "executing": "started"}
SEMCONV = {"exception.type": "error_type", "exception.message": "error_message",
           "exception.stacktrace": "traceback", "session.id": "session_id"}
COMMON_FIELDS = frozenset(CommonData.model_fields)


# ---- decoding: protobuf and JSON to one plain shape -------------------------------------------------------------


def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def records_from_protobuf(body: bytes) -> Iterator[tuple[dict, dict, dict]]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    try:
        req = ExportLogsServiceRequest.FromString(body)
    except DecodeError as exc:
        raise BodyError(f"body is not a valid ExportLogsServiceRequest: {exc}") from None
    out = []
    for rl in req.resource_logs:
        resource = _pb_attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = {"name": sl.scope.name, "version": sl.scope.version}
            for r in sl.log_records:
                out.append((resource, scope, {
                    "time_unix_nano": r.time_unix_nano, "observed_time_unix_nano": r.observed_time_unix_nano,
                    "severity_number": int(r.severity_number), "severity_text": r.severity_text,
                    "body": _pb_value(r.body) if r.HasField("body") else None,
                    "attributes": _pb_attrs(r.attributes), "trace_id": r.trace_id.hex(), "span_id": r.span_id.hex(),
                    "event_name": r.event_name,
                }))
    return iter(out)


def _g(d: Any, camel: str, snake: str | None = None, default: Any = None) -> Any:
    if not isinstance(d, dict):
        return default
    if camel in d:
        return d[camel]
    return d.get(snake, default) if snake else default


def _json_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    for key in ("stringValue", "string_value"):
        if key in v:
            return v[key]
    for key in ("boolValue", "bool_value"):
        if key in v:
            return bool(v[key])
    for key in ("intValue", "int_value"):
        if key in v:
            return int(v[key])  # int64 travels as a decimal string in OTLP/JSON
    for key in ("doubleValue", "double_value"):
        if key in v:
            return float(v[key])
    for key in ("arrayValue", "array_value"):
        if key in v:
            return [_json_value(x) for x in (v[key] or {}).get("values", [])]
    for key in ("kvlistValue", "kvlist_value"):
        if key in v:
            return _json_attrs((v[key] or {}).get("values", []))
    for key in ("bytesValue", "bytes_value"):
        if key in v:
            try:
                return base64.b64decode(v[key]).hex()
            except (ValueError, TypeError):
                return str(v[key])
    return None


def _json_attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs if isinstance(kvs, list) else []:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"]] = _json_value(kv.get("value"))
    return out


def _nanos(value: Any) -> int:
    """A fixed64 of nanoseconds (a decimal string or a number in OTLP/JSON)."""
    try:
        n = int(value or 0)
    except (TypeError, ValueError, OverflowError):
        raise MappingError("timeUnixNano", "int_parsing", "not an integer") from None
    if not 0 <= n < 2**64:
        raise MappingError("timeUnixNano", "int_range", "not an unsigned 64-bit number of nanoseconds")
    return n


def records_from_json(body: bytes) -> Iterator[tuple[dict, dict, Any]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BodyError("an ExportLogsServiceRequest is a JSON object with `resourceLogs`")
    out = []
    for rl in _g(doc, "resourceLogs", "resource_logs", []) or []:
        resource = _json_attrs(_g(_g(rl, "resource", default={}), "attributes", default=[]))
        for sl in _g(rl, "scopeLogs", "scope_logs", []) or []:
            sc = _g(sl, "scope", default={}) or {}
            scope = {"name": sc.get("name", ""), "version": sc.get("version", "")}
            for r in _g(sl, "logRecords", "log_records", []) or []:
                out.append((resource, scope, r))  # normalised lazily: a broken record fails alone
    return iter(out)


def _normalise_json_record(r: Any) -> dict[str, Any]:
    if not isinstance(r, dict):
        raise MappingError("", "object_type", "a log record must be a JSON object")
    body = _g(r, "body")
    return {
        "time_unix_nano": _nanos(_g(r, "timeUnixNano", "time_unix_nano")),
        "observed_time_unix_nano": _nanos(_g(r, "observedTimeUnixNano", "observed_time_unix_nano")),
        "severity_number": int(_g(r, "severityNumber", "severity_number", 0) or 0),
        "severity_text": _g(r, "severityText", "severity_text", "") or "",
        "body": _json_value(body) if body is not None else None,
        "attributes": _json_attrs(_g(r, "attributes", default=[])),
        "trace_id": str(_g(r, "traceId", "trace_id", "") or "").lower(),  # hex in OTLP/JSON
        "span_id": str(_g(r, "spanId", "span_id", "") or "").lower(),
        "event_name": _g(r, "eventName", "event_name", "") or "",
    }


# ---- mapping ----------------------------------------------------------------------------------------------------


def _fields(etype: str) -> frozenset[str]:
    return frozenset(DATA_MODELS[etype].model_fields) | COMMON_FIELDS


def map_log_record(resource: dict[str, Any], scope: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any] | Ignored:
    attrs = rec["attributes"]
    name = rec.get("event_name") or attrs.get("event.name") or ""
    data: dict[str, Any] = {}
    if name in EVENT_TYPES:
        etype = name
    elif any(k.startswith("cicd.pipeline.") for k in attrs):
        result, state = attrs.get("cicd.pipeline.result"), attrs.get("cicd.pipeline.run.state")
        kind = CICD_RESULT.get(result) if result else CICD_STATE.get(state)
        if kind is None:  # a bounded reason: it becomes a label value
            return Ignored("cicd_no_state" if not (result or state) else "cicd_unmapped_state")
        etype = f"notebook.run.{kind}"
        if attrs.get("cicd.pipeline.run.id") is not None:
            data["run_id"] = str(attrs["cicd.pipeline.run.id"])
        if attrs.get("cicd.pipeline.name") is not None:
            data["notebook_id"] = str(attrs["cicd.pipeline.name"])
        data["trigger"] = "ci"
    else:
        return Ignored("not_an_observatory_event" if not name else "event_name_not_mapped")

    fields = _fields(etype)
    for key, value in resource.items():
        if key in fields:
            data[key] = value
    for env_key in ("deployment.environment.name", "deployment.environment"):
        if resource.get(env_key) in ("prod", "staging", "dev"):
            data.setdefault("environment", resource[env_key])
    if isinstance(rec.get("body"), dict):
        data.update({k: v for k, v in rec["body"].items() if "." not in k})
    for key, value in attrs.items():
        if key in SEMCONV:
            data[SEMCONV[key]] = value
        elif key.startswith("observatory."):
            data[key[len("observatory."):]] = value
        elif "." not in key:
            data[key] = value
    if etype in ("notebook.run.failed", "notebook.run.timed_out") and "error_message" not in data \
            and isinstance(rec.get("body"), str) and rec["body"]:
        data["error_message"] = rec["body"]

    nanos = rec["time_unix_nano"] or rec["observed_time_unix_nano"]
    if not nanos:
        raise MappingError("timeUnixNano", "missing", "the record has neither time_unix_nano nor "
                                                      "observed_time_unix_nano")
    try:
        when = datetime.fromtimestamp(nanos // 1_000_000_000, timezone.utc).replace(
            microsecond=(nanos // 1000) % 1_000_000)
    except (OverflowError, OSError, ValueError):
        raise MappingError("timeUnixNano", "datetime_range", "time out of range") from None
    service = str(resource.get("service.name") or "unknown_service")
    source = str(attrs.get("cloudevents.event_source") or f"otlp://{service}")
    event_id = attrs.get("cloudevents.event_id")
    if not event_id:
        canonical = {"resource": resource, "scope": scope, "record": rec}
        digest = hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                                             default=str)).hexdigest()
        event_id = f"otlp-{digest[:40]}"
    event = {"specversion": "1.0", "id": str(event_id), "source": source, "type": etype, "time": rfc3339(when),
             "data": data}
    if rec.get("trace_id"):
        event["traceparent"] = f"00-{rec['trace_id']}-{rec.get('span_id') or '0' * 16}-01"
    return event


def map_records(records: Iterator[tuple[dict, dict, Any]], is_json: bool) -> NativeBatch:
    batch = NativeBatch()
    n = 0
    for n, (resource, scope, raw) in enumerate(records, start=1):
        i = n - 1
        if batch.reject_bad_shape(i, raw, type="otlp.log_record"):
            continue
        try:
            rec = _normalise_json_record(raw) if is_json else raw
            mapped = map_log_record(resource, scope, rec)
        except MappingError as exc:
            batch.reject(i, raw, exc.error, source=f"otlp://{resource.get('service.name') or 'unknown_service'}",
                         type="otlp.log_record")
            continue
        except (TypeError, ValueError, OverflowError) as exc:
            batch.reject(i, raw, {"path": "", "type": "value_error", "message": str(exc)[:500]},
                         type="otlp.log_record")
            continue
        if isinstance(mapped, Ignored):
            batch.ignored[mapped.reason] += 1
        else:
            batch.add(i, mapped)
    batch.records = n
    return batch
