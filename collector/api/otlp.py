"""`POST /v1/logs`: OTLP/HTTP logs (mapping in collector/sources/otlp.py); answers in the OTLP shapes."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from collector.api.auth import Principal, require_scope
from collector.api.deps import get_settings
from collector.api.errors import http_error
from collector.api.native import read_native_body, submit_native
from collector.contract.body import BodyError
from collector.settings import Settings
from collector.sources.otlp import JSON, PROTOBUF, map_records, records_from_json, records_from_protobuf

router = APIRouter(tags=["ingest"])



def _export_response(as_json: bool, rejected: int, message: str) -> Response:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    resp = ExportLogsServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_log_records = rejected
        resp.partial_success.error_message = message
    if as_json:
        return Response(json_format.MessageToJson(resp, indent=None), media_type=JSON)
    return Response(resp.SerializeToString(), media_type=PROTOBUF)


def _status_response(as_json: bool, http_status: int, message: str, headers: dict[str, str] | None = None
                     ) -> Response:
    from google.protobuf import json_format
    from google.rpc import code_pb2, status_pb2

    code = {400: code_pb2.INVALID_ARGUMENT, 413: code_pb2.RESOURCE_EXHAUSTED, 415: code_pb2.INVALID_ARGUMENT,
            429: code_pb2.RESOURCE_EXHAUSTED, 503: code_pb2.UNAVAILABLE, 401: code_pb2.UNAUTHENTICATED,
            403: code_pb2.PERMISSION_DENIED}.get(http_status, code_pb2.UNKNOWN)
    st = status_pb2.Status(code=code, message=message)
    if as_json:
        return Response(json_format.MessageToJson(st, indent=None), status_code=http_status, media_type=JSON,
                        headers=headers)
    return Response(st.SerializeToString(), status_code=http_status, media_type=PROTOBUF, headers=headers)


@router.post(
    "/v1/logs",
    summary="OTLP/HTTP logs (protobuf or JSON)",
    description="An `ExportLogsServiceRequest`. Log records whose event_name is one of our types (or that carry "
                "`cicd.pipeline.*` attributes) become events; others are counted and ignored. Answers per the "
                "OTLP spec, with `partial_success.rejected_log_records` for records that broke the contract.",
    openapi_extra={"requestBody": {"required": True, "content": {PROTOBUF: {"schema": {"type": "string",
                   "format": "binary"}}, JSON: {"schema": {"type": "object"}}}}},
)
async def post_logs(request: Request, principal: Principal = Depends(require_scope("ingest")),
                    settings: Settings = Depends(get_settings)) -> Response:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    as_json = ctype == JSON
    if ctype not in (PROTOBUF, JSON):
        return _status_response(False, 415, f"unsupported Content-Type {ctype!r}; use {PROTOBUF} or {JSON}")
    try:
        raw = await read_native_body(request)
        records = await run_in_threadpool(records_from_json if as_json else records_from_protobuf, raw)
        batch = await run_in_threadpool(map_records, records, as_json)
        if batch.records > settings.max_events_per_request:
            raise BodyError(f"{batch.records} log records in one request; the limit is "
                            f"{settings.max_events_per_request}", "too_large")
        body = (await submit_native(request, batch, "otlp", minimal=True)).body  # only rejections are read
    except Exception as exc:  # noqa: BLE001 - the domain errors become a google.rpc.Status, others propagate
        err = http_error(exc)
        if err is None:
            raise
        return _status_response(as_json, err.status, err.detail, headers=err.headers)
    rejected = [r for r in body.get("results", []) if r.get("status") == "rejected"]
    message = ""
    if rejected:
        reasons = Counter()
        for r in rejected:
            for e in (r.get("errors") or [])[:1]:
                reasons[f"{e.get('path')}: {e.get('message')}"] += 1
        message = f"{len(rejected)} log record(s) rejected (dead-lettered): " + "; ".join(
            f"{reason} (x{n})" for reason, n in reasons.most_common(5))
    return _export_response(as_json, len(rejected), message[:2000])
