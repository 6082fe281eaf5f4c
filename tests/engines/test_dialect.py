"""collector/engines/dialect.py: each DuckDB construct the product uses, as Spark and BigQuery get it (tables of
input -> output), and every output parsed back by sqlglot in the target's dialect."""

from __future__ import annotations

import pytest
import sqlglot

from collector.engines.dialect import UnsupportedConstruct, transpile
from slo.sli import sql as Q

CASES = [
    ("SELECT arg_max(v, (t, s)) FILTER (WHERE v IS NOT NULL) FROM x",
     "SELECT MAX_BY(v, STRUCT(t, s)) FILTER(WHERE NOT v IS NULL) FROM x",
     "SELECT ARRAY_AGG(IF(NOT t IS NULL AND NOT s IS NULL, IF(NOT v IS NULL, STRUCT(v AS v), NULL), NULL) IGNORE NULLS "
     "ORDER BY t DESC, s DESC LIMIT 1)[SAFE_OFFSET(0)].v FROM x"),
    ("SELECT arg_min(v, t) FROM x",
     "SELECT MIN_BY(v, t) FROM x",
     "SELECT ARRAY_AGG(IF(NOT t IS NULL, STRUCT(v AS v), NULL) IGNORE NULLS ORDER BY t ASC LIMIT 1)[SAFE_OFFSET(0)].v FROM x"),
    ("SELECT quantile_cont(d, [0.5, 0.99]) FILTER (WHERE ok) FROM x",
     "SELECT PERCENTILE(d, ARRAY(0.5, 0.99)) FILTER(WHERE ok) FROM x",
     "SELECT [APPROX_QUANTILES(IF(ok, d, NULL), 1000)[SAFE_OFFSET(500)], "
     "APPROX_QUANTILES(IF(ok, d, NULL), 1000)[SAFE_OFFSET(990)]] FROM x"),
    ("SELECT epoch($as_of - t), epoch(t) FROM x",
     "SELECT (UNIX_MICROS(:as_of) - UNIX_MICROS(t)) / 1e6, (UNIX_MICROS(t)) / 1e6 FROM x",
     "SELECT (UNIX_MICROS(@as_of) - UNIX_MICROS(t)) / 1e6, (UNIX_MICROS(t)) / 1e6 FROM x"),
    ("SELECT s + to_seconds(g) FROM x",
     "SELECT TIMESTAMP_MICROS(UNIX_MICROS(s) + CAST(ROUND((g) * 1000000) AS BIGINT)) FROM x",
     "SELECT TIMESTAMP_MICROS(UNIX_MICROS(s) + CAST(ROUND((g) * 1000000) AS INT64)) FROM x"),
    ("WITH a AS MATERIALIZED (SELECT 1 AS k) SELECT count(*) FILTER (WHERE k > 0), data->>'r' FROM a",
     "WITH a AS (SELECT 1 AS k) SELECT COUNT(*) FILTER(WHERE k > 0), GET_JSON_OBJECT(data, '$.r') FROM a",
     "WITH a AS (SELECT 1 AS k) SELECT COUNTIF(k > 0), JSON_EXTRACT_SCALAR(data, '$.r') FROM a"),
    ("WITH a AS NOT MATERIALIZED (SELECT 1 AS k) SELECT k FROM a",
     "WITH a AS (SELECT 1 AS k) SELECT k FROM a",
     "WITH a AS (SELECT 1 AS k) SELECT k FROM a"),
    ("SELECT array_length(json_extract_string(tags, '$.*')) FROM x",
     "SELECT SIZE(MAP_VALUES(FROM_JSON(tags, 'MAP<STRING, STRING>'))) FROM x",
     "SELECT ARRAY_LENGTH(ARRAY(SELECT JSON_VALUE(PARSE_JSON(tags)[k], '$') FROM UNNEST(JSON_KEYS(PARSE_JSON(tags), 1)) "
     "AS k)) FROM x"),
]


@pytest.mark.parametrize("duck,spark,bq", CASES)
def test_constructs(duck, spark, bq):
    assert transpile(duck, "duckdb") == duck
    assert transpile(duck, "spark") == spark
    assert transpile(duck, "bigquery") == bq
    sqlglot.parse_one(spark, read="spark")
    sqlglot.parse_one(bq, read="bigquery")


def test_json_path_parameter_in_duckdb_spelling():
    """Tag keys are bound as `$."key"` (DuckDB, BigQuery); Spark reads the same path as `$['key']`."""
    sql = "SELECT json_extract_string(tags, $p0) FROM x"
    assert transpile(sql, "spark") == ("SELECT GET_JSON_OBJECT(tags, REGEXP_REPLACE(:p0, '^[$][.]\"(.*)\"$', "
                                       "'\\\\$[\\'$1\\']')) FROM x")
    assert transpile(sql, "bigquery") == "SELECT JSON_EXTRACT_SCALAR(tags, @p0) FROM x"


def test_upsert_becomes_merge():
    sql = Q.UPSERT_ROLLUP.format(table="sli_hourly", delta="SELECT * FROM d")
    for target in ("spark", "bigquery"):
        out = transpile(sql, target)
        assert out.startswith("MERGE INTO sli_hourly AS t USING (") and "ON CONFLICT" not in out
        assert "WHEN MATCHED THEN UPDATE SET good = t.good + s.good" in out
        assert "WHEN NOT MATCHED THEN INSERT (sli, h, team, trigger, good, bad, total)" in out
        sqlglot.parse_one(out, read=target)


def test_nested_ctes_used_twice_get_distinct_names():
    facts = Q.RUN_FACTS_WITH_REPRO.format(facts=Q.RUN_FACTS.format(src="run_attempts"))
    sql = f"SELECT * FROM ({facts}) a UNION ALL SELECT * FROM ({facts}) b"
    out = transpile(sql, "spark")
    assert "f__0 AS" in out and "f__1 AS" in out and "base__0 AS" in out and "base__1 AS" in out
    sqlglot.parse_one(out, read="spark")


def test_untranslatable_and_helpers():
    with pytest.raises(UnsupportedConstruct):
        transpile("SELECT unnest(generate_series(a, b, INTERVAL 1 DAY)) AS d FROM x", "bigquery")
    assert transpile("SELECT unnest(generate_series(a, b, INTERVAL 1 DAY)) AS d FROM x", "spark") == \
        "SELECT EXPLODE(SEQUENCE(a, b, INTERVAL '1' DAY)) AS d FROM x"
    with pytest.raises(ValueError):
        transpile("SELECT 1", "oracle")
