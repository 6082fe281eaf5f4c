"""SLO specs as code: pydantic models of `slo/slos.yaml`, with precise validation errors.

Two spec versions are accepted:

- `prometheus/v1`: Sloth's spec (https://github.com/slok/sloth, pkg/prometheus/api/v1). A Sloth file loads as is and
  generates the rule names, labels, windows and burn factors Sloth generates for it.
- `observatory/v1`: the same model plus our extensions: `period` (any duration, per spec or per SLO),
  `alert_windows` (Sloth's AlertWindows, per spec or per SLO), `sli.events.good_query` (good/total instead of
  error/total), `sli.group_by`, per-window-pair `quick`/`slow` disable, `alerting.runbook`, `runbook_base_url`,
  `alerts` (the non-SLO alert rules), and the paging policy of issue 15: `paging` (minimum evidence for a page,
  `keep_firing_for`), `production_environments` (the `{{.production_environments}}` placeholder),
  `alerting.cause` (infra pages the platform, user tickets the owning team), `alerting.min_bad_events` and
  `alerting.absent` (an alert when the SLI's traffic stops).

Everything here is pure: `parse_spec(dict)` and `load_spec(path)` return a validated `Spec` or raise `SpecError`
whose `.errors` are one line each, located like `slos[2] (reproducibility).sli.events: ...`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# --- durations (Prometheus model.Duration) ----------------------------------------------------------------------

_DURATION_RE = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)
_UNIT_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000,
            "ms": 1}


def parse_duration(text: str) -> int:
    """A Prometheus duration (`5m`, `1h30m`, `4w`) in milliseconds; ValueError when malformed or zero."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"not a duration: {text!r} (use a Prometheus duration such as 5m, 6h, 30d, 4w)")
    m = _DURATION_RE.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use a Prometheus duration such as 5m, 6h, 30d, 4w)")
    ms = sum(int(v) * _UNIT_MS[k] for k, v in m.groupdict().items() if v)
    if ms <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return ms


def format_duration(ms: int) -> str:
    """Prometheus `model.Duration.String()`: years and weeks only when exact (28d -> 4w, 90d -> 90d, 72h -> 3d)."""
    if ms == 0:
        return "0s"
    out = ""
    for unit, exact in (("y", True), ("w", True), ("d", False), ("h", False), ("m", False), ("s", False),
                        ("ms", False)):
        mult = _UNIT_MS[unit]
        if exact and ms % mult:
            continue
        v = ms // mult
        if v > 0:
            out += f"{v}{unit}"
            ms -= v * mult
    return out


def normalize_duration(text: str) -> str:
    return format_duration(parse_duration(text))


# --- names ---------------------------------------------------------------------------------------------------

NAME_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$")  # Sloth's conventions.go
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ALERT_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {"sloth_id", "sloth_service", "sloth_slo", "sloth_window", "sloth_severity", "sloth_mode",
                   "sloth_objective", "sloth_spec", "sloth_version", "alertname"}
# observatory/v1 sets these on every alert itself (Alertmanager routes on them)
GENERATED_ALERT_LABELS = {"severity", "category"}
WINDOW_PLACEHOLDER_RE = re.compile(r"\{\{\s*\.window\s*\}\}")
PRODUCTION_PLACEHOLDER_RE = re.compile(r"\{\{\s*\.production_environments\s*\}\}")
SEVERITIES = ("page", "ticket")
Cause = Literal["infra", "user"]


def _check_labels(labels: dict[str, str], where: str) -> dict[str, str]:
    for k, v in labels.items():
        if not LABEL_RE.match(k) or k.startswith("__"):
            raise ValueError(f"{where}: invalid label name {k!r} (use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")
        if k in RESERVED_LABELS:
            raise ValueError(f"{where}: label {k!r} is set by the generator and cannot be given")
        if not isinstance(v, str):
            raise ValueError(f"{where}: label {k!r} must be a string, got {type(v).__name__} (quote it)")
    return labels


def _check_runbook(v: str) -> str:
    if not re.match(r"^[a-z0-9][a-z0-9._-]*\.md$", v):
        raise ValueError(f"runbook {v!r} must be a file name like slo-run-success.md (in alerts/runbooks/)")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# --- SLI -----------------------------------------------------------------------------------------------------


class EventsSLI(_Strict):
    """Counter queries with a `{{.window}}` placeholder; give `error_query` (Sloth) or `good_query`, and `total_query`."""

    error_query: str | None = Field(None, alias="errorQuery")
    good_query: str | None = Field(None, alias="goodQuery")
    total_query: str = Field(alias="totalQuery")

    @model_validator(mode="after")
    def _check(self) -> "EventsSLI":
        if (self.error_query is None) == (self.good_query is None):
            raise ValueError("give exactly one of error_query or good_query (with total_query)")
        for key in ("error_query", "good_query", "total_query"):
            q = getattr(self, key)
            if q is None:
                continue
            if not q.strip():
                raise ValueError(f"{key} is empty")
            if not WINDOW_PLACEHOLDER_RE.search(q):
                raise ValueError(f"{key} has no {{{{.window}}}} placeholder, e.g. rate(metric_total[{{{{.window}}}}])")
        return self


class RawSLI(_Strict):
    """An error ratio query (0..1) with a `{{.window}}` placeholder."""

    error_ratio_query: str = Field(alias="errorRatioQuery")

    @field_validator("error_ratio_query")
    @classmethod
    def _placeholder(cls, q: str) -> str:
        if not WINDOW_PLACEHOLDER_RE.search(q):
            raise ValueError("error_ratio_query has no {{.window}} placeholder")
        return q


class SLI(_Strict):
    events: EventsSLI | None = None
    raw: RawSLI | None = None
    group_by: tuple[str, ...] = Field(
        (), description="labels the queries aggregate by (`sum by (team)`); one SLO series per group")

    @model_validator(mode="after")
    def _check(self) -> "SLI":
        if (self.events is None) == (self.raw is None):
            raise ValueError("give exactly one of sli.events or sli.raw")
        for lab in self.group_by:
            if not LABEL_RE.match(lab) or lab in RESERVED_LABELS:
                raise ValueError(f"group_by: invalid or reserved label {lab!r}")
        queries = ([self.events.error_query, self.events.good_query, self.events.total_query] if self.events
                   else [self.raw.error_ratio_query])
        for lab in self.group_by:
            for q in queries:
                if q is not None and not re.search(rf"\b{re.escape(lab)}\b", q):
                    raise ValueError(f"group_by names {lab!r} but a query does not aggregate by it: {q.strip()!r}")
        return self


# --- alert windows (Sloth AlertWindows) ---------------------------------------------------------------------


class WindowPair(_Strict):
    error_budget_percent: float = Field(alias="errorBudgetPercent", gt=0, le=100)
    short_window: str = Field(alias="shortWindow")
    long_window: str = Field(alias="longWindow")

    @field_validator("short_window", "long_window")
    @classmethod
    def _dur(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _order(self) -> "WindowPair":
        if parse_duration(self.short_window) >= parse_duration(self.long_window):
            raise ValueError(f"short_window {self.short_window} must be shorter than long_window {self.long_window}")
        return self

    @property
    def short_ms(self) -> int:
        return parse_duration(self.short_window)

    @property
    def long_ms(self) -> int:
        return parse_duration(self.long_window)


class SeverityWindows(_Strict):
    quick: WindowPair
    slow: WindowPair


class AlertWindows(_Strict):
    page: SeverityWindows
    ticket: SeverityWindows


def google_windows() -> AlertWindows:
    """The SRE Workbook windows and budget percents Sloth ships (google-30d.yaml, google-28d.yaml).

    Burn factors follow from the period: factor = percent x period / 100 / long window (14.4, 6, 3, 1 for 30d).
    """
    return AlertWindows(
        page=SeverityWindows(
            quick=WindowPair(error_budget_percent=2, short_window="5m", long_window="1h"),
            slow=WindowPair(error_budget_percent=5, short_window="30m", long_window="6h"),
        ),
        ticket=SeverityWindows(
            quick=WindowPair(error_budget_percent=10, short_window="2h", long_window="1d"),
            slow=WindowPair(error_budget_percent=10, short_window="6h", long_window="3d"),
        ),
    )


# --- alerting ------------------------------------------------------------------------------------------------


class TierToggle(_Strict):
    disable: bool = False


class SeverityAlerting(_Strict):
    disable: bool = False
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    quick: TierToggle = TierToggle()
    slow: TierToggle = TierToggle()

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v, "labels")

    def enabled_tiers(self) -> list[str]:
        if self.disable:
            return []
        return [t for t in ("quick", "slow") if not getattr(self, t).disable]


class AbsentAlert(_Strict):
    """An alert when the SLI's traffic stops: there was some over the last day, none over `after` (observatory/v1).

    Zero traffic gives no error ratio, so a dead scheduler, prober or exporter never burns budget: this is what
    pages (or tickets) instead.
    """

    disable: bool = False
    after: str = Field("2h", description="silence longer than this (a Prometheus duration) fires")
    severity: Literal["page", "ticket"] = "ticket"

    @field_validator("after")
    @classmethod
    def _after(cls, v: str) -> str:
        if parse_duration(v) >= parse_duration("1d"):
            raise ValueError(f"after {v} must be shorter than 1d (the window that says there was traffic)")
        return v


class Alerting(_Strict):
    name: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    runbook: str | None = Field(None, description="file name in alerts/runbooks/ (default slo-<slo name>.md)")
    cause: Cause | None = Field(None, description="infra: pages go to the platform on-call; user: the owning team")
    min_bad_events: int | None = Field(
        None, ge=0, description="bad events in a page tier's long window before it pages (default paging.min_bad_events)")
    absent: AbsentAlert = AbsentAlert()
    page_alert: SeverityAlerting = Field(SeverityAlerting(), alias="pageAlert")
    ticket_alert: SeverityAlerting = Field(SeverityAlerting(), alias="ticketAlert")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v, "labels")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not ALERT_NAME_RE.match(v):
            raise ValueError(f"invalid alert name {v!r} (use [a-zA-Z_][a-zA-Z0-9_]*)")
        return v

    @field_validator("runbook")
    @classmethod
    def _runbook(cls, v: str | None) -> str | None:
        return None if v is None else _check_runbook(v)

    def severity(self, sev: str) -> SeverityAlerting:
        return self.page_alert if sev == "page" else self.ticket_alert

    @property
    def any_enabled(self) -> bool:
        return bool(self.page_alert.enabled_tiers() or self.ticket_alert.enabled_tiers())


# --- SLO -----------------------------------------------------------------------------------------------------


class SLO(_Strict):
    name: str
    description: str = ""
    objective: float = Field(gt=0, lt=100, description="percent, e.g. 99.9")
    period: str | None = None
    labels: dict[str, str] = {}
    sli: SLI
    alerting: Alerting = Alerting()
    alert_windows: AlertWindows | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"invalid SLO name {v!r} (letters, digits, -, _, . ; start and end alphanumeric)")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v, "labels")

    @model_validator(mode="after")
    def _check(self) -> "SLO":
        clash = set(self.labels) & set(self.sli.group_by)
        if clash:
            raise ValueError(f"labels {sorted(clash)} are also in sli.group_by; a label comes from one place")
        if self.alerting.any_enabled and not self.alerting.name:
            raise ValueError("alerting.name is required when the page or ticket alert is enabled")
        return self


# --- non-SLO alerts ----------------------------------------------------------------------------------------


class RuleAlert(_Strict):
    """A hand-written alert rule (consecutive failures, secret exposure, collector down...).

    `severity: none` is for the Watchdog, which always fires and is routed to a dead man's switch.
    """

    alert: str
    group: str = Field(description="rule group name")
    expr: str
    for_: str | None = Field(None, alias="for")
    keep_firing_for: str | None = None
    severity: Literal["page", "ticket", "none"]
    category: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    cause: Cause | None = None
    labels: dict[str, str] = {}
    summary: str
    description: str
    runbook: str

    @field_validator("alert")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ALERT_NAME_RE.match(v):
            raise ValueError(f"invalid alert name {v!r}")
        return v

    @field_validator("for_", "keep_firing_for")
    @classmethod
    def _for(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v, "labels")

    @field_validator("runbook")
    @classmethod
    def _runbook(cls, v: str) -> str:
        return _check_runbook(v)


class Paging(_Strict):
    """The paging policy of an observatory/v1 spec (docs/alerts.md, "Paging policy")."""

    min_bad_events: int = Field(3, ge=0, description="bad events in a page tier's long window before an SLO pages; "
                                                      "below it the burn opens a ticket (0: burn rate alone)")
    keep_firing_for: str = Field("15m", description="every page keeps firing this long after its condition clears")
    platform_team: str = Field("platform", description="the team whose on-call gets the infrastructure pages")

    @field_validator("keep_firing_for")
    @classmethod
    def _keep(cls, v: str) -> str:
        parse_duration(v)
        return v


# --- the spec ------------------------------------------------------------------------------------------------

OBSERVATORY_ONLY_SPEC = ("period", "alert_windows", "runbook_base_url", "alerts", "paging", "production_environments")
OBSERVATORY_ONLY_ALERTING = ("cause", "min_bad_events", "absent")
# a page must name the team it is about (routing and the on-call's first question); these expressions keep `team`
_KEEPS_TEAM_RE = re.compile(r"\b(by|on|without)\s*\([^)]*\bteam\b")


class Spec(_Strict):
    version: Literal["prometheus/v1", "observatory/v1"]
    service: str
    labels: dict[str, str] = {}
    period: str = "30d"
    alert_windows: AlertWindows | None = None
    runbook_base_url: str | None = Field(None, pattern=r"^https?://\S+[^/]$")
    paging: Paging = Paging()
    production_environments: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], ...] = Field(
        ("prod",), min_length=1, description="values of the `environment` label that count as production")
    slos: list[SLO] = []
    alerts: list[RuleAlert] = []

    @field_validator("service")
    @classmethod
    def _service(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"invalid service name {v!r}")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v, "labels")

    @model_validator(mode="after")
    def _check(self) -> "Spec":
        if self.version == "prometheus/v1":
            ext = [k for k in OBSERVATORY_ONLY_SPEC if k in self.model_fields_set]
            for i, s in enumerate(self.slos):
                if "period" in s.model_fields_set or "alert_windows" in s.model_fields_set:
                    ext.append(f"slos[{i}].period/alert_windows")
                if s.sli.group_by:
                    ext.append(f"slos[{i}].sli.group_by")
                if s.sli.events and s.sli.events.good_query is not None:
                    ext.append(f"slos[{i}].sli.events.good_query")
                ext += [f"slos[{i}].alerting.{k}" for k in OBSERVATORY_ONLY_ALERTING
                        if k in s.alerting.model_fields_set]
            if ext:
                raise ValueError(f"{', '.join(ext)}: observatory/v1 extensions; set `version: observatory/v1`")
        if self.version == "observatory/v1":
            for i, s in enumerate(self.slos):
                for where, labs in (("alerting.labels", s.alerting.labels),
                                    ("alerting.page_alert.labels", s.alerting.page_alert.labels),
                                    ("alerting.ticket_alert.labels", s.alerting.ticket_alert.labels)):
                    bad = GENERATED_ALERT_LABELS & set(labs)
                    if bad:
                        raise ValueError(f"slos[{i}] ({s.name}).{where}: {sorted(bad)} are set by the generator "
                                         "(severity from the tier, category=slo)")
            for i, a in enumerate(self.alerts):
                bad = GENERATED_ALERT_LABELS & set(a.labels)
                if bad:
                    raise ValueError(f"alerts[{i}] ({a.alert}).labels: {sorted(bad)} are given by the "
                                     "`severity` and `category` keys")
            if (self.alerts or any(s.alerting.any_enabled for s in self.slos)) and not self.runbook_base_url:
                raise ValueError("runbook_base_url is required: every alert links its runbook "
                                 "(<runbook_base_url>/<runbook>)")
            for i, s in enumerate(self.slos):
                pages = s.alerting.page_alert.enabled_tiers() or (
                    s.alerting.absent.severity == "page" and not s.alerting.absent.disable)
                team = "team" in s.sli.group_by or "team" in {**self.labels, **s.labels}
                if pages and not team:
                    raise ValueError(f"slos[{i}] ({s.name}): it pages, so its alerts need a `team` label: group the "
                                     "SLI by team (sli.group_by) or set labels.team")
            for i, a in enumerate(self.alerts):
                if a.severity == "page" and "team" not in a.labels and not _KEEPS_TEAM_RE.search(a.expr):
                    raise ValueError(f"alerts[{i}] ({a.alert}): a page needs a `team` label: set labels.team or "
                                     "aggregate the expression by (team)")
        seen: dict[str, int] = {}
        for i, s in enumerate(self.slos):
            if s.name in seen:
                raise ValueError(f"slos[{i}]: duplicate SLO name {s.name!r} (also slos[{seen[s.name]}])")
            seen[s.name] = i
            clash = set(self.labels) & set(s.sli.group_by)
            if clash:
                raise ValueError(f"slos[{i}] ({s.name}): spec labels {sorted(clash)} are also in sli.group_by")
            period_ms = parse_duration(self.slo_period(s))
            w = self.slo_windows(s)
            for sev in SEVERITIES:
                for tier in ("quick", "slow"):
                    pair: WindowPair = getattr(getattr(w, sev), tier)
                    if pair.long_ms > period_ms:
                        raise ValueError(
                            f"slos[{i}] ({s.name}): {sev} {tier} long window {pair.long_window} is longer than the "
                            f"SLO period {self.slo_period(s)}")
        names: dict[tuple[str, str], int] = {}
        for i, a in enumerate(self.alerts):
            key = (a.group, a.alert)
            if key in names:
                raise ValueError(f"alerts[{i}]: duplicate alert {a.alert!r} in group {a.group!r}")
            names[key] = i
        return self

    def slo_period(self, slo: SLO) -> str:
        return slo.period or self.period

    def slo_windows(self, slo: SLO) -> AlertWindows:
        return slo.alert_windows or self.alert_windows or google_windows()

    def production_regex(self) -> str:
        """The production environments as a PromQL regex (`prod` or `prod|production`)."""
        return "|".join(re.escape(e) for e in self.production_environments)


def with_default_period(spec: Spec, period: str) -> Spec:
    """Sloth's `--default-slo-period`: the period of a spec that does not set one (a prometheus/v1 spec never does)."""
    parse_duration(period)
    if "period" in spec.model_fields_set:
        return spec
    return Spec.model_validate({**spec.model_dump(by_alias=False, exclude_unset=True), "period": period}) \
        if spec.version == "observatory/v1" else spec.model_copy(update={"period": period})


# --- loading and errors --------------------------------------------------------------------------------------


class SpecError(Exception):
    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = errors
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "invalid SLO spec:\n" + "\n".join(f"  - {e}" for e in errors))


def _fields_of(model: type[BaseModel]) -> list[str]:
    out: list[str] = []
    for name, f in model.model_fields.items():
        out.append(f.alias or name)
        if f.alias:
            out.append(name)
    return out


_MODEL_AT: dict[str, type[BaseModel]] = {}


def _model_for_loc(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that owns the key at `loc[-1]` (for 'did you mean' hints on unknown keys)."""
    model: Any = Spec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = None
        for name, f in model.model_fields.items():
            if part in (name, f.alias):
                field = f
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        nxt = None
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                nxt = c
                break
            for a in getattr(c, "__args__", ()):
                if isinstance(a, type) and issubclass(a, BaseModel):
                    nxt = a
        if nxt is None:
            return None
        model = nxt
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _loc_str(loc: tuple[Any, ...], data: Any) -> str:
    out = ""
    node = data
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
            except Exception:
                node = None
            if i == 1 and loc[0] == "slos" and isinstance(node, dict) and node.get("name"):
                out += f" ({node['name']})"
            if i == 1 and loc[0] == "alerts" and isinstance(node, dict) and node.get("alert"):
                out += f" ({node['alert']})"
        else:
            out += ("." if out else "") + str(part)
            try:
                node = node.get(part) if isinstance(node, dict) else None
            except Exception:
                node = None
    return out or "(spec)"


def format_validation_error(exc: ValidationError, data: Any) -> list[str]:
    msgs: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # drop pydantic's union-branch / function-validator markers from the location
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        where = _loc_str(loc, data)
        if err["type"] == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            parent = _loc_str(loc[:-1], data)
            hint = ""
            model = _model_for_loc(loc)
            if model is not None:
                close = difflib.get_close_matches(key, _fields_of(model), n=1)
                if close:
                    hint = f" (did you mean {close[0]!r}?)"
            msgs.append(f"{parent}: unknown key {key!r}{hint}")
            continue
        msg = err["msg"]
        msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
        msgs.append(f"{where}: {msg}")
    return msgs


def parse_spec(data: Any, source: str | None = None) -> Spec:
    if not isinstance(data, dict):
        raise SpecError([f"the spec must be a mapping with version, service and slos; got {type(data).__name__}"],
                        source)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, data), source) from None


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([f"cannot read spec: {exc.strerror}"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError([f"{where}invalid YAML: {getattr(exc, 'problem', exc)}"], str(path)) from None
    return parse_spec(data, str(path))
