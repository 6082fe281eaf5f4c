"""The event contract: a CloudEvents 1.0 (structured mode) envelope with one typed `data` model per event type.

These pydantic models are the single source of truth for what the collector accepts: the HTTP API validates
with them, `GET /v1/schema` and docs/events.md are generated from them, and the bulk path's vectorised checks
(collector/contract/vectorized/) are derived from the same field metadata so both paths agree.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    field_validator,
)

# How far in the future an event time may be before we call it a clock bug rather than an event.
MAX_FUTURE_SKEW = timedelta(hours=24)

# Bounds of every number, duration and time the contract accepts: what storage (DuckDB TIMESTAMPTZ read back
# into Python, BIGINT/INTEGER columns) and the engines (timedelta, INTERVAL arithmetic, cron enumeration) handle
# without overflow. A value outside is rejected per event with its field path (docs/security.md, "Limits").
TIME_MIN = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIME_MAX = datetime(2200, 1, 1, tzinfo=timezone.utc)
MAX_SECONDS = 1e9  # ~31.7 years: any duration, CPU time, latency or SLA
MAX_GRACE_SECONDS = 31 * 86400.0  # a missed-run grace longer than the detection lookback could never decide
INT64_MAX = 2**63 - 1
INT32 = (-(2**31), 2**31 - 1)
# Most levels of JSON nesting in one item (the envelope is level 1). Deeper items are rejected alone: the JSON
# encoder and the redactor recurse, and no producer needs more.
MAX_NESTING = 64

Id = Annotated[str, Field(min_length=1, max_length=256)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(max_length=65_536)]
Hash = Annotated[str, Field(min_length=1, max_length=256)]
NonNegFloat = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
NonNegInt = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
Int32 = Annotated[StrictInt, Field(ge=INT32[0], le=INT32[1])]
BoundedTime = Annotated[AwareDatetime, Field(
    ge=TIME_MIN, lt=TIME_MAX, description="RFC 3339 with an offset, between 1970-01-01 and 2200-01-01 (UTC)")]

Trigger = Literal["scheduled", "manual", "api", "ci"]
Environment = Literal["prod", "staging", "dev"]


class CommonData(BaseModel):
    """Fields any event's `data` may carry; unknown extra fields are kept (stored in the raw JSON)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    team: Name | None = None
    owner: Name | None = None
    notebook_id: Id | None = None
    notebook_path: Annotated[str, Field(max_length=4096)] | None = None
    run_id: Id | None = None
    attempt: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] | None = None
    kernel_id: Id | None = None
    session_id: Id | None = None
    trigger: Trigger | None = None
    environment: Environment | None = None
    tags: dict[str, Any] | None = None


# ---- kernel lifecycle -------------------------------------------------------------------------------------


class KernelStarted(CommonData):
    kernel_id: Id
    kernel_name: Name | None = None


class KernelRestarted(CommonData):
    kernel_id: Id
    reason: Literal["user", "crash", "oom"]


class KernelDied(CommonData):
    kernel_id: Id
    reason: Literal["crash", "oom", "signal", "unknown"]
    exit_code: Int32 | None = None
    signal: Name | None = None
    traceback: Text | None = None
    msg: Text | None = None


class KernelShutdown(CommonData):
    kernel_id: Id
    reason: Literal["user", "culled", "server_stop"]


# ---- runs ---------------------------------------------------------------------------------------------------


class RunLifecycle(CommonData):
    run_id: Id
    notebook_id: Id
    scheduled_for: BoundedTime | None = None
    parameters: dict[str, Any] | None = None


class CellTiming(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: Annotated[StrictInt, Field(ge=0, le=INT32[1])]
    duration_seconds: NonNegFloat
    status: Literal["ok", "error", "skipped"]


class RunTerminal(RunLifecycle):
    duration_seconds: NonNegFloat | None = None
    error_type: Annotated[str, Field(max_length=256)] | None = None
    error_message: Text | None = None
    traceback: Text | None = None
    cells: Annotated[list[CellTiming], Field(max_length=10_000)] | None = None
    output_hash: Hash | None = None
    input_hash: Hash | None = None
    parameters_hash: Hash | None = None
    env_hash: Hash | None = None
    cpu_seconds: NonNegFloat | None = None
    max_memory_bytes: NonNegInt | None = None


# ---- schedules, quality, artifacts --------------------------------------------------------------------------


class ScheduleRegistered(CommonData):
    notebook_id: Id
    cron: Annotated[str, Field(min_length=1, max_length=256)]
    timezone: Annotated[str, Field(max_length=64)] | None = None
    grace_seconds: Annotated[float, Field(ge=0, le=MAX_GRACE_SECONDS, allow_inf_nan=False)] | None = None
    # a due slot is good when its final attempt succeeded within this long after the slot (default: configured)
    sla_seconds: Annotated[float, Field(gt=0, le=MAX_GRACE_SECONDS, allow_inf_nan=False)] | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        check_cron(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown IANA time zone") from None
        return v


CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
# A cron that cannot fire within this span never fires (Feb 30) or fires too rarely to watch (8 years covers
# every leap day).
CRON_HORIZON_YEARS = 8


def check_cron(v: str) -> None:
    """A standard 5-field cron (or a macro) that fires: the missed-run detector enumerates its slots."""
    problem = _cron_problem(v)
    if problem:
        raise ValueError(problem)


@functools.lru_cache(maxsize=4096)
def _cron_problem(v: str) -> str | None:
    """Cached: schedules repeat their cron, and finding the next slot costs milliseconds."""
    try:
        _check_cron(v)
    except ValueError as exc:
        return str(exc)
    return None


def _check_cron(v: str) -> None:
    fields = v.split()
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].lower() in CRON_MACROS)):
        raise ValueError("not a cron expression: use 5 fields (minute hour day month weekday) or a macro "
                         "such as @daily")
    if not croniter.is_valid(v):
        raise ValueError("not a valid cron expression")
    try:
        croniter(v, datetime(2024, 1, 1, tzinfo=timezone.utc),
                 max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
    except (CroniterBadDateError, ValueError, OverflowError):
        raise ValueError(f"the cron expression never fires (no slot within {CRON_HORIZON_YEARS} years)") from None


class ReproducibilityChecked(CommonData):
    notebook_id: Id
    result: Literal["match", "mismatch"]
    baseline_run_id: Id | None = None


class QualityChecked(CommonData):
    notebook_id: Id
    check: Name
    result: Literal["pass", "fail"]
    message: Text | None = None


class ArtifactPublished(CommonData):
    notebook_id: Id
    artifact: Annotated[str, Field(min_length=1, max_length=4096)]
    sla_seconds: Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)] | None = None
    size_bytes: NonNegInt | None = None
    # a stale critical artifact pages its team; default: the notebook's registry `critical` flag
    critical: StrictBool | None = None


class ArtifactRetired(CommonData):
    """The artifact is no longer produced: freshness stops tracking it (a later publication tracks it again)."""

    notebook_id: Id
    artifact: Annotated[str, Field(min_length=1, max_length=4096)]


# ---- security ------------------------------------------------------------------------------------------------


class SecretDetected(CommonData):
    notebook_id: Id
    detector: Name
    location: Annotated[str, Field(max_length=4096)] | None = None


class AccessDenied(CommonData):
    principal: Name
    resource: Annotated[str, Field(min_length=1, max_length=4096)]
    action: Name | None = None


# ---- registry ------------------------------------------------------------------------------------------------


class NotebookRegistered(CommonData):
    """A notebook in the registry; one without an owner, a team or tags is accepted and counts as not searchable (M9)."""

    notebook_id: Id
    owner: Name | None = None
    team: Name | None = None
    tags: dict[str, Any] | None = None
    critical: StrictBool | None = None
    has_tests: StrictBool | None = None
    created_at: BoundedTime | None = None


class NotebookUpdated(CommonData):
    """A partial update: only the fields present change."""

    notebook_id: Id
    critical: StrictBool | None = None
    has_tests: StrictBool | None = None
    created_at: BoundedTime | None = None


class NotebookPromoted(CommonData):
    notebook_id: Id


class PlatformProbe(CommonData):
    target: Name
    ok: StrictBool
    latency_seconds: NonNegFloat | None = None


# type name -> data model; the order is the order of docs/events.md.
DATA_MODELS: dict[str, type[CommonData]] = {
    "notebook.kernel.started": KernelStarted,
    "notebook.kernel.restarted": KernelRestarted,
    "notebook.kernel.died": KernelDied,
    "notebook.kernel.shutdown": KernelShutdown,
    "notebook.run.queued": RunLifecycle,
    "notebook.run.started": RunLifecycle,
    "notebook.run.succeeded": RunTerminal,
    "notebook.run.failed": RunTerminal,
    "notebook.run.timed_out": RunTerminal,
    "notebook.run.cancelled": RunTerminal,
    "notebook.schedule.registered": ScheduleRegistered,
    "notebook.reproducibility.checked": ReproducibilityChecked,
    "notebook.quality.checked": QualityChecked,
    "notebook.artifact.published": ArtifactPublished,
    "notebook.artifact.retired": ArtifactRetired,
    "notebook.security.secret_detected": SecretDetected,
    "notebook.security.access_denied": AccessDenied,
    "notebook.registered": NotebookRegistered,
    "notebook.updated": NotebookUpdated,
    "notebook.promoted": NotebookPromoted,
    "platform.probe": PlatformProbe,
}
EVENT_TYPES: tuple[str, ...] = tuple(DATA_MODELS)
TERMINAL_RUN_TYPES: dict[str, str] = {
    "notebook.run.succeeded": "succeeded",
    "notebook.run.failed": "failed",
    "notebook.run.timed_out": "timed_out",
    "notebook.run.cancelled": "cancelled",
}

# Data keys that hold identifiers or digests: never rewritten by the secret scanner (a run id that happens to
# look like a token must still join), everything else textual is scanned.
IDENTIFIER_KEYS = frozenset(
    {
        "team", "owner", "notebook_id", "run_id", "kernel_id", "session_id", "trigger", "environment",
        "output_hash", "input_hash", "parameters_hash", "env_hash", "baseline_run_id", "cron", "timezone",
    }
)


class EnvelopeBase(BaseModel):
    """CloudEvents 1.0 structured-mode attributes. Extension attributes are accepted and not stored."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: Id
    source: Annotated[str, Field(min_length=1, max_length=512)]
    type: str
    time: Annotated[AwareDatetime, Field(ge=TIME_MIN)]
    subject: Annotated[str, Field(max_length=1024)] | None = None
    datacontenttype: Literal["application/json"] | None = None

    @field_validator("time")
    @classmethod
    def _not_in_future(cls, v: datetime) -> datetime:
        if v - datetime.now(timezone.utc) > MAX_FUTURE_SKEW:
            raise ValueError("event time is more than 24h in the future")
        return v.astimezone(timezone.utc)


def _event_model(type_name: str, data_model: type[CommonData]) -> type[EnvelopeBase]:
    cls_name = "".join(p.capitalize() for p in type_name.replace("_", ".").split(".")) + "Event"
    return type(
        cls_name,
        (EnvelopeBase,),
        {
            "__annotations__": {"type": Literal[type_name], "data": data_model},  # type: ignore[valid-type]
            "__doc__": f"A `{type_name}` event.",
            "__module__": __name__,
        },
    )


EVENT_MODELS: dict[str, type[EnvelopeBase]] = {t: _event_model(t, m) for t, m in DATA_MODELS.items()}

AnyEvent = Annotated[Union[tuple(EVENT_MODELS.values())], Field(discriminator="type")]  # type: ignore[valid-type]
ANY_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)


@functools.lru_cache(maxsize=1)
def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every event type, keyed by type (served at GET /v1/schema, which needs no token: built once,
    since generating them costs a hundred milliseconds of CPU; the result is shared, callers must not mutate it)."""
    return {t: m.model_json_schema() for t, m in EVENT_MODELS.items()}
