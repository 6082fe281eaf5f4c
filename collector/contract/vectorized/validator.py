"""Validating a batch: the generated fast path for every item, the exact path for the rest, one Arrow table out.

Every channel comes here (HTTP, files, native adapters once mapped, the demo): JSON lines are first offered to
the struct stage (structs.py: msgspec decodes and checks a line in one C call); the other lines are parsed once
with orjson, and each item goes through its type's generated check (codegen.py); the candidate-secret filter
runs column-wise (polars `str.contains` with the redactor's PREFILTER_PATTERN over the stored text), and the rows
the fast paths do not vouch for go to `validation.check_item` + `validation.to_row` (pydantic and the redactor),
so every rejection and every redaction comes from the reference code. The result is one Arrow table in
`storage.schema.INGEST_SCHEMA`: the stored columns plus the typed fields the writer folds into derived tables.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Callable, Sequence

import duckdb
import msgspec
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry import trace

from collector.contract.events import IDENTIFIER_KEYS, MAX_FUTURE_SKEW
from collector.contract.redaction import PREFILTER_PATTERN, has_candidate, redact_text
from collector.contract.validation import Rejection, check_item, to_row
from collector.contract.vectorized.codegen import DATETIME_RE, INT32, compiled, parse_datetime
from collector.contract.vectorized.lines import one_value, parquet_lines, split_lines
from collector.contract.vectorized.plan import FUTURE_MARGIN
from collector.contract.vectorized.structs import Decisions, struct_stage_of
from collector.storage.schema import EVENT_SCHEMA, INGEST_SCHEMA

_ENVELOPE = ("source", "id", "type", "time", "subject")
tracer = trace.get_tracer("collector.contract.vectorized")


class _PausedGC:
    """The cyclic garbage collector paused while batches are validated (in any thread).

    A batch allocates a few dicts per event and keeps them until the Arrow table is built; the collector's
    generation-2 passes over them cost as much as the validation itself at 100k-event batches (measured: 34 vs
    21 CPU-us per event). The objects hold no cycles; collection resumes when the last batch in flight ends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.was_enabled = False

    def __enter__(self) -> None:
        with self.lock:
            if self.active == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.active += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.active -= 1
            if self.active == 0 and self.was_enabled:
                gc.enable()


_paused_gc = _PausedGC()

# What the exact path refuses in identifiers (validation._identifier_problem): a control character or a
# credential. Rows whose identifiers may hold either take the exact path, which decides.
_IDENT_SUSPECT = f"[\\x00-\\x1f\\x7f]|{PREFILTER_PATTERN}"
# Identifiers are checked column-wise: every identifier key has a typed column, which the declared field or an
# extra key of the same name fills (codegen's `row` and `extra_values`).
_IDENT_COLUMNS = ["source", "id", *sorted(IDENTIFIER_KEYS)]
assert set(_IDENT_COLUMNS) <= set(INGEST_SCHEMA.names), "an identifier key without a typed column"
_DATA_IDENTS = _IDENT_COLUMNS[2:]  # the identifiers inside `data` (the envelope's source and id are not)


def _rows_with_backslash(texts: pa.ChunkedArray) -> np.ndarray:
    """The indexes of the texts (`string` or `large_string`, none null) that hold a backslash, read from the Arrow
    buffers with numpy: a byte comparison over the batch's text and a search of the offsets, ~0.02 ms for 1,000
    bench events, where Arrow's `match_substring` took 0.4 and polars' literal search 0.22 (most of it a polars
    call's fixed cost)."""
    found: list[np.ndarray] = []
    base = 0
    for chunk in texts.chunks:
        _, offsets_buf, data_buf = chunk.buffers()
        if data_buf is not None and len(chunk):
            width = np.dtype(np.int64 if pa.types.is_large_string(chunk.type) else np.int32)
            offsets = np.frombuffer(offsets_buf, width, count=len(chunk) + 1, offset=chunk.offset * width.itemsize)
            raw = np.frombuffer(data_buf, np.uint8)[offsets[0]:offsets[-1]]
            at = np.flatnonzero(raw == ord("\\"))
            if len(at):
                found.append(np.unique(np.searchsorted(offsets, at + offsets[0], side="right") - 1) + base)
        base += len(chunk)
    return np.concatenate(found) if found else np.empty(0, np.int64)


def _suspects(fast: pa.Table) -> np.ndarray:
    """The rows whose stored text may hold a candidate secret (what the redactor would scan is inside it) or whose
    identifiers may hold a control character or a credential (a boolean per row): they take the exact path, which
    decides.

    One regex call over several columns appended as chunks of one Series, so the pattern is compiled once (a call
    costs ~0.1 ms whatever its size; one per column cost 6 CPU-us per event at 1,000-event requests). Searched:
    - `data` whole. A credential in a data identifier is found in the data's text: JSON escaping turns a quote, a
      backslash or a control character into a backslash and letters or hex digits, which every negated class of
      the pattern admits and no literal of it holds, so a match of the value is a match of its text. The control
      characters of _IDENT_SUSPECT cannot be in the text (msgspec and orjson escape them), but for DEL.
    - `source` and `id`, which are not in `data`.
    - the data identifiers, joined by a space (joining only adds matches), of the rows whose data text holds a
      backslash: an identifier with a control character is written with an escape, so the other rows have none.
    Searching the data identifiers of every row, joined with the rest, cost 0.26 CPU-us per event more at 8,192-row
    slices (docs/performance.md, twenty-second round).

    Everything but the regex is Arrow and numpy: each polars operation costs ~0.05 ms whatever its size, and
    converting the identifier columns to polars ~0.2 ms, which at 1,000-event requests came to 0.6 of this
    function's 1.7 ms (docs/performance.md, twenty-fourth round). The few escaped rows (0.2% of the bench's) have
    their identifiers joined in Python, as `concat_str` joined them: non-null values, in column order."""
    n = fast.num_rows
    data = fast.column("data")
    escaped = _rows_with_backslash(data)
    chunks = [*data.chunks, *fast.column("source").chunks, *fast.column("id").chunks]
    if len(escaped):
        rows = fast.select(_DATA_IDENTS).take(pa.array(escaped)).to_pylist()
        chunks.append(pa.array([" ".join(str(v) for v in r.values() if v is not None) for r in rows], pa.string()))
    hit = pl.from_arrow(pa.chunked_array(chunks, pa.string())).str.contains(_IDENT_SUSPECT)
    assert isinstance(hit, pl.Series)
    hit = (hit.fill_null(False) if hit.null_count() else hit).to_numpy()
    flagged = hit[:n] | hit[n:2 * n] | hit[2 * n:3 * n]
    if len(escaped):
        flagged[escaped[hit[3 * n:]]] = True
    return flagged


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
    stats: dict[str, float] = field(default_factory=dict)  # the timings of the call that validated the rows
    # input indexes of the rows that went through pydantic (ascending): what `split` counts each part's `exact` by
    exact_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def split(self, sizes: Sequence[int]) -> list[BulkResult]:
        """The results of consecutive runs of `sizes` input rows (together `total`), each indexed from 0 as if it
        had been validated alone: several requests' lines validated in one call and answered apart
        (collector/api/coalesce.py). Every row is decided alone, so only the indexes differ."""
        bounds = np.cumsum([0, *sizes])
        if bounds[-1] != self.total:
            raise ValueError(f"the parts hold {bounds[-1]} rows, the result {self.total}")
        rows = np.searchsorted(self.row_index.to_numpy(), bounds)  # both ascending: input order
        exact = np.searchsorted(self.exact_rows, bounds)
        rejected = np.searchsorted(np.fromiter((r.index for r in self.rejections), np.int64,
                                               len(self.rejections)), bounds)
        parts = []
        for j, n in enumerate(sizes):
            lo, a, b = int(bounds[j]), int(rows[j]), int(rows[j + 1])
            table = self.table.slice(a, b - a)
            rejections = [replace(r, index=r.index - lo) for r in self.rejections[rejected[j]:rejected[j + 1]]]
            n_exact = int(exact[j + 1] - exact[j])
            redacted = int(np.count_nonzero(table.column("redactions").to_numpy())) if b > a else 0
            parts.append(BulkResult(
                table, pc.subtract(self.row_index.slice(a, b - a), pa.scalar(lo, pa.int64())), rejections, n,
                fast=n - n_exact, exact=n_exact, redacted=redacted, stats=self.stats,
                exact_rows=self.exact_rows[exact[j]:exact[j + 1]] - lo))
        return parts


class BulkValidator:
    """Validates batches of items or JSON lines. Thread-safe; the DuckDB connection is only for rendering
    Parquet-shaped tables as lines (`validate_parquet_table`)."""

    def __init__(self, *, struct_stage: bool = True) -> None:
        self.comp = compiled()
        self.structs = struct_stage_of(self.comp) if struct_stage else None
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            # One thread: the rendering runs on the validating thread while the writer's and the deriver's
            # statements take the other cores; alone, 100,000 rows render in 95 ms of CPU on one thread against
            # 107 on two (docs/performance.md, nineteenth round).
            self._con = duckdb.connect(":memory:", config={"threads": 1})
            self._con.execute("SET TimeZone = 'UTC'")
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- inputs ---------------------------------------------------------------------------------------------

    def validate_lines(self, lines: pa.Array | pa.ChunkedArray | list[bytes], *, offset: int = 0,
                       line_numbers: pa.Array | pa.ChunkedArray | None = None,
                       slow: pa.Array | pa.ChunkedArray | None = None,
                       item_of: Callable[[int], Any] | None = None) -> BulkResult:
        """Validate JSON lines (blank lines already removed); row i gets the index `offset + i`.

        A line that orjson cannot read becomes a `json_invalid` rejection worded like `body.split_items` words
        it (`line N`, N from `line_numbers`, 1-based physical numbers, or i + 1), unless `item_of(i)` says what
        row i is instead; rows marked in `slow` are always `item_of(i)`.
        """
        numbers = line_numbers.to_pylist() if line_numbers is not None else None
        slow_rows = set(pc.indices_nonzero(slow.fill_null(False)).to_pylist()) if slow is not None else set()
        n = len(lines)
        # Lines are parsed a slice at a time, right before the slice is validated: the parsed objects of a whole
        # 100k-line chunk (~150 MB) would be allocated fresh and handed back to the OS per chunk (a page fault
        # per event, measured 5 CPU-us per event); a slice's memory is reused by the next.
        bounds = [(0, n)] if n <= 2 * self.SLICE else [(k, min(n, k + self.SLICE)) for k in range(0, n, self.SLICE)]
        with _paused_gc:
            parts = [self._validate_slice(*self._parse(lines, a, b, offset, numbers, slow_rows, item_of),
                                          offset=offset + a, _own_rejections=True) for a, b in bounds]
        return _combine(parts, n)

    def _parse(self, lines: pa.Array | pa.ChunkedArray | list[bytes], a: int, b: int, offset: int,
               numbers: list[int] | None, slow_rows: set[int],
               item_of: Callable[[int], Any] | None) -> tuple[list[Any], Decisions | None]:
        """Lines a..b-1 as items, and what the struct stage decided of them. A decided line stays the line (parsed
        only should the secret prefilter send it to the exact path); every other line is parsed (a Rejection for a
        line orjson cannot read, or what `item_of` says)."""
        raw = lines.slice(a, b - a).to_pylist() if isinstance(lines, (pa.Array, pa.ChunkedArray)) else lines[a:b]
        loads = orjson.loads
        plain = not slow_rows or not any(a <= i < b for i in slow_rows)
        pre = self.structs.decide(raw) if self.structs is not None and plain else None
        if plain:
            try:  # the common case: every line reads as it is (orjson skips the JSON whitespace around it)
                if pre is None:
                    return list(map(loads, raw)), None
                items = list(raw)
                for j in pre.rest:
                    items[j] = loads(raw[j])
                return items, pre
            except orjson.JSONDecodeError:
                pass
        decided = set(pre.idx) if pre is not None else ()
        items: list[Any] = []
        for i, line in enumerate(raw, a):
            if i - a in decided:
                items.append(line)
                continue
            if i in slow_rows and item_of is not None:
                items.append(item_of(i))
                continue
            if line.__class__ is str:
                line = line.encode()
            line = line.strip()  # bytes.strip: ASCII whitespace, as split_items does
            try:
                items.append(loads(line))
            except orjson.JSONDecodeError as exc:
                if item_of is not None:
                    items.append(item_of(i))
                    continue
                k = numbers[i] if numbers is not None else i + 1
                items.append(Rejection(offset + i, [{"path": "", "type": "json_invalid",
                                                     "message": f"line {k}: {exc}"}],
                                       redact_text(line.decode("utf-8", "replace")[:65_536])[0]))
        return items, pre

    def validate_items(self, items: list[Any], offset: int = 0, *, _own_rejections: bool = False) -> BulkResult:
        """Validate parsed items (dicts as orjson or json gives them; a `Rejection` item stays a rejection)."""
        with _paused_gc:
            return self._validate(items, offset, _own_rejections)

    SLICE = 8192  # items validated at a time: beyond this, per-event cost grows (CPU caches)

    def _validate(self, items: list[Any], offset: int, own: bool) -> BulkResult:
        if len(items) <= 2 * self.SLICE:
            return self._validate_slice(items, offset=offset, _own_rejections=own)
        if not own:
            for it in items:
                if isinstance(it, Rejection):
                    it.index += offset
        return _combine([self._validate_slice(items[k:k + self.SLICE], offset=offset + k, _own_rejections=True)
                         for k in range(0, len(items), self.SLICE)], len(items))

    def _validate_slice(self, items: list[Any], decided: Decisions | None = None, *, offset: int,
                        _own_rejections: bool) -> BulkResult:
        """`items` (the lines `decided` names stay lines) -> accepted rows, in input order, and rejections."""
        t0 = time.perf_counter()
        comp = self.comp
        checks = comp.checks
        limit = _time_limit()
        f_idx: list[int] = []
        f_type: list[str] = []
        f_res: list[tuple] = []
        x_idx: list[int] = []
        for i in (decided.rest if decided is not None else range(len(items))):
            it = items[i]
            if it.__class__ is dict:
                t = it.get("type")
                fn = checks.get(t) if t.__class__ is str else None
                if fn is not None:
                    r = fn(it)  # free-form values and extra keys get the shape walk in there
                    if r is not None:
                        f_idx.append(i)
                        f_type.append(t)
                        f_res.append(r)
                        continue
            x_idx.append(i)
        if decided is not None and decided.idx:
            if f_idx:  # both stages accepted rows: merged into input order (two sorted runs: one pass)
                both = decided.idx + f_idx
                pick = itemgetter(*sorted(range(len(both)), key=both.__getitem__))
                f_idx, f_type = sorted(both), list(pick(decided.types + f_type))
                f_res = list(pick(decided.rows + f_res))
            else:
                f_idx, f_type, f_res = decided.idx, decided.types, decided.rows
        fast = _fast_table(comp, f_type, f_res)
        # Candidate secrets (what the redactor would scan is inside the stored text), identifiers the exact path
        # may refuse (a credential or a control character in source, id or a data identifier), and event times
        # not in the fast path's form, naming no date or past the future limit (null or late in the column
        # `event_times` made) take the exact path.
        if fast is not None:
            flagged = _suspects(fast)
            if any(r[4] is not None for r in f_res):
                flagged |= np.fromiter((r[4] is not None and has_candidate(r[4]) for r in f_res), bool, len(f_res))
            late = pc.fill_null(pc.greater(fast.column("time"), pa.scalar(limit, _TS)), True)
            if pc.any(late).as_py():
                flagged |= late.to_numpy()
            if flagged.any():
                keep = ~flagged
                moved = [f_idx[j] for j in np.flatnonzero(flagged).tolist()]
                lines_kept = set(decided.idx) if decided is not None else ()
                for i in moved:  # the exact path reads the parsed item, not the line the struct stage decided
                    if i in lines_kept:
                        items[i] = orjson.loads(items[i])
                x_idx = sorted(x_idx + moved)
                fast = fast.filter(pa.array(keep))
                f_idx = [i for i, k in zip(f_idx, keep.tolist()) if k]
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
                          redacted=redacted, stats={"fast_seconds": t1 - t0, "exact_seconds": time.perf_counter() - t1},
                          exact_rows=np.asarray(x_idx, np.int64) + offset)

    # -- the exact path -------------------------------------------------------------------------------------

    def _exact(self, items: list[Any], idx: list[int], offset: int,
               own: bool) -> tuple[pa.Table | None, list[int], list[Rejection], int]:
        rows: list[dict[str, Any]] = []
        datas: list[dict] = []
        accepted: list[int] = []
        rejections: list[Rejection] = []
        valid: list[tuple[int, Any]] = []
        with tracer.start_as_current_span("ingest.validate") as span:  # the spans validation.validate_items makes
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
                else:
                    valid.append((i, res))
            span.set_attribute("events.valid", len(items) - len(rejections))
            span.set_attribute("events.rejected", len(rejections))
            span.set_attribute("events.exact", len(idx))
        with tracer.start_as_current_span("ingest.redact") as span:
            for i, ev in valid:
                row = to_row(ev)
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
            span.set_attribute("events.redacted", sum(1 for r in rows if r["redactions"]))
        if not rows:
            return None, accepted, rejections, 0
        extras = [not self.comp.plans[r["type"]].declared.issuperset(d) for r, d in zip(rows, datas)]
        table = _assemble(self.comp, [r["type"] for r in rows], datas, extras, {c: [r[c] for r in rows] for c in _ENVELOPE},
                          pa.array([r["data"] for r in rows], pa.string()),
                          pa.array([r["redactions"] for r in rows], pa.int32()))
        return table, accepted, rejections, sum(1 for r in rows if r["redactions"])


def _combine(parts: list[BulkResult], total: int) -> BulkResult:
    """Results of consecutive slices as one."""
    if len(parts) == 1:
        return parts[0]
    return BulkResult(pa.concat_tables([p.table for p in parts]), pa.concat_arrays([p.row_index for p in parts]),
                      [r for p in parts for r in p.rejections], total, fast=sum(p.fast for p in parts),
                      exact=sum(p.exact for p in parts), redacted=sum(p.redacted for p in parts),
                      stats={k: sum(p.stats.get(k, 0.0) for p in parts) for k in parts[0].stats},
                      exact_rows=np.concatenate([p.exact_rows for p in parts]))


def _assemble(comp: Any, types: list[str], datas: list[dict], extras: list[bool], envelope: dict[str, Any],
              data: pa.Array, redactions: pa.Array) -> pa.Table:
    """Rows -> one INGEST_SCHEMA table in the given order. The typed columns of each event type come from its
    generated `row` function and are scattered into full-length columns (nulls where a type does not declare a
    column): a handful of Arrow conversions per batch, not one per type and column."""
    n = len(types)
    by_type: dict[str, list[int]] = {}
    for j, t in enumerate(types):
        by_type.setdefault(t, []).append(j)
    cols: dict[str, Any] = {}
    for t, pos in by_type.items():
        mine = comp.row_columns[t]
        if not mine:
            continue
        whole = len(pos) == n
        sub = datas if whole else [datas[j] for j in pos]
        for c, values in zip(mine, zip(*map(comp.rows[t], sub))):
            if whole:
                cols[c] = values
                continue
            target = cols.get(c)
            if target is None:
                target = cols[c] = [None] * n
            list(map(target.__setitem__, pos, values))
    for j in [j for j, e in enumerate(extras) if e]:
        for c, v in comp.extra_values(types[j], datas[j]).items():
            target = cols.get(c)
            if target is None:
                target = cols[c] = [None] * n
            elif isinstance(target, tuple):
                target = cols[c] = list(target)
            target[j] = v
    arrays = []
    for f in INGEST_SCHEMA:
        if f.name == "data":
            arrays.append(data)
        elif f.name == "redactions":
            arrays.append(redactions)
        elif f.name in envelope:
            arrays.append(pa.array(envelope[f.name], f.type))
        elif f.name in cols:
            arrays.append(pa.array(cols[f.name], f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=INGEST_SCHEMA)


_TS = pa.timestamp("us", tz="UTC")
_TS_COLUMNS = frozenset(f.name for f in INGEST_SCHEMA if pa.types.is_timestamp(f.type))


def _fast_table(comp: Any, types: list[str], res: list[tuple]) -> pa.Table | None:
    """The fast path's rows -> one INGEST_SCHEMA table. Each generated check returns one flat tuple (envelope,
    stored data, every typed column), so the batch is transposed once (`zip(*res)`) and each column converted
    once; time-stamps come as RFC 3339 text and are cast column-wise (Arrow parses them; converting Python
    datetimes costs ~1.5 us each)."""
    if not res:
        return None
    n = len(res)
    cols = list(zip(*res))
    datas, extras = cols[0], cols[5]
    data = json_texts(datas, free=comp.free_keys, extras=extras)
    typed: dict[str, Any] = dict(zip(comp.columns, cols[6:]))
    present = {c for t in set(types) for c in comp.row_columns[t]}
    if any(extras):
        for j in [j for j, e in enumerate(extras) if e]:
            for c, v in comp.extra_values(types[j], datas[j]).items():
                target = typed[c]
                if target.__class__ is tuple:
                    target = typed[c] = list(target)
                target[j] = v.isoformat() if c in _TS_COLUMNS else v
                present.add(c)
    envelope = {"source": cols[2], "id": cols[3], "type": types, "time": cols[1], "subject": cols[4]}
    arrays = []
    for f in INGEST_SCHEMA:
        name = f.name
        if name == "data":
            arrays.append(data)
        elif name == "redactions":
            arrays.append(pa.nulls(n, pa.int32()).fill_null(0))
        elif name in envelope or name in present:
            values = envelope[name] if name in envelope else typed[name]
            arrays.append(event_times(values) if name == "time" else _timestamps(values) if name in _TS_COLUMNS
                          else pa.array(values, f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=INGEST_SCHEMA)


_ENCODER = msgspec.json.Encoder()  # shared by every thread: an encode holds the GIL throughout and calls no hooks
# A number msgspec writes with a positive exponent (`1e16`, `-1.5e300`): a number token, right after the start of the
# text or a separator, up to its end (compact JSON: no whitespace). A text holding a digit, `e`, a digit in a
# string (a hex hash: `"sha256:7005e0b8..."`, 13% of the lines with the emitters' hashes) is not one.
_EXPONENT = r"(?:^|[:,\[])-?[0-9.]+e[0-9]+(?:[,}\]]|$)"
_COLUMN_BYTES = 2**31  # what one Arrow string column (32-bit offsets) holds


def _orjson(value: Any) -> bytes:
    """orjson's text of a plain JSON value or of the struct stage's data (a msgspec Struct, written as the object
    `msgspec.to_builtins` makes of it: declared order, None fields left out)."""
    return orjson.dumps(value, default=msgspec.to_builtins)


def json_texts(values: Sequence[Any], *, free: Sequence[str] | None = None,
               extras: Sequence[bool] | None = None) -> pa.Array:
    """The compact JSON text of each value (plain JSON values: what a parser gave, or a check made of it; or the
    struct stage's data Structs), exactly as `orjson.dumps` writes it (of the Struct's plain object), as an Arrow
    string array.

    msgspec writes the whole batch into one buffer, split column-wise: 0.5 CPU-us per event against 1.7 for one
    orjson bytes object per event (docs/performance.md, fifteenth round, measured on the bench's events:
    mostly the allocation and release of each object). The two write every string, int, bool, null, list and
    object alike, and every float alike but for a positive exponent (a magnitude of 1e16 or more), which orjson
    writes `1e+16` and msgspec `1e16` (checked once on 500,000 random doubles; tests/contract/test_struct_stage.py
    checks every code point, random doubles and generated values). A text holding such a number (`_EXPONENT`; a
    string that looks like one too) is written by orjson. A batch whose texts would not fit one Arrow string column
    (2 GiB) is written per value, as before.

    `free` and `extras`, for the fast paths' data: only a text that holds one of the `free` keys (the contract's
    free-form fields) or is marked in `extras` (extra keys are free-form too) can hold such a number, since every
    declared float is within +-2**53; only those texts are searched (the search cost 0.39 CPU-us per event on
    every text, docs/performance.md, twenty-second round). None: every text is searched."""
    if not values:
        return pa.array([], pa.string())
    buf = _ENCODER.encode_lines(values)
    if len(buf) >= _COLUMN_BYTES:
        return pa.array(list(map(_orjson, values)), pa.binary()).cast(pa.string())
    parts = pc.split_pattern(one_value(buf), b"\n").flatten()
    texts = parts.slice(0, len(parts) - 1).cast(pa.string())
    odd = _exponents(texts, free, extras)
    if odd is not None:
        texts = pc.if_else(odd, pa.array([_orjson(v) if o else None
                                          for v, o in zip(values, odd.to_pylist())], pa.binary()).cast(pa.string()),
                           texts)
    return texts


def _exponents(texts: pa.Array, free: Sequence[str] | None, extras: Sequence[bool] | None) -> pa.Array | None:
    """Which texts hold a number with a positive exponent (None: none does), searched where one can be."""
    if free is None:
        odd = pc.match_substring_regex(texts, _EXPONENT)
        return odd if pc.any(odd).as_py() else None
    # The literal searches in polars (SIMD), the rest in numpy and Arrow: each polars operation costs ~0.05 ms
    # whatever its size, and the nine this took cost 0.8 ms of a 1,000-event request (docs/performance.md,
    # twenty-fourth round).
    s = pl.Series(texts)
    look = np.fromiter(extras, bool, len(texts)) if extras is not None else np.zeros(len(texts), bool)
    for key in free:  # a literal search: ~0.05 CPU-us per event each
        look |= s.str.contains(orjson.dumps(key).decode() + ":", literal=True).to_numpy()
    rows = np.flatnonzero(look)
    if not len(rows):
        return None
    hit = pc.match_substring_regex(texts.take(pa.array(rows)), _EXPONENT).to_numpy(zero_copy_only=False)
    if not hit.any():
        return None
    odd = np.zeros(len(texts), bool)
    odd[rows[hit]] = True
    return pa.array(odd)


# The fast path's event-time form as an RE2 pattern matching the whole text (RE2's `$` holds only at the end of the
# text, so this is DATETIME_RE.fullmatch).
_EVENT_TIME = f"^(?:{DATETIME_RE.pattern})$"


def event_times(texts: Sequence[str]) -> pa.Array:
    """The batch's event times (text) as UTC time-stamps, null where a text is not in the fast path's form
    (codegen.DATETIME_RE) or names no date (February 30th). `_validate_slice` sends those rows, and the rows past
    the future limit, to the exact path. Checked column-wise: the regex, `datetime.fromisoformat` and the
    comparison per event cost ~0.8 µs of the struct stage's ~3.8 (docs/performance.md, seventeenth round)."""
    arr = pa.array(texts, pa.string())
    form = pc.match_substring_regex(arr, _EVENT_TIME)
    if not pc.all(form).as_py():
        arr = pc.if_else(form, arr, pa.scalar(None, pa.string()))
    try:
        return arr.cast(_TS)
    except pa.ArrowInvalid:  # a text of the form that names no date (parse_datetime: None)
        parsed = [None if v is None else parse_datetime(v) for v in arr.to_pylist()]
        return pa.array([p[1] if p else None for p in parsed], _TS)


def _timestamps(texts: Any) -> pa.Array:
    """RFC 3339 texts (the fast path's canonical forms, already read by datetime.fromisoformat) -> UTC
    time-stamps, cast by Arrow; should Arrow refuse one, the values are converted one by one instead."""
    arr = pa.array(texts, pa.string())
    try:
        return arr.cast(_TS)
    except pa.ArrowInvalid:
        return pa.array([None if v is None else datetime.fromisoformat(v) for v in texts], _TS)


_INT32_COLUMNS = frozenset(f.name for f in EVENT_SCHEMA if pa.types.is_int32(f.type))


def _storage_range(values: tuple, columns: tuple[str, ...]) -> str | None:
    """The first INTEGER column of `events` a value does not fit (the contract bounds them; this is a guard)."""
    for c, v in zip(columns, values):
        if c in _INT32_COLUMNS and v is not None and not -INT32 <= v < INT32:
            return c
    return None


def _time_limit() -> datetime:
    """The latest event time the fast stages accept: nearer the 24 h limit, pydantic decides (its clock moves on)."""
    return datetime.now(timezone.utc) + MAX_FUTURE_SKEW - FUTURE_MARGIN


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


def validate_parquet_table(validator: BulkValidator, table: pa.Table, offset: int = 0, *,
                           rendered: tuple[pa.Array, pa.Array] | None = None) -> BulkResult:
    """Validate a Parquet-shaped table (see `parquet_lines`; `rendered`: what it gave for `table`, when the caller
    rendered the rows ahead, on another thread)."""
    lines, bad = rendered if rendered is not None else parquet_lines(table, validator.con)
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
