"""Jupyter Events JSON -> our events (the route is collector/api/jupyter.py: `POST /v1/jupyter/events`).

Accepts the records of the jupyter_events event log (the capsule `__timestamp__`, `__schema__`,
`__schema_version__`, `__metadata_version__` with the schema's fields at the top level), as a JSON object, a JSON
array or NDJSON (an event-log file as written by `c.EventLogger.handlers`). Our Jupyter server extension
(collector/emitters/jupyter_extension) posts the same records, enriched with an `observatory` object (team, owner,
notebook path, the server's name) and with a `reason` on restarts and shutdowns it attributed (crash, culled,
server_stop).

Mapping (schema ids are in reference/events.md):

| record | event |
|---|---|
| `kernel_actions/v1` start, success | `notebook.kernel.started` |
| `kernel_actions/v1` restart, success | `notebook.kernel.restarted`, reason `user` unless the record says `crash`/`oom` |
| `kernel_actions/v1` restart, error, reason crash/oom | `notebook.kernel.restarted` (the crash happened; the restart failed) |
| `kernel_actions/v1` shutdown, success | `notebook.kernel.shutdown`, reason `user` unless `culled`/`server_stop` |
| our `kernel_lifecycle/v1` died | `notebook.kernel.died` with reason, exit_code, signal |
| anything else (interrupt, errors, contents_service, gateway_client, JupyterHub server-action …) | ignored, counted |

The event id is derived from the record's bytes (canonical JSON), so a re-shipped log line is stored once.
A record that cannot be mapped (no schema, a bad timestamp, no kernel id) is rejected alone and dead-lettered.

What the native adapters share (batches, rejections) is in collector/sources/common.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from collector.contract.validation import Rejection
from collector.sources.common import Ignored, MappingError, NativeBatch, record_id, rfc3339

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
# Our own schema, registered on the server's EventLogger by the extension (so a shipped event log carries it too).
KERNEL_LIFECYCLE = "https://events.notebook-observatory.dev/jupyter/kernel_lifecycle/v1"
# Enrichment keys honoured from the record's `observatory` object or, for event logs enriched by a modifier of
# the platform's own, from the record's top level.
ENRICH_KEYS = ("team", "owner", "notebook_id", "notebook_path", "session_id", "environment", "tags")
RESTART_REASONS = ("user", "crash", "oom")
SHUTDOWN_REASONS = ("user", "culled", "server_stop")
DIED_REASONS = ("crash", "oom", "signal", "unknown")
_OFFSET_Z = re.compile(r"[+-][0-9]{2}:?[0-9]{2}$")


def parse_jupyter_timestamp(value: Any) -> datetime:
    """`__timestamp__` -> aware UTC datetime. jupyter_events writes `isoformat() + "Z"` on an aware datetime,
    giving `2025-01-01T12:00:00.123456+00:00Z` (an offset *and* a Z); older writers give a plain `...Z`."""
    if not isinstance(value, str) or not value.strip():
        raise MappingError("__timestamp__", "missing", "a Jupyter event needs a `__timestamp__` string")
    s = value.strip()
    if s[-1:] in ("Z", "z"):
        body = s[:-1]
        s = body if _OFFSET_Z.search(body) else body + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise MappingError("__timestamp__", "datetime_parsing", "not an ISO 8601 timestamp") from None
    if dt.tzinfo is None:
        raise MappingError("__timestamp__", "timezone_aware", "timestamp has no UTC offset")
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:
        raise MappingError("__timestamp__", "datetime_range", "timestamp out of range") from None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _enrichment(record: dict[str, Any]) -> dict[str, Any]:
    extra = record.get("observatory")
    extra = extra if isinstance(extra, dict) else {}
    out: dict[str, Any] = {}
    for key in ENRICH_KEYS:
        value = extra.get(key, record.get(key))
        if value is not None and value != "":
            out[key] = value
    return out


def map_jupyter_record(record: Any, server: str) -> dict[str, Any] | Ignored:
    """One Jupyter Events record -> one CloudEvents dict (not yet validated), or Ignored; MappingError if broken."""
    if not isinstance(record, dict):
        raise MappingError("", "object_type", "a Jupyter event must be a JSON object")
    schema = record.get("__schema__")
    if not isinstance(schema, str) or not schema:
        raise MappingError("__schema__", "missing", "a Jupyter event needs a `__schema__` (the schema $id)")
    when = parse_jupyter_timestamp(record.get("__timestamp__"))
    extra = record.get("observatory") if isinstance(record.get("observatory"), dict) else {}
    server = str(extra.get("server") or server or "default")
    schema_base = schema.rstrip("/")

    if schema_base == KERNEL_ACTIONS:
        action, status = record.get("action"), record.get("status", "success")
        if action not in ("start", "restart", "shutdown", "interrupt"):
            raise MappingError("action", "enum", "unknown kernel action; expected start, restart, shutdown or "
                                                 "interrupt")
        reason = record.get("reason")
        if action == "interrupt":
            return Ignored("kernel_interrupt")
        if status == "error" and not (action == "restart" and reason in ("crash", "oom")):
            return Ignored(f"kernel_{action}_error")
        if action == "restart" and reason in ("crash", "oom") and _int(record.get("restart_attempt"), 1) > 1:
            # The restarter retrying after a failed restart: the crash was counted on its first attempt.
            return Ignored("crash_restart_retry")
        if action == "start":
            etype, data = "notebook.kernel.started", {}
        elif action == "restart":
            etype, data = "notebook.kernel.restarted", {"reason": reason if reason in RESTART_REASONS else "user"}
        else:
            etype, data = "notebook.kernel.shutdown", {"reason": reason if reason in SHUTDOWN_REASONS else "user"}
    elif schema_base == KERNEL_LIFECYCLE:
        action = record.get("action")
        if action != "died":
            return Ignored("lifecycle_other")  # a bounded reason: it becomes a label value
        reason = record.get("reason")
        if reason not in DIED_REASONS:
            reason = "signal" if record.get("signal") else "unknown"
        etype, data = "notebook.kernel.died", {"reason": reason}
        if record.get("msg"):
            data["msg"] = record["msg"]
    else:
        return Ignored("schema_not_mapped")

    kernel_id = record.get("kernel_id")
    if not isinstance(kernel_id, str) or not kernel_id:
        raise MappingError("kernel_id", "missing", f"`{record.get('action')}` needs a `kernel_id`")
    data["kernel_id"] = kernel_id
    if isinstance(record.get("kernel_name"), str) and record["kernel_name"]:
        data["kernel_name"] = record["kernel_name"]
    for key in ("exit_code", "signal"):
        if record.get(key) is not None:
            data[key] = record[key]
    data.update(_enrichment(record))
    return {
        "specversion": "1.0",
        "id": record_id("je", record),
        "source": f"jupyter://{server}",
        "type": etype,
        "time": rfc3339(when),
        "subject": data.get("notebook_path"),
        "data": data,
    }


def map_records(items: list[Any], server: str) -> NativeBatch:
    batch = NativeBatch(records=len(items))
    for i, item in enumerate(items):
        if isinstance(item, Rejection):  # an unreadable NDJSON line
            batch.add(i, item)
            continue
        if batch.reject_bad_shape(i, item, source=f"jupyter://{server}"):
            continue
        try:
            mapped = map_jupyter_record(item, server)
        except MappingError as exc:
            batch.reject(i, item, exc.error, source=f"jupyter://{server}",
                         type=item.get("__schema__") if isinstance(item, dict) else None)
            continue
        if isinstance(mapped, Ignored):
            batch.ignored[mapped.reason] += 1
        else:
            batch.add(i, mapped)
    return batch
