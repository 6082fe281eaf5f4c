"""The part every connector shares: from per-column SQL expressions over a raw relation to rows of the cost table.

A connector (focus.py, aws_cur.py, gcp_export.py) maps its raw columns to FOCUS columns as SQL expressions and says
where the tags are (``TagSource``). ``run`` first discovers the distinct tag keys present (one cheap pass), so the
allocation keys (``x_team``, ``x_notebook_id``, ``x_run_id``) become exact lookups of the keys that match the
configured spellings, then materialises the normalised lines in a temporary table (``Lines``) in table order, and
turns failures into precise ``CostInputError``s (file, row, column, value).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from cost import schema
from cost.config import TagKeys
from cost.errors import CostInputError
from collector.storage.sqltext import ident as q, lit
from cost.sql import MONEY_T, entries_to_map, norm_key, nz, tags_json

# allowed values, matched case-insensitively and written in the FOCUS spelling
_CHARGE_CATEGORY = {c.lower(): c for c in schema.CHARGE_CATEGORIES}
_CHARGE_FREQUENCY = {c.lower(): c for c in schema.CHARGE_FREQUENCIES}
_SERVICE_CATEGORY = {c.lower(): c for c in schema.SERVICE_CATEGORIES}
_ids = itertools.count()
MAX_KEYS = 500  # distinct tag keys looked at for allocation; beyond, keys are matched by their first 500


def canon_value_sql(expr: str, allowed: dict[str, str], default: str = "NULL") -> str:
    """Map text to its canonical FOCUS spelling, case-insensitively; unknown values become ``default``."""
    whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in allowed.items())
    return f"(CASE lower({expr}) {whens} ELSE {default} END)"


@dataclass
class Check:
    """A raw column whose values must parse as ``kind`` (money | ts | json)."""
    column: str  # the FOCUS/target column it feeds (for the message)
    raw_expr: str  # SQL over the raw relation
    kind: str


@dataclass
class TagSource:
    """Where a source keeps its tags.

    kind ``columns``: one column per tag (legacy CUR ``resourceTags/user:team``), ``columns`` = key -> SQL value;
    ``map``: a MAP(VARCHAR, VARCHAR) expression (CUR 2.0 ``resource_tags``; ``user_``/``aws_`` prefixes are
    presented as ``team`` / ``aws:...``); ``json``: JSON object text (FOCUS ``Tags``); ``entries``: lists of
    STRUCT(key, value) in priority order (GCP labels, project labels).
    """
    kind: str
    expr: str | None = None
    columns: dict[str, str] | None = None
    entries: list[str] | None = None
    aws_prefixes: bool = False
    keep_json: bool = False  # json kind: keep the source's JSON text as Tags

    def discover_sql(self, rel: str) -> str | None:
        if self.kind == "map":
            return f"SELECT DISTINCT unnest(map_keys({self.expr})) FROM {rel} LIMIT {MAX_KEYS}"
        if self.kind == "json":
            return f"SELECT DISTINCT unnest(json_keys({self.expr})) FROM {rel} LIMIT {MAX_KEYS}"
        if self.kind == "entries":
            parts = " UNION ".join(f"SELECT DISTINCT unnest(list_transform({e}, lambda x: x.key)) FROM {rel}"
                                   for e in self.entries or [])
            return f"SELECT * FROM ({parts}) LIMIT {MAX_KEYS}" if parts else None
        return None

    def display(self, key: str) -> str:
        if self.aws_prefixes:
            if key.startswith(("user_", "user:")):
                return key[5:]
            if key.startswith("aws_"):
                return "aws:" + key[4:]
        return key

    def lookup(self, key: str) -> str:
        if self.kind == "columns":
            return self.columns[key]
        if self.kind == "map":
            return f"{self.expr}[{lit(key)}]"
        if self.kind == "json":
            return f"json_extract_string({self.expr}, {lit('$.' + json_path_key(key))})"
        looks = [f"list_filter({e}, lambda x: x.key = {lit(key)})[1].value" for e in self.entries or []]
        return f"coalesce({', '.join(looks)})" if len(looks) > 1 else looks[0]

    def keys(self, discovered: list[str]) -> list[str]:
        return list(self.columns) if self.kind == "columns" else discovered

    def tags_json(self, keys: list[str]) -> str | None:
        """Tags as a JSON object (FOCUS KeyValueFormat) with the display keys; NULL when a line has none."""
        if self.kind == "json" and self.keep_json:
            return None  # the source's JSON is kept as it is
        if self.kind == "entries":
            cat = f"list_concat({', '.join(self.entries)})" if len(self.entries or []) > 1 else self.entries[0]
            return tags_json(entries_to_map(cat))
        keys = self.keys(keys)
        if not keys:
            return "CAST(NULL AS JSON)"
        parts = [f"CASE WHEN NULLIF({self.lookup(k)}, '') IS NOT NULL THEN "
                 f"{lit(to_json_key(self.display(k)))} || ':' || CAST(to_json({self.lookup(k)}) AS VARCHAR) END"
                 for k in sorted(keys, key=self.display)]
        body = f"concat_ws(',', {', '.join(parts)})"
        return f"CAST(NULLIF('{{' || {body} || '}}', '{{}}') AS JSON)"


def json_path_key(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_json_key(key: str) -> str:
    import json
    return json.dumps(key)


@dataclass
class Plan:
    source: str  # focus | aws-cur | gcp-export | demo
    exprs: dict[str, str]  # target column -> SQL over stage 0 (raw + ``pre`` columns)
    tags: TagSource | None  # where the tags are, or None
    partition: str  # SQL over the projected (FOCUS-named) columns
    checks: list[Check] = field(default_factory=list)
    pre: dict[str, str] = field(default_factory=dict)  # shared sub-expressions computed once per row (stage 0)


def allocation_lookup(tags: TagSource | None, keys: list[str], aliases: list[str]) -> str:
    """First non-empty value among the tag keys whose normalised display name is one of ``aliases`` (in alias
    priority order)."""
    if tags is None:
        return "CAST(NULL AS VARCHAR)"
    wanted = [norm_key(a) for a in aliases]
    matched = sorted((k for k in tags.keys(keys) if norm_key(tags.display(k)) in wanted),
                     key=lambda k: (wanted.index(norm_key(tags.display(k))), k))
    if not matched:
        return "CAST(NULL AS VARCHAR)"
    vals = [f"NULLIF(trim({tags.lookup(k)}), '')" for k in matched]
    return f"coalesce({', '.join(vals)})" if len(vals) > 1 else vals[0]


def build_select(plan: Plan, raw: str, tag_keys: TagKeys, ingest_id: str, keys: list[str] | None = None) -> str:
    unknown = set(plan.exprs) - set(schema.NAMES)
    if unknown:
        raise ValueError(f"plan maps unknown columns {sorted(unknown)}")
    keys = keys or []
    stage1, late = [], {}
    for c in schema.COLUMNS:
        if c.name in ("x_partition", "x_ingest_id", "x_source", "x_allocation"):
            continue
        expr = plan.exprs.get(c.name)
        if expr is not None:
            stage1.append(f"{expr} AS {q(c.name)}")
        elif c.name == "Tags" and plan.tags is not None and plan.tags.tags_json(keys) is not None:
            stage1.append(f"{plan.tags.tags_json(keys)} AS {q(c.name)}")
        elif c.name == "x_team":
            stage1.append(f"{allocation_lookup(plan.tags, keys, tag_keys.team)} AS x_team")
        elif c.name == "x_notebook_id":
            stage1.append(f"{allocation_lookup(plan.tags, keys, tag_keys.notebook_id)} AS x_notebook_id")
        elif c.name == "x_run_id":
            stage1.append(f"{allocation_lookup(plan.tags, keys, tag_keys.run_id)} AS x_run_id")
        elif c.name == "x_billing_month":
            late[c.name] = "strftime(\"BillingPeriodStart\", '%Y-%m')"
        elif c.name == "ServiceSubcategory":
            late[c.name] = "'Other (' || \"ServiceCategory\" || ')'"
        else:
            stage1.append(f"CAST(NULL AS {c.sqltype}) AS {q(c.name)}")
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
    pre = ", ".join(f"{e} AS {q(n)}" for n, e in plan.pre.items())
    s0 = f"SELECT *, {pre} FROM {raw}" if pre else f"SELECT * FROM {raw}"
    # stage 2 adds the columns derived from stage-1 columns (x_billing_month feeds the partition key)
    s2 = ", ".join(["s1.*"] + [f"{e} AS {q(n)}" for n, e in late.items()])
    return (f"WITH s0 AS ({s0}),\n"
            f"s1 AS (SELECT {', '.join(stage1)} FROM s0),\n"
            f"s2 AS (SELECT {s2} FROM s1)\n"
            f"SELECT {', '.join(final)} FROM s2")


class Lines:
    """Normalised lines in a temporary table of the connection (cost-table shape and order)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, name: str):
        self.con, self.name = con, name
        self.num_rows = int(con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])

    def column(self, col: str) -> list:
        return [r[0] for r in self.con.execute(f"SELECT {q(col)} FROM {self.name}").fetchall()]

    def distinct(self, col: str) -> list:
        return sorted(r[0] for r in self.con.execute(
            f"SELECT DISTINCT {q(col)} FROM {self.name} WHERE {q(col)} IS NOT NULL").fetchall())

    def to_arrow(self) -> pa.Table:
        return self.con.sql(f"SELECT * FROM {self.name}").to_arrow_table()

    def drop(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.name}")


class Pending:
    """Normalised lines not materialised: the SELECT itself, inserted straight into the cost table by the store
    (one pass over the input, no intermediate copy). Errors surface when the store runs it."""

    def __init__(self, con: duckdb.DuckDBPyConnection, sql: str, plan: "Plan", raw: str, label: str):
        self.con, self.sql, self.plan, self.raw, self.label = con, sql, plan, raw, label
        self.name = f"({sql}) AS __pending"
        self._rows: int | None = None

    @property
    def num_rows(self) -> int:
        if self._rows is None:
            self._rows = int(self.con.execute(f"SELECT count(*) FROM {self.name}").fetchall()[0][0])
        return self._rows

    def distinct(self, col: str) -> list:
        try:
            return sorted(r[0] for r in self.con.execute(
                f"SELECT DISTINCT {q(col)} FROM {self.name} WHERE {q(col)} IS NOT NULL").fetchall())
        except (duckdb.ConversionException, duckdb.InvalidInputException) as err:
            raise self.diagnose(err) from err

    def diagnose(self, err: Exception) -> CostInputError:
        return _diagnose(self.con, self.raw, self.plan, self.label, err)

    def check_inserted(self, where: str) -> None:
        """After the insert: required FOCUS columns filled and ChargeCategory allowed, else a precise error (the
        row number is that of the input)."""
        check_required(self.con, self, self.label, where=where)

    def drop(self) -> None:
        return None


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
        except duckdb.Error:
            continue
        if hits:
            hit = hits[0]
            what = {"money": "a decimal number", "ts": "a date/time", "json": "a JSON object"}[chk.kind]
            return CostInputError(f"{hit[1]!r} is not {what}", source=label, row=hit[0], column=chk.column,
                                  value=hit[1])
    return CostInputError(f"cannot normalise: {err}", source=label)


def discover_keys(con: duckdb.DuckDBPyConnection, plan: Plan, raw: str, label: str) -> list[str]:
    if plan.tags is None:
        return []
    sql = plan.tags.discover_sql(raw)
    if sql is None:
        return []
    try:
        return sorted(r[0] for r in con.execute(sql).fetchall() if r[0] is not None and r[0] != "")
    except (duckdb.ConversionException, duckdb.InvalidInputException) as err:
        raise _diagnose(con, raw, plan, label, err) from err


def prepare(con: duckdb.DuckDBPyConnection, plan: Plan, raw: str, tag_keys: TagKeys, ingest_id: str,
            label: str) -> Pending:
    """Like ``run`` but without materialising: the store inserts the SELECT directly (large imports)."""
    keys = discover_keys(con, plan, raw, label)
    return Pending(con, build_select(plan, raw, tag_keys, ingest_id, keys), plan, raw, label)


def run(con: duckdb.DuckDBPyConnection, plan: Plan, raw: str, tag_keys: TagKeys, ingest_id: str,
        label: str) -> Lines:
    """Normalise the raw relation/view ``raw`` into a temporary table shaped like the cost table."""
    keys = discover_keys(con, plan, raw, label)
    sql = build_select(plan, raw, tag_keys, ingest_id, keys)
    name = f"__cost_lines_{next(_ids)}"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
    except (duckdb.ConversionException, duckdb.InvalidInputException) as err:
        raise _diagnose(con, raw, plan, label, err) from err
    lines = Lines(con, name)
    try:
        check_required(con, lines, label)
    except CostInputError:
        lines.drop()
        raise
    return lines


def check_required(con: duckdb.DuckDBPyConnection, lines, label: str, where: str | None = None) -> None:
    """Required FOCUS columns non-null and ChargeCategory allowed, over a materialised ``Lines`` or, with
    ``where``, over the rows a ``Pending`` inserted into the cost table."""
    req = [c.name for c in schema.FOCUS_12 if c.required]
    cats = ", ".join(lit(c) for c in schema.CHARGE_CATEGORIES)
    conds = [f"{q(n)} IS NULL" for n in req] + [f"\"ChargeCategory\" NOT IN ({cats})"]
    src = f"{schema.TABLE} WHERE {where}" if where else lines.name
    counts = con.execute(f"SELECT {', '.join(f'count(*) FILTER (WHERE {c})' for c in conds)} "
                         f"FROM {src}").fetchall()[0]
    for i, n in enumerate(counts):
        if not n:
            continue
        col = req[i] if i < len(req) else "ChargeCategory"
        first = con.execute(f"SELECT n, v FROM (SELECT row_number() OVER () AS n, {q(col)} AS v, "
                            f"({conds[i]}) AS bad FROM {lines.name}) WHERE bad ORDER BY n LIMIT 1").fetchall()
        row, value = (first[0] if first else (None, None))
        if i < len(req):
            raise CostInputError(f"{col} is required by FOCUS 1.2 and is empty", source=label, row=row, column=col)
        raise CostInputError(f"ChargeCategory {value!r} is not one of {', '.join(schema.CHARGE_CATEGORIES)}",
                             source=label, row=row, column="ChargeCategory", value=value)
