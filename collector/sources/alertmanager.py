"""Alertmanager webhook payloads -> alert-instance rows (SLI M13). Pure: the route is collector/api/alertmanager.py
and the table's SQL (upsert, the M13 page count) is collector/storage/alerts.py.

alerts/alertmanager.yml sends every page (the on-call and security receivers) here as well as to the humans. An
alert instance is (fingerprint, startsAt): Alertmanager repeats a firing alert every `repeat_interval`, resends it
with each group update and sends it once more when resolved; all of those are one row, whose `notifications`
counts the deliveries.

Payload (Alertmanager webhook_config, version "4"):
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any, Literal

import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.contract.events import TIME_MAX, TIME_MIN
from collector.contract.redaction import redact_text, redact_value

MAX_ALERTS = 10_000
_ZERO_TIME = re.compile(r"^0001-01-01T00:00:00")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.ASCII)


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Go's format) -> aware UTC datetime (microseconds); Go's zero time -> None."""
    if value is None or value == "" or _ZERO_TIME.match(value):
        return None
    m = _RFC3339.match(value)
    if not m:
        raise ValueError("not an RFC 3339 time")
    frac = (m.group(2) or ".0")[1:7].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        dt = datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}").astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ValueError("not an RFC 3339 time in range") from None
    if not TIME_MIN <= dt < TIME_MAX:
        raise ValueError("time outside 1970-01-01 .. 2200-01-01")
    return dt


class AMAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: str
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None

    @field_validator("labels")
    @classmethod
    def _alertname(cls, v: dict[str, str]) -> dict[str, str]:
        if not v.get("alertname"):
            raise ValueError("an alert needs the label alertname")
        return v

    @field_validator("startsAt")
    @classmethod
    def _starts(cls, v: str) -> str:
        if parse_time(v) is None:
            raise ValueError("startsAt must be an RFC 3339 time")
        return v

    @field_validator("endsAt")
    @classmethod
    def _ends(cls, v: str | None) -> str | None:
        parse_time(v)
        return v

    def key(self) -> str:
        """Alertmanager's fingerprint, or (older senders) a stable hash of the labels."""
        if self.fingerprint:
            return self.fingerprint
        return hashlib.sha256(orjson.dumps(self.labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class AMWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"example": {
        "version": "4", "groupKey": '{}/{severity="page"}:{alertname="ScheduledRunSuccessBudgetBurn"}',
        "truncatedAlerts": 0, "status": "firing", "receiver": "oncall",
        "groupLabels": {"alertname": "ScheduledRunSuccessBudgetBurn"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing", "fingerprint": "5e1a0c2f7d3b9a41", "startsAt": "2026-11-21T10:03:00.123Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
            "labels": {"alertname": "ScheduledRunSuccessBudgetBurn", "severity": "page", "team": "data",
                       "sloth_service": "notebooks", "sloth_slo": "scheduled-run-success"},
            "annotations": {"summary": "SLO scheduled-run-success (team data) is burning its error budget too fast",
                            "runbook_url": "https://.../alerts/runbooks/slo-scheduled-run-success.md"},
        }],
    }})

    version: Literal["4"] = Field(description="Alertmanager webhook payload version; only 4 exists")
    groupKey: str | None = None
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str | None = None
    alerts: list[AMAlert] = Field(max_length=MAX_ALERTS)


_SCHEMA = pa.schema([
    ("fingerprint", pa.string()), ("starts_at", pa.timestamp("us", tz="UTC")), ("alertname", pa.string()),
    ("severity", pa.string()), ("category", pa.string()), ("team", pa.string()), ("notebook", pa.string()),
    ("owner", pa.string()), ("slo", pa.string()), ("service", pa.string()), ("status", pa.string()),
    ("ends_at", pa.timestamp("us", tz="UTC")), ("receiver", pa.string()), ("runbook_url", pa.string()),
    ("summary", pa.string()), ("generator_url", pa.string()), ("labels", pa.string()), ("annotations", pa.string()),
    ("received_at", pa.timestamp("us", tz="UTC")),
])


def alert_rows(payload: AMWebhook, received_at: datetime) -> pa.Table:
    """One row per alert instance in the payload (the last occurrence wins when a payload repeats one)."""
    rows: dict[tuple[str, datetime], dict[str, Any]] = {}
    receiver = _text(payload.receiver, 256)
    for a in payload.alerts:
        labels = _redacted_map(a.labels)
        annotations = _redacted_map(a.annotations)
        starts = parse_time(a.startsAt)
        assert starts is not None
        fingerprint = _text(a.key(), 128)
        rows[(fingerprint, starts)] = {
            "fingerprint": fingerprint, "starts_at": starts, "alertname": labels["alertname"],
            "severity": labels.get("severity") or labels.get("sloth_severity"),
            "category": labels.get("category"), "team": labels.get("team"), "notebook": labels.get("notebook"),
            "owner": labels.get("owner"), "slo": labels.get("sloth_slo"), "service": labels.get("sloth_service"),
            "status": a.status, "ends_at": parse_time(a.endsAt) if a.status == "resolved" else None,
            "receiver": receiver, "runbook_url": annotations.get("runbook_url"),
            "summary": annotations.get("summary"),
            "generator_url": _text(a.generatorURL, 4096) if a.generatorURL is not None else None,
            "labels": orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode(),
            "annotations": orjson.dumps(annotations, option=orjson.OPT_SORT_KEYS).decode(),
            "received_at": received_at,
        }
    return pa.Table.from_pylist(list(rows.values()), schema=_SCHEMA)


def _text(value: str, limit: int) -> str:
    """Every string stored from a payload passes the redactor (a generatorURL may carry credentials)."""
    return redact_text(value[:limit])[0]


def _redacted_map(values: dict[str, str]) -> dict[str, str]:
    """Labels or annotations with keys and values redacted (values also by the key that names them)."""
    redacted, _ = redact_value(values)
    return {_text(k, 256): v for k, v in redacted.items()}
