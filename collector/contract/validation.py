"""Turn parsed items into validated, redacted storage rows plus precise per-event rejections.

Pure functions (no I/O): the HTTP API, the file ingester and the native adapters all call `validate_items`, so
every entry point applies the same contract, the same secret redaction and reports errors the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry import trace
from pydantic import ValidationError

from collector.contract.events import EVENT_MODELS, EVENT_TYPES, IDENTIFIER_KEYS, INT64_MAX, MAX_NESTING, EnvelopeBase
from collector.contract.redaction import has_candidate, redact_text, redact_value

tracer = trace.get_tracer("collector.contract.validation")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
COMMON_COLUMNS = ("team", "owner", "notebook_id", "run_id", "attempt", "kernel_id", "trigger", "environment")


@dataclass(slots=True)
class Rejection:
    index: int
    errors: list[dict[str, str]]
    payload: str  # the raw item, already redacted: dead letters never hold a secret
    source: str | None = None
    id: str | None = None
    type: str | None = None

    @property
    def reason(self) -> str:
        """A bounded label for metrics: the first error's kind."""
        return self.errors[0]["type"] if self.errors else "invalid"


@dataclass(slots=True)
class Validated:
    """Rows ready for the writer (column name -> value) and what was rejected, both keyed by input index."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    row_index: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    total: int = 0

    @property
    def secrets_redacted(self) -> int:
        return sum(1 for r in self.rows if r["redactions"])


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def safe_text(text: str, limit: int = 1000) -> str:
    """Any text a rejection carries out of the request (messages, ids, payloads): bounded, then redacted."""
    return redact_text(text[:limit])[0]


def payload_text(item: Any) -> str:
    """The rejected item as JSON text for the dead-letter row. An item JSON cannot hold as it is (nesting past
    orjson's 255 levels: a line may nest up to its parser's ~1,000; an int beyond 64 bits) is written cut to
    MAX_NESTING levels, deeper containers as "...", such numbers as text: `repr` of such an item overflowed the
    interpreter's stack and lost the whole request."""
    if isinstance(item, str):
        return item
    try:
        return orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return orjson.dumps(_cut(item, MAX_NESTING), option=orjson.OPT_NON_STR_KEYS).decode()


def _cut(value: Any, levels: int) -> Any:
    """`value` (at level 1) with containers deeper than `levels` levels replaced by "..." and ints beyond 64 bits by
    their text."""
    if isinstance(value, (dict, list, tuple)):
        if levels <= 0:
            return "..."
        if isinstance(value, dict):
            return {k if isinstance(k, str) else repr(k)[:256]: _cut(v, levels - 1) for k, v in value.items()}
        return [_cut(v, levels - 1) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)[:256]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)[:256]


def _reject(index: int, item: Any, errors: list[dict[str, str]]) -> Rejection:
    errors = [{"path": safe_text(e["path"], 256), "type": e["type"], "message": safe_text(e["message"])}
              for e in errors]
    payload = safe_text(payload_text(item), 65_536)
    if isinstance(item, dict):
        def _s(key: str) -> str | None:
            value = item.get(key)
            return safe_text(value, 256) if isinstance(value, str) else None

        return Rejection(index, errors, payload, _s("source"), _s("id"), _s("type"))
    return Rejection(index, errors, payload)


def shape_problem(item: Any, depth: int = 1) -> dict[str, str] | None:
    """What JSON storage and the recursive encoder/redactor cannot hold: nesting deeper than MAX_NESTING, an
    integer beyond 64 bits, a non-finite float (native mappers may produce them). One iterative walk that only
    stacks containers (events are shallow: this costs a few microseconds). `depth` is the level `item` sits at in
    its event (1: the event; 3: a value of `data`), so the generated fast path walks only free-form values."""
    if not isinstance(item, (dict, list, tuple)):
        return _scalar_problem(item)
    stack: list[tuple[Any, int]] = [(item, depth)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            return {"path": "", "type": "too_deep", "message": f"the item is nested deeper than {MAX_NESTING} levels"}
        for child in (value.values() if type(value) is dict else value):
            t = type(child)
            if t is str or t is bool or child is None:
                continue
            if t is dict or t is list:
                stack.append((child, depth + 1))
            elif t is int:
                if not -INT64_MAX - 1 <= child < 2**64:
                    return _scalar_problem(child)
            elif t is float:
                if child != child or child in (_INF, -_INF):
                    return _scalar_problem(child)
            elif isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1))
            elif (problem := _scalar_problem(child)) is not None:
                return problem
    return None


def _scalar_problem(value: Any) -> dict[str, str] | None:
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value < 2**64:
        return {"path": "", "type": "int_too_large", "message": "an integer is beyond the 64-bit range"}
    if isinstance(value, float) and (value != value or value in (_INF, -_INF)):
        return {"path": "", "type": "finite_number", "message": "a number is NaN or infinite"}
    return None


_INF = float("inf")


def _identifier_problem(ev: EnvelopeBase) -> dict[str, str] | None:
    """Identifiers are stored as sent (they must join, so the redactor never rewrites them) and become label
    values: one holding a control character or a credential is refused instead. One prefilter over all of an
    event's identifiers decides the common case; only a candidate is looked at field by field."""
    fields = ev.data.__dict__
    extra = ev.data.__pydantic_extra__ or {}
    values = [ev.source, ev.id]
    keys = IDENTIFIER_KEYS.intersection(ev.data.__pydantic_fields_set__)
    for k in keys:
        v = fields[k] if k in fields else extra.get(k)
        if type(v) is str:
            values.append(v)
    joined = " ".join(values)
    if not _CONTROL.search(joined) and not has_candidate(joined):
        return None
    named = [("source", ev.source), ("id", ev.id)] + [
        (f"data.{k}", fields[k] if k in fields else extra.get(k)) for k in sorted(keys)]
    for path, value in named:
        if type(value) is not str:
            continue
        if _CONTROL.search(value):
            return {"path": path, "type": "control_character",
                    "message": "identifiers may not contain control characters"}
        kinds = redact_text(value)[1]
        if kinds:
            return {"path": path, "type": "secret_in_identifier",
                    "message": f"this identifier holds a credential ({kinds[0]}); identifiers are stored as sent, "
                               "so it is refused rather than redacted"}
    return None


def check_item(index: int, item: Any) -> EnvelopeBase | Rejection:
    """One raw item -> its validated event model, or a Rejection naming every failing field path."""
    if not isinstance(item, dict):
        return _reject(index, item, [{"path": "", "type": "object_type", "message": "an event must be a JSON object"}])
    problem = shape_problem(item)
    if problem is not None:
        return _reject(index, item, [problem])
    etype = item.get("type")
    model = EVENT_MODELS.get(etype) if isinstance(etype, str) else None
    if model is None:
        if etype is None:
            err = {"path": "type", "type": "missing", "message": "Field required"}
        else:
            err = {"path": "type", "type": "unknown_type",
                   "message": f"unknown event type {str(etype)[:64]!r}; expected one of: {', '.join(EVENT_TYPES)}"}
        return _reject(index, item, [err])
    try:
        ev = model.model_validate(item)
    except ValidationError as exc:
        errors = [{"path": _path(e["loc"]), "type": e["type"], "message": e["msg"]}
                  for e in exc.errors(include_url=False, include_input=False)]
        return _reject(index, item, errors)
    problem = _identifier_problem(ev)
    if problem is not None:
        return _reject(index, item, [problem])
    return ev


def to_row(ev: EnvelopeBase) -> dict[str, Any]:
    """A validated event -> its storage row, with every secret in its text replaced by `[REDACTED:<kind>]`."""
    data = ev.data.model_dump(mode="json", exclude_none=True)
    data, kinds = redact_value(data, skip_keys=IDENTIFIER_KEYS)
    subject = ev.subject
    if subject:
        subject, subject_kinds = redact_text(subject)
        kinds = kinds + subject_kinds
    row: dict[str, Any] = {
        "source": ev.source,
        "id": ev.id,
        "type": ev.type,
        "time": ev.time,
        "subject": subject,
        **{c: data.get(c) for c in COMMON_COLUMNS},
        "data": orjson.dumps(data).decode(),
        "redactions": len(kinds),
        "secret_kinds": sorted(set(kinds)),
    }
    if row["attempt"] is None and ev.type.startswith("notebook.run."):
        row["attempt"] = 1
    return row


def validate_item(index: int, item: Any) -> dict[str, Any] | Rejection:
    res = check_item(index, item)
    return res if isinstance(res, Rejection) else to_row(res)


def validate_items(items: list[Any | Rejection], offset: int = 0) -> Validated:
    """Validate then redact a batch; the two phases are separate spans in a trace."""
    out = Validated(total=len(items))
    valid: list[EnvelopeBase] = []
    with tracer.start_as_current_span("ingest.validate") as span:
        for i, item in enumerate(items):
            res = item if isinstance(item, Rejection) else check_item(i + offset, item)
            if isinstance(res, Rejection):
                if res is item:
                    res.index += offset
                out.rejections.append(res)
            else:
                valid.append(res)
                out.row_index.append(i + offset)
        span.set_attribute("events.valid", len(valid))
        span.set_attribute("events.rejected", len(out.rejections))
    with tracer.start_as_current_span("ingest.redact") as span:
        out.rows = [to_row(ev) for ev in valid]
        span.set_attribute("events.redacted", out.secrets_redacted)
    return out
