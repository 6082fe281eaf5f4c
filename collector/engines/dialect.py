"""The one module that knows how Spark SQL and BigQuery spell what the product's DuckDB SQL says.

Statements are written once, in DuckDB's dialect. `transpile(sql, "spark" | "bigquery")` parses them with
sqlglot, rewrites the constructs below explicitly (sqlglot's own translation of these is wrong or missing for at
least one target), and lets sqlglot generate the rest (quoting, casts, JSON access `data->>'k'`, `$name`
parameters as `:name` / `@name`, aggregate FILTER as Spark FILTER or BigQuery IF/COUNTIF):

| DuckDB                                   | Spark                                   | BigQuery                                         |
|------------------------------------------|-----------------------------------------|--------------------------------------------------|
| arg_max(v, (a, b)) [FILTER (WHERE c)]    | MAX_BY(v, STRUCT(a, b)) [FILTER ...]    | ARRAY_AGG(IF(c, STRUCT(v AS v), NULL) IGNORE NULLS ORDER BY a DESC, b DESC LIMIT 1)[SAFE_OFFSET(0)].v |
| quantile_cont(x, [q1, q2])               | PERCENTILE(x, ARRAY(q1, q2)) (exact)    | [APPROX_QUANTILES(x, 1000)[OFFSET(q1*1000)], ...] (approximate: docs/scale.md) |
| epoch(a - b), epoch(ts)                  | (UNIX_MICROS(a) - UNIX_MICROS(b)) / 1e6 | same (UNIX_MICROS exists in both)                |
| ts + to_seconds(x)                       | TIMESTAMP_MICROS(UNIX_MICROS(ts) + CAST(ROUND(x * 1e6) AS BIGINT)) | same                 |
| WITH x AS [NOT] MATERIALIZED (...)       | WITH x AS (...)                         | WITH x AS (...)                                  |
| INSERT ... ON CONFLICT (k) DO UPDATE SET | MERGE INTO t USING (...) ON k ...       | MERGE (same)                                     |
| json_extract_string(j, $path) ($."k")   | GET_JSON_OBJECT(j, path as $['k'])      | JSON_EXTRACT_SCALAR (reads $."k")                |
| json_extract_string(j, '$.*') (values)  | MAP_VALUES(FROM_JSON(j, 'MAP<STRING, STRING>')) | ARRAY(SELECT JSON_VALUE(PARSE_JSON(j)[k]) FROM UNNEST(JSON_KEYS(PARSE_JSON(j), 1)) AS k) |
| unnest(generate_series(a, b, step))      | EXPLODE(SEQUENCE(a, b, step))           | not supported: raises (docs/scale.md)            |
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp

TARGETS = ("duckdb", "spark", "bigquery")
QUANTILE_BUCKETS = 1000  # BigQuery APPROX_QUANTILES resolution


class UnsupportedConstruct(ValueError):
    """A statement uses a construct the target engine has no translation for here."""


def transpile(sql: str, target: str) -> str:
    """The statement `sql` (DuckDB dialect) in `target`'s dialect; DuckDB SQL is returned unchanged."""
    if target not in TARGETS:
        raise ValueError(f"unknown engine dialect {target!r}; use one of {', '.join(TARGETS)}")
    if target == "duckdb":
        return sql
    return _transpile(sql, target)


@lru_cache(maxsize=4096)
def _transpile(sql: str, target: str) -> str:
    tree = sqlglot.parse_one(sql, read="duckdb")
    if isinstance(tree, exp.Insert) and tree.args.get("conflict") is not None:
        tree = _merge_from_upsert(tree)
    tree = tree.transform(lambda n: _rewrite(n, target), copy=False)
    _unique_cte_names(tree)
    return tree.sql(dialect=target)


def _unique_cte_names(tree: exp.Expression) -> None:
    """Give the CTEs of nested WITH clauses names unique in the statement: sqlglot lifts nested CTEs to the top
    for Spark and BigQuery, where the same fragment used twice (e.g. the run facts of M1, M2 and M8) would
    otherwise define one name twice."""
    for n, with_ in enumerate(w for w in tree.find_all(exp.With) if w.parent is not tree):
        scope = with_.parent
        for cte in with_.expressions:
            old, new = cte.alias, f"{cte.alias}__{n}"
            cte.set("alias", exp.TableAlias(this=exp.to_identifier(new)))
            for t in scope.find_all(exp.Table):
                if t.name == old and not t.db:
                    alias = t.alias
                    t.set("this", exp.to_identifier(new))
                    if not alias:
                        t.set("alias", exp.TableAlias(this=exp.to_identifier(old)))



# ---- rewrites --------------------------------------------------------------------------------------------------

def _micros(e: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this="UNIX_MICROS", expressions=[e.copy()])


def _div_1e6(e: exp.Expression) -> exp.Expression:
    return exp.Div(this=exp.Paren(this=e), expression=exp.Literal.number("1e6"))


def _ordering(node: exp.Expression) -> list[exp.Expression]:
    return list(node.expressions) if isinstance(node, exp.Tuple) else [node]


def _arg_extreme(agg: exp.Expression, cond: exp.Expression | None, target: str) -> exp.Expression:
    is_max = isinstance(agg, exp.ArgMax)
    value, order = agg.this, agg.expression
    if target == "spark":
        key = exp.Struct(expressions=[o.copy() for o in _ordering(order)]) if isinstance(order, exp.Tuple) else order
        out = exp.Anonymous(this="MAX_BY" if is_max else "MIN_BY", expressions=[value.copy(), key.copy()])
        return exp.Filter(this=out, expression=exp.Where(this=cond.copy())) if cond is not None else out
    # BigQuery: MAX_BY has no FILTER and rejects NULL array elements, so aggregate one-field structs
    item: exp.Expression = exp.Struct(expressions=[exp.alias_(value.copy(), "v")])
    if cond is not None:
        item = exp.If(this=cond.copy(), true=item, false=exp.Null())
    order_sql = ", ".join(f"{o.sql(dialect='bigquery')} {'DESC' if is_max else 'ASC'}" for o in _ordering(order))
    # rows whose ordering is NULL take no part (DuckDB's arg_max ignores them)
    nonnull = " AND ".join(f"{o.sql(dialect='bigquery')} IS NOT NULL" for o in _ordering(order))
    item_sql = exp.If(this=sqlglot.parse_one(nonnull, read="bigquery"), true=item, false=exp.Null()).sql(dialect="bigquery")
    return sqlglot.parse_one(
        f"ARRAY_AGG({item_sql} IGNORE NULLS ORDER BY {order_sql} LIMIT 1)[SAFE_OFFSET(0)].v", read="bigquery")


def _quantiles(q: exp.PercentileCont, cond: exp.Expression | None, target: str) -> exp.Expression:
    fracs = q.expression
    x = q.this.copy()
    if target == "spark":
        out = exp.Anonymous(this="PERCENTILE", expressions=[x, fracs.copy()])
        return exp.Filter(this=out, expression=exp.Where(this=cond.copy())) if cond is not None else out
    if cond is not None:
        x = exp.If(this=cond.copy(), true=x, false=exp.Null())
    xs = x.sql(dialect="bigquery")
    items = fracs.expressions if isinstance(fracs, exp.Array) else [fracs]
    parts = [f"APPROX_QUANTILES({xs}, {QUANTILE_BUCKETS})[SAFE_OFFSET({round(float(f.this) * QUANTILE_BUCKETS)})]"
             for f in items]
    text = f"[{', '.join(parts)}]" if isinstance(fracs, exp.Array) else parts[0]
    return sqlglot.parse_one(text, read="bigquery")


def _rewrite(node: exp.Expression, target: str) -> exp.Expression:
    # aggregates with FILTER: handled together with their filter
    if isinstance(node, exp.Filter) and isinstance(node.this, (exp.ArgMax, exp.ArgMin)):
        return _arg_extreme(node.this, node.expression.this, target)
    if isinstance(node, exp.Filter) and isinstance(node.this, exp.PercentileCont):
        return _quantiles(node.this, node.expression.this, target)
    if isinstance(node, (exp.ArgMax, exp.ArgMin)) and not isinstance(node.parent, exp.Filter):
        return _arg_extreme(node, None, target)
    if (isinstance(node, exp.PercentileCont) and isinstance(node.expression, exp.Array)
            and not isinstance(node.parent, exp.Filter)):
        return _quantiles(node, None, target)
    # epoch(interval) / epoch(timestamp) -> seconds as DOUBLE
    if isinstance(node, exp.TimeToUnix):
        arg = node.this.unnest() if isinstance(node.this, exp.Paren) else node.this
        if isinstance(arg, exp.Sub):
            return _div_1e6(exp.Sub(this=_micros(arg.this), expression=_micros(arg.expression)))
        return _div_1e6(_micros(arg))
    # timestamp +/- to_seconds(x)
    if isinstance(node, (exp.Add, exp.Sub)) and _is_to_seconds(node.expression):
        micros = exp.Cast(this=exp.Round(this=exp.Mul(this=exp.Paren(this=node.expression.expressions[0].copy()),
                                                          expression=exp.Literal.number(1000000))),
                          to=exp.DataType.build("BIGINT"))
        op = exp.Add if isinstance(node, exp.Add) else exp.Sub
        return exp.Anonymous(this="TIMESTAMP_MICROS", expressions=[op(this=_micros(node.this), expression=micros)])
    # the values of a JSON object (DuckDB's wildcard path '$.*'): sqlglot drops the wildcard for both targets
    if isinstance(node, exp.JSONExtractScalar) and _is_values_path(node.expression):
        j = node.this.sql(dialect=target)
        text = (f"MAP_VALUES(FROM_JSON({j}, 'MAP<STRING, STRING>'))" if target == "spark" else
                f"ARRAY(SELECT JSON_VALUE(PARSE_JSON({j})[k]) FROM UNNEST(JSON_KEYS(PARSE_JSON({j}), 1)) AS k)")
        return sqlglot.parse_one(text, read=target)
    # a JSON path bound as a parameter in DuckDB's spelling `$."key"`: Spark's get_json_object reads `$['key']`
    if (target == "spark" and isinstance(node, exp.JSONExtractScalar)
            and isinstance(node.expression, (exp.Placeholder, exp.Parameter))):
        path = exp.Anonymous(this="REGEXP_REPLACE", expressions=[
            node.expression.copy(), exp.Literal.string('^[$][.]"(.*)"$'), exp.Literal.string("\\$['$1']")])
        return exp.Anonymous(this="GET_JSON_OBJECT", expressions=[node.this.copy(), path])
    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node.set("materialized", None)
        return node
    if target == "bigquery" and isinstance(node, exp.Explode) and isinstance(node.this, exp.GenerateSeries):
        raise UnsupportedConstruct("unnest(generate_series(...)) in a select list has no BigQuery translation here")
    return node


def _is_values_path(path: exp.Expression) -> bool:
    parts = path.expressions if isinstance(path, exp.JSONPath) else []
    return (len(parts) == 2 and isinstance(parts[1], exp.JSONPathKey)
            and isinstance(parts[1].this, exp.JSONPathWildcard))


def _is_to_seconds(e: exp.Expression) -> bool:
    return isinstance(e, exp.Anonymous) and str(e.this).lower() == "to_seconds"


def _merge_from_upsert(ins: exp.Insert) -> exp.Expression:
    """`INSERT INTO t (cols) <query> ON CONFLICT (keys) DO UPDATE SET c = expr` as a MERGE: `EXCLUDED.c` becomes
    the source row's column, `t.c` the target's."""
    conflict = ins.args["conflict"]
    schema = ins.this
    table = schema.this if isinstance(schema, exp.Schema) else schema
    tname = table.name
    cols = [c.name for c in schema.expressions] if isinstance(schema, exp.Schema) else None
    if cols is None:
        raise UnsupportedConstruct("an upsert needs its column list to become a MERGE")
    keys = [k.name for k in conflict.args.get("conflict_keys") or []]
    if not keys:
        raise UnsupportedConstruct("an upsert needs its conflict keys to become a MERGE")
    sets = []
    for eq in conflict.expressions:
        rhs = eq.expression.copy().transform(
            lambda n: exp.column(n.name, "s") if isinstance(n, exp.Column) and n.table.upper() == "EXCLUDED"
            else (exp.column(n.name, "t") if isinstance(n, exp.Column) and n.table == tname else n))
        sets.append(f"{eq.this.name} = {rhs.sql(dialect='duckdb')}")
    on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    query = ins.expression.sql(dialect="duckdb")
    text = (f"MERGE INTO {tname} AS t USING ({query}) AS s ON {on} "
            f"WHEN MATCHED THEN UPDATE SET {', '.join(sets)} "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}) VALUES ({', '.join('s.' + c for c in cols)})")
    return sqlglot.parse_one(text, read="duckdb")
