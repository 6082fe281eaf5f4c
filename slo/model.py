"""The SLO spec resolved once into what the rule generators need: durations in ms, tiers, ids, labels, dialect.

`slo.spec` validates the YAML as written (strings such as `30d`, optional keys, two dialects). Every generator
used to re-derive the same facts from it: parse the period again, look the window pairs up per severity, branch on
the dialect. `resolve(spec)` does that once, so a generator in slo/rules/ reads plain fields and stays small.

Dialects: `prometheus/v1` is Sloth's spec and gets exactly Sloth's alert labels and annotations;
`observatory/v1` adds `severity`/`category` labels, summaries, descriptions and runbook URLs.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector import conventions as C
from slo.spec import (
    PRODUCTION_PLACEHOLDER_RE,
    SEVERITIES,
    SLO,
    AbsentAlert,
    RuleAlert,
    Spec,
    format_duration,
    parse_duration,
)

GENERATOR_VERSION = "observatory-0.1.0"
META_INTERVAL = "5m"  # evaluation interval of the period and meta recordings (slo/rules/meta_recordings.py)
ABSENT_ALERT = "SLOTrafficAbsent"  # one alert name for every SLO's traffic-stopped alert (label sloth_slo)
ABSENT_RUNBOOK = "slo-traffic-absent.md"  # the `sloth_version` label of sloth_slo_info
SLOTH = "prometheus/v1"
OBSERVATORY = "observatory/v1"
TIER_NAMES = ("quick", "slow")


class GenerationError(Exception):
    """The spec is valid but some rule cannot be generated (e.g. a tier that can never fire)."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("cannot generate rules:\n" + "\n".join(f"  - {e}" for e in errors))


def gofloat(x: float) -> str:
    """Go's shortest float formatting as Sloth prints it (`14.4`, `6`, `0.0009999999999999432`)."""
    r = repr(float(x))
    if r.endswith(".0"):
        r = r[:-2]
    return r


def burn_factor(period_ms: int, error_budget_percent: float, long_window_ms: int) -> float:
    """Sloth's getBurnRateFactor: budget percent consumed over the period, expressed as a speed over the window.

    Same operation order as Sloth (hours, percent first) so the floats match its output bit for bit:
    30d -> 14.4, 6, 3, 1; 28d -> 13.44, 5.6000000000000005, 2.8000000000000003, 0.9333333333333333.
    """
    hours_required = error_budget_percent * (period_ms / 3_600_000) / 100
    return hours_required / (long_window_ms / 3_600_000)


@dataclass(frozen=True)
class Tier:
    """One window pair of one severity: `quick` or `slow`, its burn factor and whether it is generated."""

    severity: str  # page | ticket
    tier: str  # quick | slow
    short_ms: int
    long_ms: int
    error_budget_percent: float
    factor: float
    enabled: bool

    @property
    def short(self) -> str:
        return format_duration(self.short_ms)

    @property
    def long(self) -> str:
        return format_duration(self.long_ms)


@dataclass(frozen=True)
class Queries:
    """The SLI's PromQL with `{{.production_environments}}` filled in (`{{.window}}` is filled per window)."""

    total: str | None = None
    error: str | None = None
    good: str | None = None
    raw_error_ratio: str | None = None


@dataclass(frozen=True)
class ResolvedSLO:
    """One SLO with everything its rules are made of."""

    slo: SLO  # the validated entry (description, alerting)
    queries: Queries
    ids: dict[str, str]  # sloth_id, sloth_service, sloth_slo
    labels: dict[str, str]  # spec labels + SLO labels + ids, on every rule of the SLO
    period_ms: int
    tiers: tuple[Tier, ...]
    windows: tuple[str, ...]  # every short and long window, shortest first
    objective_ratio: float
    budget: float  # (100 - objective) / 100, as Sloth computes it
    observatory: bool
    runbook_url: str | None
    min_bad_events: int = 0  # evidence a page needs (0: burn rate alone; always 0 for Sloth specs and raw SLIs)
    keep_firing_for_ms: int | None = None  # on the page alert
    cause: str | None = None  # infra | user (observatory/v1)
    absent: AbsentAlert | None = None  # the traffic-stopped alert, when generated

    @property
    def events(self) -> bool:
        """An events SLI (error/good and total counters), as opposed to a raw error-ratio query."""
        return self.queries.total is not None

    @property
    def name(self) -> str:
        return self.slo.name

    @property
    def sloth_id(self) -> str:
        return self.ids[C.SLOTH_ID]

    @property
    def selector(self) -> str:
        """`{sloth_id="...", sloth_service="...", sloth_slo="..."}`: selects this SLO's recorded series."""
        return "{" + ", ".join(f'{k}="{v}"' for k, v in self.ids.items()) + "}"

    @property
    def period(self) -> str:
        return format_duration(self.period_ms)

    @property
    def base_window(self) -> str:
        return self.windows[0]

    @property
    def group_on(self) -> str:
        """The labels that identify one SLO series: the ids plus the SLI's group_by labels."""
        return ", ".join([C.SLOTH_ID, C.SLOTH_SLO, C.SLOTH_SERVICE, *self.slo.sli.group_by])

    @property
    def page_quick_short(self) -> str:
        """The window of `slo:current_burn_rate:ratio` (Sloth: the page quick tier's short window)."""
        return next(t.short for t in self.tiers if t.severity == "page" and t.tier == "quick")

    def enabled_tiers(self, severity: str) -> list[Tier]:
        return [t for t in self.tiers if t.severity == severity and t.enabled]


@dataclass(frozen=True)
class ResolvedAlert:
    """A hand-written (non-SLO) alert with its durations in ms, its filled expression and its runbook URL."""

    alert: RuleAlert
    expr: str
    for_ms: int | None
    keep_firing_for_ms: int | None  # pages default to paging.keep_firing_for
    runbook_url: str


@dataclass(frozen=True)
class Model:
    service: str
    dialect: str
    slos: tuple[ResolvedSLO, ...]
    alerts: tuple[ResolvedAlert, ...]
    runbook_base_url: str | None = None
    platform_team: str = "platform"

    @property
    def observatory(self) -> bool:
        return self.dialect == OBSERVATORY

    def runbooks(self) -> list[str]:
        """Runbook file names every generated alert links to."""
        out = [s.runbook_url.rsplit("/", 1)[1] for s in self.slos if s.runbook_url]
        if any(s.absent for s in self.slos):
            out.append(ABSENT_RUNBOOK)
        out += [a.alert.runbook for a in self.alerts]
        return sorted(set(out))


def _tiers(spec: Spec, slo: SLO, period_ms: int) -> tuple[Tier, ...]:
    windows = spec.slo_windows(slo)
    out = []
    for sev in SEVERITIES:
        enabled = slo.alerting.severity(sev).enabled_tiers()
        for tier in TIER_NAMES:
            pair = getattr(getattr(windows, sev), tier)
            out.append(Tier(sev, tier, pair.short_ms, pair.long_ms, pair.error_budget_percent,
                            burn_factor(period_ms, pair.error_budget_percent, pair.long_ms), tier in enabled))
    return tuple(out)


def _fill_production(spec: Spec, query: str | None) -> str | None:
    return None if query is None else PRODUCTION_PLACEHOLDER_RE.sub(spec.production_regex(), query)


def _queries(spec: Spec, slo: SLO) -> Queries:
    ev, raw = slo.sli.events, slo.sli.raw
    if ev is not None:
        return Queries(total=_fill_production(spec, ev.total_query), error=_fill_production(spec, ev.error_query),
                       good=_fill_production(spec, ev.good_query))
    assert raw is not None
    return Queries(raw_error_ratio=_fill_production(spec, raw.error_ratio_query))


def _resolve_slo(spec: Spec, slo: SLO) -> ResolvedSLO:
    ids = {C.SLOTH_ID: f"{spec.service}-{slo.name}", C.SLOTH_SERVICE: spec.service, C.SLOTH_SLO: slo.name}
    period_ms = parse_duration(spec.slo_period(slo))
    tiers = _tiers(spec, slo, period_ms)
    windows = tuple(format_duration(m) for m in sorted({ms for t in tiers for ms in (t.short_ms, t.long_ms)}))
    observatory = spec.version == OBSERVATORY
    queries = _queries(spec, slo)
    alerting = slo.alerting
    runbook_url = None
    if observatory and alerting.any_enabled:
        runbook_url = f"{spec.runbook_base_url}/{alerting.runbook or f'slo-{slo.name}.md'}"
    policy: dict = {}
    if observatory:
        evidence = spec.paging.min_bad_events if alerting.min_bad_events is None else alerting.min_bad_events
        policy = {
            "min_bad_events": evidence if queries.total is not None else 0,
            "keep_firing_for_ms": parse_duration(spec.paging.keep_firing_for),
            "cause": alerting.cause,
            "absent": alerting.absent if queries.total is not None and not alerting.absent.disable else None,
        }
    return ResolvedSLO(slo=slo, queries=queries, ids=ids, labels={**spec.labels, **slo.labels, **ids},
                       period_ms=period_ms, tiers=tiers, windows=windows, objective_ratio=slo.objective / 100,
                       budget=(100 - slo.objective) / 100, observatory=observatory, runbook_url=runbook_url,
                       **policy)


def _resolve_alert(spec: Spec, a: RuleAlert) -> ResolvedAlert:
    keep = a.keep_firing_for or (spec.paging.keep_firing_for if a.severity == "page" else None)
    return ResolvedAlert(
        alert=a, expr=_fill_production(spec, a.expr) or "", for_ms=parse_duration(a.for_) if a.for_ else None,
        keep_firing_for_ms=parse_duration(keep) if keep else None,
        runbook_url=f"{spec.runbook_base_url}/{a.runbook}")


def resolve(spec: Spec) -> Model:
    """The validated spec as the generators read it (pure)."""
    return Model(service=spec.service, dialect=spec.version,
                 slos=tuple(_resolve_slo(spec, s) for s in spec.slos),
                 alerts=tuple(_resolve_alert(spec, a) for a in spec.alerts), runbook_base_url=spec.runbook_base_url,
                 platform_team=spec.paging.platform_team)


def check_fireable(model: Model) -> list[str]:
    """Tiers whose threshold factor x budget >= 1: the error ratio can never exceed it, so the alert never fires."""
    errors = []
    for i, s in enumerate(model.slos):
        for t in s.tiers:
            if t.enabled and t.factor * s.budget >= 1:
                errors.append(
                    f"slos[{i}] ({s.name}): the {t.severity} {t.tier} tier ({t.short}/{t.long}, burn factor "
                    f"{gofloat(t.factor)} x error budget {gofloat(s.budget)} = {t.factor * s.budget:.4g}) can never "
                    f"fire: an error ratio cannot exceed 1. Disable it (alerting.{t.severity}_alert.{t.tier}.disable:"
                    f" true), use a shorter period or a smaller errorBudgetPercent for that window pair, or relax the "
                    f"objective.")
    return errors
