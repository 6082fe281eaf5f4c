"""Allocation of billing lines to runs, notebooks and teams (OpenCost's model applied to notebook runs).

Per line (tags read at ingest through the configured keys -> ``x_run_id``, ``x_notebook_id``, ``x_team``):

1. ``direct``: a line tagged with a run goes to that run (team and notebook from ``run_attempts``, else the tags).
   A line tagged with a notebook or team that has no run overlapping its charge period stays with that
   notebook/team (``direct``, no run).
2. ``proportional``: a line tagged with a notebook (or only a team) is spread over that notebook's (team's) run
   attempts that overlap its charge period, in proportion to each attempt's run time inside the charge period
   (evenly if all overlaps are zero). Shares are exact decimals; the rounding remainder goes to the largest share,
   so the allocated total always equals the line total.
3. ``unallocated``: no team, notebook or run tag: team ``__unallocated__``. Always shown; reports can share it out
   over teams (``weighted`` by their allocated cost, or ``even``), see ``share_unallocated``.

Money is ``EffectiveCost`` (amortised); ``BilledCost`` is allocated with the same shares.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterable, Sequence

import duckdb
import polars as pl

from collector.engines.base import table_exists
from cost.schema import TABLE, UNALLOCATED

RUNS_EMPTY = ("(SELECT CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS INTEGER) AS attempt, "
              "CAST(NULL AS VARCHAR) AS notebook_id, CAST(NULL AS VARCHAR) AS team, "
              "CAST(NULL AS TIMESTAMPTZ) AS started_at, CAST(NULL AS TIMESTAMPTZ) AS ended_at, "
              "CAST(NULL AS DOUBLE) AS duration_seconds WHERE false)")
OUTPUT_COLUMNS = ("billing_month", "charge_date", "charge_start", "team", "notebook_id", "run_id", "allocation",
                  "service_name", "source", "effective_cost", "billed_cost")


def runs_relation(con: duckdb.DuckDBPyConnection) -> str:
    found = table_exists(con, "run_attempts")
    return "run_attempts" if found else RUNS_EMPTY


# Which billing months: bound as `$months` (a list, or NULL for every month), never formatted into the text.
MONTHS = "(CAST($months AS VARCHAR[]) IS NULL OR list_contains(CAST($months AS VARCHAR[]), {col}))"


def params(months: Sequence[str] | None, as_of: datetime) -> dict[str, object]:
    """The bound parameters of `allocation_sql`."""
    return {"months": None if months is None else list(months), "as_of": as_of.astimezone(timezone.utc)}


def allocation_sql(runs: str) -> str:
    """Rows (OUTPUT_COLUMNS), one per (line, target); sums per line equal the line's cost exactly.

    Parameters: `$months` (billing months, NULL for all) and `$as_of` (the end of runs still going)."""
    where = MONTHS.format(col="x_billing_month")
    asof = "CAST($as_of AS TIMESTAMPTZ)"
    return f"""
WITH lines AS MATERIALIZED (
    SELECT rowid AS line_id, x_billing_month, "ChargePeriodStart" AS cps, "ChargePeriodEnd" AS cpe,
           "ServiceName" AS service_name, x_source, "EffectiveCost" AS ec, "BilledCost" AS bc,
           x_team, x_notebook_id, x_run_id
    FROM {TABLE} WHERE {where}
),
ra AS (
    SELECT run_id, attempt, notebook_id, team, started_at AS s,
           coalesce(ended_at, started_at + to_seconds(duration_seconds), {asof}) AS e
    FROM {runs} WHERE started_at IS NOT NULL
),
run_info AS (SELECT run_id, arg_max(notebook_id, attempt) AS notebook_id, arg_max(team, attempt) AS team
             FROM {runs} GROUP BY run_id),
nb_team AS (SELECT notebook_id, arg_max(team, coalesce(started_at, queued_at)) AS team FROM {runs}
            WHERE notebook_id IS NOT NULL AND team IS NOT NULL GROUP BY notebook_id),
direct AS (
    SELECT l.line_id, l.x_run_id AS run_id, coalesce(ri.notebook_id, l.x_notebook_id) AS notebook_id,
           coalesce(ri.team, l.x_team, nt.team, '{UNALLOCATED}') AS team, 'direct' AS allocation, l.ec, l.bc,
           l.x_billing_month, l.cps, l.service_name, l.x_source
    FROM lines l LEFT JOIN run_info ri ON ri.run_id = l.x_run_id
    LEFT JOIN nb_team nt ON nt.notebook_id = l.x_notebook_id
    WHERE l.x_run_id IS NOT NULL
),
spread_lines AS (
    SELECT * FROM lines WHERE x_run_id IS NULL AND (x_notebook_id IS NOT NULL OR x_team IS NOT NULL)
),
line_days AS (
    -- each notebook/team-tagged line once per UTC day its charge period touches (an equi-join key with the runs)
    SELECT line_id, x_notebook_id, x_team, cps, cpe,
           unnest(generate_series(date_trunc('day', cps), cpe - INTERVAL 1 MICROSECOND, INTERVAL 1 DAY)) AS d
    FROM spread_lines
),
run_days AS (
    SELECT run_id, attempt, notebook_id, team, s, e,
           unnest(generate_series(date_trunc('day', s), greatest(e - INTERVAL 1 MICROSECOND, s),
                                  INTERVAL 1 DAY)) AS d
    FROM ra
),
pairs AS (
    -- line x run attempt overlapping it: by notebook when the line names one, else by team
    SELECT DISTINCT l.line_id, r.run_id, r.attempt, r.notebook_id, coalesce(r.team, l.x_team) AS team,
           greatest(epoch(least(l.cpe, r.e)) - epoch(greatest(l.cps, r.s)), 0) AS wt
    FROM line_days l JOIN run_days r ON r.d = l.d AND r.notebook_id = l.x_notebook_id
    WHERE l.x_notebook_id IS NOT NULL AND r.s < l.cpe AND (r.e > l.cps OR (r.e = r.s AND r.s >= l.cps))
    UNION ALL
    SELECT DISTINCT l.line_id, r.run_id, r.attempt, r.notebook_id, r.team,
           greatest(epoch(least(l.cpe, r.e)) - epoch(greatest(l.cps, r.s)), 0) AS wt
    FROM line_days l JOIN run_days r ON r.d = l.d AND r.team = l.x_team
    WHERE l.x_notebook_id IS NULL AND r.s < l.cpe AND (r.e > l.cps OR (r.e = r.s AND r.s >= l.cps))
),
cand AS (
    SELECT line_id, run_id, any_value(notebook_id) AS notebook_id, any_value(team) AS team, sum(wt) AS wt
    FROM pairs GROUP BY line_id, run_id
),
weighted AS (
    SELECT c.*, sum(wt) OVER (PARTITION BY line_id) AS wsum, count(*) OVER (PARTITION BY line_id) AS n,
           row_number() OVER (PARTITION BY line_id ORDER BY wt DESC, run_id) AS rk
    FROM cand c
),
prop AS (
    SELECT x.line_id, x.run_id, x.notebook_id, x.team, x.rk, l.ec, l.bc, l.x_billing_month, l.cps, l.service_name, l.x_source,
           CAST(l.ec * CAST(CASE WHEN x.wsum > 0 THEN x.wt / x.wsum ELSE 1.0 / x.n END AS DECIMAL(38,9))
                AS DECIMAL(38,18)) AS ec0,
           CAST(l.bc * CAST(CASE WHEN x.wsum > 0 THEN x.wt / x.wsum ELSE 1.0 / x.n END AS DECIMAL(38,9))
                AS DECIMAL(38,18)) AS bc0
    FROM weighted x JOIN lines l USING (line_id)
),
prop_exact AS (
    SELECT line_id, run_id, notebook_id, team, 'proportional' AS allocation,
           ec0 + CASE WHEN rk = 1 THEN ec - sum(ec0) OVER (PARTITION BY line_id) ELSE 0 END AS ec,
           bc0 + CASE WHEN rk = 1 THEN bc - sum(bc0) OVER (PARTITION BY line_id) ELSE 0 END AS bc,
           x_billing_month, cps, service_name, x_source
    FROM prop
),
unspread AS (
    SELECT l.line_id, CAST(NULL AS VARCHAR) AS run_id, l.x_notebook_id AS notebook_id,
           coalesce(l.x_team, nt.team, '{UNALLOCATED}') AS team, 'direct' AS allocation, l.ec, l.bc,
           l.x_billing_month, l.cps, l.service_name, l.x_source
    FROM spread_lines l LEFT JOIN nb_team nt ON nt.notebook_id = l.x_notebook_id
    WHERE NOT EXISTS (SELECT 1 FROM cand c WHERE c.line_id = l.line_id)
),
unalloc AS (
    SELECT line_id, CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS VARCHAR) AS notebook_id,
           '{UNALLOCATED}' AS team, 'unallocated' AS allocation, ec, bc, x_billing_month, cps, service_name, x_source
    FROM lines WHERE x_run_id IS NULL AND x_notebook_id IS NULL AND x_team IS NULL
),
alloc AS (
    SELECT * FROM direct UNION ALL SELECT * FROM prop_exact UNION ALL SELECT * FROM unspread
    UNION ALL SELECT * FROM unalloc
)
SELECT x_billing_month AS billing_month, CAST(cps AS DATE) AS charge_date, cps AS charge_start, team, notebook_id,
       run_id, allocation, service_name, x_source AS source, ec AS effective_cost, bc AS billed_cost
FROM alloc
"""


def allocate(con: duckdb.DuckDBPyConnection, months: Sequence[str] | None = None,
             as_of: datetime | None = None, runs: str | None = None) -> pl.DataFrame:
    """Allocation rows for the given billing months (all months when None), computed now from lines and runs."""
    sql = allocation_sql(runs or runs_relation(con))
    return pl.from_arrow(con.sql(sql, params=params(months, as_of or datetime.now(timezone.utc))).to_arrow_table())


def run_costs(alloc: pl.DataFrame) -> pl.DataFrame:
    """Per run in `alloc` (rows of `allocate`): team, notebook, direct, proportional and cost = its whole allocated
    cost (direct lines plus its proportional shares), most expensive first. The one definition of a run's cost:
    the reports, GET /v1/cost/runs, the gauge and SLI M4 all use it."""
    dec = pl.Decimal(38, 18)
    cost = pl.col("effective_cost")
    runs = alloc.filter(pl.col("run_id").is_not_null())
    return (runs.group_by("run_id").agg(
        pl.col("team").first(), pl.col("notebook_id").first(),
        cost.filter(pl.col("allocation") == "direct").sum().cast(dec).alias("direct"),
        cost.filter(pl.col("allocation") == "proportional").sum().cast(dec).alias("proportional"),
        cost.sum().cast(dec).alias("cost"))
        .sort(["cost", "run_id"], descending=[True, False]))


def refresh(con: duckdb.DuckDBPyConnection, months: Iterable[str] | None = None, as_of: datetime | None = None,
            manage_transaction: bool = False) -> int:
    """Recompute ``cost_allocations`` for these months (all when None); drops months that have no lines left."""
    months = sorted(set(months)) if months is not None else None
    bound = params(months, as_of or datetime.now(timezone.utc))
    target = MONTHS.format(col="billing_month")
    if manage_transaction:
        con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM cost_allocations WHERE {target}", {"months": bound["months"]})
        con.execute(f"DELETE FROM cost_allocations WHERE billing_month NOT IN "
                    f"(SELECT DISTINCT x_billing_month FROM {TABLE} WHERE x_billing_month IS NOT NULL)")
        con.execute(f"""INSERT INTO cost_allocations
            SELECT billing_month, charge_date, team, notebook_id, run_id, allocation, service_name, source,
                   sum(effective_cost), sum(billed_cost), now()
            FROM ({allocation_sql(runs_relation(con))}) GROUP BY ALL""", bound)
        n = con.execute(f"SELECT count(*) FROM cost_allocations WHERE {target}",
                        {"months": bound["months"]}).fetchall()[0][0]
        if manage_transaction:
            con.execute("COMMIT")
    except BaseException:
        if manage_transaction:
            con.execute("ROLLBACK")
        raise
    return int(n)


def share_unallocated(team_totals: pl.DataFrame, mode: str, cost_col: str = "cost") -> pl.DataFrame:
    """Share the ``__unallocated__`` row out over the other teams.

    ``weighted``: in proportion to each team's (positive) allocated cost; ``even``: equal parts. Returns
    team, allocated, shared, total (Decimal); the shares sum exactly to the unallocated amount (the remainder goes
    to the largest share). With ``none`` (or no team to share over) the unallocated row stays as it is.
    """
    if mode not in ("none", "weighted", "even"):
        raise ValueError(f"share mode must be none, weighted or even, not {mode!r}")
    rows = {r["team"]: Decimal(r[cost_col] or 0) for r in team_totals.select("team", cost_col).to_dicts()}
    unalloc = rows.pop(UNALLOCATED, Decimal(0))
    teams = sorted(rows)
    shared = {t: Decimal(0) for t in teams}
    if mode != "none" and teams and unalloc:
        weights = {t: (max(rows[t], Decimal(0)) if mode == "weighted" else Decimal(1)) for t in teams}
        total_w = sum(weights.values())
        if total_w == 0:
            weights = {t: Decimal(1) for t in teams}
            total_w = Decimal(len(teams))
        q = Decimal("1e-18")
        for t in teams:
            shared[t] = (unalloc * weights[t] / total_w).quantize(q)
        biggest = max(teams, key=lambda t: (weights[t], t))
        shared[biggest] += unalloc - sum(shared.values())
        unalloc = Decimal(0)
    out = [{"team": t, "allocated": rows[t], "shared": shared[t], "total": rows[t] + shared[t]} for t in teams]
    if unalloc or mode == "none":
        out.append({"team": UNALLOCATED, "allocated": unalloc, "shared": Decimal(0), "total": unalloc})
    schema = {"team": pl.Utf8, "allocated": pl.Decimal(38, 18), "shared": pl.Decimal(38, 18),
              "total": pl.Decimal(38, 18)}
    return pl.DataFrame(out, schema=schema)
