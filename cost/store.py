"""Writing normalised lines: a delivery replaces its partitions in one transaction, never adds to them.

A partition is the unit a provider restates: (payer account, billing month) for AWS CUR and FOCUS files,
(billing account, ingestion-time partition date) for the GCP export. Deleting the partition's rows and inserting the
new set happen in one transaction, so readers see the old or the new delivery, never both or neither. A delivery
whose content hash (``ingest_id``) already wrote a partition is a no-op.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from decimal import Decimal
from typing import Iterable

import duckdb
import pyarrow as pa

from cost import schema
from collector.storage.sqltext import lit

ZERO = Decimal(0)


@dataclass
class PartitionChange:
    partition: str
    action: str  # inserted | replaced | unchanged | removed
    rows_before: int
    rows_after: int
    billed_before: Decimal
    billed_after: Decimal
    effective_before: Decimal
    effective_after: Decimal

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"

    def as_dict(self) -> dict:
        return asdict(self)


def _stats(con: duckdb.DuckDBPyConnection, rel: str, parts: list[str]) -> dict[str, tuple[int, Decimal, Decimal]]:
    if not parts:
        return {}
    inlist = ", ".join(lit(p) for p in parts)
    rows = con.execute(
        f'SELECT x_partition, count(*), coalesce(sum("BilledCost"), 0), coalesce(sum("EffectiveCost"), 0) '
        f"FROM {rel} WHERE x_partition IN ({inlist}) GROUP BY 1").fetchall()
    return {r[0]: (int(r[1]), Decimal(r[2]), Decimal(r[3])) for r in rows}


def _relation(con: duckdb.DuckDBPyConnection, lines) -> tuple[str, bool]:
    """Name of a relation holding ``lines`` (a normalize.Lines temp table, or an Arrow table registered)."""
    if isinstance(lines, pa.Table):
        if lines.schema.names != list(schema.NAMES):
            raise ValueError("lines are not shaped like the cost table")
        con.register("__cost_new", lines)
        return "__cost_new", True
    return lines.name, False


def plan_changes(con: duckdb.DuckDBPyConnection, lines, ingest_id: str,
                 partitions: Iterable[str] = ()) -> list[PartitionChange]:
    """What applying ``lines`` would do to each partition (nothing is written). For not-yet-materialised lines
    (``normalize.Pending``) the new row counts and totals are filled in by ``apply`` after the insert."""
    lazy = hasattr(lines, "check_inserted")
    rel, registered = _relation(con, lines)
    try:
        present = {r[0] for r in con.execute(f"SELECT DISTINCT x_partition FROM {rel}").fetchall()}
        new_parts = sorted(present | set(partitions))
        new = {} if lazy else _stats(con, rel, new_parts)
    finally:
        if registered:
            con.unregister(rel)
    applied = dict(con.execute(
        "SELECT partition, ingest_id FROM cost_partitions WHERE partition IN (SELECT unnest(?))",
        [new_parts]).fetchall()) if new_parts else {}
    old = _stats(con, schema.TABLE, new_parts)
    out = []
    for p in new_parts:
        ob = old.get(p, (0, ZERO, ZERO))
        nb = new.get(p, (0, ZERO, ZERO))
        if applied.get(p) == ingest_id:
            action, nb = "unchanged", ob
        elif p not in old and p not in applied:
            action = "inserted" if p in present else "unchanged"
        elif p not in present:
            action = "removed"
        else:
            action = "replaced"
        out.append(PartitionChange(p, action, ob[0], nb[0], ob[1], nb[1], ob[2], nb[2]))
    return out


def apply(con: duckdb.DuckDBPyConnection, lines, *, ingest_id: str, source: str,
          manifest_id: str | None = None, origin: str | None = None, partitions: Iterable[str] = (),
          manage_transaction: bool = True, dry_run: bool = False) -> list[PartitionChange]:
    """Replace every partition present in ``lines`` (plus ``partitions``, which may come back empty).

    ``lines``: an Arrow table, a ``normalize.Lines`` temp table or a ``normalize.Pending`` SELECT (inserted
    directly; its required-column check runs on the inserted rows, inside the transaction).
    With ``manage_transaction=False`` the caller owns the transaction (the collector's writer thread).
    """
    lazy = hasattr(lines, "check_inserted")
    if lazy and dry_run:
        raise ValueError("a dry run needs materialised lines (normalize.run)")
    if manage_transaction:
        con.execute("BEGIN TRANSACTION")
    try:
        changes = plan_changes(con, lines, ingest_id, partitions)
        todo = [c for c in changes if c.changed]
        if todo and not dry_run:
            parts = [c.partition for c in todo]
            con.execute(f"DELETE FROM {schema.TABLE} WHERE x_partition IN (SELECT unnest(?))", [parts])
            rel, registered = _relation(con, lines)
            try:
                cols = ", ".join(f'"{n}"' for n in schema.NAMES)
                everything = len(parts) == len(changes)
                where = "" if everything else " WHERE x_partition IN (SELECT unnest(?))"
                con.execute(f"INSERT INTO {schema.TABLE} ({cols}) SELECT {cols} FROM {rel}{where}",
                            [] if everything else [parts])
            finally:
                if registered:
                    con.unregister(rel)
            if lazy:
                inlist = ", ".join(lit(p) for p in parts)
                lines.check_inserted(f"x_partition IN ({inlist})")
                after = _stats(con, schema.TABLE, parts)
                for c in todo:
                    c.rows_after, c.billed_after, c.effective_after = after.get(c.partition, (0, ZERO, ZERO))
            con.execute("DELETE FROM cost_partitions WHERE partition IN (SELECT unnest(?))", [parts])
            live = [c for c in todo if c.action != "removed"]
            if live:
                con.executemany(
                    "INSERT INTO cost_partitions VALUES (?, ?, ?, ?, ?, ?, ?, now())",
                    [[c.partition, source, ingest_id, manifest_id, c.rows_after, c.billed_after, c.effective_after]
                     for c in live])
        if not dry_run:
            con.executemany(
                "INSERT INTO cost_ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [[ingest_id, source, manifest_id, c.partition, c.action, c.rows_before, c.rows_after,
                  c.billed_before, c.billed_after, c.effective_before, c.effective_after, origin] for c in changes])
        if manage_transaction:
            con.execute("ROLLBACK" if dry_run else "COMMIT")
    except (duckdb.ConversionException, duckdb.InvalidInputException) as err:
        if manage_transaction:
            con.execute("ROLLBACK")
            if hasattr(lines, "diagnose"):  # after the rollback: the diagnosis reads the input again
                raise lines.diagnose(err) from err
        raise
    except BaseException:
        if manage_transaction:
            con.execute("ROLLBACK")
        raise
    return changes


def record_sync(con: duckdb.DuckDBPyConnection, source: str, target: str, status: str = "ok",
                detail: str | None = None) -> None:
    """The outcome of a sync of one target; `last_ok_at` keeps the last successful one across failures."""
    con.execute(
        "INSERT INTO cost_sync_state (source, target, last_sync_at, last_status, detail, last_ok_at) "
        "VALUES ($source, $target, now(), $status, $detail, CASE WHEN $status = 'ok' THEN now() END) "
        "ON CONFLICT (source, target) DO UPDATE SET last_sync_at = EXCLUDED.last_sync_at, "
        "last_status = EXCLUDED.last_status, detail = EXCLUDED.detail, "
        "last_ok_at = coalesce(EXCLUDED.last_ok_at, cost_sync_state.last_ok_at)",
        {"source": source, "target": target, "status": status, "detail": detail})
