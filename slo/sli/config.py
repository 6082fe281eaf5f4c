"""What an SLI computation is asked: settings, windows, SLI ids and the query object.

Parsing lives here, apart from the SQL, so that the API, the CLI and the gauges validate a request the same way
before anything touches the database (a malformed window is a 400, never an absent SLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from slo.sli import sql as Q

LEVELS = ("platform", "team", "notebook", "trigger")
DEFAULT_LEVELS = ("platform", "team", "trigger")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
NAME_TO_ID = {name: sid for sid, (name, _, _) in Q.SLIS.items()}
PER_NOTEBOOK = {"M1", "M2", "M3", "M4", "M5", "M7", "M8", "M11", "M12"}


class SliConfig(BaseSettings):
    """SLI settings (environment `OBSERVATORY_SLI_*`; lists as JSON, e.g. `OBSERVATORY_SLI_WINDOWS='["1h","1d"]'`)."""

    model_config = SettingsConfigDict(env_prefix="OBSERVATORY_SLI_", extra="ignore")

    windows: list[str] = Field(["1h", "1d", "7d", "30d"], description="Windows computed and exported")
    required_tags: list[str] = Field(
        [], description="Tag keys a notebook needs, besides an owner, a team and at least one tag, to be searchable "
                        "(M9), as JSON (`[\"description\", \"domain\"]`)")
    missed_grace_seconds: float = Field(900.0, description="Default grace before a cron slot counts as missed")
    missed_lookback_days: float = Field(31.0, description="Oldest slots enumerated for missed-run detection")
    artifact_retention_seconds: float = Field(
        30 * 86400.0, description="An artifact stops being tracked this long after its SLA ran out (M7)")
    critical_notebooks_cap: int = Field(
        50, description="Most critical notebooks exported with a `notebook` label (consecutive failures)")
    production_environments: list[str] = Field(
        ["prod"], description="Environments whose scheduled runs count as production (consecutive failures); keep "
                              "equal to `production_environments` in slo/slos.yaml")
    scheduled_sla_seconds: float = Field(
        3600.0, description="Default SLA of a cron slot: its final attempt must succeed this long after the slot "
                            "(a schedule's `sla_seconds` overrides it)")
    slot_settle_seconds: float = Field(
        300.0, description="Wait after a slot's deadline for late events before deciding it failed or late")
    m3_state_max_values: int = Field(
        10_000_000, ge=0, description="Most values kept sorted in memory between refreshes for M3's exact "
                                      "percentiles (8 bytes each; a duration is kept for the platform and for its "
                                      "team, per window; slo/sli/durations.py). Past it SQL computes them at every "
                                      "refresh. 0: never kept")
    fold_max_events: int = Field(
        100_000, ge=1, description="Most events one transaction of the SLI fold takes: a larger backlog (a first fold "
                                   "after a bulk import, a refresher behind a flood) is folded in slices of whole "
                                   "ingest batches, each committed, the cron slots decided once after the last, so "
                                   "that the fold's memory does not grow with the backlog. At saturation, the "
                                   "collector peaked at 0.95-1.05 GiB with 100,000 and at up to 1.43 GiB with "
                                   "400,000, whose folds of a backlog took 12-19% less time (docs/performance.md)")
    kernel_session_max_hours: float = Field(
        24.0, description="A kernel session with no event for this long stops counting as active")


def parse_window(text: str) -> int:
    """`30m`, `1h`, `7d`, `2w` -> seconds."""
    t = text.strip()
    if len(t) < 2 or t[-1] not in _UNIT_SECONDS or not t[:-1].isdigit() or int(t[:-1]) <= 0:
        raise ValueError(f"not a window: {text!r} (use e.g. 1h, 1d, 7d, 30d)")
    return int(t[:-1]) * _UNIT_SECONDS[t[-1]]


def resolve_sli(text: str) -> str:
    """`M1`, `m1` or `run_success_rate` -> `M1`."""
    t = text.strip()
    if t.upper() in Q.SLIS:
        return t.upper()
    if t in NAME_TO_ID:
        return NAME_TO_ID[t]
    raise ValueError(f"unknown SLI {text!r}; use one of {', '.join(Q.SLIS)} or their names")


def utc(dt: datetime) -> datetime:
    """An aware moment in UTC; a naive one is refused (event time is always zoned)."""
    if dt.tzinfo is None:
        raise ValueError("as_of must carry a time zone (RFC 3339)")
    return dt.astimezone(timezone.utc)


@dataclass
class SliQuery:
    """One request: the moment the windows end at, which windows/SLIs/levels, and optional filters."""

    as_of: datetime
    windows: list[str]
    slis: list[str] = field(default_factory=lambda: list(Q.SLIS))
    team: str | None = None
    notebook_id: str | None = None
    trigger: str | None = None
    levels: tuple[str, ...] = DEFAULT_LEVELS
