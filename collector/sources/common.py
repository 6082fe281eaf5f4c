"""What the native adapters (Jupyter Events, OpenLineage, OTLP logs, Alertmanager) share: mapping errors,
deterministic ids, and batches that remember which input record each event came from. Pure: no HTTP, no storage;
the routes in collector/api/ hand a mapped batch to the one ingest path (collector/ingest/submit.py)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
import pyarrow as pa

from collector.contract.redaction import redact_text
from collector.contract.validation import Rejection
from collector.contract.vectorized import BulkResult, validate_json_items


class MappingError(ValueError):
    """A record that claims to be ours but cannot be mapped; becomes a Rejection for that record only."""

    def __init__(self, path: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.error = {"path": path, "type": kind, "message": message}


@dataclass(slots=True)
class Ignored:
    reason: str


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def record_id(prefix: str, record: Any) -> str:
    """A deterministic event id from a record's content: the same record sent twice gets the same id."""
    digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()
    return f"{prefix}-{digest[:40]}"


def native_rejection(index: int, raw: Any, error: dict[str, str] | list[dict[str, str]], *,
                     source: str | None = None, id: str | None = None, type: str | None = None) -> Rejection:
    """A mapping failure as a Rejection: the raw record (redacted, capped) is what the dead letter keeps."""
    errors = error if isinstance(error, list) else [error]
    if isinstance(raw, (bytes, bytearray)):
        payload = bytes(raw).decode("utf-8", "replace")
    elif isinstance(raw, str):
        payload = raw
    else:
        payload = orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    return Rejection(index, errors, redact_text(payload[:65_536])[0],
                     redact_text(source[:256])[0] if source else None,
                     redact_text(id[:256])[0] if id else None, type)


@dataclass
class NativeBatch:
    """Events mapped from native records, each remembering which input record it came from."""

    events: list[dict[str, Any] | Rejection] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    records: int = 0

    def add(self, record_index: int, item: dict[str, Any] | Rejection) -> None:
        if isinstance(item, Rejection):
            item.index = len(self.events)
        self.events.append(item)
        self.origin.append(record_index)

    def reject(self, record_index: int, raw: Any, error: dict[str, str] | list[dict[str, str]], **kw: Any) -> None:
        self.add(record_index, native_rejection(len(self.events), raw, error, **kw))

    def validate(self) -> BulkResult:
        """The one validation path on the mapped events, with indexes given back in input-record terms."""
        validated = validate_json_items(self.events)
        validated.row_index = pa.array([self.origin[i] for i in validated.row_index.to_pylist()], pa.int64())
        for r in validated.rejections:
            r.index = self.origin[r.index]
        validated.total = self.records
        return validated
