"""A deterministic synthetic notebook platform: what `observatory demo` and `serve --demo` show.

Six teams, ~40 notebooks with owners, tags, critical/has_tests flags and cron schedules; scheduled runs per cron
slot (a few deliberately missed), manual/api/ci runs with retries, timeouts and cancellations, per-cell timings and
resource use, reproducibility hashes, interactive kernel sessions with restarts, crashes and OOMs, data quality
checks, artifacts with freshness SLAs, availability probes, audit events, and a few secrets planted in error
messages and tracebacks so the redactor has work to do. docs/demo.md describes the story and the SLIs it exercises.

History (`generate`) is a pure function of (days, seed, end): the platform comes from `seed`, the traffic from a
`random.Random` seeded with (seed, days, end), and events are produced one day at a time and emitted in time
order. Live traffic (`stream_live`) reuses the same platform and event builders with current timestamps.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import logging
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import orjson

log = logging.getLogger(__name__)

CHUNK_EVENTS = 10_000
HTTP_BATCH_EVENTS = 5_000
LIVE_BUFFER_EVENTS = 20_000  # live events kept while the collector is away; the oldest are dropped first
MINUTE = 60.0
HOUR = 3_600.0
DAY = 86_400.0

# ---- sources (bounded: they label observatory_events_ingested_total) -------------------------------------------

SRC_SCHEDULER = "scheduler://airflow-prod"
SRC_API = "papermill://api-gateway"
SRC_CI = "ci://github-actions"
SRC_REGISTRY = "registry://notebook-catalog"
SRC_QUALITY = "quality://great-expectations"
SRC_ARTIFACTS = "storage://artifact-publisher"
SRC_PROBE = "probe://blackbox-exporter"
SRC_SCANNER = "scanner://pre-commit-secrets"
SRC_AUDIT = "audit://jupyterhub"
HUB_A = "jupyter://hub-a"
HUB_B = "jupyter://hub-b"

PROBE_TARGETS = (("hub-ui", 0.12), ("hub-api", 0.05))  # target, median latency seconds


# ---- the platform (a function of the seed only) ----------------------------------------------------------------


@dataclass(frozen=True)
class Team:
    name: str
    cost_center: str
    hub: str
    users: tuple[str, ...]


TEAMS: tuple[Team, ...] = (
    Team("finance", "cc-1100", HUB_A, ("maria.garcia", "tom.becker", "li.wei")),
    Team("risk", "cc-1200", HUB_A, ("aisha.khan", "jonas.meyer")),
    Team("ml-platform", "cc-2100", HUB_B, ("sofia.rossi", "dev.patel", "kenji.sato")),
    Team("data-eng", "cc-2200", HUB_B, ("olga.ivanova", "sam.oconnor", "priya.nair")),
    Team("marketing", "cc-3100", HUB_A, ("emma.jones", "lucas.silva")),
    Team("product-analytics", "cc-3200", HUB_A, ("noah.kim", "chloe.martin", "ana.souza")),
)
TEAM_BY_NAME = {t.name: t for t in TEAMS}

# Error catalogue: (error_type, message template, transient). `{col}`, `{date}`, `{hour}` are filled per run.
DATA_ERRORS: tuple[tuple[str, str, bool], ...] = (
    ("KeyError", "KeyError: '{col}'", False),
    ("ValueError", "ValueError: could not convert string to float: 'N/A'", False),
    ("AssertionError", "AssertionError: expected at least 1 row for partition dt={date}, got 0", False),
    ("pandas.errors.MergeError", "MergeError: Merge keys are not unique in right dataset; not a one-to-one merge",
     False),
)
TRANSIENT_ERRORS: tuple[tuple[str, str, bool], ...] = (
    ("requests.exceptions.ConnectionError",
     "ConnectionError: HTTPSConnectionPool(host='api.internal.acme.io', port=443): Read timed out. (read timeout=30)",
     True),
    ("FileNotFoundError",
     "FileNotFoundError: s3://acme-lake/raw/orders/dt={date}/hour={hour}/_SUCCESS (upstream partition not landed yet)",
     True),
    ("botocore.exceptions.ClientError",
     "ClientError: An error occurred (SlowDown) when calling the PutObject operation: Please reduce your request rate.",
     True),
    ("snowflake.connector.errors.OperationalError",
     "OperationalError: 250003: Failed to get the response. Hanging? method: post, url: https://acme.snowflakecomputing.com",
     True),
)
OOM_ERROR = ("DeadKernelError",
             "DeadKernelError: Kernel died before replying to execute_request (exit code 137: out of memory)", True)
INCIDENT_ERROR = ("KeyError", "KeyError: 'merchant_category' (column dropped by upstream schema change)", False)
COLUMNS = ("customer_id", "order_ts", "amount_eur", "region", "account_id", "event_date")


@dataclass
class Notebook:
    id: str
    team: str
    owner: str
    path: str
    tags: dict[str, Any]
    critical: bool
    has_tests: bool
    median: float  # seconds
    sigma: float
    cells: int
    mem_bytes: int
    cores: float
    timeout: float
    p_fail: float
    transient_share: float
    p_oom: float
    p_mismatch: float
    checks: tuple[str, ...]
    check_fail: dict[str, float]
    artifact: str | None
    artifact_bytes: int
    manual: float  # expected manual runs per weekday
    api: float  # api runs per day
    ci: float  # ci runs per weekday
    kernel_weight: float
    api_params: tuple[dict[str, Any], ...]
    cron: str | None
    tz: str | None
    created_frac: float | None  # created inside the window at this fraction of it; None: before the window
    created_days_before: float  # for notebooks created before the window
    promote_frac: float | None
    promote_cron: str | None  # schedule registered when promoted
    incident: bool
    stops_hours_before_end: float | None
    cell_weights: tuple[float, ...] = ()
    update: tuple[float, dict[str, Any]] | None = None  # (fraction of window, fields) for notebook.updated
    unowned: bool = False  # registered without an owner (an owner arrives with its update, if any)

    @property
    def grace(self) -> float:
        return 900.0 if self.cron and self.cron.split()[1] == "*" else 3600.0

    @property
    def sla_seconds(self) -> float | None:
        cron = self.cron or self.promote_cron
        if not cron or not self.artifact:
            return None
        f = cron.split()
        if f[1] == "*":
            return 2 * HOUR
        if f[4] != "*":
            return 4 * DAY
        return 26 * HOUR


def _nb(id: str, team: str, owner: int = 0, *, cron: str | None = None, tz: str | None = None,
        critical: bool = False, tests: bool | None = None, median: float = 300, sigma: float = 0.3,
        cells: int = 20, mem_gb: float = 2.0, cores: float = 1.0, timeout: float | None = None,
        p_fail: float = 0.004, transient: float = 0.5, p_oom: float = 0.0, p_mismatch: float = 0.0,
        checks: tuple[str, ...] = (), check_fail: dict[str, float] | None = None, artifact: str | None = None,
        artifact_mb: float = 50, manual: float = 0.3, api: float = 0.0, ci: float = 0.2, kernel: float = 1.0,
        api_params: tuple[dict[str, Any], ...] = ({},), created: float | None = None, promote: float | None = None,
        promote_cron: str | None = None, incident: bool = False, stops: float | None = None,
        missing: tuple[str, ...] = (), classification: str = "internal", domain: str | None = None,
        update: tuple[float, dict[str, Any]] | None = None, unowned: bool = False) -> dict[str, Any]:
    return dict(locals())


ALL_TAGS = ("team", "cost_center", "data_classification", "domain", "tier")

# Roles are fixed (the story of the demo); numbers are jittered by the seed.
CATALOG: tuple[dict[str, Any], ...] = (
    # finance
    _nb("fin-revenue-daily", "finance", 0, cron="30 5 * * *", critical=True, tests=True, median=420, cells=24,
        mem_gb=6, cores=2, checks=("row_count_nonzero", "revenue_matches_ledger"),
        artifact="warehouse.finance.revenue_daily", artifact_mb=180, classification="confidential"),
    _nb("fin-revenue-recognition", "finance", 1, cron="0 6 * * *", tz="Europe/Berlin", critical=True, tests=True,
        median=900, cells=31, mem_gb=8, cores=2, checks=("deferred_revenue_non_negative",),
        artifact="warehouse.finance.revenue_recognition", artifact_mb=240, classification="confidential"),
    _nb("fin-cash-forecast", "finance", 2, cron="0 7 * * 1-5", critical=True, tests=False, median=600, cells=18,
        mem_gb=4, cores=2, p_mismatch=0.08, artifact="s3://acme-finance-reports/cash_forecast/latest.parquet",
        artifact_mb=12, classification="confidential"),
    _nb("fin-invoice-reconciliation", "finance", 0, cron="15 * * * *", critical=True, tests=True, median=95,
        sigma=0.25, cells=14, mem_gb=3, checks=("unmatched_invoices_below_threshold",),
        artifact="warehouse.finance.invoice_matches", artifact_mb=20, classification="confidential"),
    _nb("fin-budget-vs-actuals", "finance", 1, cron="0 8 * * *", median=240, cells=16, manual=1.0,
        artifact="s3://acme-finance-reports/budget_vs_actuals.xlsx", artifact_mb=3),
    _nb("fin-expense-explorer", "finance", 2, median=120, sigma=0.6, cells=35, manual=3, ci=0, kernel=3,
        missing=("data_classification",)),
    _nb("fin-month-end-close", "finance", 1, median=700, cells=28, api=1.0, created=0.12, promote=0.55,
        api_params=({"period": "current"}, {"period": "previous"}), classification="confidential"),
    # risk
    _nb("risk-fraud-scoring", "risk", 0, cron="5 * * * *", critical=True, tests=True, median=160, sigma=0.2,
        cells=18, mem_gb=12, cores=4, checks=("score_distribution_stable", "no_null_scores"),
        artifact="warehouse.risk.fraud_scores", artifact_mb=60, incident=True, classification="restricted"),
    _nb("risk-credit-limits", "risk", 1, cron="0 2 * * *", critical=True, tests=False, median=1300, cells=26,
        mem_gb=16, cores=4, artifact="warehouse.risk.credit_limits", artifact_mb=90, classification="restricted",
        update=(0.4, {"has_tests": True})),
    _nb("risk-chargeback-monitor", "risk", 1, cron="40 * * * *", median=75, sigma=0.35, cells=12, p_fail=0.05,
        transient=0.9, checks=("chargeback_rate_below_alert",), check_fail={"chargeback_rate_below_alert": 0.03},
        artifact="warehouse.risk.chargebacks_hourly", artifact_mb=5),
    _nb("risk-model-drift", "risk", 0, cron="30 4 * * *", median=700, cells=22, mem_gb=6, cores=2,
        p_mismatch=0.12, artifact="s3://acme-risk-ml/drift/report.html", artifact_mb=4),
    _nb("risk-aml-explore", "risk", 1, median=200, sigma=0.7, cells=40, manual=2, ci=0, kernel=2,
        missing=("cost_center",), classification="restricted"),
    # ml-platform
    _nb("ml-feature-store-refresh", "ml-platform", 0, cron="0 * * * *", critical=True, tests=True, median=260,
        cells=15, mem_gb=10, cores=4, checks=("feature_freshness", "no_null_keys"),
        artifact="feast.online_store.user_features", artifact_mb=400),
    _nb("ml-churn-training", "ml-platform", 1, cron="0 1 * * *", median=2100, sigma=0.35, cells=34, mem_gb=28,
        cores=8, timeout=4500, p_oom=0.02, p_mismatch=0.55, artifact="mlflow://models/churn/candidate",
        artifact_mb=350, manual=0.5),
    _nb("ml-recsys-eval", "ml-platform", 2, cron="0 3 * * *", median=1500, cells=27, mem_gb=14, cores=4,
        p_mismatch=0.15, artifact="s3://acme-ml/recsys/eval/metrics.json", artifact_mb=1),
    _nb("ml-embedding-backfill", "ml-platform", 2, median=1800, sigma=0.4, cells=12, mem_gb=20, cores=8,
        p_oom=0.01, manual=0, api=2, api_params=tuple({"shard": s} for s in range(8))),
    _nb("ml-experiments-sandbox", "ml-platform", 1, median=150, sigma=0.8, cells=45, manual=4, ci=0, kernel=5,
        p_oom=0.01, missing=ALL_TAGS),
    _nb("ml-model-card-report", "ml-platform", 0, median=120, cells=10, manual=0.2, ci=3, created=None,
        promote=0.8),
    _nb("ml-gpu-benchmark", "ml-platform", 2, median=400, sigma=0.5, cells=20, mem_gb=24, cores=8, manual=1.5,
        ci=0, kernel=2, created=0.35, missing=("cost_center",)),
    # data-eng
    _nb("de-events-ingest-validate", "data-eng", 0, cron="20 * * * *", critical=True, tests=True, median=140,
        cells=13, mem_gb=4, cores=2, checks=("schema_matches_contract", "late_events_below_1pct"),
        artifact="warehouse.raw.events_validated", artifact_mb=800),
    _nb("de-orders-dedup", "data-eng", 1, cron="50 * * * *", median=110, sigma=0.35, cells=11, p_fail=0.04,
        transient=0.85, checks=("no_duplicate_order_ids",), check_fail={"no_duplicate_order_ids": 0.04},
        artifact="warehouse.core.orders", artifact_mb=300),
    _nb("de-warehouse-compaction", "data-eng", 2, cron="0 3 * * *", median=1500, cells=9, mem_gb=6, cores=2,
        artifact="warehouse.maintenance.compaction_log", artifact_mb=1, stops=50),
    _nb("de-schema-drift-check", "data-eng", 0, cron="0 4 * * *", median=180, cells=10, ci=1,
        checks=("schema_matches_contract", "no_new_nullable_columns"),
        check_fail={"schema_matches_contract": 0.12}),
    _nb("de-cdc-backfill", "data-eng", 1, median=900, sigma=0.5, cells=14, mem_gb=8, cores=2, manual=0, api=1,
        created=0.05, promote=0.3,
        api_params=({"table": "orders"}, {"table": "customers"}, {"table": "payments"})),
    _nb("de-s3-inventory", "data-eng", 2, cron="15 6 * * 1-5", median=300, cells=8,
        artifact="s3://acme-data-eng/inventory/summary.parquet", artifact_mb=25),
    _nb("de-scratch", "data-eng", 1, median=90, sigma=0.8, cells=30, manual=3, ci=0, kernel=3,
        missing=ALL_TAGS, unowned=True,  # registered bare by a service account; its owner tags it halfway
        update=(0.5, {"owner": "@owner", "tags": {"team": "data-eng", "cost_center": "cc-2200",
                                                  "data_classification": "internal", "domain": "data-eng",
                                                  "tier": "exploratory"}})),
    # marketing
    _nb("mkt-campaign-attribution", "marketing", 0, cron="0 8 * * *", tz="America/New_York", median=600,
        cells=21, mem_gb=6, cores=2, artifact="warehouse.marketing.attribution", artifact_mb=70,
        missing=("cost_center",)),
    _nb("mkt-ab-test-readout", "marketing", 1, median=90, cells=16, manual=1, api=6, ci=1, promote=0.45,
        api_params=({"experiment_id": "exp-checkout-v2"}, {"experiment_id": "exp-pricing-eu"},
                    {"experiment_id": "exp-onboarding-email"})),
    _nb("mkt-seo-report", "marketing", 1, cron="0 9 * * 1-5", median=200, cells=12,
        artifact="s3://acme-marketing/seo/weekly.html", artifact_mb=2),
    _nb("mkt-customer-segments", "marketing", 0, cron="45 5 * * *", median=800, cells=19, mem_gb=8, cores=2,
        p_mismatch=0.3, artifact="warehouse.marketing.segments", artifact_mb=40),
    _nb("mkt-funnel-adhoc", "marketing", 1, median=100, sigma=0.7, cells=25, manual=2, ci=0, kernel=2,
        missing=ALL_TAGS),
    # product-analytics
    _nb("pa-dau-mau", "product-analytics", 0, cron="30 6 * * *", median=350, cells=14,
        checks=("dau_not_zero",), artifact="warehouse.product.dau_mau", artifact_mb=8),
    _nb("pa-retention-cohorts", "product-analytics", 1, cron="30 7 * * *", median=500, cells=17, mem_gb=5,
        artifact="warehouse.product.retention", artifact_mb=15),
    _nb("pa-feature-adoption", "product-analytics", 2, median=260, cells=15, manual=1, created=0.25, promote=0.6,
        promote_cron="0 9 * * *", artifact="warehouse.product.feature_adoption", artifact_mb=6),
    _nb("pa-nps-text-mining", "product-analytics", 2, median=450, sigma=0.5, cells=23, mem_gb=6, manual=1,
        ci=0.5, p_mismatch=0.4),
    _nb("pa-exec-kpi-deck", "product-analytics", 0, cron="0 8 * * 1-5", critical=True, tests=False, median=300,
        cells=20, artifact="s3://acme-product/exec/kpi_deck.pdf", artifact_mb=9),
    _nb("pa-experiments-explore", "product-analytics", 1, median=130, sigma=0.7, cells=33, manual=3, ci=0,
        kernel=3),
    _nb("pa-search-quality", "product-analytics", 0, median=60, sigma=0.3, cells=9, manual=0.2, api=4,
        api_params=({"market": "us"}, {"market": "de"}, {"market": "fr"})),
)


@dataclass
class Platform:
    seed: int
    teams: tuple[Team, ...]
    notebooks: list[Notebook]
    by_team: dict[str, list[Notebook]]

    def notebook(self, notebook_id: str) -> Notebook:
        for nb in self.notebooks:
            if nb.id == notebook_id:
                return nb
        raise KeyError(notebook_id)


def build_platform(seed: int = 7) -> Platform:
    """The teams and notebooks: roles fixed, numbers (durations, sizes, cell profiles, ages) from the seed."""
    rng = random.Random(f"platform:{seed}")
    notebooks: list[Notebook] = []
    for spec in CATALOG:
        team = TEAM_BY_NAME[spec["team"]]
        owner = team.users[spec["owner"] % len(team.users)]
        tags: dict[str, Any] = {
            "team": team.name, "cost_center": team.cost_center, "data_classification": spec["classification"],
            "domain": spec["domain"] or team.name, "tier": "production" if spec["cron"] or spec["critical"]
            else "exploratory",
        }
        for key in spec["missing"]:
            tags.pop(key, None)
        median = spec["median"] * rng.uniform(0.85, 1.15)
        timeout = spec["timeout"] or max(900.0, math.ceil(median * 8 / 300) * 300)
        weights = tuple(rng.lognormvariate(0, 1.0) for _ in range(spec["cells"]))
        short = spec["id"].split("-", 1)[1].replace("-", "_")
        notebooks.append(Notebook(
            id=spec["id"], team=team.name, owner=owner, path=f"/shared/{team.name}/{short}.ipynb", tags=tags,
            critical=spec["critical"], has_tests=bool(spec["tests"]) if spec["tests"] is not None
            else rng.random() < 0.35,
            median=median, sigma=spec["sigma"], cells=spec["cells"],
            mem_bytes=int(spec["mem_gb"] * rng.uniform(0.7, 1.0) * 2**30), cores=spec["cores"], timeout=timeout,
            p_fail=spec["p_fail"] * rng.uniform(0.7, 1.3), transient_share=spec["transient"], p_oom=spec["p_oom"],
            p_mismatch=spec["p_mismatch"], checks=spec["checks"], check_fail=spec["check_fail"] or {},
            artifact=spec["artifact"], artifact_bytes=int(spec["artifact_mb"] * 2**20 * rng.uniform(0.8, 1.2)),
            manual=spec["manual"], api=spec["api"], ci=spec["ci"], kernel_weight=spec["kernel"],
            api_params=spec["api_params"], cron=spec["cron"], tz=spec["tz"], created_frac=spec["created"],
            created_days_before=rng.uniform(12, 40) if spec["promote"] is not None else rng.uniform(60, 540),
            promote_frac=spec["promote"], promote_cron=spec["promote_cron"], incident=spec["incident"],
            stops_hours_before_end=spec["stops"], cell_weights=weights, update=spec["update"],
            unowned=spec["unowned"],
        ))
    by_team: dict[str, list[Notebook]] = {t.name: [] for t in TEAMS}
    for nb in notebooks:
        by_team[nb.team].append(nb)
    return Platform(seed, TEAMS, notebooks, by_team)


# ---- small helpers -----------------------------------------------------------------------------------------------


def _iso(t: float) -> str:
    s = int(t)
    ms = int((t - s) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ms:03d}Z"


def _hash(*parts: Any) -> str:
    return "sha256:" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _alnum(rng: random.Random, n: int, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
           ) -> str:
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in s) and any(c.isalpha() for c in s):
            return s


def _activity(t: float) -> float:
    """Relative human activity at UTC time t: business hours on weekdays, little at night and on weekends."""
    tm = time.gmtime(t)
    h = tm.tm_hour
    f = 1.0 if 7 <= h < 18 else 0.35 if (6 <= h < 7 or 18 <= h < 22) else 0.05
    return f * (0.15 if tm.tm_wday >= 5 else 1.0)


def cron_slots(cron: str, tz: str | None, lo: float, hi: float) -> list[float]:
    """Epoch seconds of the cron slots in [lo, hi) for the patterns the demo uses (`M * * * *`, `M H * * *`,
    `M H * * 1-5`, `M H * * D`); checked against croniter in the tests."""
    minute_s, hour_s, dom, month, dow = cron.split()
    if dom != "*" or month != "*":
        raise ValueError(f"unsupported demo cron {cron!r}")
    minute = int(minute_s)
    out: list[float] = []
    if hour_s == "*":
        if dow != "*":
            raise ValueError(f"unsupported demo cron {cron!r}")
        t = math.floor(lo / HOUR) * HOUR + minute * MINUTE
        while t < hi:
            if t >= lo:
                out.append(t)
            t += HOUR
        return out
    zone = ZoneInfo(tz or "UTC")
    days: set[int] | None = None
    if dow != "*":
        if "-" in dow:
            a, b = (int(x) for x in dow.split("-"))
            days = {d % 7 for d in range(a, b + 1)}
        else:
            days = {int(x) % 7 for x in dow.split(",")}
    d = datetime.fromtimestamp(lo, zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(hi, zone).date() + timedelta(days=1)
    while d <= last:
        cron_dow = (d.weekday() + 1) % 7  # cron: 0 = Sunday
        if days is None or cron_dow in days:
            t = datetime(d.year, d.month, d.day, int(hour_s), minute, tzinfo=zone).timestamp()
            if lo <= t < hi:
                out.append(t)
        d += timedelta(days=1)
    return out


# ---- the event builders (shared by history and live traffic) ----------------------------------------------------


class _Ctx:
    """What the builders need: a random stream, a sink for events, and the state of the platform over time."""

    rng: random.Random
    platform: Platform
    live: bool = False

    def __init__(self, platform: Platform, rng: random.Random) -> None:
        self.platform = platform
        self.rng = rng
        self.baselines: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        self.env_changes: dict[str, list[float]] = {}

    # overridden
    def emit(self, t: float, source: str, type_: str, eid: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def incident_active(self, nb: Notebook, t: float) -> bool:
        raise NotImplementedError

    def environment(self, nb: Notebook, trigger: str, t: float) -> str:
        if trigger == "ci":
            return "staging"
        if trigger == "manual":
            return "dev"
        prod = nb.cron is not None or (nb.promote_frac is not None and self.promoted(nb, t))
        return "prod" if prod else "staging"

    def promoted(self, nb: Notebook, t: float) -> bool:
        return True

    def env_version(self, nb: Notebook, t: float) -> int:
        return sum(1 for c in self.env_changes.get(nb.id, ()) if c <= t)


def _base(nb: Notebook, **kw: Any) -> dict[str, Any]:
    d = {"notebook_id": nb.id, "notebook_path": nb.path, "team": nb.team, "owner": nb.owner}
    d.update(kw)
    return d


def _cell_plan(ctx: _Ctx, nb: Notebook, full: float) -> list[float]:
    rng = ctx.rng
    w = [x * rng.lognormvariate(0, 0.15) for x in nb.cell_weights]
    s = sum(w)
    return [full * x / s for x in w]


def _cells_until(plan: list[float], stop_at: int, last_duration: float, last_status: str
                 ) -> tuple[list[dict[str, Any]], float]:
    """Cells 0..stop_at-1 ok, cell stop_at takes `last_duration` with `last_status`, the rest skipped."""
    cells: list[dict[str, Any]] = []
    total = 0.0
    for i, d in enumerate(plan):
        if i < stop_at:
            v = round(d, 3)
            cells.append({"index": i, "duration_seconds": v, "status": "ok"})
        elif i == stop_at:
            v = round(max(last_duration, 0.0), 3)
            cells.append({"index": i, "duration_seconds": v, "status": last_status})
        else:
            v = 0.0
            cells.append({"index": i, "duration_seconds": 0.0, "status": "skipped"})
        total += v
    return cells, round(total, 3)


def _traceback(etype: str, message: str, cell: int, code: str) -> str:
    short = etype.rsplit(".", 1)[-1]
    line = 3 + cell % 9
    return (
        "---------------------------------------------------------------------------\n"
        f"{short:<40} Traceback (most recent call last)\n"
        f"Cell In[{cell + 1}], line {line}\n"
        f"    {line - 1} df = load_partition(run_date)\n"
        f"--> {line} {code}\n\n"
        f"{message}"
    )


_CODE = {
    "KeyError": "df = df[df[\"{col}\"].notna()]",
    "ValueError": "df[\"amount_eur\"] = df[\"amount_eur\"].astype(float)",
    "AssertionError": "assert len(df) > 0, f\"expected at least 1 row for partition dt={{run_date}}\"",
    "pandas.errors.MergeError": "out = orders.merge(customers, on=\"customer_id\", validate=\"one_to_one\")",
    "requests.exceptions.ConnectionError": "resp = session.get(FX_RATES_URL, timeout=30)",
    "FileNotFoundError": "raw = pd.read_parquet(partition_uri(run_date, hour))",
    "botocore.exceptions.ClientError": "s3.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())",
    "snowflake.connector.errors.OperationalError": "cur.execute(QUERY, params)",
    "DeadKernelError": "features = build_feature_matrix(events, window_days=90)",
}


def _planted_secret(ctx: _Ctx, kind: str) -> dict[str, Any]:
    """A failure whose message/traceback/parameters carry a real-looking credential (for the redactor)."""
    rng = ctx.rng
    if kind == "aws":
        key_id = "AKIA" + _alnum(rng, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        secret = _alnum(rng, 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+")
        etype = "botocore.exceptions.ClientError"
        msg = ("ClientError: An error occurred (InvalidAccessKeyId) when calling the GetObject operation: "
               "The AWS Access Key Id you provided does not exist in our records.")
        code = f's3 = boto3.client("s3", aws_access_key_id="{key_id}", aws_secret_access_key="{secret}")'
        return {"error_type": etype, "error_message": msg, "code": code, "parameters": None}
    if kind == "postgres":
        user = rng.choice(("etl_loader", "analytics_rw", "reporting"))
        pw = _alnum(rng, 16)
        dsn = f"postgresql://{user}:{pw}@pg-warehouse.internal.acme.io:5432/warehouse"
        etype = "sqlalchemy.exc.OperationalError"
        msg = ('(psycopg2.OperationalError) connection to server at "pg-warehouse.internal.acme.io" (10.20.3.14), '
               f'port 5432 failed: FATAL:  password authentication failed for user "{user}"\n'
               f"(engine url: {dsn})")
        code = f'engine = create_engine("{dsn}")'
        return {"error_type": etype, "error_message": msg, "code": code, "parameters": {"dsn": dsn}}
    token = "ghp_" + _alnum(rng, 36)
    etype = "subprocess.CalledProcessError"
    msg = ("CalledProcessError: Command '['git', 'clone', "
           f"'https://x-access-token:{token}@github.com/acme/feature-store.git']' returned non-zero exit status 128.")
    code = f'subprocess.run(["git", "clone", "https://x-access-token:{token}@github.com/acme/feature-store.git"], check=True)'
    return {"error_type": etype, "error_message": msg, "code": code, "parameters": None}


def _run(ctx: _Ctx, nb: Notebook, t_queue: float, trigger: str, run_id: str, params: dict[str, Any],
         input_key: str, *, scheduled_for: float | None = None, planted: str | None = None,
         duration_cap: float | None = None, force: str | None = None) -> None:
    """One run: queued -> started -> terminal per attempt, retries as attempts 2/3 of the same run_id, then
    quality checks, artifact and (CI) reproducibility check after a success."""
    rng = ctx.rng
    source = {"scheduled": SRC_SCHEDULER, "api": SRC_API, "ci": SRC_CI}.get(trigger) or TEAM_BY_NAME[nb.team].hub
    max_attempts = {"scheduled": 3, "api": 2}.get(trigger, 1)
    params_hash = _hash("params", orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode())
    input_hash = _hash("input", nb.id, input_key)
    incident = ctx.incident_active(nb, t_queue) and trigger == "scheduled"
    secret = _planted_secret(ctx, planted) if planted else None
    if secret and secret["parameters"]:
        params = {**params, **secret["parameters"]}
    t = t_queue
    prev_err: tuple[str, str, bool] | None = None
    env = ctx.environment(nb, trigger, t_queue)
    for attempt in range(1, max_attempts + 1):
        env_hash = _hash("env", nb.id, ctx.env_version(nb, t))
        common = _base(nb, run_id=run_id, attempt=attempt, trigger=trigger, environment=env)
        if scheduled_for is not None:
            common["scheduled_for"] = _iso(scheduled_for)
        queued = dict(common)
        if params:
            queued["parameters"] = params
        ctx.emit(t, source, "notebook.run.queued", f"{run_id}/{attempt}/queued", queued)
        wait = rng.lognormvariate(math.log(5), 0.8)
        if time.gmtime(t).tm_min < 10:
            wait *= 3  # top-of-the-hour congestion
        t_start = t + wait
        ctx.emit(t_start, source, "notebook.run.started", f"{run_id}/{attempt}/started", dict(common))

        full = nb.median * rng.lognormvariate(0, nb.sigma)
        if duration_cap is not None:
            full = min(full, duration_cap * rng.uniform(0.3, 1.0))
        plan = _cell_plan(ctx, nb, full)
        n = len(plan)
        timeout = nb.timeout if duration_cap is None else max(duration_cap * 1.5, 30.0)
        outcome = "succeeded"
        err: tuple[str, str, bool] | None = None
        u = rng.random()
        p_cancel = {"manual": 0.02, "api": 0.008, "ci": 0.01}.get(trigger, 0.002)
        if incident:
            err = INCIDENT_ERROR
        elif force is not None and attempt == 1:
            outcome = force  # a forced timeout is a hang in one cell
        elif secret is not None:
            err = (secret["error_type"], secret["error_message"], False)
        elif prev_err is not None:
            if prev_err[0] == "TimeoutError":
                if rng.random() < 0.3:
                    outcome = "timed_out"
            elif rng.random() < (0.25 if prev_err[2] else 0.85):
                err = prev_err  # transient errors usually clear on retry, data errors usually do not
        elif u < nb.p_oom:
            err = OOM_ERROR
        elif u < nb.p_oom + nb.p_fail:
            pool = TRANSIENT_ERRORS if rng.random() < nb.transient_share else DATA_ERRORS
            err = rng.choice(pool)
        elif u < nb.p_oom + nb.p_fail + 0.002 or full > timeout:
            outcome = "timed_out"
        elif u < nb.p_oom + nb.p_fail + 0.002 + p_cancel:
            outcome = "cancelled"

        data = dict(common)
        if err is not None:
            outcome = "failed"
            k = rng.randrange(max(1, n // 3), n) if err is not OOM_ERROR else max(0, n - 1 - rng.randrange(3))
            cells, duration = _cells_until(plan, k, plan[k] * rng.uniform(0.05, 1.0), "error")
            date = time.strftime("%Y-%m-%d", time.gmtime(scheduled_for or t))
            col = rng.choice(COLUMNS)
            message = err[1].format(col=col, date=date, hour=time.strftime("%H", time.gmtime(scheduled_for or t)))
            code = secret["code"] if secret else _CODE.get(err[0], "run_step()").format(col=col)
            data["error_type"] = err[0]
            data["error_message"] = message
            data["traceback"] = _traceback(err[0], message, k, code)
            prev_err = err
        elif outcome == "timed_out":
            acc, k = 0.0, 0
            hang = full <= timeout
            if hang:
                k = rng.randrange(n)
                acc = sum(plan[:k])
            else:
                while k < n - 1 and acc + plan[k] < timeout:
                    acc += plan[k]
                    k += 1
            cells, duration = _cells_until(plan, k, timeout - acc, "error")
            data["error_type"] = "TimeoutError"
            data["error_message"] = (f"PapermillExecutionError: cell {k} did not complete within the run timeout of "
                                     f"{int(timeout)} s")
            prev_err = ("TimeoutError", "", True)
        elif outcome == "cancelled":
            stop = full * rng.uniform(0.05, 0.9)
            acc, k = 0.0, 0
            while k < n - 1 and acc + plan[k] < stop:
                acc += plan[k]
                k += 1
            cells, duration = _cells_until(plan, k, stop - acc, "error")
            data["error_type"] = "KeyboardInterrupt"
            data["error_message"] = "run cancelled by " + (nb.owner if trigger == "manual" else "operator")
        else:
            cells, duration = _cells_until(plan, n, 0.0, "ok")
            cells = cells[:n]
        t_end = t_start + duration
        data["duration_seconds"] = duration
        data["cells"] = cells
        data["input_hash"] = input_hash
        data["parameters_hash"] = params_hash
        data["env_hash"] = env_hash
        data["cpu_seconds"] = round(duration * nb.cores * rng.uniform(0.55, 0.95), 2)
        mem = nb.mem_bytes * rng.lognormvariate(0, 0.12)
        data["max_memory_bytes"] = int(nb.mem_bytes * 1.25) if err is OOM_ERROR else int(min(mem, nb.mem_bytes * 1.2))
        output_hash: str | None = None
        if outcome == "succeeded":
            if nb.p_mismatch and rng.random() < nb.p_mismatch:
                output_hash = _hash("out", nb.id, "nondeterministic", rng.getrandbits(64))
            else:
                output_hash = _hash("out", nb.id, input_hash, params_hash, env_hash)
            data["output_hash"] = output_hash
        ctx.emit(t_end, source, f"notebook.run.{outcome}", f"{run_id}/{attempt}/{outcome}", data)

        if outcome == "succeeded":
            _after_success(ctx, nb, t_end, trigger, run_id, attempt, env,
                           (nb.id, input_hash, params_hash, env_hash), output_hash or "")
            return
        if outcome == "cancelled" or attempt == max_attempts:
            return
        t = t_end + (rng.uniform(100, 140) if trigger == "scheduled" else rng.uniform(20, 60))


def _after_success(ctx: _Ctx, nb: Notebook, t: float, trigger: str, run_id: str, attempt: int, env: str,
                   key: tuple[str, str, str, str], output_hash: str) -> None:
    rng = ctx.rng
    baseline = ctx.baselines.get(key)
    if baseline is None:
        if len(ctx.baselines) >= 100_000:  # live traffic runs for days: keep memory bounded
            ctx.baselines.clear()
        ctx.baselines[key] = (run_id, output_hash)
    if trigger == "ci" and rng.random() < 0.5:
        # CI executes the notebook a second time and compares the outputs
        same = baseline[1] == output_hash if baseline is not None else rng.random() >= nb.p_mismatch
        data = _base(nb, run_id=run_id, attempt=attempt, trigger="ci", environment=env,
                     result="match" if same else "mismatch")
        if baseline is not None:
            data["baseline_run_id"] = baseline[0]
        ctx.emit(t + rng.uniform(3, 15), SRC_CI, "notebook.reproducibility.checked", f"{run_id}/repro", data)
    if trigger not in ("scheduled", "api"):
        return
    for check in nb.checks:
        failed = rng.random() < nb.check_fail.get(check, 0.008)
        data = _base(nb, run_id=run_id, attempt=attempt, environment=env, check=check,
                     result="fail" if failed else "pass")
        if failed:
            data["message"] = f"expectation {check} failed on {rng.randint(1, 4000)} of {rng.randint(50_000, 900_000)} rows"
        ctx.emit(t + rng.uniform(2, 20), SRC_QUALITY, "notebook.quality.checked", f"{run_id}/{attempt}/qc/{check}",
                 data)
    if nb.artifact and trigger == "scheduled":
        ctx.emit(t + rng.uniform(0.5, 3), SRC_ARTIFACTS, "notebook.artifact.published", f"{run_id}/{attempt}/artifact",
                 _base(nb, run_id=run_id, environment=env, artifact=nb.artifact, sla_seconds=nb.sla_seconds,
                       size_bytes=int(nb.artifact_bytes * rng.lognormvariate(0, 0.08))))


_KERNEL_NAMES = {"ml-platform": ("python3", "python3", "pytorch-gpu"), "data-eng": ("python3", "pyspark"),
                 "product-analytics": ("python3", "python3", "ir")}


def _kernel_session(ctx: _Ctx, team: Team, user: str, nb: Notebook, t0: float, *, planted: str | None = None,
                    length_scale: float = 1.0, death: str | None = None) -> None:
    rng = ctx.rng
    kid = _uuid(rng)
    common = {"kernel_id": kid, "session_id": _uuid(rng), "team": team.name, "owner": user, "notebook_id": nb.id,
              "notebook_path": nb.path, "environment": "dev"}
    seq = 0

    def emit(t: float, type_: str, **extra: Any) -> None:
        nonlocal seq
        seq += 1
        ctx.emit(t, team.hub, type_, f"{kid}/{seq}", {**common, **extra})

    emit(t0, "notebook.kernel.started", kernel_name=rng.choice(_KERNEL_NAMES.get(team.name, ("python3",))))
    length = min(rng.lognormvariate(math.log(45 * MINUTE), 1.0), 10 * HOUR) * length_scale
    length = max(length, 20.0 * min(1.0, length_scale * 10))
    restarts: list[tuple[float, str]] = []
    r = rng.random()
    if r < 0.12:
        restarts.append((t0 + rng.uniform(0.1, 0.9) * length, "user"))
        if r < 0.03:
            restarts.append((t0 + rng.uniform(0.1, 0.9) * length, "user"))
    p_oom = {"ml-platform": 0.02, "data-eng": 0.008}.get(team.name, 0.003)
    if rng.random() < p_oom:
        restarts.append((t0 + rng.uniform(0.2, 0.95) * length, "oom"))
    if rng.random() < 0.004:
        restarts.append((t0 + rng.uniform(0.2, 0.95) * length, "crash"))
    for t, reason in sorted(restarts):
        emit(t, "notebook.kernel.restarted", reason=reason)
    t_end = t0 + length
    died = planted is not None or death is not None or rng.random() < (0.01 if team.name == "ml-platform" else 0.005)
    if died:
        if planted is not None:
            secret = _planted_secret(ctx, planted)
            emit(t_end, "notebook.kernel.died", reason="crash", exit_code=1,
                 msg="Kernel died unexpectedly while executing a cell",
                 traceback=_traceback(secret["error_type"], secret["error_message"], 2, secret["code"]))
            return
        reason = death or rng.choices(("crash", "oom", "signal", "unknown"), (40, 40, 15, 5))[0]
        extra: dict[str, Any] = {"reason": reason}
        if reason == "oom":
            extra.update(exit_code=137, signal="SIGKILL", msg="Kernel exceeded its memory limit (OOMKilled)")
        elif reason == "crash":
            extra.update(exit_code=139, signal="SIGSEGV",
                         msg="Kernel died: segmentation fault",
                         traceback="Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f3a (most recent "
                                   "call first):\n  File \"/opt/conda/lib/python3.11/site-packages/pyarrow/parquet/"
                                   "core.py\", line 2961 in read_table")
        elif reason == "signal":
            extra.update(exit_code=143, signal="SIGTERM", msg="Kernel terminated by signal SIGTERM (node drained)")
        emit(t_end, "notebook.kernel.died", **extra)
        return
    r = rng.random()
    if r < 0.55:
        emit(t_end, "notebook.kernel.shutdown", reason="user")
    elif r < 0.98:
        emit(t_end + HOUR * min(1.0, length_scale * 10), "notebook.kernel.shutdown", reason="culled")
    else:
        emit(t_end, "notebook.kernel.shutdown", reason="server_stop")


_RESOURCES = ("s3://acme-finance-restricted/payroll/", "/shared/risk/aml_watchlist.ipynb",
              "warehouse.risk.credit_limits", "s3://acme-ml/models/prod/", "/shared/finance/revenue_recognition.ipynb",
              "secrets/snowflake-prod")


def _access_denied(ctx: _Ctx, t: float, eid: str) -> None:
    rng = ctx.rng
    team = rng.choice(TEAMS)
    principal = rng.choice(team.users + ("svc-airflow", "svc-papermill"))
    ctx.emit(t, SRC_AUDIT, "notebook.security.access_denied", eid,
             {"principal": principal, "resource": rng.choice(_RESOURCES),
              "action": rng.choice(("read", "read", "write", "execute")), "team": team.name})


def _secret_reported(ctx: _Ctx, nb: Notebook, t: float, eid: str) -> None:
    rng = ctx.rng
    ctx.emit(t, SRC_SCANNER, "notebook.security.secret_detected", eid,
             _base(nb, detector=rng.choice(("gitleaks", "trufflehog")),
                   location=f"cell {rng.randint(1, nb.cells)} (code), line {rng.randint(1, 30)}"))


def _probe(ctx: _Ctx, t: float, target: str, median: float, ok: bool) -> None:
    rng = ctx.rng
    latency = 10.0 if not ok else round(median * rng.lognormvariate(0, 0.35) * (1.3 if _activity(t) >= 1 else 1.0), 4)
    ctx.emit(t, SRC_PROBE, "platform.probe", f"{target}/{int(t // 60)}",
             {"target": target, "ok": ok, "latency_seconds": latency, "environment": "prod"})


# ---- history -----------------------------------------------------------------------------------------------------


@dataclass
class _Story:
    """Window-relative incidents: fixed by (start, end) so a short history still has each of them."""

    start: float
    end: float
    incident_start: float  # the critical notebook fails every attempt from here on
    scheduler_outage: tuple[float, float]  # every scheduled slot inside is missed
    probe_outages: list[tuple[float, float, tuple[str, ...]]]
    planted: list[tuple[float, str, str]]  # (time, kind, carrier)
    reported_secrets: list[float]
    forced_runs: list[tuple[float, str, str, str]]  # (time, notebook, trigger, outcome)
    forced_deaths: list[tuple[float, str, str]]  # (time, notebook, reason)


def _story(start: float, end: float) -> _Story:
    span = end - start
    planted: list[tuple[float, str, str]] = []
    kinds = ("aws", "postgres", "github")
    carriers = {"aws": "manual", "postgres": "api", "github": "ci"}
    for i, hours in enumerate((5.2, 17.4, 29.6)):
        planted.append((end - hours * HOUR, kinds[i], carriers[kinds[i]]))
    j = 0
    t = end - 29.6 * HOUR - 4.1 * DAY
    while t > start + HOUR:
        kind = kinds[j % 3]
        planted.append((t, kind, "kernel" if j % 2 else carriers[kind]))
        j += 1
        t -= 4.1 * DAY
    planted = [p for p in planted if p[0] >= start]
    outage_at = start + 0.42 * span
    return _Story(
        start=start, end=end, incident_start=end - 5.25 * HOUR,
        scheduler_outage=(outage_at, outage_at + 2.5 * HOUR),
        probe_outages=[(start + 0.63 * span, start + 0.63 * span + 14 * MINUTE, ("hub-ui", "hub-api")),
                       (start + 0.21 * span, start + 0.21 * span + 5 * MINUTE, ("hub-api",))],
        planted=sorted(planted),
        reported_secrets=[start + 0.3 * span, start + 0.86 * span],
        # so that even a short history shows each outcome: a hung embedding job, a cancelled exploration, an OOM
        forced_runs=[(end - 38.3 * HOUR, "ml-embedding-backfill", "api", "timed_out"),
                     (end - 14.6 * HOUR, "fin-expense-explorer", "manual", "cancelled")],
        forced_deaths=[(end - 26.4 * HOUR, "ml-experiments-sandbox", "oom")],
    )


class _History(_Ctx):
    def __init__(self, platform: Platform, seed: int, days: int, start: float, end: float) -> None:
        super().__init__(platform, random.Random(f"history:{seed}:{days}:{_iso(end)}"))
        self.start, self.end = start, end
        self.story = _story(start, end)
        self.pending: list[tuple[float, int, dict[str, Any]]] = []
        self.seq = 0
        span = end - start
        rng = self.rng
        for nb in platform.notebooks:
            n = _poisson(rng, span / (9 * DAY))
            self.env_changes[nb.id] = sorted(start + rng.random() * span for _ in range(n))
        # registry changes at their fraction of the window, plus a few hours of jitter (office hours are messy)
        self.created = {nb.id: (start + nb.created_frac * span + rng.uniform(0, 0.1) * min(span, DAY)
                                if nb.created_frac is not None else start - nb.created_days_before * DAY)
                        for nb in platform.notebooks}
        self.promoted_at = {nb.id: start + nb.promote_frac * span + rng.uniform(0, 0.15) * min(span, DAY)
                            for nb in platform.notebooks if nb.promote_frac is not None}
        self.updated_at = {nb.id: start + nb.update[0] * span + rng.uniform(0, 0.15) * min(span, DAY)
                           for nb in platform.notebooks if nb.update is not None}

    def emit(self, t: float, source: str, type_: str, eid: str, data: dict[str, Any]) -> None:
        if self.start <= t < self.end:
            self.seq += 1
            self.pending.append((t, self.seq, {"specversion": "1.0", "id": eid, "source": source, "type": type_,
                                               "time": _iso(t), "data": data}))

    def incident_active(self, nb: Notebook, t: float) -> bool:
        return nb.incident and t >= self.story.incident_start

    def promoted(self, nb: Notebook, t: float) -> bool:
        p = self.promoted_at.get(nb.id)
        return p is not None and t >= p

    def exists(self, nb: Notebook, t: float) -> bool:
        return t >= self.created[nb.id]

    # -- per-day generation --

    def registry(self, lo: float, hi: float) -> None:
        start = self.start
        for i, nb in enumerate(self.platform.notebooks):
            created = self.created[nb.id]
            reg_t = start + i * 0.001 if created < start else created
            if lo <= reg_t < hi:
                data = _base(nb, tags=dict(nb.tags), critical=nb.critical, has_tests=nb.has_tests,
                             created_at=_iso(created),
                             environment="prod" if nb.cron else "dev")
                if not nb.tags:  # registered with no tags at all (not searchable, M9)
                    del data["tags"]
                if nb.unowned:
                    del data["owner"]
                self.emit(reg_t, SRC_REGISTRY, "notebook.registered", f"{nb.id}/registered", data)
                if nb.cron:
                    self.emit(reg_t + 0.5, SRC_REGISTRY, "notebook.schedule.registered", f"{nb.id}/schedule/1",
                              self._schedule_data(nb, nb.cron))
            p = self.promoted_at.get(nb.id)
            if p is not None and lo <= p < hi:
                self.emit(p, SRC_REGISTRY, "notebook.promoted", f"{nb.id}/promoted",
                          _base(nb, environment="prod"))
                if nb.promote_cron:
                    self.emit(p + 1.0, SRC_REGISTRY, "notebook.schedule.registered", f"{nb.id}/schedule/1",
                              self._schedule_data(nb, nb.promote_cron))
            if nb.stops_hours_before_end is not None and nb.artifact:
                # a day after its DAG silently stopped, the owner retires the artifact nobody refreshes any more
                t = self.end - (nb.stops_hours_before_end - 24) * HOUR
                if lo <= t < hi:
                    self.emit(t, SRC_REGISTRY, "notebook.artifact.retired", f"{nb.id}/artifact/retired",
                              _base(nb, artifact=nb.artifact))
            if nb.update is not None:
                u = self.updated_at[nb.id]
                if lo <= u < hi and u > created:
                    fields = {k: (nb.owner if v == "@owner" else v) for k, v in nb.update[1].items()}
                    data = {"notebook_id": nb.id, "team": nb.team, **({} if nb.unowned else {"owner": nb.owner}),
                            **fields}
                    self.emit(u, SRC_REGISTRY, "notebook.updated", f"{nb.id}/updated/1", data)

    @staticmethod
    def _schedule_data(nb: Notebook, cron: str) -> dict[str, Any]:
        d = _base(nb, cron=cron, timezone=nb.tz or "UTC", grace_seconds=nb.grace if nb.cron else 3600.0,
                  environment="prod")
        return d

    def probes(self, lo: float, hi: float) -> None:
        rng = self.rng
        t = math.ceil(lo / MINUTE) * MINUTE
        outages = self.story.probe_outages
        while t < hi:
            for target, median in PROBE_TARGETS:
                ok = rng.random() >= 0.0004
                for a, b, targets in outages:
                    if a <= t < b and target in targets:
                        ok = False
                _probe(self, t + rng.uniform(0, 0.4), target, median, ok)
            t += MINUTE

    def scheduled(self, lo: float, hi: float) -> None:
        rng = self.rng
        out_a, out_b = self.story.scheduler_outage
        for nb in self.platform.notebooks:
            cron = nb.cron
            since = self.start
            if cron is None and nb.promote_cron and nb.id in self.promoted_at:
                cron, since = nb.promote_cron, self.promoted_at[nb.id] + 1.0
            if cron is None:
                continue
            for slot in cron_slots(cron, nb.tz, max(lo, since), hi):
                if out_a <= slot < out_b:
                    continue  # scheduler outage: the slot is missed
                if nb.stops_hours_before_end is not None and slot >= self.end - nb.stops_hours_before_end * HOUR:
                    continue  # the DAG silently stopped being scheduled
                if rng.random() < 0.004:
                    continue  # a random missed slot
                lag = 1 + rng.expovariate(1 / 4)
                if rng.random() < 0.02:
                    lag += rng.uniform(60, 400)
                run_id = f"{nb.id}@{time.strftime('%Y%m%dT%H%M', time.gmtime(slot))}Z"
                hourly = cron.split()[1] == "*"
                key = time.strftime("%Y-%m-%dT%H:00" if hourly else "%Y-%m-%d", time.gmtime(slot))
                params = {"window_start": key} if hourly else {"run_date": key}
                _run(self, nb, slot + lag, "scheduled", run_id, params, key, scheduled_for=slot)
                if rng.random() < 0.015:
                    # someone reruns the slot by hand later: a reproducibility comparison
                    t = slot + rng.uniform(2 * HOUR, 8 * HOUR)
                    if t < hi:
                        _run(self, nb, t, "manual", f"r-{rng.getrandbits(64):016x}", params, key)

    def adhoc(self, lo: float, hi: float) -> None:
        rng = self.rng
        planted = [(t, kind, carrier) for t, kind, carrier in self.story.planted if lo <= t < hi]
        h = math.floor(lo / HOUR) * HOUR
        while h < hi:
            a, b = max(h, lo), min(h + HOUR, hi)
            frac = (b - a) / HOUR
            act = _activity(h)
            for nb in self.platform.notebooks:
                for trigger, per_day, shape, hours in (("manual", nb.manual, act, 11.0), ("api", nb.api, 1.0, 24.0),
                                                       ("ci", nb.ci, act, 11.0)):
                    if not per_day or not shape:
                        continue
                    lam = per_day / hours * shape * frac
                    for _ in range(_poisson(rng, lam)):
                        t = rng.uniform(a, b)
                        if self.exists(nb, t):
                            self._adhoc_run(nb, t, trigger)
            # interactive kernel sessions: ~30 per team-user-day, during working hours
            for team in TEAMS:
                lam = len(team.users) * 1.6 * act * frac
                for _ in range(_poisson(rng, lam)):
                    t = rng.uniform(a, b)
                    nbs = [nb for nb in self.platform.by_team[team.name] if self.exists(nb, t)]
                    nb = rng.choices(nbs, [x.kernel_weight for x in nbs])[0]
                    _kernel_session(self, team, rng.choice(team.users), nb, t)
            for _ in range(_poisson(rng, 0.15 * frac * (0.5 + act))):
                t = rng.uniform(a, b)
                _access_denied(self, t, f"denied/{int(t * 1000)}/{rng.getrandbits(32):08x}")
            h += HOUR
        for t, kind, carrier in planted:
            nb = rng.choice([n for n in self.platform.notebooks if self.exists(n, t) and not n.incident])
            if carrier == "kernel":
                team = TEAM_BY_NAME[nb.team]
                _kernel_session(self, team, nb.owner, nb, t, planted=kind)
            else:
                self._adhoc_run(nb, t, carrier, planted=kind)
        for t, nb_id, trigger, outcome in self.story.forced_runs:
            nb = self.platform.notebook(nb_id)
            if lo <= t < hi and self.exists(nb, t):
                self._adhoc_run(nb, t, trigger, force=outcome)
        for t, nb_id, reason in self.story.forced_deaths:
            nb = self.platform.notebook(nb_id)
            if lo <= t < hi:
                _kernel_session(self, TEAM_BY_NAME[nb.team], nb.owner, nb, t, death=reason)
        for t in self.story.reported_secrets:
            if lo <= t < hi:
                nb = rng.choice([n for n in self.platform.notebooks if self.exists(n, t)])
                _secret_reported(self, nb, t, f"secret/{int(t)}")

    def _adhoc_run(self, nb: Notebook, t: float, trigger: str, planted: str | None = None,
                   force: str | None = None) -> None:
        rng = self.rng
        run_id = f"r-{rng.getrandbits(64):016x}"
        if trigger == "api":
            params = dict(rng.choice(nb.api_params))
            key = f"{time.strftime('%Y-%m-%dT%H', time.gmtime(t // (6 * HOUR) * 6 * HOUR))}"
        elif trigger == "ci":
            params, key = {"fixture": "ci-small"}, "fixture-v3"
        else:
            params = {"sample_frac": rng.choice((0.01, 0.1, 1.0))}
            key = time.strftime("%Y-%m-%d", time.gmtime(t))
        _run(self, nb, t, trigger, run_id, params, key, planted=planted, force=force)

    def flush(self, upto: float) -> list[dict[str, Any]]:
        self.pending.sort(key=lambda p: (p[0], p[1]))
        i = 0
        n = len(self.pending)
        while i < n and self.pending[i][0] < upto:
            i += 1
        out = [p[2] for p in self.pending[:i]]
        del self.pending[:i]
        return out


def _window(days: int, end: datetime | None) -> tuple[float, float]:
    if days <= 0:
        raise ValueError("days must be positive")
    if end is None:
        end = datetime.now(timezone.utc)
    elif end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    e = round(end.timestamp(), 3)
    return e - days * DAY, e


def generate(days: int = 30, seed: int = 7, end: datetime | None = None) -> Iterator[list[dict]]:
    """The history of the platform over [end - days, end) as chunks of ~10k raw events in time order.

    Deterministic: the same (days, seed, end) gives the same events, ids included.
    """
    start, stop = _window(days, end)
    platform = build_platform(seed)
    h = _History(platform, seed, days, start, stop)
    buf: list[dict[str, Any]] = []
    lo = start
    while lo < stop:
        hi = min(lo + DAY, stop)
        h.registry(lo, hi)
        h.probes(lo, hi)
        h.scheduled(lo, hi)
        h.adhoc(lo, hi)
        buf.extend(h.flush(hi))
        while len(buf) >= CHUNK_EVENTS:
            yield buf[:CHUNK_EVENTS]
            buf = buf[CHUNK_EVENTS:]
        lo = hi
    buf.extend(h.flush(math.inf))
    while buf:
        yield buf[:CHUNK_EVENTS]
        buf = buf[CHUNK_EVENTS:]


# ---- writing the history -----------------------------------------------------------------------------------------


@dataclass
class _Tally:
    events: int = 0
    teams: set[str] = field(default_factory=set)
    notebooks: set[str] = field(default_factory=set)
    attempts: set[tuple[str, int]] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)
    kernels: set[str] = field(default_factory=set)

    def add(self, chunk: list[dict[str, Any]]) -> None:
        self.events += len(chunk)
        for ev in chunk:
            d = ev["data"]
            ty = ev["type"]
            if ty == "notebook.registered":
                self.notebooks.add(d["notebook_id"])
                self.teams.add(d["team"])
            elif ty.startswith("notebook.run."):
                self.attempts.add((d["run_id"], d.get("attempt", 1)))
                self.runs.add(d["run_id"])
            elif ty == "notebook.kernel.started":
                self.kernels.add(d["kernel_id"])

    def line(self, seconds: float, extra: str = "") -> str:
        return (f"{self.events} events, {len(self.teams)} teams, {len(self.notebooks)} notebooks, "
                f"{len(self.runs)} runs ({len(self.attempts)} attempts), {len(self.kernels)} kernel sessions"
                f"{extra} in {seconds:.1f}s")


def write_ndjson(path: Path, days: int = 30, seed: int = 7, end: datetime | None = None) -> int:
    """Write the history as NDJSON (gzip when the name ends in .gz); returns the number of events."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    with opener(path, "wb") as f:
        for chunk in generate(days, seed, end):
            f.write(b"".join(orjson.dumps(ev) + b"\n" for ev in chunk))
            n += len(chunk)
    return n


def backfill(db: Path, days: int = 30, seed: int = 7, end: datetime | None = None) -> str:
    """Write the history into the DuckDB file through the collector's own validation and single writer."""
    from collector.settings import Settings
    from collector.ingest.store import Store
    from collector.contract.vectorized import BulkValidator

    t0 = time.perf_counter()
    tally = _Tally()
    rejected = 0
    store = Store(Settings(db=Path(db)))
    store.start()
    validator = BulkValidator()
    extra = ""
    try:
        inflight: deque = deque()
        for chunk in generate(days, seed, end):
            tally.add(chunk)
            v = validator.validate_items(chunk)
            rejected += len(v.rejections)
            inflight.append(store.writer.submit(v.table, v.rejections, channel="demo"))
            # validate the next chunk while the writer commits this one, but keep the queue short
            while len(inflight) > 2:
                inflight.popleft().result()
        while inflight:
            inflight.popleft().result()
        if rejected:
            log.warning("demo backfill: %d generated events were rejected (see dead_letters)", rejected)
            extra += f", {rejected} rejected"
        extra += _billing(store, seed)
    finally:
        store.close()
    return f"backfilled {tally.line(time.perf_counter() - t0, extra)} into {db}"


def _billing(store: Any, seed: int) -> str:
    """Demo billing lines for the runs just written (cost/demo.py)."""
    from cost.demo import demo_billing_lines as make, write_demo_billing as write

    import polars as pl

    with store.read_cursor() as cur:
        runs = pl.from_arrow(cur.sql("SELECT * FROM run_attempts ORDER BY run_id, attempt").to_arrow_table())
    lines = make(runs, seed)
    if not lines.height:
        return ", 0 billing lines"
    # in the writer thread, inside its transaction, like every other write
    store.writer.execute(lambda con: write(con, lines, manage_transaction=False)).result()
    return f", {lines.height} billing lines"


# ---- over HTTP ---------------------------------------------------------------------------------------------------


class DemoHTTPError(RuntimeError):
    pass


def _post(client: Any, url: str, body: bytes, *, attempts: int = 10) -> dict[str, Any]:
    """POST one gzip NDJSON batch; waits out 429 (Retry-After) and 503/connection errors with backoff."""
    import httpx

    delay = 0.5
    for i in range(attempts):
        try:
            resp = client.post(url, content=body, headers={"Content-Type": "application/x-ndjson",
                                                           "Content-Encoding": "gzip",
                                                           "Prefer": "return=minimal"})  # counts only
        except httpx.TransportError as exc:
            if i == attempts - 1:
                raise DemoHTTPError(f"collector unreachable at {url}: {type(exc).__name__}") from None
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        if resp.status_code in (200, 422):
            return resp.json()
        if resp.status_code in (429, 503) and i < attempts - 1:
            time.sleep(_retry_after(resp, delay))
            delay = min(delay * 2, 30.0)
            continue
        raise DemoHTTPError(f"POST {url} answered {resp.status_code}: {resp.text[:300]}")
    raise DemoHTTPError(f"POST {url}: gave up after {attempts} attempts")


def _retry_after(resp: Any, default: float) -> float:
    try:
        return min(max(float(resp.headers.get("Retry-After", default)), 0.1), 60.0)
    except ValueError:
        return default


def _client(token: str | None, timeout: float = 60.0) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(headers=headers, timeout=timeout)


def backfill_url(url: str, token: str | None, days: int = 30, seed: int = 7, end: datetime | None = None) -> str:
    """POST the history to a running collector as gzip NDJSON batches."""
    t0 = time.perf_counter()
    endpoint = url.rstrip("/") + "/v1/events"
    tally = _Tally()
    accepted = duplicates = rejected = 0
    with _client(token) as client:
        for chunk in generate(days, seed, end):
            tally.add(chunk)
            for i in range(0, len(chunk), HTTP_BATCH_EVENTS):
                batch = chunk[i:i + HTTP_BATCH_EVENTS]
                body = gzip.compress(b"".join(orjson.dumps(ev) + b"\n" for ev in batch), compresslevel=5)
                res = _post(client, endpoint, body)
                accepted += res.get("accepted", 0)
                duplicates += res.get("duplicates", 0)
                rejected += res.get("rejected", 0)
    extra = f" (accepted {accepted}, duplicates {duplicates}, rejected {rejected})"
    return f"posted {tally.line(time.perf_counter() - t0, extra)} to {endpoint}"


# ---- live traffic ------------------------------------------------------------------------------------------------


class _Live(_Ctx):
    live = True

    def __init__(self, platform: Platform, rng: random.Random) -> None:
        super().__init__(platform, rng)
        self.heap: list[tuple[float, int, dict[str, Any]]] = []
        self.seq = 0

    def emit(self, t: float, source: str, type_: str, eid: str, data: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, {"specversion": "1.0", "id": eid, "source": source, "type": type_,
                                                 "time": _iso(t), "data": data}))

    def incident_active(self, nb: Notebook, t: float) -> bool:
        return nb.incident  # the critical notebook keeps failing: its consecutive-failure alert stays up

    def due(self, now: float) -> list[dict[str, Any]]:
        out = []
        while self.heap and self.heap[0][0] <= now:
            out.append(heapq.heappop(self.heap)[2])
        return out


def stream_live(url: str, token: str | None, rate: float = 5.0, seed: int = 7,
                stop: threading.Event | None = None) -> None:
    """Send live demo traffic (about `rate` events/s, current timestamps) until `stop` is set.

    Never raises because the collector is away: unsent events wait in a bounded buffer (oldest dropped first)
    and sending retries with exponential backoff. Logs counts and error classes only, never payloads.
    """
    stop = stop or threading.Event()
    # one INFO line per POST from httpx would drown the collector's own log; restored on exit
    httpx_log = logging.getLogger("httpx")
    httpx_level = httpx_log.level
    httpx_log.setLevel(max(httpx_log.getEffectiveLevel(), logging.WARNING))
    platform = build_platform(seed)
    ctx = _Live(platform, random.Random(f"live:{seed}:{time.time_ns()}"))
    rng = ctx.rng
    endpoint = url.rstrip("/") + "/v1/events"
    buffer: deque[dict[str, Any]] = deque(maxlen=LIVE_BUFFER_EVENTS)
    sent = dropped = rejected = failures = 0
    # the first send waits a moment: `serve --demo` starts this thread just before the server listens
    backoff, next_try, last_send, last_report = 0.5, time.monotonic() + 0.5, 0.0, time.monotonic()
    now = time.time()
    next_probe = math.ceil(now / MINUTE) * MINUTE
    schedules: list[tuple[Notebook, str]] = []
    for nb in platform.notebooks:
        cron = nb.cron or nb.promote_cron
        if cron and nb.stops_hours_before_end is None:
            schedules.append((nb, cron))
    next_slot = {nb.id: (cron_slots(cron, nb.tz, now - 30, now + 8 * DAY) or [math.inf])[0]
                 for nb, cron in schedules}
    weights = []
    choices: list[tuple[str, Notebook]] = []
    for nb in platform.notebooks:
        for trigger, w in (("manual", nb.manual), ("api", nb.api), ("ci", nb.ci)):
            if w:
                choices.append((trigger, nb))
                weights.append(w)
    credit = 0.0
    tick = 0.2
    last = time.monotonic()
    client = None
    try:
        client = _client(token, timeout=5.0)
        while not stop.is_set():
            mono = time.monotonic()
            credit = min(credit + rate * (mono - last), max(rate * 5, 10.0))
            last = mono
            now = time.time()
            try:
                while credit > 0:
                    credit -= _spawn_live(ctx, now, choices, weights)
                while now >= next_probe:
                    for target, median in PROBE_TARGETS:
                        _probe(ctx, next_probe + rng.uniform(0, 0.4), target, median, rng.random() >= 0.0004)
                    next_probe += MINUTE
                for nb, cron in schedules:
                    slot = next_slot[nb.id]
                    if now >= slot:
                        run_id = f"{nb.id}@{time.strftime('%Y%m%dT%H%M', time.gmtime(slot))}Z"
                        hourly = cron.split()[1] == "*"
                        key = time.strftime("%Y-%m-%dT%H:00" if hourly else "%Y-%m-%d", time.gmtime(slot))
                        params = {"window_start": key} if hourly else {"run_date": key}
                        _run(ctx, nb, slot + 1 + rng.expovariate(1 / 4), "scheduled", run_id, params, key,
                             scheduled_for=slot)
                        next_slot[nb.id] = (cron_slots(cron, nb.tz, slot + 1, slot + 8 * DAY) or [math.inf])[0]
            except Exception as exc:  # noqa: BLE001 - a generator bug must not kill the demo
                log.error("demo live: generator error %s", type(exc).__name__)
            for ev in ctx.due(now):
                if len(buffer) == buffer.maxlen:
                    dropped += 1
                buffer.append(ev)
            if buffer and mono >= next_try and (mono - last_send >= 1.0 or len(buffer) >= HTTP_BATCH_EVENTS):
                last_send = mono
                n, ok, rej, why = _send_live(client, endpoint, buffer)
                if ok:
                    sent += n
                    rejected += rej
                    backoff = 0.5
                    next_try = 0.0
                else:
                    failures += 1
                    wait = why if isinstance(why, float) else backoff
                    next_try = mono + wait * rng.uniform(0.8, 1.2)
                    backoff = min(backoff * 2, 30.0)
                    if failures == 1 or failures % 20 == 0:
                        log.warning("demo live: collector not accepting events (%s); retrying in %.1fs, %d buffered",
                                    why if not isinstance(why, float) else "429/503", wait, len(buffer))
            if mono - last_report >= 60:
                last_report = mono
                log.info("demo live: %d events sent, %d buffered, %d dropped", sent, len(buffer), dropped)
            stop.wait(tick)
        # one last attempt for what is due already
        if buffer:
            n, ok, rej, _ = _send_live(client, endpoint, buffer)
            if ok:
                sent += n
                rejected += rej
    except Exception as exc:  # noqa: BLE001 - never crash the host process
        log.error("demo live: stopped on %s", type(exc).__name__)
    finally:
        httpx_log.setLevel(httpx_level)
        if client is not None:
            client.close()
        log.info("demo live: stopped; %d events sent, %d rejected, %d dropped, %d unsent", sent, rejected, dropped,
                 len(buffer), extra={"sent": sent, "rejected": rejected, "dropped": dropped, "unsent": len(buffer)})


def _spawn_live(ctx: _Live, now: float, choices: list[tuple[str, Notebook]], weights: list[float]) -> int:
    """Start one piece of live activity at `now`; returns how many events it will produce."""
    rng = ctx.rng
    before = ctx.seq
    r = rng.random()
    if r < 0.5:
        trigger, nb = rng.choices(choices, weights)[0]
        run_id = f"live-{rng.getrandbits(64):016x}"
        if trigger == "api":
            params, key = dict(rng.choice(nb.api_params)), time.strftime("%Y-%m-%dT%H", time.gmtime(now))
        elif trigger == "ci":
            params, key = {"fixture": "ci-small"}, "fixture-v3"
        else:
            params, key = {"sample_frac": 0.1}, time.strftime("%Y-%m-%d", time.gmtime(now))
        _run(ctx, nb, now, trigger, run_id, params, key, duration_cap=90.0)
    elif r < 0.98:
        team = rng.choice(TEAMS)
        nbs = ctx.platform.by_team[team.name]
        nb = rng.choices(nbs, [x.kernel_weight for x in nbs])[0]
        _kernel_session(ctx, team, rng.choice(team.users), nb, now, length_scale=0.05)
    else:
        _access_denied(ctx, now, f"live-denied/{rng.getrandbits(64):016x}")
    return max(1, ctx.seq - before)


def _send_live(client: Any, endpoint: str, buffer: deque) -> tuple[int, bool, int, Any]:
    """Send up to one batch from the front of the buffer; on success remove it. -> (n, ok, rejected, why)."""
    import httpx

    batch = [buffer[i] for i in range(min(len(buffer), HTTP_BATCH_EVENTS))]
    body = gzip.compress(b"".join(orjson.dumps(ev) + b"\n" for ev in batch), compresslevel=5)
    try:
        resp = client.post(endpoint, content=body, headers={"Content-Type": "application/x-ndjson",
                                                             "Content-Encoding": "gzip"})
    except httpx.HTTPError as exc:
        return 0, False, 0, type(exc).__name__
    if resp.status_code in (200, 422):
        for _ in batch:
            buffer.popleft()
        try:
            rej = int(resp.json().get("rejected", 0))
        except ValueError:
            rej = 0
        if rej:
            log.warning("demo live: %d events rejected by the collector", rej)
        return len(batch), True, rej, None
    if resp.status_code in (429, 503):
        return 0, False, 0, _retry_after(resp, 1.0)
    return 0, False, 0, f"HTTP {resp.status_code}"
