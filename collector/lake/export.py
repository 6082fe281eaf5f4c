"""`observatory lake export`: write what changed since the last export of this collector into the lake.

One export reads the collector's database in one read transaction (a consistent snapshot while the writer goes
on), rewrites every partition that changed as one whole Parquet file named after the collector, deletes the files
of partitions that became empty, and writes the collector's manifest last. The manifest holds the cursor (the last
writer batch exported) and each partition's fingerprint; an export interrupted before its manifest is written is
simply done again by the next one, and an export with nothing new writes nothing.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from collector.lake import layout
from collector.lake.stores import LakeStore
from collector.storage.queries import DERIVED_THROUGH

log = logging.getLogger(__name__)


def default_collector_id(db: str | Path) -> str:
    """`<host>-<hash of the database path>`: stable for one collector, distinct between collectors. Set
    `--collector-id` (OBSERVATORY_LAKE_COLLECTOR_ID) to name collectors explicitly."""
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())[:60] or "collector"
    digest = hashlib.sha256(str(Path(db).resolve()).encode()).hexdigest()[:8]
    return f"{host}-{digest}"


@dataclass
class TableReport:
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    rows: int = 0


@dataclass
class ExportReport:
    lake: str
    collector_id: str
    from_batch: int
    to_batch: int
    tables: dict[str, TableReport]
    manifest: str

    def as_dict(self) -> dict[str, Any]:
        return {"lake": self.lake, "collector_id": self.collector_id, "from_batch": self.from_batch,
                "to_batch": self.to_batch, "manifest": self.manifest,
                "tables": {k: {"written": v.written, "deleted": v.deleted, "rows": v.rows}
                           for k, v in self.tables.items()}}


def read_manifest(store: LakeStore, collector_id: str) -> dict[str, Any]:
    raw = store.get(layout.manifest_key(collector_id))
    if raw is None:
        return {"format": layout.FORMAT, "collector_id": collector_id, "exported_through_batch": 0,
                "tables": {t.name: {"partition": t.partition, "partitions": {}} for t in layout.TABLES}}
    doc = json.loads(raw)
    if doc.get("format") != layout.FORMAT:
        raise ValueError(f"lake manifest of {collector_id!r} has format {doc.get('format')!r}, expected {layout.FORMAT}")
    for t in layout.TABLES:
        doc["tables"].setdefault(t.name, {"partition": t.partition, "partitions": {}})
    return doc


def manifests(store: LakeStore) -> list[dict[str, Any]]:
    """Every collector's manifest in the lake."""
    return [json.loads(store.get(k) or b"{}") for k in store.list(layout.MANIFESTS) if k.endswith(".json")]


def _parquet(table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


_EXPORT_LOCK = threading.Lock()


def export(con: duckdb.DuckDBPyConnection, store: LakeStore, collector_id: str,
           now: datetime | None = None) -> ExportReport:
    """Export the partitions changed since this collector's last export; returns what was written."""
    layout.check_collector_id(collector_id)
    now = now or datetime.now(timezone.utc)
    with _EXPORT_LOCK:
        man = read_manifest(store, collector_id)
        lo = int(man["exported_through_batch"])
        cur = con.cursor()
        reports: dict[str, TableReport] = {}
        cur.execute("BEGIN TRANSACTION")
        try:
            hi = int(cur.execute(DERIVED_THROUGH).fetchall()[0][0])  # derived tables hold every batch up to it
            if hi < lo:
                raise ValueError(f"the lake's manifest of {collector_id!r} is at batch {lo}, the database at {hi}: "
                                 "a different database is exporting under this collector id")
            for t in layout.TABLES:
                reports[t.name] = _export_table(cur, store, t, man["tables"][t.name]["partitions"],
                                                collector_id, lo, hi)
        finally:
            cur.execute("ROLLBACK")  # read-only snapshot
            cur.close()
        man.update(exported_through_batch=hi, exported_at=now.isoformat(), collector_id=collector_id)
        key = layout.manifest_key(collector_id)
        store.put(key, json.dumps(man, indent=1, sort_keys=True).encode())
    rep = ExportReport(store.uri, collector_id, lo, hi, reports, key)
    log.info("lake export to %s: batches (%d, %d], %s", store.uri, lo, hi,
             {k: (len(v.written), len(v.deleted), v.rows) for k, v in reports.items()})
    return rep


def _export_table(cur: duckdb.DuckDBPyConnection, store: LakeStore, t: layout.LakeTable, parts: dict,
                  collector_id: str, lo: int, hi: int) -> TableReport:
    rep = TableReport()
    if t.changed == "batch":
        keys = {k: None for (k,) in cur.execute(
            f"SELECT DISTINCT {t.key} FROM {t.name} WHERE batch_id > $lo AND batch_id <= $hi",
            {"lo": lo, "hi": hi}).fetchall()}
        removed: list[str] = []
    else:
        fps = dict(cur.execute(t.fingerprint).fetchall())
        keys = {k: fp for k, fp in fps.items() if k is not None and parts.get(k, {}).get("fingerprint") != fp}
        removed = [k for k in parts if k not in fps]
    for k in sorted(keys):
        params = {"part": k, "collector": collector_id}
        if "$hi" in t.rows:
            params["hi"] = hi
        table = cur.sql(t.rows, params=params).to_arrow_table()
        fkey = layout.file_key(t, k, collector_id)
        if table.num_rows == 0:  # cannot happen for a key just listed, but never leave an empty file behind
            store.delete(fkey)
            parts.pop(k, None)
            continue
        store.put(fkey, _parquet(table))
        parts[k] = {"file": fkey, "rows": table.num_rows, "fingerprint": keys[k]}
        rep.written.append(fkey)
        rep.rows += table.num_rows
    for k in removed:
        store.delete(parts[k]["file"])
        rep.deleted.append(parts.pop(k)["file"])
    return rep
