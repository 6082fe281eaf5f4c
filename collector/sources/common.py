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

from collector.contract.validation import Rejection, payload_text, safe_text, shape_problem
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
    """A mapping failure as a Rejection: the raw record (redacted, capped) is what the dead letter keeps, and
    every text it carries (messages, source, id, type) passes the redactor like any other rejection's."""
    errors = error if isinstance(error, list) else [error]
    errors = [{"path": safe_text(e["path"], 256), "type": e["type"], "message": safe_text(e["message"])}
              for e in errors]
    payload = bytes(raw).decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else payload_text(raw)
    return Rejection(index, errors, safe_text(payload, 65_536), safe_text(source, 256) if source else None,
                     safe_text(id, 256) if id else None, safe_text(type, 128) if type else None)


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

    def reject_bad_shape(self, record_index: int, raw: Any, **kw: Any) -> bool:
        """Reject a record nested too deep (or holding numbers JSON cannot) before any mapper recurses into it
        or hashes it; True when rejected."""
        problem = shape_problem(raw)
        if problem is not None:
            self.reject(record_index, raw, problem, **kw)
        return problem is not None

    def validate(self) -> BulkResult:
        """The one validation path on the mapped events, with indexes given back in input-record terms."""
        validated = validate_json_items(self.events)
        validated.row_index = pa.array([self.origin[i] for i in validated.row_index.to_pylist()], pa.int64())
        for r in validated.rejections:
            r.index = self.origin[r.index]
        validated.total = self.records
        return validated
