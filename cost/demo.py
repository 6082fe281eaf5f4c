"""Demo billing: FOCUS-shaped lines for the demo's runs, so ``make run`` shows costs.

``demo_billing_lines(runs, seed)`` takes run attempts (the columns of ``run_attempts``) and returns a Polars frame of
FOCUS columns: per run attempt a compute line tagged with its ``run_id`` (cost from run time and a per-team rate),
per notebook and day a storage line tagged with its ``notebook_id``, per team and day a shared line tagged with
its ``team``, and per day untagged network and support lines (the ``__unallocated__`` part).
``write_demo_billing(con, lines)`` normalises them like any FOCUS file and replaces the demo partitions.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import duckdb
import polars as pl

from cost import focus, ingest, normalize
from cost.config import CostSettings, load_settings

ACCOUNT = "demo-billing-account"
# Hourly compute rates: the demo platform's teams (collector/demo.py) and the short names of `demo_runs`.
SYNTHETIC_TEAMS = ("ml", "data", "analytics", "platform")
RATE_PER_HOUR = {
    "ml": 3.20, "data": 1.10, "analytics": 0.80, "platform": 0.60,
    "ml-platform": 3.20, "data-eng": 1.40, "risk": 1.10, "finance": 0.70, "marketing": 0.55,
    "product-analytics": 0.80,
}


def uniform(n: int, seed: int, low: float = 0.0, high: float = 1.0) -> pl.Series:
    """Deterministic pseudo-random floats in [low, high), vectorised (hash of the row index)."""
    u = pl.int_range(0, n, eager=True).hash(seed).cast(pl.Float64) / 18446744073709551616.0
    return low + u * (high - low)


def _month_start(ts: datetime) -> datetime:
    return ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(ts: datetime) -> datetime:
    return (ts.replace(day=28) + timedelta(days=4)).replace(day=1)


def demo_billing_lines(runs: pl.DataFrame, seed: int = 7) -> pl.DataFrame:
    runs = runs.filter(pl.col("started_at").is_not_null())
    if runs.height == 0:
        return pl.DataFrame()
    runs = runs.with_columns(
        pl.col("started_at").dt.convert_time_zone("UTC"),
        pl.coalesce(pl.col("ended_at"),
                    pl.col("started_at") + pl.duration(seconds=pl.col("duration_seconds").fill_null(60)))
        .dt.convert_time_zone("UTC").alias("ended_at"),
        pl.col("team").fill_null("platform"))
    hours = ((runs["ended_at"] - runs["started_at"]).dt.total_seconds() / 3600).clip(lower_bound=1 / 60)
    rate = runs["team"].replace_strict(RATE_PER_HOUR, default=1.0, return_dtype=pl.Float64)
    cost = (hours * rate * uniform(runs.height, seed, 0.8, 1.2)).round(4)
    compute = pl.DataFrame({
        "start": runs["started_at"], "end": runs["ended_at"], "cost": cost,
        "service": "Amazon Elastic Compute Cloud", "category": "Compute",
        "tags": [f'{{"run_id": "{r}", "team": "{t}"}}' for r, t in zip(runs["run_id"], runs["team"])],
        "desc": "Notebook kernel compute",
    })
    days = runs.select(pl.col("started_at").dt.truncate("1d").alias("day"), "notebook_id", "team").unique()
    nb = days.filter(pl.col("notebook_id").is_not_null())
    storage = pl.DataFrame({
        "start": nb["day"], "end": nb["day"].dt.offset_by("1d"),
        "cost": uniform(nb.height, seed + 1, 0.05, 0.4).round(4), "service": "Amazon Simple Storage Service",
        "category": "Storage", "tags": [f'{{"notebook_id": "{n}"}}' for n in nb["notebook_id"]],
        "desc": "Notebook outputs and artifacts",
    })
    td = days.select("day", "team").unique()
    shared = pl.DataFrame({
        "start": td["day"], "end": td["day"].dt.offset_by("1d"),
        "cost": uniform(td.height, seed + 2, 0.5, 2.0).round(4), "service": "Amazon Relational Database Service",
        "category": "Databases", "tags": [f'{{"Team": "{t}"}}' for t in td["team"]],
        "desc": "Team warehouse",
    })
    dd = days.select("day").unique()
    untagged = pl.concat([
        pl.DataFrame({"start": dd["day"], "end": dd["day"].dt.offset_by("1d"),
                      "cost": uniform(dd.height, seed + 3, 0.2, 0.9).round(4), "service": "AWS Data Transfer",
                      "category": "Networking", "tags": [None] * dd.height, "desc": "Data transfer"},
                     schema_overrides={"tags": pl.Utf8}),
        pl.DataFrame({"start": dd["day"], "end": dd["day"].dt.offset_by("1d"),
                      "cost": uniform(dd.height, seed + 4, 0.1, 0.3).round(4), "service": "AWS Support (Business)",
                      "category": "Other", "tags": [None] * dd.height, "desc": "Support"},
                     schema_overrides={"tags": pl.Utf8}),
    ])
    lines = pl.concat([compute, storage, shared, untagged], how="vertical_relaxed")
    lines = lines.with_columns(
        pl.col("start").dt.truncate("1mo").alias("BillingPeriodStart"),
        pl.col("start").dt.truncate("1mo").dt.offset_by("1mo").alias("BillingPeriodEnd"),
    )
    return pl.DataFrame({
        "BillingAccountId": ACCOUNT, "BillingAccountName": "Notebook platform (demo)", "BillingCurrency": "USD",
        "BillingPeriodStart": lines["BillingPeriodStart"], "BillingPeriodEnd": lines["BillingPeriodEnd"],
        "ChargePeriodStart": lines["start"], "ChargePeriodEnd": lines["end"], "ChargeCategory": "Usage",
        "ChargeFrequency": "Usage-Based", "ChargeDescription": lines["desc"], "BilledCost": lines["cost"],
        "EffectiveCost": lines["cost"], "ListCost": (lines["cost"] * 1.25).round(4), "ContractedCost": lines["cost"],
        "InvoiceIssuerName": "Amazon Web Services, Inc.", "ProviderName": "Amazon Web Services, Inc.", "PublisherName": "Amazon Web Services, Inc.",
        "ServiceName": lines["service"], "ServiceCategory": lines["category"], "RegionId": "eu-west-1",
        "RegionName": "Europe (Ireland)", "PricingQuantity": 1.0, "PricingUnit": "Units", "Tags": lines["tags"],
    })


def write_demo_billing(con: duckdb.DuckDBPyConnection, lines: pl.DataFrame, settings: CostSettings | None = None,
                       *, manage_transaction: bool = True) -> list:
    """Normalise demo lines and replace the demo partitions (idempotent for the same lines)."""
    settings = settings or load_settings()
    if lines.height == 0:
        return []
    table = lines.to_arrow()
    digest = hashlib.sha256(str(table.num_rows).encode() + str(lines.hash_rows().sum()).encode()).hexdigest()[:24]
    ingest_id = f"demo:{digest}:{settings.fingerprint()}"
    con.register("__demo_lines", table)
    try:
        plan = focus.plan(ingest.columns_of(con, "__demo_lines"), source="demo",
                          partition="'demo|' || \"BillingAccountId\" || '|' || x_billing_month")
        normalised = normalize.run(con, plan, "__demo_lines", settings.tag_keys, ingest_id, "demo")
    finally:
        con.unregister("__demo_lines")
    try:
        old = [r[0] for r in con.execute("SELECT partition FROM cost_partitions WHERE source = 'demo'").fetchall()]
        changes = ingest.import_table(con, normalised, source="demo", ingest_id=ingest_id,
                                      origin="observatory demo", partitions=old,
                                      manage_transaction=manage_transaction)
        from cost import store
        store.record_sync(con, "demo", "demo", "ok", f"{normalised.num_rows} lines")
    finally:
        normalised.drop()
    return changes


def demo_runs(n: int = 200, seed: int = 7, now: datetime | None = None, days: int = 45) -> pl.DataFrame:
    """Synthetic run attempts (columns of run_attempts) for tests and benchmarks when no demo runs exist."""
    now = now or datetime.now(timezone.utc)
    start = now - timedelta(days=days)
    offs = uniform(n, seed, 0, days * 86400).sort()
    dur = 60 + uniform(n, seed + 1, 0, 1) ** 2 * 3600
    names = list(SYNTHETIC_TEAMS)
    team_idx = (uniform(n, seed + 2, 0, len(names))).floor().cast(pl.Int64)
    nb_idx = (uniform(n, seed + 3, 0, 4)).floor().cast(pl.Int64)
    df = pl.DataFrame({"i": pl.int_range(0, n, eager=True), "off": offs, "dur": dur, "t": team_idx, "k": nb_idx})
    return df.select(
        pl.format("run-{}", pl.col("i").cast(pl.Utf8).str.zfill(5)).alias("run_id"),
        pl.lit(1, pl.Int32).alias("attempt"),
        pl.format("{}-nb-{}", pl.col("t").replace_strict(dict(enumerate(names)), return_dtype=pl.Utf8),
                  pl.col("k")).alias("notebook_id"),
        pl.col("t").replace_strict(dict(enumerate(names)), return_dtype=pl.Utf8).alias("team"),
        (pl.lit(start) + pl.duration(microseconds=(pl.col("off") * 1e6).cast(pl.Int64))).alias("started_at"),
        (pl.lit(start) + pl.duration(microseconds=((pl.col("off") + pl.col("dur")) * 1e6).cast(pl.Int64)))
        .alias("ended_at"),
        pl.col("dur").alias("duration_seconds"),
    )


__all__ = ["demo_billing_lines", "write_demo_billing", "demo_runs"]
