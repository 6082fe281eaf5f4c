"""Validating a batch: the generated fast path for every item, the exact path for the rest, one Arrow table out.

Every channel comes here (HTTP, files, native adapters once mapped, the demo): items are parsed once with
orjson, each goes through its type's generated check (codegen.py), the candidate-secret filter runs column-wise
(polars `str.contains` with the redactor's PREFILTER_PATTERN over the stored text), and the rows the fast path
does not vouch for go to `validation.check_item` + `validation.to_row` (pydantic and the redactor), so every
rejection and every redaction comes from the reference code. The result is one Arrow table in
`storage.schema.INGEST_SCHEMA`: the stored columns plus the typed fields the writer folds into derived tables.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from collector.contract.events import MAX_FUTURE_SKEW
from collector.contract.redaction import PREFILTER_PATTERN, has_candidate, redact_text
from collector.contract.validation import Rejection, check_item, to_row
from collector.contract.vectorized.codegen import INT32, compiled
from collector.contract.vectorized.lines import parquet_lines, split_lines
from collector.contract.vectorized.plan import FUTURE_MARGIN
from collector.storage.schema import EVENT_SCHEMA, INGEST_SCHEMA

_ENVELOPE = ("source", "id", "type", "time", "subject")


@dataclass
class BulkResult:
    """Accepted rows as an Arrow table in INGEST_SCHEMA (input order), plus the rejections (input order)."""

    table: pa.Table
    row_index: pa.Array  # input index of each accepted row (int64), parallel to `table`
    rejections: list[Rejection]
    total: int
    fast: int = 0  # rows accepted by the generated fast path
    exact: int = 0  # rows that went through pydantic
    redacted: int = 0  # accepted rows with at least one secret redacted
    stats: dict[str, float] = field(default_factory=dict)


class BulkValidator:
    """Validates batches of items or JSON lines. Thread-safe; the DuckDB connection is only for rendering
    Parquet-shaped tables as lines (`validate_parquet_table`)."""

    def __init__(self) -> None:
        self.comp = compiled()
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = duckdb.connect(":memory:")
            self._con.execute("SET TimeZone = 'UTC'")
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- inputs ---------------------------------------------------------------------------------------------

    def validate_lines(self, lines: pa.Array | list[bytes], *, offset: int = 0, line_numbers: pa.Array | None = None,
                       slow: pa.Array | None = None, item_of: Callable[[int], Any] | None = None) -> BulkResult:
        """Validate JSON lines (blank lines already removed); row i gets the index `offset + i`.

        A line that orjson cannot read becomes a `json_invalid` rejection worded like `body.split_items` words
        it (`line N`, N from `line_numbers`, 1-based physical numbers, or i + 1), unless `item_of(i)` says what
        row i is instead; rows marked in `slow` are always `item_of(i)`.
        """
        raw = lines.to_pylist() if isinstance(lines, (pa.Array, pa.ChunkedArray)) else lines
        numbers = line_numbers.to_pylist() if line_numbers is not None else None
        slow_rows = set(pc.indices_nonzero(slow.fill_null(False)).to_pylist()) if slow is not None else ()
        loads = orjson.loads
        if not slow_rows:
            try:  # the common case: every line reads as it is (orjson skips the JSON whitespace around it)
                return self.validate_items(list(map(loads, raw)), offset, _own_rejections=True)
            except orjson.JSONDecodeError:
                pass
        items: list[Any] = []
        for i, b in enumerate(raw):
            if i in slow_rows and item_of is not None:
                items.append(item_of(i))
                continue
            if b.__class__ is str:
                b = b.encode()
            b = b.strip()  # bytes.strip: ASCII whitespace, as split_items does
            try:
                items.append(loads(b))
            except orjson.JSONDecodeError as exc:
                if item_of is not None:
                    items.append(item_of(i))
                    continue
                n = numbers[i] if numbers is not None else i + 1
                items.append(Rejection(offset + i, [{"path": "", "type": "json_invalid",
                                                     "message": f"line {n}: {exc}"}],
                                       redact_text(b.decode("utf-8", "replace")[:65_536])[0]))
        return self.validate_items(items, offset, _own_rejections=True)

    def validate_items(self, items: list[Any], offset: int = 0, *, _own_rejections: bool = False) -> BulkResult:
        """Validate parsed items (dicts as orjson or json gives them; a `Rejection` item stays a rejection)."""
        t0 = time.perf_counter()
        comp = self.comp
        checks = comp.checks
        limit = datetime.now(timezone.utc) + MAX_FUTURE_SKEW - FUTURE_MARGIN
        f_idx: list[int] = []
        f_type: list[str] = []
        f_res: list[tuple] = []
        x_idx: list[int] = []
        for i, it in enumerate(items):
            if it.__class__ is dict:
                t = it.get("type")
                fn = checks.get(t) if t.__class__ is str else None
                if fn is not None:
                    r = fn(it, limit)
                    if r is not None:
                        f_idx.append(i)
                        f_type.append(t)
                        f_res.append(r)
                        continue
            x_idx.append(i)
        fast = _fast_table(comp, f_type, f_res)
        # Candidate secrets (what the redactor would scan is inside the stored text) take the exact path.
        if fast is not None:
            flagged = pl.from_arrow(fast.column("data")).str.contains(PREFILTER_PATTERN)  # type: ignore[union-attr]
            if any(r[4] is not None for r in f_res):
                flagged = flagged | pl.Series([r[4] is not None and has_candidate(r[4]) for r in f_res])
            if flagged.any():
                keep = ~flagged
                x_idx = sorted(x_idx + [f_idx[j] for j in flagged.arg_true().to_list()])
                fast = fast.filter(keep.to_arrow())
                f_idx = [i for i, k in zip(f_idx, keep.to_list()) if k]
        t1 = time.perf_counter()
        exact, x_acc, rejections, redacted = self._exact(items, x_idx, offset, _own_rejections)
        parts = [p for p in (fast, exact) if p is not None and p.num_rows]
        if not parts:
            table, index = INGEST_SCHEMA.empty_table(), pa.array([], pa.int64())
        elif len(parts) == 1:
            table = parts[0]
            index = pa.array([offset + i for i in (f_idx if parts[0] is fast else x_acc)], pa.int64())
        else:
            table = pa.concat_tables(parts)
            idx = pa.array(f_idx + x_acc, pa.int64())
            order = pc.sort_indices(idx)  # input order, so the first occurrence of a (source, id) wins downstream
            table, index = table.take(order), pc.add(idx.take(order), offset)
        rejections.sort(key=lambda r: r.index)
        return BulkResult(table, index, rejections, len(items), fast=len(f_idx), exact=len(x_idx),
                          redacted=redacted, stats={"fast_seconds": t1 - t0, "exact_seconds": time.perf_counter() - t1})

    # -- the exact path -------------------------------------------------------------------------------------

    def _exact(self, items: list[Any], idx: list[int], offset: int,
               own: bool) -> tuple[pa.Table | None, list[int], list[Rejection], int]:
        rows: list[dict[str, Any]] = []
        datas: list[dict] = []
        accepted: list[int] = []
        rejections: list[Rejection] = []
        for i in idx:
            item = items[i]
            if isinstance(item, Rejection):
                if not own:
                    item.index += offset
                rejections.append(item)
                continue
            res = check_item(offset + i, item)
            if isinstance(res, Rejection):
                rejections.append(res)
                continue
            row = to_row(res)
            data = orjson.loads(row["data"])
            bad = _storage_range(self.comp.rows[row["type"]](data), self.comp.row_columns[row["type"]])
            if bad:
                rejections.append(Rejection(offset + i, [{"path": f"data.{bad}", "type": "storage_range",
                                                          "message": "value does not fit the storage column"}],
                                            redact_text(row["data"][:65_536])[0], row["source"], row["id"],
                                            row["type"]))
                continue
            rows.append(row)
            datas.append(data)
            accepted.append(i)
        if not rows:
            return None, accepted, rejections, 0
        extras = [not self.comp.plans[r["type"]].declared.issuperset(d) for r, d in zip(rows, datas)]
        table = _assemble(self.comp, [r["type"] for r in rows], datas, extras, {c: [r[c] for r in rows] for c in _ENVELOPE},
                          pa.array([r["data"] for r in rows], pa.string()),
                          pa.array([r["redactions"] for r in rows], pa.int32()))
        return table, accepted, rejections, sum(1 for r in rows if r["redactions"])


def _assemble(comp: Any, types: list[str], datas: list[dict], extras: list[bool], envelope: dict[str, Any],
              data: pa.Array, redactions: pa.Array) -> pa.Table:
    """Rows -> one INGEST_SCHEMA table in the given order. Typed columns are built per event type, only for the
    columns the type declares (the rest are nulls for it), then the per-type tables are put back in order."""
    n = len(types)
    by_type: dict[str, list[int]] = {}
    for j, t in enumerate(types):
        by_type.setdefault(t, []).append(j)
    parts, positions = [], []
    for t, pos in by_type.items():
        mine = comp.row_columns[t]
        row = comp.rows[t]
        sub = datas if len(pos) == n else [datas[j] for j in pos]
        values: dict[str, Any] = dict(zip(mine, zip(*map(row, sub)))) if mine else {}
        for k, j in enumerate(pos):
            if extras[j]:
                for c, v in comp.extra_values(t, datas[j]).items():
                    if c not in values:
                        values[c] = [None] * len(pos)
                    values[c][k] = v
        arrays = [pa.array(values[c], comp.types[c]) if c in values else pa.nulls(len(pos), comp.types[c])
                  for c in comp.columns]
        parts.append(pa.Table.from_arrays(arrays, names=list(comp.columns)))
        positions.append(pos)
    typed = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    if len(parts) > 1:
        typed = typed.take(pc.sort_indices(pa.array([j for pos in positions for j in pos], pa.int64())))
    cols = {c: typed.column(c) for c in comp.columns}
    for c, values in envelope.items():
        cols[c] = pa.array(values, INGEST_SCHEMA.field(c).type)
    cols["data"], cols["redactions"] = data, redactions
    return pa.Table.from_arrays([cols[f.name] for f in INGEST_SCHEMA], schema=INGEST_SCHEMA)


def _fast_table(comp: Any, types: list[str], res: list[tuple]) -> pa.Table | None:
    if not res:
        return None
    datas, times, sources, ids, subjects, extras = zip(*res)
    data = pa.array(list(map(orjson.dumps, datas)), pa.binary()).cast(pa.string())
    return _assemble(comp, types, datas, extras, {"source": sources, "id": ids, "type": types, "time": times,
                                          "subject": subjects}, data, pa.nulls(len(res), pa.int32()).fill_null(0))


_INT32_COLUMNS = frozenset(f.name for f in EVENT_SCHEMA if pa.types.is_int32(f.type))


def _storage_range(values: tuple, columns: tuple[str, ...]) -> str | None:
    """The first INTEGER column of `events` a value does not fit (the contract bounds them; this is a guard)."""
    for c, v in zip(columns, values):
        if c in _INT32_COLUMNS and v is not None and not -INT32 <= v < INT32:
            return c
    return None


_local = threading.local()


def default_validator() -> BulkValidator:
    """A per-thread validator (its DuckDB connection, used for Parquet rendering, is per thread)."""
    v = getattr(_local, "validator", None)
    if v is None:
        v = _local.validator = BulkValidator()
    return v


def validate_ndjson(body: bytes, offset: int = 0) -> BulkResult:
    """Validate an NDJSON body: the same items, indexes and outcome as
    `validation.validate_items(body.split_items(body, "application/x-ndjson"), offset)`."""
    lines, _ = split_lines(body)
    return default_validator().validate_lines(lines, offset=offset)


def validate_json_items(items: list[Any], offset: int = 0) -> BulkResult:
    """Validate parsed items (a JSON array document, split NDJSON, events mapped from a native format)."""
    return default_validator().validate_items(items, offset)


def validate_parquet_table(validator: BulkValidator, table: pa.Table, offset: int = 0) -> BulkResult:
    """Validate a Parquet-shaped table (see `parquet_lines`)."""
    lines, bad = parquet_lines(table, validator.con)
    bad_list = bad.to_pylist() if pc.any(bad).as_py() else None

    def item_of(i: int) -> Any:
        text = lines[i].as_py()
        err = None
        if bad_list is not None and bad_list[i]:
            raw = table.column("data")[i].as_py()
            try:
                orjson.loads(raw)
                err = "not one JSON value"
            except orjson.JSONDecodeError as exc:
                err = str(exc)
        else:
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError as exc:  # the envelope columns are rendered by DuckDB: data is at fault
                err = str(exc)

        def col(name: str) -> str | None:
            v = table.column(name)[i].as_py() if name in table.column_names else None
            return redact_text(v[:256])[0] if isinstance(v, str) else None

        return Rejection(offset + i, [{"path": "data", "type": "json_invalid",
                                       "message": f"column data is not valid JSON: {err}"}],
                         redact_text(text[:65_536])[0], col("source"), col("id"), col("type"))

    return validator.validate_lines(lines, offset=offset, slow=bad, item_of=item_of)
