"""The part every connector shares: from per-column SQL expressions over a raw relation to rows of the cost table.

A connector (focus.py, aws_cur.py, gcp_export.py) maps its raw columns to FOCUS columns as SQL expressions and
gives a tags MAP expression; ``build_select`` adds the allocation keys taken from the tags, the partition key and
the ingest id, and orders the columns as the table does. ``run`` executes it on DuckDB and turns failures into
precise ``CostInputError``s (file, row, column, value).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from cost import schema
from cost.config import TagKeys
from cost.errors import CostInputError
from cost.sql import lit, nz, q, tag_lookup, tags_json, MONEY_T

# allowed values, matched case-insensitively and written in the FOCUS spelling
_CHARGE_CATEGORY = {c.lower(): c for c in schema.CHARGE_CATEGORIES}
_CHARGE_FREQUENCY = {c.lower(): c for c in schema.CHARGE_FREQUENCIES}
_SERVICE_CATEGORY = {c.lower(): c for c in schema.SERVICE_CATEGORIES}


def canon_value_sql(expr: str, allowed: dict[str, str], default: str = "NULL") -> str:
    """Map text to its canonical FOCUS spelling, case-insensitively; unknown values become ``default``."""
    whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in allowed.items())
    return f"(CASE lower({nz(expr)}) {whens} ELSE {default} END)"


@dataclass
class Check:
    """A raw column whose values must parse as ``kind`` (money | ts | json)."""
    column: str  # the FOCUS/target column it feeds (for the message)
    raw_expr: str  # SQL over the raw relation
    kind: str


@dataclass
class Plan:
    source: str  # focus | aws-cur | gcp-export | demo
    exprs: dict[str, str]  # target column -> SQL over raw
    tags_map: str | None  # MAP(VARCHAR, VARCHAR) over raw, or None
    partition: str  # SQL over the projected (FOCUS-named) columns
    checks: list[Check] = field(default_factory=list)
    where: str | None = None  # optional filter over raw


def build_select(plan: Plan, raw: str, tag_keys: TagKeys, ingest_id: str) -> str:
    unknown = set(plan.exprs) - set(schema.NAMES)
    if unknown:
        raise ValueError(f"plan maps unknown columns {sorted(unknown)}")
    s1 = []
    for c in schema.COLUMNS:
        if c.name in ("x_team", "x_notebook_id", "x_run_id", "x_allocation", "x_partition", "x_ingest_id",
                      "x_source"):
            continue
        expr = plan.exprs.get(c.name)
        if expr is None:
            if c.name == "Tags" and plan.tags_map is not None:
                expr = tags_json("__tags")
            elif c.name == "x_billing_month":
                expr = "strftime(\"BillingPeriodStart\", '%Y-%m')"  # resolved in stage 2
            elif c.name == "ServiceSubcategory":
                expr = "'Other (' || \"ServiceCategory\" || ')'"  # resolved in stage 2
            else:
                expr = f"CAST(NULL AS {c.sqltype})"
        s1.append((c.name, expr))
    tags = plan.tags_map if plan.tags_map is not None else "CAST(NULL AS MAP(VARCHAR, VARCHAR))"
    # stage 1: raw -> typed columns + tag map; stage 2: derived columns that read stage-1 columns
    stage1_cols = [f"{tags} AS __tags"]
    late = {}
    for name, expr in s1:
        if name == "Tags" and plan.exprs.get("Tags") is None and plan.tags_map is not None:
            late[name] = expr
        elif name == "x_billing_month" and "x_billing_month" not in plan.exprs:
            late[name] = expr
        elif name == "ServiceSubcategory" and "ServiceSubcategory" not in plan.exprs:
            late[name] = expr
        else:
            stage1_cols.append(f"{expr} AS {q(name)}")
    where = f" WHERE {plan.where}" if plan.where else ""
    team = tag_lookup("__tags", tag_keys.team)
    nb = tag_lookup("__tags", tag_keys.notebook_id)
    run = tag_lookup("__tags", tag_keys.run_id)
    stage2 = [
        "s1.* EXCLUDE (__tags)",
        *(f"{e} AS {q(n)}" for n, e in late.items()),
        f"{team} AS x_team", f"{nb} AS x_notebook_id", f"{run} AS x_run_id",
    ]
    final = []
    for c in schema.COLUMNS:
        if c.name == "x_allocation":
            final.append("CASE WHEN x_run_id IS NOT NULL THEN 'direct' WHEN x_notebook_id IS NOT NULL "
                         "OR x_team IS NOT NULL THEN 'proportional' ELSE 'unallocated' END AS x_allocation")
        elif c.name == "x_source":
            final.append(f"{lit(plan.source)} AS x_source")
        elif c.name == "x_ingest_id":
            final.append(f"{lit(ingest_id)} AS x_ingest_id")
        elif c.name == "x_partition":
            final.append(f"{plan.partition} AS x_partition")
        else:
            final.append(q(c.name))
    return (f"WITH s1 AS (SELECT {', '.join(stage1_cols)} FROM {raw}{where}),\n"
            f"s2 AS (SELECT {', '.join(stage2)} FROM s1)\n"
            f"SELECT {', '.join(final)} FROM s2")


def _diagnose(con: duckdb.DuckDBPyConnection, raw: str, plan: Plan, label: str, err: Exception) -> CostInputError:
    for chk in plan.checks:
        if chk.kind == "money":
            bad = f"TRY_CAST({nz('v')} AS {MONEY_T}) IS NULL"
        elif chk.kind == "ts":
            bad = f"TRY_CAST({nz('v')} AS TIMESTAMPTZ) IS NULL"
        elif chk.kind == "json":
            bad = f"json_valid({nz('v')}) IS NOT TRUE OR json_type(CAST({nz('v')} AS JSON)) <> 'OBJECT'"
        else:
            continue
        sql = (f"SELECT n, v FROM (SELECT row_number() OVER () AS n, CAST({chk.raw_expr} AS VARCHAR) AS v FROM {raw}) "
               f"WHERE {nz('v')} IS NOT NULL AND ({bad}) ORDER BY n LIMIT 1")
        try:
            hits = con.execute(sql).fetchall()
            hit = hits[0] if hits else None
        except duckdb.Error:
            continue
        if hit:
            what = {"money": "a decimal number", "ts": "a date/time", "json": "a JSON object"}[chk.kind]
            return CostInputError(f"{hit[1]!r} is not {what}", source=label, row=hit[0], column=chk.column,
                                  value=hit[1])
    return CostInputError(f"cannot normalise: {err}", source=label)


def run(con: duckdb.DuckDBPyConnection, plan: Plan, raw: str, tag_keys: TagKeys, ingest_id: str,
        label: str) -> pa.Table:
    """Normalise the raw relation/view ``raw`` into an Arrow table shaped like the cost table."""
    sql = build_select(plan, raw, tag_keys, ingest_id)
    try:
        table = con.sql(sql).to_arrow_table()
    except (duckdb.ConversionException, duckdb.InvalidInputException) as err:
        raise _diagnose(con, raw, plan, label, err) from err
    check_required(con, table, label)
    return table


def check_required(con: duckdb.DuckDBPyConnection, table: pa.Table, label: str) -> None:
    for c in schema.FOCUS_12:
        if not c.required:
            continue
        col = table.column(c.name)
        if col.null_count:
            idx = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
            raise CostInputError(f"{c.name} is required by FOCUS 1.2 and is empty", source=label, row=idx + 1,
                                 column=c.name)
    cat = table.column("ChargeCategory")
    bad = [v for v in set(cat.to_pylist()) if v not in schema.CHARGE_CATEGORIES]
    if bad:
        idx = cat.to_pylist().index(bad[0])
        raise CostInputError(f"ChargeCategory {bad[0]!r} is not one of {', '.join(schema.CHARGE_CATEGORIES)}",
                             source=label, row=idx + 1, column="ChargeCategory", value=bad[0])
