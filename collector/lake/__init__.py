"""The lake: the collector's events, run attempts, alert instances and FOCUS cost lines as Hive-partitioned
Parquet in a directory, an S3 prefix or a GCS prefix, for engines that outgrow one DuckDB file (docs/scale.md).

Layout (`layout.py`), writing (`export.py`), storage back ends (`stores.py`), reading back as relations named like
the collector's tables (`views.py`), and the `observatory lake` commands (`cli.py`).
"""
