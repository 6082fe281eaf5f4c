"""Running the fast path on a chunk, and the exact path for the rows it cannot vouch for.

The fast path only ever says "accepted, and here is the row"; rows it leaves go to `validation.check_item` +
`validation.to_row` (pydantic and the redactor), so every rejection comes from the same code as the HTTP API.
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
import pyarrow.dataset as ds

from collector.contract.events import MAX_FUTURE_SKEW
from collector.contract.redaction import PREFILTER_PATTERN, redact_text
from collector.contract.validation import Rejection, check_item, to_row
from collector.contract.vectorized.checks import pl_lit_in
from collector.contract.vectorized.compiler import compiler
from collector.contract.vectorized.lines import parquet_lines, split_lines, utf8_ok
from collector.contract.vectorized.plan import FUTURE_MARGIN, FieldPlan, call_ok
from collector.contract.vectorized.sql import jtext
from collector.storage.schema import EVENT_SCHEMA
from collector.storage.sqltext import lit, ts_lit

_CONTROL = "[\\x00-\\x1f\\x7f]"  # a control character in an identifier (the exact path refuses it)


@dataclass
class BulkResult:
    """Accepted rows (in input order) as an Arrow table in writer.EVENT_SCHEMA, plus the rejections."""

    table: pa.Table  # rows sharing a (source, id) are in input order; others need not be
    row_index: pa.Array  # input index of each accepted row (int64), parallel to `table`
    rejections: list[Rejection]
    total: int
    fast: int = 0  # rows accepted by the vectorised path
    exact: int = 0  # rows that went through pydantic
    redacted: int = 0  # accepted rows with at least one secret redacted
    stats: dict[str, float] = field(default_factory=dict)


class BulkValidator:
    """Validates chunks of JSON lines with one private in-memory DuckDB connection. Not thread-safe."""

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        self.comp = compiler()
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self.con.execute(f"SET memory_limit = {lit(memory_limit)}")
        self.prefilter = PREFILTER_PATTERN
        self._prepared = False

    _RAW_SCHEMA = pa.schema([("idx", pa.int64()), ("line", pa.large_string()), ("slow", pa.bool_())])

    def _prepare(self) -> None:
        """Plan the statement once per connection (planning it costs more than running it on a small chunk);
        the validator tables are filled per chunk, never re-created, so the plan stays valid."""
        q = self.comp.query
        assert q is not None
        for slot, _, _ in q.validator_slots:
            self.con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {slot} (v VARCHAR)")
        self.con.register("bulk_raw", ds.dataset(self._RAW_SCHEMA.empty_table()))
        self.con.execute("PREPARE bulk_fast AS " + q.sql.replace("$limit", "$1"))
        self._prepared = True

    def close(self) -> None:
        self.con.close()

    def validate_lines(self, lines: pa.Array, *, offset: int = 0, line_numbers: pa.Array | None = None,
                       slow: pa.Array | None = None, item_of: Callable[[int], Any] | None = None) -> BulkResult:
        """Validate JSON lines (blank lines already removed); row i gets the index `offset + i`.

        `lines` may be binary (UTF-8 is checked here) or string, with or without surrounding whitespace.
        `line_numbers` (1-based physical numbers) only feeds the message of unreadable lines (default: i + 1,
        what `body.split_items` says). `slow` marks rows that must take the exact path. `item_of(i)`
        builds the raw item of row i for the exact path (default: orjson on the stripped line; an unreadable
        line becomes a `json_invalid` rejection exactly like `body.split_items` makes it).
        """
        t0 = time.perf_counter()
        n = len(lines)
        binary = lines
        if pa.types.is_binary(lines.type) or pa.types.is_large_binary(lines.type):
            try:
                lines = lines.cast(pa.large_string())
            except pa.ArrowInvalid:  # invalid UTF-8 somewhere: those lines are unreadable, the rest stays fast
                good = pa.array([utf8_ok(b) for b in binary.to_pylist()])
                lines = pc.if_else(good, binary, pa.scalar(b"", binary.type)).cast(pa.large_string())
                bad = pc.invert(good)
                slow = bad if slow is None else pc.or_(slow, bad)
        if slow is None:
            slow = pa.nulls(n, pa.bool_()).fill_null(False)
        raw = pa.table({"idx": pa.array(range(n), pa.int64()), "line": lines, "slow": slow})
        # DuckDB scans an Arrow table in parallel by record batch.
        raw = pa.Table.from_batches(raw.to_batches(max_chunksize=max(2048, -(-n // 16))))
        fast = self._fast(raw)
        t1 = time.perf_counter()

        def parse_line(i: int) -> Any:
            b = binary[i].as_py()
            b = b.encode() if isinstance(b, str) else b
            b = b.strip()  # bytes.strip: ASCII whitespace, as split_items does
            try:
                return orjson.loads(b)
            except orjson.JSONDecodeError as exc:
                ln = int(line_numbers[i].as_py()) if line_numbers is not None else i + 1
                text = b.decode("utf-8", "replace")
                return Rejection(offset + i, [{"path": "", "type": "json_invalid", "message": f"line {ln}: {exc}"}],
                                 redact_text(text[:65_536])[0])

        res = self._finish(fast, n, offset, item_of or parse_line)
        res.stats.update(fast_seconds=t1 - t0, exact_seconds=time.perf_counter() - t1)
        return res

    def validate_items(self, items: list[Any], offset: int = 0) -> BulkResult:
        """Parsed items (e.g. a JSON array document): each is re-serialised with orjson for the fast path, and
        the exact path sees the item itself."""
        lines = pa.array([orjson.dumps(x) for x in items], pa.large_binary())
        return self.validate_lines(lines, offset=offset, item_of=lambda i: items[i])

    def _fast(self, raw: pa.Table) -> pl.DataFrame | None:
        """The rows the vectorised path accepts: idx plus the EVENT_SCHEMA columns except `redactions`."""
        q, checks = self.comp.query, self.comp.checks
        if raw.num_rows == 0 or q is None or checks is None:
            return None
        if not self._prepared:
            self._prepare()
        con = self.con
        con.register("bulk_raw", ds.dataset(raw.cast(self._RAW_SCHEMA)))  # a dataset is scanned in parallel
        try:
            for slot, types, fp in q.validator_slots:
                # Validators run in Python on the distinct values of the chunk. The pre-scan only has to find
                # candidates: a value it misses is not in the table, so its row takes the exact path.
                cond = " OR ".join(f"contains(line, {lit(jtext(t))})" for t in types)
                vals = con.execute(
                    f"SELECT DISTINCT json_extract(line, {lit('$.data.' + jtext(fp.name))})::VARCHAR FROM bulk_raw "
                    f"WHERE NOT slow AND ({cond}) AND json_valid(line)").fetchall()
                ok = [v for (v,) in vals if v is not None and v.startswith('"') and _validators_ok(fp, v)]
                con.execute(f"DELETE FROM {slot}")
                if ok:
                    con.execute(f"INSERT INTO {slot} SELECT unnest($vals)", {"vals": ok})
            limit = datetime.now(timezone.utc) + MAX_FUTURE_SKEW - FUTURE_MARGIN
            res = con.sql(f"EXECUTE bulk_fast({ts_lit(limit)})").to_arrow_table()
        finally:
            con.unregister("bulk_raw")
        df = pl.from_arrow(res)
        assert isinstance(df, pl.DataFrame)
        if df.height == 0:
            return None
        df = df.with_columns(checks.stage_states)
        if df["has_extras"].any():
            # A field another type declares is an extra for this row's type: it is output with the extras.
            etype = pl.col("e_type")
            df = df.with_columns([
                pl.when(pl.col("has_extras") & ~pl_lit_in(etype, checks.declared_by[name])).then(None)
                .otherwise(pl.col(o)).alias(o) for (name, _), o in checks.out_col.items()])
        df = df.select(checks.stage_final)
        # Rows whose stored text holds a control character escape (rendered differently by DuckDB and orjson)
        # and candidate secrets (what the redactor would scan) take the exact path.
        # Identifiers (source, id, the IDENTIFIER_KEYS) are refused by the exact path when they hold a credential
        # or a control character (validation._identifier_problem): candidates and any escape in them take it.
        idents = df["idents"].fill_null("")
        cand = (df["scan"].str.contains(self.prefilter) | df["subject"].fill_null("").str.contains(self.prefilter)
                | df["data"].str.contains("\\u00", literal=True)
                | idents.str.contains(self.prefilter) | idents.str.contains("\\", literal=True)
                | df["source"].str.contains(self.prefilter) | df["id"].str.contains(self.prefilter)
                | df["source"].str.contains(_CONTROL) | df["id"].str.contains(_CONTROL))
        return df.filter(df["ok"] & ~cand).drop("ok", "scan", "idents")

    def _finish(self, fast: pl.DataFrame | None, n: int, offset: int, item_of: Callable[[int], Any]) -> BulkResult:
        n_fast = 0 if fast is None else fast.height
        if n_fast == n:
            exact_idx: list[int] = []
        elif n_fast == 0:
            exact_idx = list(range(n))
        else:
            assert fast is not None
            everything = pl.int_range(n, eager=True, dtype=pl.Int64)
            exact_idx = everything.filter(~everything.is_in(fast["idx"])).to_list()
        rows: list[dict[str, Any]] = []
        rows_idx: list[int] = []
        rejections: list[Rejection] = []
        for i in exact_idx:
            item = item_of(i)
            res = item if isinstance(item, Rejection) else check_item(offset + i, item)
            if isinstance(res, Rejection):
                rejections.append(res)
                continue
            rows.append(to_row(res))
            rows_idx.append(i)
        parts: list[pa.Table] = []
        schema = pa.schema([("idx", pa.int64())] + list(EVENT_SCHEMA))
        if n_fast:
            assert fast is not None
            ft = fast.with_columns(redactions=pl.lit(0, pl.Int32)).to_arrow()
            parts.append(ft.select(schema.names).cast(schema))
        if rows:
            st, rows_idx = _rows_table(rows, rows_idx, offset, rejections)
            if st.num_rows:
                parts.append(st.add_column(0, "idx", pa.array(rows_idx, pa.int64())))
        if parts:
            table = pa.concat_tables(parts)
            if len(parts) > 1 and _keys_collide(parts[0], parts[1]):
                # Same (source, id) in both parts: keep input order so the first occurrence wins downstream.
                table = table.take(pc.sort_indices(table.column("idx")))
            row_index = pc.add(table.column("idx"), offset).combine_chunks()
            table = table.drop_columns(["idx"])
        else:
            table, row_index = EVENT_SCHEMA.empty_table(), pa.array([], pa.int64())
        rejections.sort(key=lambda r: r.index)
        return BulkResult(table, row_index, rejections, n, fast=n_fast, exact=len(exact_idx),
                          redacted=sum(1 for r in rows if r["redactions"]))


def _rows_table(rows: list[dict[str, Any]], idx: list[int], offset: int,
                rejections: list[Rejection]) -> tuple[pa.Table, list[int]]:
    """Rows of the exact path as Arrow. A value the contract allows but the storage column cannot hold (an
    `attempt` beyond 32 bits) rejects that event with a precise error instead of failing the whole chunk."""
    try:
        return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), idx
    except (pa.ArrowInvalid, OverflowError):
        pass
    good, good_idx = [], []
    for row, i in zip(rows, idx):
        try:
            pa.Table.from_pylist([row], schema=EVENT_SCHEMA)
        except (pa.ArrowInvalid, OverflowError) as exc:
            bad = [c for c in EVENT_SCHEMA.names if pa.types.is_integer(EVENT_SCHEMA.field(c).type)
                   and isinstance(row.get(c), int) and not -(2**31) <= row[c] < 2**31]
            path = f"data.{bad[0]}" if bad and bad[0] != "redactions" else ""
            rejections.append(Rejection(offset + i, [{"path": path, "type": "storage_range",
                                                      "message": f"value does not fit the storage column: {exc}"}],
                                        redact_text(orjson.dumps(orjson.loads(row["data"]))[:65_536].decode())[0],
                                        row["source"], row["id"], row["type"]))
            continue
        good.append(row)
        good_idx.append(i)
    return pa.Table.from_pylist(good, schema=EVENT_SCHEMA), good_idx


def _keys_collide(a: pa.Table, b: pa.Table) -> bool:
    """Does any (source, id) of the (small) table `b` also occur in `a`?"""
    ids = pc.is_in(a.column("id"), value_set=b.column("id").combine_chunks())
    if not pc.any(ids).as_py():
        return False
    sub = a.filter(ids)
    keys_b = set(zip(b.column("source").to_pylist(), b.column("id").to_pylist()))
    return any(k in keys_b for k in zip(sub.column("source").to_pylist(), sub.column("id").to_pylist()))


def _validators_ok(fp: FieldPlan, text: str) -> bool:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, str) and all(call_ok(fn, value) for fn in fp.validators)


_local = threading.local()


def default_validator() -> BulkValidator:
    """A per-thread validator (its own in-memory DuckDB connection)."""
    v = getattr(_local, "validator", None)
    if v is None:
        v = _local.validator = BulkValidator()
    return v


def validate_ndjson(body: bytes, offset: int = 0) -> BulkResult:
    """Bulk-validate an NDJSON body: the same items, indexes and outcome as
    `validation.validate_items(body.split_items(body, "application/x-ndjson"), offset)`."""
    lines, _ = split_lines(body)
    return default_validator().validate_lines(lines, offset=offset)


def validate_json_items(items: list[Any], offset: int = 0) -> BulkResult:
    """Bulk-validate parsed items (e.g. a JSON array document)."""
    return default_validator().validate_items(items, offset)


def validate_parquet_table(validator: BulkValidator, table: pa.Table, offset: int = 0) -> BulkResult:
    """Bulk-validate a Parquet-shaped table (see `parquet_lines`)."""
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
