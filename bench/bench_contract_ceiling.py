"""How fast ingest could go if DuckDB itself validated the events: a ceiling for issue 11's ratios.

    .venv/bin/python bench/bench_contract_ceiling.py            # the ingest bench's 1M events, 3 alternated reps

The bulk ratio's target (0.5 of the raw keyed insert) asks for about twice the product's rate. The product
validates in Python (msgspec, generated checks, polars), and the twenty-seventh round found its CPU alone past what
the target allows on two cores. This bench asks the other question: with no Python per event at all, what rate does
the cheapest part of the contract reach when DuckDB runs it in C++ inside the insert? One statement reads the
Parquet file, checks each event and inserts the rows it vouches for into `events` (the product's table: keyed on
(source, id) until migration 0217, unkeyed since, its dedup the writer's index), committed:

- the envelope: `specversion`, the lengths of `id`, `source` and `subject`, no control character in `id` or
  `source`, a known `type`, an RFC 3339 `time` between 1970 and now + 24 h;
- `data`: a JSON object, parsed once into every common field and every typed field the derived tables need
  (`storage.schema.DERIVE_FIELDS`), identifiers' and names' lengths, `attempt`'s range, the trigger and environment
  enums, non-negative durations;
- the secret prefilter (`redaction.PREFILTER_PATTERN`, DuckDB's RE2) over `data`, `id` and `source`: a row it
  matches is left out, as a native path would leave it to the exact path.

It does less than the product: no per-type required fields or enums beyond the common ones, no nested checks
(cells, tags, depth), no redaction, no dead letters, no canonical `data` text (the product stores it in the
contract's key order; this stores it as received), no derived tables, no counters, no batch bookkeeping. So its rate
is an upper bound for any path that validates in DuckDB, before the derived tables. Measured beside the product's
bulk command and the raw keyed insert of the product's own stored rows, alternated, each on a fresh database.

HTTP the same way, with the ingest bench's clients (4, 1,000-event NDJSON requests, auth on) against
bench/ceiling_server.py, a bare ASGI app on the collector's server stack: storing nothing (what the transport
allows), and running the same statement over the lines of up to 4 waiting requests (the collector's group commit);
beside the product's `observatory serve`. That is one design of a native HTTP path, not a bound: a statement this
size has a fixed cost per execution that a request's 1,000 events do not pay back.

For files the rows the ceiling vouches for are checked equal to the product's (every stored column but `data`,
whose key order differs), and the rows it leaves out are checked to be the ones the product redacted. Figures go to
docs/performance.md between the contract-ceiling markers.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_ingest  # noqa: E402
from report import machine, write_section  # noqa: E402

from collector.contract.events import (  # noqa: E402
    EVENT_TYPES, INT32, MAX_FUTURE_SKEW, MAX_SECONDS, TIME_MIN, Environment, Trigger,
)
from collector.contract.redaction import PREFILTER_PATTERN  # noqa: E402
from collector.storage import db as dbmod  # noqa: E402
from collector.storage.schema import DERIVE_FIELDS, EVENT_SCHEMA, STORED_COLUMNS, STORED_FIELDS  # noqa: E402
from collector.storage.sqltext import ident, lit, ts_lit  # noqa: E402

# The common data fields stored as columns of `events`, beside the typed ones
COMMON = ("team", "owner", "notebook_id", "run_id", "attempt", "kernel_id", "trigger", "environment")
IDS = ("notebook_id", "run_id", "kernel_id", "session_id", "baseline_run_id")  # Id: 1..256 characters
NAMES = ("team", "owner", "target")  # Name: 1..128 characters
NON_NEG = ("duration_seconds", "cpu_seconds")
_SQL_TYPE = {"string": "VARCHAR", "double": "DOUBLE", "int64": "BIGINT", "bool": "BOOLEAN",
             "timestamp[us, tz=UTC]": "TIMESTAMPTZ"}
_CONTROL = r"[\x00-\x1f\x7f]"
_RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)"


def _structure() -> str:
    """The JSON structure `json_transform` parses `data` into: the common fields, then every typed field."""
    types = {"attempt": "BIGINT", **{f: "VARCHAR" for f in COMMON if f != "attempt"}}
    for f in DERIVE_FIELDS:
        types.setdefault(f.name, "JSON" if f.metadata and f.metadata.get(b"json") else _SQL_TYPE[str(f.type)])
    return "{" + ", ".join(f'"{k}": "{v}"' for k, v in types.items()) + "}"


def _in(column: str, values: typing.Iterable[str]) -> str:
    return f"{column} IN ({', '.join(lit(v) for v in values)})"


def parquet_source(parquet: Path) -> str:
    return f"read_parquet({lit(str(parquet))})"


# Requests' lines (a registered Arrow table `lines(line, req)`) as the Parquet file's columns: the envelope parsed
# once, `data` kept as its JSON text, `req` (which request of a group commit a line came in) carried along.
LINES_SOURCE = ("(SELECT e.specversion, e.id, e.source, e.type, e.time, e.subject, e.data::VARCHAR AS data, req FROM "
                "(SELECT json_transform(line, '{\"specversion\": \"VARCHAR\", \"id\": \"VARCHAR\", "
                "\"source\": \"VARCHAR\", \"type\": \"VARCHAR\", \"time\": \"VARCHAR\", "
                "\"subject\": \"VARCHAR\", \"data\": \"JSON\"}') AS e, req FROM lines))")


def ceiling_sql(source: str, now: datetime, batch: str = "1") -> str:
    """The one statement: read `source` (a relation with the Parquet file's columns), check, insert the rows it
    vouches for (`?` = ingested_at, `batch` the SQL of their batch_id); a row already stored is skipped, as the
    product's dedup does."""
    d = "d"
    checks = [
        "specversion = '1.0'", "length(id) BETWEEN 1 AND 256", "length(source) BETWEEN 1 AND 512",
        "(subject IS NULL OR length(subject) <= 1024)",
        f"NOT regexp_matches(id || source, {lit(_CONTROL)})",
        _in("type", EVENT_TYPES),
        f"regexp_full_match(time, {lit(_RFC3339)})",
        f"TRY_CAST(time AS TIMESTAMPTZ) BETWEEN {ts_lit(TIME_MIN)} AND {ts_lit(now + MAX_FUTURE_SKEW)}",
        "json_type(data) = 'OBJECT'",
        f"NOT regexp_matches(data || id || source, {lit(PREFILTER_PATTERN)})",
        *[f"({d}.{f} IS NULL OR length({d}.{f}) BETWEEN 1 AND 256)" for f in IDS],
        *[f"({d}.{f} IS NULL OR length({d}.{f}) BETWEEN 1 AND 128)" for f in NAMES],
        f"({d}.attempt IS NULL OR {d}.attempt BETWEEN 1 AND {INT32[1]})",
        f"({d}.trigger IS NULL OR {_in(f'{d}.trigger', typing.get_args(Trigger))})",
        f"({d}.environment IS NULL OR {_in(f'{d}.environment', typing.get_args(Environment))})",
        *[f"({d}.{f} IS NULL OR {d}.{f} BETWEEN 0 AND {MAX_SECONDS})" for f in NON_NEG],
    ]
    stored = [c for c in EVENT_SCHEMA.names if c not in ("time", "data", "redactions")]
    select = ", ".join(
        ["source", "id", "type", "time::TIMESTAMPTZ AS time", "subject",
         *[f"{d}.{ident(c)}" + ("::INTEGER" if c == "attempt" else "") for c in stored
           if c not in ("source", "id", "type", "subject")],
         "data", "0 AS redactions", *[f"{d}.{ident(f)}" for f in STORED_FIELDS]])
    return (f"INSERT OR IGNORE INTO events ({STORED_COLUMNS}, ingested_at, batch_id) "
            f"WITH parsed AS MATERIALIZED (SELECT *, json_transform(data, {lit(_structure())}) AS {d} "
            f"FROM {source}) SELECT {select}, ?, {batch} FROM parsed WHERE {' AND '.join(checks)}")


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def ceiling_run(parquet: Path, workdir: Path, threads: int) -> dict:
    """The statement on a fresh database with `threads` DuckDB threads, committed; its wall and this process's CPU."""
    db = workdir / "ceiling.duckdb"
    for p in workdir.glob("ceiling.duckdb*"):
        p.unlink()
    con = dbmod.connect(db, threads=threads)
    try:
        now = datetime.now(timezone.utc)
        c0, t0 = _cpu(), time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        con.execute(ceiling_sql(parquet_source(parquet), now), [now])
        con.execute("COMMIT")
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
        rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()
    return {"events": rows, "seconds": seconds, "cpu": cpu, "db": db}


def _raw_run(table: pa.Table, workdir: Path) -> dict:
    c0 = _cpu()
    r = bench_ingest.raw_insert(table, workdir)
    return {**r, "cpu": _cpu() - c0}


def check_rows(product_db: Path, ceiling_db: Path) -> dict:
    """The ceiling's rows against the product's: every stored column but `data` equal, and the rows left out the
    ones the product redacted. Raises when either does not hold (the ceiling would then measure another contract)."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {lit(str(product_db))} AS p (READ_ONLY)")
        con.execute(f"ATTACH {lit(str(ceiling_db))} AS c (READ_ONLY)")
        cols = [c for c in (*EVENT_SCHEMA.names, *STORED_FIELDS) if c not in ("source", "id", "data", "redactions")]
        differ = con.execute("SELECT count(*) FROM p.events a JOIN c.events b USING (source, id) WHERE "
                             + " OR ".join(f"a.{ident(c)} IS DISTINCT FROM b.{ident(c)}" for c in cols)).fetchone()[0]
        extra = con.execute("SELECT count(*) FROM c.events ANTI JOIN p.events USING (source, id)").fetchone()[0]
        left = con.execute("SELECT count(*), count(*) FILTER (WHERE redactions = 0) "
                           "FROM p.events ANTI JOIN c.events USING (source, id)").fetchone()
    finally:
        con.close()
    if differ or extra or left[1]:
        raise AssertionError(f"the ceiling's rows are not the product's: {differ} differ, {extra} not stored by the "
                             f"product, {left[1]} left out though the product did not redact them")
    return {"left_out": left[0]}


# The HTTP ceilings measured: ceiling_server.py's mode and DuckDB threads
HTTP_CEILINGS = {"transport": ("transport", 1), "native1": ("native", 1), "native2": ("native", 2)}


def http_ceiling_run(lines: list[str], workdir: Path, mode: str, threads: int = 1) -> dict:
    """The ingest bench's closed loop (4 clients, 1,000-event NDJSON requests, auth on) against ceiling_server.py
    in `mode` with `threads` DuckDB threads; events/s acknowledged and the server's CPU."""
    workdir.mkdir()
    port, token = bench_ingest._free_port(), "ceiling-token"
    cmd = [sys.executable, str(ROOT / "bench" / "ceiling_server.py"), "--port", str(port), "--db",
           str(workdir / "http.duckdb"), "--token", token, "--mode", mode, "--threads", str(threads)]
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            bench_ingest.wait_ready(proc, port, workdir / "server.log")
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
            cpu0, t0 = bench_ingest.cpu_seconds(proc.pid), time.perf_counter()
            res = bench_ingest.post_all(f"{url}/v1/events", headers, bench_ingest._bodies(lines, 1000), clients=4)
            seconds, cpu = time.perf_counter() - t0, bench_ingest.cpu_seconds(proc.pid) - cpu0
        finally:
            proc.terminate()
            proc.wait(60)
    return {"events": res["acked"], "seconds": seconds, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--http-events", type=int, default=200_000, help="events per HTTP run (the ingest bench's)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md as it is")
    args = ap.parse_args()
    parquet, ndjson, n = bench_ingest.data_files(args.events, ROOT / "var" / "bench", seed=7)
    with open(ndjson) as fh:
        lines = [line.rstrip("\n") for _, line in zip(range(args.http_events), fh)]
    runs: dict[str, list[dict]] = {k: [] for k in ("bulk", "raw", "ceiling1", "ceiling2", "http",
                                                   *HTTP_CEILINGS)}
    with tempfile.TemporaryDirectory(dir=ROOT / "var") as tmp:
        work = Path(tmp)
        # The product's rows, once: what the raw insert inserts and what the ceiling's rows are checked against
        first = bench_ingest.cli_run(parquet, work, None)
        product_db = work / "product.duckdb"
        first["db"].rename(product_db)
        table = bench_ingest.stored_table(product_db)
        left = None
        for rep in range(args.reps):
            order = list(runs)
            for key in order if rep % 2 == 0 else order[::-1]:
                if key == "http":
                    hw = work / f"http{rep}"
                    hw.mkdir()
                    r = bench_ingest.http_run(lines, hw)
                    r["cpu"] = r["server_cpu_us"] * r["events"] / 1e6
                    shutil.rmtree(hw)
                elif key in HTTP_CEILINGS:
                    r = http_ceiling_run(lines, work / f"{key}{rep}", *HTTP_CEILINGS[key])
                    shutil.rmtree(work / f"{key}{rep}")
                elif key == "bulk":
                    c0 = _cpu(resource.RUSAGE_CHILDREN)
                    r = bench_ingest.cli_run(parquet, work, None)
                    r["cpu"] = _cpu(resource.RUSAGE_CHILDREN) - c0
                    r["db"].unlink()
                elif key == "raw":
                    r = _raw_run(table, work)
                else:
                    r = ceiling_run(parquet, work, threads=int(key[-1]))
                    if left is None:
                        left = check_rows(product_db, r["db"])
                runs[key].append(r)
                print(f"{key:9s} rep {rep + 1}: {r['events']:,} rows in {r['seconds']:.2f} s = "
                      f"{r['events'] / r['seconds']:,.0f}/s, CPU {r['cpu']:.2f} s", flush=True)
    assert left is not None
    text = render(runs, n, len(lines), args.reps, left,
                  " ".join(["python bench/bench_contract_ceiling.py", *sys.argv[1:]]))
    print(text)
    if not args.no_write:
        write_section("contract-ceiling", text)


def render(runs: dict[str, list[dict]], n: int, http: int, reps: int, left: dict, cmd: str) -> str:
    eps = {k: statistics.median(r["events"] / r["seconds"] for r in rs) for k, rs in runs.items()}
    raw = eps["raw"]

    def cpu(k: str) -> str:
        return f"{statistics.median(r['cpu'] for r in runs[k]) * 1e6 / runs[k][0]['events']:.1f}"

    names = {
        "raw": "raw keyed insert of the product's stored rows (Arrow, one statement)",
        "bulk": "files: the product, `observatory ingest --db` of the Parquet file (whole command)",
        "ceiling1": "files: the ceiling, DuckDB reads, checks and inserts in one statement, 1 DuckDB thread",
        "ceiling2": "files: the same, 2 DuckDB threads",
        "http": "HTTP: the product, `observatory serve` (the ingest bench's (a))",
        "transport": "HTTP: the transport alone, a bare ASGI app on uvicorn that checks the token, reads the body "
                     "and answers, storing nothing",
        "native1": "HTTP: the same app running the ceiling's statement over the lines of up to 4 waiting requests "
                   "at once (the collector's group commit), one writer thread, 1 DuckDB thread",
        "native2": "HTTP: the same, 2 DuckDB threads",
    }

    def each(k: str) -> str:
        return ", ".join(f"{r['events'] / r['seconds']:,.0f}" for r in runs[k])

    rows = [f"| {names[k]} | **{eps[k]:,.0f}** | {each(k)} | {cpu(k)} | {eps[k] / raw:.2f} |" for k in names]
    return "\n".join([
        "Measured by `bench/bench_contract_ceiling.py`.",
        "",
        f"Machine: {machine()}; DuckDB {duckdb.__version__}. Command: `{cmd}`: {n:,} events (bench/gen_events.py's "
        f"Parquet file; HTTP: its first {http:,} lines as 1,000-event NDJSON requests from 4 concurrent clients, auth "
        f"on, the ingest bench's closed loop), medians of {reps} alternated repetitions, each on a fresh database. "
        "CPU: the bench's own process for the raw insert and the file ceiling, the command or the server for the "
        "others (the HTTP clients' CPU is not in it).",
        "",
        "| path | events/s (median) | runs | CPU-µs per event | ratio to the raw insert |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"The file ceiling's rows equal the product's in every stored column but `data` (stored as received, not in "
        f"the contract's key order); the {left['left_out']:,} rows it leaves out are those the product redacted (the "
        "secret prefilter matched them). The ceiling does no redaction, dead letters, per-type or nested checks, "
        "canonical `data` text, derived tables, counters or batch bookkeeping: for files, a bound from above for "
        "any path that validates in DuckDB. The HTTP rows running its statement are one such design, not a bound.",
    ])


if __name__ == "__main__":
    main()
