"""`observatory ingest FILE...`: load event files with the same contract, redaction, dedup and dead letters as the API.

Formats, by extension (then by content when the extension says nothing): `.json` (one event or an array),
`.ndjson` / `.jsonl` (one event per line; an unreadable line is rejected alone, with its line number),
`.parquet` (columns specversion, id, source, type, time, subject, data; `data` a JSON string or a struct, `time` a
string or a timestamp), and any of them gzip-compressed (`.gz`).

Two destinations:

* `--db FILE`: the collector is not running. Opens the DuckDB file through `collector.ingest.store.Store` (migrations
  included), validates chunks with the set-based path (`collector.contract.vectorized`) and hands each chunk's Arrow table and
  rejections to the same single writer the API uses (one transaction per chunk: dedup, derived tables, counters,
  dead letters with channel `file`), with a bounded number of chunks in flight. Each commit but a file's last
  holds whole DuckDB row groups of events (`_WholeChunks`, storage.db.ROW_GROUP_ROWS).
* `--url URL`: the collector is running. Posts gzip NDJSON batches to `/v1/events`, retrying 429 after
  `Retry-After` and 503 / connection errors with backoff, a bounded number of times.
"""

from __future__ import annotations

import gzip
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from collector.contract.body import json_elements
from collector.contract.validation import Rejection
from collector.contract.vectorized.lines import PARQUET_COLUMNS, one_value, split_block
from collector.storage.db import ROW_GROUP_ROWS
from collector.storage.schema import INGEST_SCHEMA

NDJSON_SUFFIXES = {".ndjson", ".jsonl", ".jsonlines"}
JSON_SUFFIXES = {".json"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
REQUIRED_PARQUET_COLUMNS = ("specversion", "id", "source", "type", "time", "data")
MAX_IN_FLIGHT = 2  # chunks handed to the writer and not yet committed
# Chunks committed and not yet in the derived tables before the writer waits for the deriver. The deriver folds
# them on a thread of its own while the writer commits the next chunks and this thread validates: with one chunk
# the writer waited for every fold; measured on 1M NDJSON events (docs/performance.md), 19.0 s with the derived
# rows in each chunk's transaction, 16.4 s with 3 chunks, 15.5 s with 6, peak RSS 1.20 -> 1.30 GB.
LAG_CHUNKS = 6
# DuckDB statement streams running at once (storage.db.collector_threads): the writer and the deriver. With every
# core given to DuckDB (the ninth round's choice, when the writer was the command's only stream), 1M Parquet events
# took 8% longer and 9% more CPU on 2 cores (docs/performance.md, nineteenth round).
STREAMS = 2
# An NDJSON read: a block and the Arrow arrays over it stay well under glibc's mmap threshold
# (ingest/allocators.py), so each block reuses the memory the last one freed. Blocks sized to a whole chunk
# (~57 MiB) were mapped afresh and faulted in page by page, 0.42 page faults per event (`bench/bench_file_read.py`;
# docs/performance.md, forty-ninth round).
READ_BYTES = 8 * 1024 * 1024
PARQUET_READS = 8  # a Parquet chunk's reads: 15,360 rows each at the default chunk, as RENDER_ROWS
SAMPLES = 5  # rejections echoed in the summary


class IngestError(Exception):
    """A problem with the input as a whole or with the destination; the message is meant for the user."""


@dataclass
class _Input:
    path: Path
    fmt: str  # ndjson | json | parquet
    gz: bool
    size: int


@dataclass
class _Tally:
    files: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    fast: int = 0
    derive_failures: int = 0  # chunks whose events are stored and whose derived rows could not be written
    samples: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, path: Path, rejections: list[Rejection]) -> None:
        self.rejected += len(rejections)
        for r in rejections[: max(0, SAMPLES - len(self.samples))]:
            self.samples.append({"file": str(path), "index": r.index, "errors": r.errors})

    def summary(self, seconds: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "files": self.files, "events": self.events, "accepted": self.accepted, "duplicates": self.duplicates,
            "rejected": self.rejected, "seconds": round(seconds, 3),
            "events_per_second": round(self.events / seconds, 1) if seconds > 0 else None,
        }
        if self.derive_failures:
            out["derive_failures"] = self.derive_failures
        if self.samples:
            out["rejected_samples"] = self.samples
        return out


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


def _inspect(path: Path) -> _Input:
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if path.is_dir():
        raise IngestError(f"{path}: is a directory, not an event file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except PermissionError:
        raise IngestError(f"{path}: permission denied") from None
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    size = path.stat().st_size
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] in (".gz", ".gzip")
    inner = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes and not gz else "")
    if head[:2] == b"\x1f\x8b":
        gz = True
    elif gz:
        raise IngestError(f"{path}: named .gz but is not gzip data")
    if gz:
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(4096)
        except (OSError, EOFError) as exc:
            raise IngestError(f"{path}: not valid gzip data ({exc})") from None
    if inner in NDJSON_SUFFIXES:
        fmt = "ndjson"
    elif inner in JSON_SUFFIXES:
        fmt = "json"
    elif inner in PARQUET_SUFFIXES or head[:4] == b"PAR1":
        fmt = "parquet"
    else:
        fmt = _sniff(head, path)
    if fmt == "parquet" and gz:
        raise IngestError(f"{path}: gzip-compressed Parquet is not supported; Parquet compresses its own pages")
    return _Input(path, fmt, gz, size)


def _sniff(head: bytes, path: Path) -> str:
    text = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        first, _, rest = text.partition(b"\n")
        if rest.strip():
            try:
                orjson.loads(first)
                return "ndjson"  # a complete object on the first line and more after it
            except orjson.JSONDecodeError:
                return "json"
        return "json"
    raise IngestError(
        f"{path}: unknown format; name it .json (object or array), .ndjson/.jsonl (one event per line) "
        "or .parquet, optionally with .gz")


def _open(inp: _Input):
    return gzip.open(inp.path, "rb") if inp.gz else open(inp.path, "rb")


def _raw_position(fh) -> int:
    """Bytes consumed from the file on disk (for the progress bar), compressed or not."""
    raw = getattr(fh, "fileobj", None)
    try:
        return (raw or fh).tell()
    except (OSError, ValueError):
        return 0


@dataclass
class _Chunk:
    kind: str  # lines | items | table
    data: Any
    offset: int  # index of the chunk's first event in the file
    first_line: int = 1
    numbers: Any = None  # physical line numbers (NDJSON)
    done_bytes: int = 0  # file bytes consumed once this chunk is read
    rendered: Any = None  # a Parquet table's rows as JSON lines and their flags (`parquet_lines`), once rendered


def _chunks(inp: _Input, chunk_rows: int) -> Iterator[_Chunk]:
    if inp.fmt == "ndjson":
        yield from _ndjson_chunks(inp, chunk_rows)
    elif inp.fmt == "json":
        yield from _json_chunks(inp, chunk_rows)
    else:
        yield from _parquet_chunks(inp, chunk_rows)


def _rendered(chunks: Iterator[_Chunk]) -> Iterator[_Chunk]:
    """`chunks`, each Parquet table's rows rendered as JSON lines (on a connection of their own)."""
    import duckdb

    from collector.contract.vectorized import parquet_lines

    con = None
    try:
        for ch in chunks:
            if ch.kind == "table":
                con = con or duckdb.connect(":memory:", config={"threads": 1})
                ch.rendered = parquet_lines(ch.data, con)
            yield ch
    finally:
        if con is not None:
            con.close()


class _ReadAhead:
    """`chunks`, the next one read (and rendered) on a thread of its own while the caller validates this one:
    Arrow's Parquet decoding and DuckDB's rendering run without the GIL, which validation holds, on a core the
    writer and the deriver leave idle part of the time (docs/performance.md, twenty-first round). The first chunk is
    read from the moment this is made, so that it also overlaps what the caller does before it asks for it (the
    bulk command opens the store and compiles the validator meanwhile: docs/performance.md, thirty-third round).
    An error of the reader (an `IngestError` naming the file) is raised where its chunk would have come, so the
    chunks before it are committed as before. `close` (also at the end, or on the reader's error) stops the reader
    and closes `chunks` (its file, its connection); a caller that stops early must call it."""

    def __init__(self, chunks: Iterator[_Chunk]) -> None:
        self._it = iter(chunks)
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="ingest-read-ahead")
        self._upcoming = self._pool.submit(next, self._it, None)

    def __iter__(self) -> "_ReadAhead":
        return self

    def __next__(self) -> _Chunk:
        if self._pool is None:
            raise StopIteration
        try:
            ch = self._upcoming.result()
        except BaseException:
            self.close()
            raise
        if ch is None:
            self.close()
            raise StopIteration
        self._upcoming = self._pool.submit(next, self._it, None)
        return ch

    def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        self._upcoming.cancel() or self._upcoming.exception()  # not running two `next` at once: wait for it to end
        pool.submit(getattr(self._it, "close", lambda: None)).result()
        pool.shutdown()


def _ndjson_chunks(inp: _Input, chunk_rows: int) -> Iterator[_Chunk]:
    """Blocks of `READ_BYTES` split into lines that are views of the block (`split_block`: no copy), gathered into
    chunks of `chunk_rows` lines (the last may hold fewer). A line longer than a block is read whole: the next read
    is as long as what is carried, so such a line costs reads that double, not a copy per block."""
    offset, line_no, carry = 0, 1, b""
    lines: list[pa.Array] = []
    numbers: list[pa.Array] = []
    held = 0
    try:
        with _open(inp) as fh:
            while True:
                block = fh.read(max(READ_BYTES, len(carry)))
                buf = carry + block if carry else block
                if block:
                    cut = buf.rfind(b"\n") + 1
                    if not cut:
                        carry = buf
                        continue
                    body, carry = memoryview(buf)[:cut], buf[cut:]
                else:
                    body, carry = memoryview(buf), b""
                part, nums, physical = split_block(body, first_line=line_no)
                line_no += physical
                if len(part):
                    lines.append(part)
                    numbers.append(nums)
                    held += len(part)
                done = _raw_position(fh) if block else inp.size
                while held >= chunk_rows or (held and not block):
                    all_lines, all_numbers = pa.chunked_array(lines), pa.chunked_array(numbers)
                    n = min(held, chunk_rows)
                    yield _Chunk("lines", all_lines.slice(0, n), offset, numbers=all_numbers.slice(0, n),
                                 done_bytes=done)
                    offset, held = offset + n, held - n
                    lines = all_lines.slice(n).chunks if held else []
                    numbers = all_numbers.slice(n).chunks if held else []
                if not block:
                    return
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise IngestError(f"{inp.path}: read failed ({exc})") from None


def _json_chunks(inp: _Input, chunk_rows: int) -> Iterator[_Chunk]:
    """A JSON document's items, as texts (body.json_elements) validated as lines, so each takes the struct stage
    and the file is never held as parsed objects (a few times its size); a document msgspec cannot split, or not
    valid UTF-8 (what msgspec's split does not read: every item of a valid UTF-8 document it splits is then read
    alone by orjson), is parsed whole by orjson, as before, and refused whole when orjson cannot read it: nothing
    of an unreadable file is committed."""
    try:
        with _open(inp) as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise IngestError(f"{inp.path}: read failed ({exc})") from None
    texts = json_elements(raw, None) if _utf8(raw) else None
    if texts is not None:
        for start in range(0, len(texts), chunk_rows):
            part = texts[start:start + chunk_rows]
            yield _Chunk("lines", pa.array(part, pa.large_binary()), start,  # large: an item may pass 2 GiB
                         done_bytes=_share(inp, start + len(part), len(texts)))
        return
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise IngestError(f"{inp.path}: not valid JSON ({exc}); for one event per line use .ndjson") from None
    items = doc if isinstance(doc, list) else [doc]
    for start in range(0, len(items), chunk_rows):
        yield _Chunk("items", items[start:start + chunk_rows], start,
                     done_bytes=_share(inp, start + chunk_rows, len(items)))


def _share(inp: _Input, done: int, total: int) -> int:
    """The bytes of `inp` a progress bar counts as read once `done` of its `total` items are."""
    return inp.size if done >= total else int(inp.size * done / total)


def _utf8(raw: bytes) -> bool:
    """Whether `raw` is valid UTF-8, checked by Arrow without a copy or a Python str of the whole file."""
    try:
        one_value(raw).cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _parquet_chunks(inp: _Input, chunk_rows: int) -> Iterator[_Chunk]:
    try:
        pf = pq.ParquetFile(inp.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"{inp.path}: not a readable Parquet file ({exc})") from None
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED_PARQUET_COLUMNS if c not in names]
    if missing:
        raise IngestError(f"{inp.path}: Parquet file lacks the column(s) {', '.join(missing)}; "
                          f"expected {', '.join(PARQUET_COLUMNS)}")
    cols = [c for c in PARQUET_COLUMNS if c in names]
    total = max(1, pf.metadata.num_rows)
    offset = 0
    try:
        # A chunk read in up to PARQUET_READS batches, each's buffers under glibc's mmap threshold (as RENDER_ROWS).
        # They divide the chunk, so that no read crosses into the next chunk: a chunk is yielded (and committed)
        # before a read of the next one can fail.
        reads = next(k for k in range(PARQUET_READS, 0, -1) if chunk_rows % k == 0)
        held: list[pa.RecordBatch] = []
        rows = 0
        for batch in pf.iter_batches(batch_size=chunk_rows // reads, columns=cols):
            held.append(batch)
            rows += batch.num_rows
            while rows >= chunk_rows:
                table = pa.Table.from_batches(held)
                yield _Chunk("table", table.slice(0, chunk_rows), offset,
                             done_bytes=int(inp.size * min(1.0, (offset + chunk_rows) / total)))
                offset, rows = offset + chunk_rows, rows - chunk_rows
                held = table.slice(chunk_rows).to_batches()
        if rows:
            yield _Chunk("table", pa.Table.from_batches(held), offset, done_bytes=inp.size)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"{inp.path}: Parquet read failed ({exc})") from None


def _inputs(files: list[Path]) -> list[_Input]:
    if not files:
        raise IngestError("no input files")
    return [_inspect(Path(f)) for f in files]


def _progress(enabled: bool, total_bytes: int, label: str) -> Any:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    from rich.console import Console

    if not enabled:
        return None
    # On stderr: stdout carries the JSON summary.
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TextColumn("{task.fields[events]:,} events"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=False)


# ---------------------------------------------------------------------------------------------------------
# --db
# ---------------------------------------------------------------------------------------------------------


def _open_store(db: Path, chunk_rows: int):
    import duckdb

    from collector.settings import Settings
    from collector.ingest.store import Store
    from collector.storage.db import DatabaseUnavailable

    settings = Settings(db=Path(db), auth=False, gauge_refresh_seconds=3600.0,
                        max_batch_events=max(chunk_rows, 1),
                        max_queue_events=max(chunk_rows, 1) * (MAX_IN_FLIGHT + 2))
    try:
        # Two statement streams, as in the collector: the writer commits chunks while the deriver folds earlier
        # ones (and this thread validates the next, holding a core of its own). DuckDB's extra workers would split
        # their statements across cores already taken (storage.db.collector_threads). A chunk's events are
        # committed in one transaction (a chunk that fails is rolled back whole and said so), its derived rows by
        # the deriver after, as the collector does; closing the store waits for them.
        return Store(settings, streams=STREAMS, max_lag_events=max(chunk_rows, 1) * LAG_CHUNKS)
    except DatabaseUnavailable as exc:  # locked by a running collector: one line that names --url
        raise IngestError(str(exc)) from None
    except duckdb.Error as exc:
        raise IngestError(f"{db}: cannot open the database ({exc})") from None


class _WholeChunks:
    """Validated rows held back until they make a whole chunk, so that every commit of a file but its last holds
    exactly `rows` rows, whatever the validator refused or a chunk read held (an NDJSON block is cut by size): with
    `rows` whole DuckDB row groups (storage.db.ROW_GROUP_ROWS), a commit writes its rows to the database file once,
    instead of through the WAL and again at the next checkpoint. Rejections ride with the next commit; should
    `rows` of them wait (a file of mostly bad lines), everything held goes, so that memory stays bounded."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.tables: list[pa.Table] = []
        self.rejections: list[Rejection] = []
        self.held = 0

    def add(self, table: pa.Table, rejections: list[Rejection]) -> tuple[pa.Table, list[Rejection]] | None:
        """What to commit now, if anything, once `table` and `rejections` are held."""
        if table.num_rows:
            self.tables.append(table)
            self.held += table.num_rows
        self.rejections += rejections
        if self.held >= self.rows:
            return self._take(self.held - self.held % self.rows)
        if len(self.rejections) >= self.rows:
            return self._take(self.held)
        return None

    def rest(self) -> tuple[pa.Table, list[Rejection]] | None:
        """Whatever is held (at the end of a file)."""
        return self._take(self.held) if self.held or self.rejections else None

    def _take(self, n: int) -> tuple[pa.Table, list[Rejection]]:
        rows = (self.tables[0] if len(self.tables) == 1 else pa.concat_tables(self.tables)) if self.tables \
            else INGEST_SCHEMA.empty_table()
        out, rejections = rows.slice(0, n), self.rejections
        self.held -= n
        self.tables = [rows.slice(n)] if self.held else []
        self.rejections = []
        return out, rejections


def ingest_files_to_db(files: list[Path], db: Path, chunk_rows: int = ROW_GROUP_ROWS, progress: bool = True) -> dict:
    """Validate `files` set-based and commit them into the DuckDB file `db` through the single writer, in commits of
    `chunk_rows` rows (`_WholeChunks`; the CLI gives whole row groups)."""
    from collector.contract.vectorized import BulkValidator, validate_parquet_table
    from collector.ingest.writer import QueueFull

    inputs = _inputs(files)
    chunk_rows = max(1, int(chunk_rows))
    t0 = time.perf_counter()
    tally = _Tally()
    # Parquet is read ahead of validation (`_ReadAhead`); the first file's first chunk from now on, while the store
    # opens and the validator compiles. Every reader made is closed at the end, however the command ends.
    readers = [_ReadAhead(_rendered(_chunks(inputs[0], chunk_rows)))] if inputs[0].fmt == "parquet" else []
    try:
        store = _open_store(db, chunk_rows)
        validator = BulkValidator()
    except BaseException:
        for r in readers:
            r.close()
        raise
    store.writer.start()  # the gauge refresher stays off: nothing scrapes this process
    pending: deque[tuple[Future, int]] = deque()

    def settle(fut: Future, n: int) -> None:
        try:
            res = fut.result()
        except Exception as exc:  # noqa: BLE001 - the writer rolled the chunk back; say so plainly
            raise IngestError(f"{db}: writing a chunk of {n} events failed and was rolled back ({exc}); "
                              "chunks committed before it are kept, re-running the same files is safe") from exc
        acc = res.statuses.count("accepted")
        tally.accepted += acc
        tally.duplicates += len(res.statuses) - acc

    held = _WholeChunks(chunk_rows)

    def commit(part: tuple[pa.Table, list[Rejection]] | None, request_id: str) -> None:
        if part is None:
            return
        table, rejections = part
        while True:
            while len(pending) >= MAX_IN_FLIGHT:
                settle(*pending.popleft())
            try:
                fut = store.writer.submit(table, rejections, channel="file", request_id=request_id)
                break
            except QueueFull:
                if not pending:
                    raise
                settle(*pending.popleft())
        pending.append((fut, table.num_rows))

    bar = _progress(progress, sum(i.size for i in inputs), "ingest")
    try:
        if bar:
            bar.start()
        for inp in inputs:
            task = bar.add_task(inp.path.name, total=max(1, inp.size), events=0) if bar else None
            request_id = f"file:{inp.path}"[:512]
            file_events = 0
            # NDJSON: a block read and split into views costs too little to gain from reading it ahead (10.90 ->
            # 10.74 s for 1M events, faster in 3 of 5 pairs: docs/performance.md, forty-ninth round); a JSON
            # document is read whole before its first chunk
            if inp.fmt != "parquet":
                chunks: Iterator[_Chunk] = _chunks(inp, chunk_rows)
            else:
                if not (readers and inp is inputs[0]):  # (the first file's reader is made above)
                    readers.append(_ReadAhead(_rendered(_chunks(inp, chunk_rows))))
                chunks = readers[-1]
            for ch in chunks:
                if ch.kind == "lines":
                    res = validator.validate_lines(ch.data, offset=ch.offset, line_numbers=ch.numbers)
                elif ch.kind == "items":
                    res = validator.validate_items(ch.data, offset=ch.offset)
                else:
                    res = validate_parquet_table(validator, ch.data, offset=ch.offset, rendered=ch.rendered)
                tally.events += res.total
                tally.fast += res.fast
                file_events += res.total
                tally.reject(inp.path, res.rejections)
                commit(held.add(res.table, res.rejections), request_id)
                if bar and task is not None:
                    bar.update(task, completed=ch.done_bytes, events=file_events)
            commit(held.rest(), request_id)
            if bar and task is not None:
                bar.update(task, completed=max(1, inp.size), events=file_events)
            tally.files += 1
        while pending:
            settle(*pending.popleft())
    finally:
        for r in readers:
            r.close()
        if bar:
            bar.stop()
        validator.close()
        try:
            while pending:  # an error above: let what was handed over commit before closing
                try:
                    pending.popleft()[0].result()
                except Exception:  # noqa: BLE001
                    pass
        finally:
            store.close()  # waits for the deriver
            tally.derive_failures = store.writer.stats.derive_failures
    return tally.summary(time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------------
# --url
# ---------------------------------------------------------------------------------------------------------


def _ndjson_batches(inp: _Input, batch_size: int) -> Iterator[tuple[list[bytes], int, int]]:
    """(lines, index of the first, file bytes consumed) per batch, lines as they are in the file."""
    if inp.fmt == "ndjson":
        batch: list[bytes] = []
        index = 0
        try:
            with _open(inp) as fh:
                for raw in fh:
                    line = raw.strip()
                    if not line:
                        continue
                    batch.append(line)
                    if len(batch) >= batch_size:
                        yield batch, index, _raw_position(fh)
                        index += len(batch)
                        batch = []
                if batch:
                    yield batch, index, inp.size
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise IngestError(f"{inp.path}: read failed ({exc})") from None
        return
    for ch in _chunks(inp, batch_size):
        if ch.kind == "items":
            lines = [orjson.dumps(x) for x in ch.data]
        elif ch.kind == "lines":  # a JSON document's items, as their texts (`_json_chunks`)
            lines = ch.data.to_pylist()
        else:
            from collector.contract.vectorized import parquet_lines

            lines = [x.encode() for x in parquet_lines(ch.data)[0].to_pylist()]
        yield lines, ch.offset, ch.done_bytes


def ingest_files_to_url(files: list[Path], url: str, token: str | None, batch_size: int = 5000,
                        progress: bool = True) -> dict:
    """Post `files` to a running collector as gzip NDJSON batches; the collector validates and commits."""
    import httpx

    inputs = _inputs(files)
    batch_size = max(1, int(batch_size))
    endpoint = url.rstrip("/") + "/v1/events"
    if not endpoint.startswith(("http://", "https://")):
        raise IngestError(f"--url must start with http:// or https://, not {url!r}")
    # only the rejections are read: the minimal answer lists just the events not accepted (RFC 7240)
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip", "Prefer": "return=minimal"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    t0 = time.perf_counter()
    tally = _Tally()
    bar = _progress(progress, sum(i.size for i in inputs), "post")
    with httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0)) as client:
        try:
            if bar:
                bar.start()
            for inp in inputs:
                task = bar.add_task(inp.path.name, total=max(1, inp.size), events=0) if bar else None
                sent = 0
                for lines, index, done in _ndjson_batches(inp, batch_size):
                    for part in _post(client, endpoint, headers, lines):
                        tally.events += part["n"]
                        tally.accepted += part["accepted"]
                        tally.duplicates += part["duplicates"]
                        rej = [Rejection(index + part["start"] + r["index"], r.get("errors") or [], "")
                               for r in part["results"] if r.get("status") == "rejected"]
                        tally.reject(inp.path, rej)
                    sent += len(lines)
                    if bar and task is not None:
                        bar.update(task, completed=done, events=sent)
                tally.files += 1
        finally:
            if bar:
                bar.stop()
    return tally.summary(time.perf_counter() - t0)


def _post(client, endpoint: str, headers: dict[str, str], lines: list[bytes], start: int = 0) -> list[dict]:
    """POST one batch with bounded retries; a batch the collector finds too large is split in two."""
    import httpx

    body = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1)
    delay, attempts = 0.5, 0
    while True:
        attempts += 1
        try:
            resp = client.post(endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:
            if attempts >= 8:
                raise IngestError(f"cannot reach the collector at {endpoint}: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        if resp.status_code in (200, 422):
            doc = resp.json()
            return [{"start": start, "n": len(lines), "accepted": doc.get("accepted", 0),
                     "duplicates": doc.get("duplicates", 0), "results": doc.get("results", [])}]
        if resp.status_code == 413 and len(lines) > 1:
            half = len(lines) // 2
            return (_post(client, endpoint, headers, lines[:half], start)
                    + _post(client, endpoint, headers, lines[half:], start + half))
        if resp.status_code in (429, 503) and attempts < 12:
            wait = delay
            if resp.status_code == 429:
                try:
                    wait = float(resp.headers.get("Retry-After", delay))
                except ValueError:
                    wait = delay
            time.sleep(min(max(wait, 0.05), 30.0))
            delay = min(delay * 2, 10.0)
            continue
        detail = _detail(resp)
        if resp.status_code in (401, 403):
            raise IngestError(f"the collector refused the request ({resp.status_code}: {detail}); "
                              "pass a token with the ingest scope via --token or OBSERVATORY_TOKEN")
        raise IngestError(f"the collector answered {resp.status_code} for a batch of {len(lines)} events: {detail}")


def _detail(resp) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:500]
    except ValueError:
        return resp.text[:500]
