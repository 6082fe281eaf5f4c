"""Importing billing files (thin I/O around the normalisers and the store).

``import_files`` reads one delivery (one or more files of the same format), normalises it, and replaces the
partitions it contains. The files given together are one delivery: a billing period split over several files must
be imported in one call.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import duckdb
import pyarrow as pa

from cost import aws_cur, focus, gcp_export, normalize, store
from cost.config import CostSettings, load_settings
from cost.errors import CostInputError
from collector.storage.sqltext import lit

FORMATS = ("focus", "aws-cur", "gcp-export")
NORMALISER_VERSION = "1"
_view_ids = itertools.count()


@dataclass
class ImportResult:
    source: str
    ingest_id: str
    files: list[str]
    rows: int
    changes: list[store.PartitionChange] = field(default_factory=list)
    dry_run: bool = False

    @property
    def months(self) -> set[str]:
        return {c.partition.rsplit("|", 1)[-1][:7] for c in self.changes}


def file_kind(path: str) -> str:
    p = path.lower()
    if p.endswith(".parquet") or p.endswith(".snappy.parquet") or p.endswith(".parq"):
        return "parquet"
    if p.endswith(".csv") or p.endswith(".csv.gz") or p.endswith(".gz") or p.endswith(".txt"):
        return "csv"
    if p.endswith(".zip"):
        raise CostInputError("zip archives are not read: unzip the CUR files first", source=path)
    raise CostInputError("unknown file type (expected .csv, .csv.gz or .parquet)", source=path)


def hash_files(paths: Sequence[str], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        fh = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                fh.update(chunk)
        h.update(fh.digest())
    return h.hexdigest()[:32]


def open_raw(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> str:
    """Create a temp view over the files (all text for CSV, native types for Parquet); returns its name."""
    if not paths:
        raise CostInputError("no files given")
    kinds = {file_kind(str(p)) for p in paths}
    if len(kinds) > 1:
        raise CostInputError("one delivery must be all CSV or all Parquet", source=", ".join(map(str, paths)))
    for p in paths:
        if not Path(p).exists():
            raise CostInputError("file not found", source=str(p))
    files = "[" + ", ".join(lit(str(p)) for p in paths) + "]"
    name = f"__raw_{next(_view_ids)}"
    if kinds == {"csv"}:
        src = (f"read_csv({files}, header = true, all_varchar = true, union_by_name = true, "
               f"delim = ',', quote = '\"', escape = '\"', null_padding = true)")
    else:
        src = f"read_parquet({files}, union_by_name = true)"
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {src}")
        con.execute(f"SELECT * FROM {name} LIMIT 0").fetchall()
    except duckdb.Error as err:
        raise CostInputError(f"cannot read: {err}", source=", ".join(map(str, paths))) from err
    return name


def columns_of(con: duckdb.DuckDBPyConnection, rel: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()}


def normalise_relation(con: duckdb.DuckDBPyConnection, rel: str, fmt: str, settings: CostSettings,
                       ingest_id: str, label: str, materialize: bool = True):
    cols = columns_of(con, rel)
    if fmt == "focus":
        plan = focus.plan(cols)
    elif fmt == "aws-cur":
        rel = aws_cur.prepare_relation(con, rel, cols)
        plan = aws_cur.plan(columns_of(con, rel))
    elif fmt == "gcp-export":
        rel = gcp_export.prepare_relation(con, rel, cols)
        plan = gcp_export.plan(columns_of(con, rel))
    else:
        raise CostInputError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if materialize:
        return normalize.run(con, plan, rel, settings.tag_keys, ingest_id, label)
    return normalize.prepare(con, plan, rel, settings.tag_keys, ingest_id, label)


def import_files(con: duckdb.DuckDBPyConnection, paths: Sequence[str | Path], fmt: str,
                 settings: CostSettings | None = None, *, dry_run: bool = False,
                 manage_transaction: bool = True, refresh_allocation: bool = True) -> ImportResult:
    settings = settings or load_settings()
    if fmt not in FORMATS:
        raise CostInputError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    paths = [str(p) for p in paths]
    label = ", ".join(paths)
    for p in paths:
        if not Path(p).exists():
            raise CostInputError("file not found", source=p)
    ingest_id = f"{fmt}:" + hash_files(paths, f"{fmt}|{NORMALISER_VERSION}|{settings.fingerprint()}")
    rel = open_raw(con, paths)
    try:
        # a real import inserts the normalising SELECT directly; a dry run materialises it to show totals
        lines = normalise_relation(con, rel, fmt, settings, ingest_id, label, materialize=dry_run)
        try:
            changes = store.apply(con, lines, ingest_id=ingest_id, source=fmt, origin=label, dry_run=dry_run,
                                  manage_transaction=manage_transaction)
            rows = lines.num_rows if dry_run else sum(c.rows_after for c in changes if c.changed) or \
                sum(c.rows_before for c in changes)
            result = ImportResult(fmt, ingest_id, paths, rows, changes, dry_run)
            if not dry_run:
                store.record_sync(con, fmt, "file", "ok", label[:500])
                if refresh_allocation and any(c.changed for c in changes):
                    from cost import allocation
                    allocation.refresh(con, months_of_changes(con, changes))
        finally:
            lines.drop()
    finally:
        drop_views(con, rel)
    return result


def months_of_changes(con: duckdb.DuckDBPyConnection, changes) -> list[str]:
    parts = [c.partition for c in changes if c.changed]
    if not parts:
        return []
    return sorted(r[0] for r in con.execute(
        "SELECT DISTINCT x_billing_month FROM cost_line_items WHERE x_partition IN (SELECT unnest(?)) "
        "AND x_billing_month IS NOT NULL", [parts]).fetchall())


def drop_views(con: duckdb.DuckDBPyConnection, rel: str) -> None:
    for suffix in ("_cur", "_gcp", ""):
        con.execute(f"DROP VIEW IF EXISTS {rel}{suffix}")


def months_of(lines) -> list[str]:
    if isinstance(lines, pa.Table):
        return sorted(m for m in set(lines.column("x_billing_month").to_pylist()) if m)
    return lines.distinct("x_billing_month")


def import_table(con: duckdb.DuckDBPyConnection, lines, *, source: str, ingest_id: str,
                 origin: str, manifest_id: str | None = None, partitions: Iterable[str] = (),
                 dry_run: bool = False, manage_transaction: bool = True,
                 refresh_allocation: bool = True) -> list[store.PartitionChange]:
    changes = store.apply(con, lines, ingest_id=ingest_id, source=source, manifest_id=manifest_id, origin=origin,
                          partitions=partitions, dry_run=dry_run, manage_transaction=manage_transaction)
    if not dry_run and refresh_allocation and any(c.changed for c in changes):
        from cost import allocation
        allocation.refresh(con, sorted(set(months_of(lines)) | set(months_of_changes(con, changes))))
    return changes


ProgressFn = Callable[[str, int, int], None]
