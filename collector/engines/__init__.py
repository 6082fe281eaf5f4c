"""Engines that run the product's SQL: the embedded DuckDB, Spark (PySpark, local or a cluster) and BigQuery.

Every statement is written once, in DuckDB's dialect, in the module of its area (slo/sli/sql.py, cost/,
collector/storage/derive.py, collector/lake/views.py). `dialect.py` is the one place that knows how the other
engines spell the constructs DuckDB has and they lack; `spark.py` and `bigquery.py` are thin executors that
transpile, bind parameters and return rows shaped like DuckDB's.
"""

ENGINES = ("duckdb", "spark", "bigquery")
