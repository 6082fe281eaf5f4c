"""Ingest benchmarks: HTTP API, bulk file ingest, and the raw DuckDB inserts they are compared with.

    .venv/bin/python bench/bench_ingest.py                    # 1M events, HTTP 200k, 3 repetitions
    .venv/bin/python bench/bench_ingest.py --events 200000    # a quick run

Measured in one run (medians of --reps repetitions, each on a fresh database; a repetition measures everything
back to back, so the ratios compare like with like on a shared, noisy machine):

(a) HTTP: events/s acknowledged (2xx received, i.e. committed) for NDJSON batches of 1,000 events posted by 4
    concurrent clients to a real `observatory serve` subprocess with auth on (a bearer token). Target 0.25 x (c).
    Measured twice per repetition, in alternating order: with the default answer (a result per event), and with
    the clients sending `Prefer: return=minimal` (only the events not accepted listed), as the shipped clients do.
(b) bulk: `observatory ingest --db` (a real subprocess, wall clock including start-up) of a Parquet file and of
    an NDJSON file holding the same events. Target 0.5 x (c).
(c) the limit: the same events, already validated and as one Arrow table in the storage schema, inserted by
    DuckDB into a copy of the `events` table (as it is defined: its constraints and its columns' compression,
    `data` ZSTD since migration 0218) with a primary key on (source, id) in one statement and committed (the
    issue's anchor: `events` had that key until migration 0217; dedup is now the writer's index).
(d) the physical limit: the same insert into a copy of `events` without the primary key (append only, as
    `events` itself now is).

Then: request latency (p50, p99; medians of --reps runs) in an open loop at half of (a)'s median throughput, and
the collector's memory at saturation (16 clients, a small write queue: it answers 429; its RSS per quarter of the run
is reported).

Figures go to stdout and to docs/performance.md between `<!-- bench:ingest:start -->` and
`<!-- bench:ingest:end -->`. No assertions: this measures, it does not judge.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# before polars loads: collector/__init__.py sizes polars' thread pool as the collector's processes have it (one
# thread on two cores), so that what a bench runs in process (bench_writer.py's deriver, the validation breakdown)
# runs as in the collector; polars loaded first took a thread per core (forty-seventh round)
import collector  # noqa: E402,F401
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402

import gen_events  # noqa: E402
from watch import RefreshWatch, WalWatch  # noqa: E402

from collector.ingest import allocators  # noqa: E402
from collector.storage import db as dbmod  # noqa: E402
from collector.storage.schema import STORED_COLUMNS  # noqa: E402

OBSERVATORY = str(Path(sys.executable).parent / "observatory")
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- bench:ingest:start -->", "<!-- bench:ingest:end -->"


# ---------------------------------------------------------------------------------------------------------
# Machine and data
# ---------------------------------------------------------------------------------------------------------


def machine() -> dict:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "memory_gib": round(mem / 2**30, 1), "cpu": cpu,
            "python": platform.python_version(), "duckdb": duckdb.__version__, "polars": pl.__version__,
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def data_files(n: int, out: Path, seed: int) -> tuple[Path, Path, int]:
    """NDJSON and Parquet files of about n events (cached by size and seed)."""
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob(f"{gen_events.NAME}-{seed}-*.parquet"))
    for p in existing:
        count = int(p.stem.rsplit("-", 1)[1])
        nd = p.with_suffix(".ndjson")
        if abs(count - n) <= max(1000, n // 50) and nd.exists():
            return p, nd, count
    t0 = time.perf_counter()
    paths = gen_events.write(n, out, seed)
    count = int(paths["parquet"].stem.rsplit("-", 1)[1])
    print(f"generated {count:,} events in {time.perf_counter() - t0:.1f} s -> {out}", flush=True)
    return paths["parquet"], paths["ndjson"], count


# ---------------------------------------------------------------------------------------------------------
# (a) HTTP
# ---------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, port: int, log: Path, seconds: float = 60) -> None:
    """Until the server on `port` answers 200 on /readyz; its log's tail in the error when it exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server on port {port} did not become ready in {seconds:.0f} s")


class Server:
    """A real `observatory serve` with auth on (a bearer token with the ingest and read scopes: reads time the
    deriver's catch-up, `settled`) on a free port."""

    def __init__(self, workdir: Path, python: list[str] | None = None, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.db = workdir / "http.duckdb"
        self.tokens = workdir / "tokens.yaml"
        self.port = _free_port()
        self.cli = python or [OBSERVATORY]
        self.env = env
        self.args = args
        self.proc: subprocess.Popen | None = None

    def _popen(self, cmd: list[str]) -> subprocess.Popen:
        return subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.workdir, env=self.env)

    @property
    def pid(self) -> int:
        """The collector's process id (a wrapper such as py-spy may have started it)."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            children = []
        return int(children[0]) if children else self.proc.pid

    def __enter__(self) -> "Server":
        token = subprocess.run([*self.cli, "tokens", "create", "--name", "bench", "--scopes", "ingest,read",
                                "--file", str(self.tokens)], check=True, capture_output=True, text=True,
                               env=self.env).stdout
        self.token = token.strip()
        self.log = open(self.workdir / "server.log", "ab")
        self.proc = self._popen([*self.cli, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--db",
                                 str(self.db), "--tokens-file", str(self.tokens), "--log-level", "WARNING",
                                 *self.args])
        wait_ready(self.proc, self.port, self.workdir / "server.log")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def status_number(pid: int, field: str = "VmRSS") -> int:
    """A number of /proc/PID/status: VmRSS and VmHWM in KiB, Threads."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat), all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    """Minor page faults of a process so far (/proc/PID/stat), all threads: memory touched for the first time, or
    again after it was given back to the OS."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def idle_seconds() -> float:
    """Seconds the machine's cores have been idle so far, all cores together (/proc/stat: idle + iowait): over a
    run, what its processes left unused."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def _bodies(lines: list[str], batch: int) -> list[bytes]:
    return ["\n".join(lines[i:i + batch]).encode() for i in range(0, len(lines), batch)]


def post_all(url: str, headers: dict[str, str], bodies: list[bytes], clients: int,
             max_wait: float = 60.0) -> dict:
    """Closed loop: `clients` threads post the bodies back to back, each body until it is not answered 429
    (waiting min(Retry-After, max_wait) in between). Returns events acknowledged, answers by status, errors."""
    nxt, lock = [0], threading.Lock()
    acked, status, errors = [0], collections.Counter(), []

    def client() -> None:
        with httpx.Client(timeout=300) as c:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(bodies):
                    return
                while True:
                    r = c.post(url, content=bodies[i], headers=headers)
                    with lock:
                        status[r.status_code] += 1
                    if r.status_code == 429:
                        time.sleep(min(float(r.headers.get("Retry-After", "1")), max_wait))
                        continue
                    if r.status_code >= 300 and r.status_code != 422:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                        return
                    doc = r.json()
                    with lock:
                        acked[0] += doc["accepted"] + doc["duplicates"]
                    break

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"HTTP errors: {errors[:3]}")
    return {"acked": acked[0], "status": dict(status)}


def _server(workdir: Path, code: Path | None, env: dict[str, str] | None = None) -> Server:
    """A collector of this checkout, or of the checkout `code` (`_cli`), with `env` added to this process's
    environment."""
    cmd, extra = _cli(code)
    return Server(workdir, python=cmd, env=dict(os.environ, **(env or {}), **extra))


def http_run(lines: list[str], workdir: Path, clients: int = 4, batch: int = 1000, code: Path | None = None,
             env: dict[str, str] | None = None, prefer: str | None = None) -> dict:
    """Closed loop: `clients` threads post batches back to back; events/s acknowledged (2xx after commit).
    `code`: run the collector of that checkout (first on PYTHONPATH, same virtualenv) instead of this one; `env`:
    variables added to its environment; `prefer`: the clients' `Prefer` header (`return=minimal`: answers that
    list only the events not accepted, as the shipped clients ask)."""
    bodies = _bodies(lines, batch)
    with _server(workdir, code, env) as srv:
        url = f"http://127.0.0.1:{srv.port}/v1/events"
        headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/x-ndjson",
                   **({"Prefer": prefer} if prefer else {})}
        # Warm-up (connection, first transaction), not counted.
        warm = httpx.post(url, content=b"\n".join(x.encode() for x in lines[:10]), headers=headers, timeout=60)
        warm.raise_for_status()
        cpu0, idle0, faults0 = cpu_seconds(srv.pid), idle_seconds(), minor_faults(srv.pid)
        t0 = time.perf_counter()
        with RefreshWatch(srv.port, srv.token) as refresher:
            with WalWatch(srv.db) as wal:
                res = post_all(url, headers, bodies, clients)
            seconds = time.perf_counter() - t0
            ended = time.time()
            cpu, idle = cpu_seconds(srv.pid) - cpu0, idle_seconds() - idle0
            faults, threads = minor_faults(srv.pid) - faults0, status_number(srv.pid, "Threads")
            settled_seconds, settled_cpu = settled(srv, t0, cpu0)
            peak = status_number(srv.pid, "VmHWM")
            time.sleep(2.0)  # a pass the run began ends (at 200,000 events, passes took 0.2-3.5 s)
        passes = refresher.during(ended)
    acked, retries = res["acked"], res["status"].get(429, 0)
    return {"events": acked, "seconds": seconds, "eps": acked / seconds, "retries_429": retries,
            "checkpoints": len(wal.checkpoints), "refreshes": len(passes),
            "deriver_wait": refresher.deriver_wait(), "lag_max": max(refresher.lags, default=None),
            "commits": refresher.writer_transactions("commit"), "derives": refresher.writer_transactions("derive"),
            "refresh_seconds": sum(d for _, d in passes), "peak_rss_mib": peak / 1024,
            "server_cpu_us": 1e6 * cpu / max(1, acked), "server_cores": cpu / seconds, "idle_cores": idle / seconds,
            "faults_per_event": faults / max(1, acked), "threads": threads,
            "eps_settled": acked / settled_seconds, "server_cpu_us_settled": 1e6 * settled_cpu / max(1, acked)}


def _each(runs: list[dict], key: str) -> str:
    return ", ".join(f"{r[key]:,.0f}" for r in runs)


def _settled_text(r: dict) -> str:
    return (f"derived tables caught up: {r['eps_settled']:,.0f}/s, {r['server_cpu_us_settled']:.1f} CPU-µs per "
            "event")


def settled(srv: Server, t0: float, cpu0: float) -> tuple[float, float]:
    """Seconds from `t0` and the collector's CPU-s from `cpu0` until the derived tables hold every acknowledged
    event: the collector answers before its deriver folds the events (the derived tables after the
    acknowledgement), so when the last answer arrives up to a pass's worth of derive work is still to come. A read
    waits for it (collector/ingest/store.py: `Store.cursor`), so its answer marks the point."""
    r = httpx.get(f"http://127.0.0.1:{srv.port}/v1/runs", params={"limit": 1},
                  headers={"Authorization": f"Bearer {srv.token}"}, timeout=300)
    r.raise_for_status()
    return time.perf_counter() - t0, cpu_seconds(srv.pid) - cpu0


def latency_run(lines: list[str], workdir: Path, eps: float, clients: int = 4, batch: int = 1000,
                code: Path | None = None, env: dict[str, str] | None = None) -> dict:
    """Open loop at `eps` events/s: request k is due at t0 + k / rate whatever the answers before it, and its
    latency runs from when it was due to its 2xx (so queueing behind a slow request counts). `timeline`: each
    request's (k, when it was due in perf_counter seconds, latency)."""
    bodies = _bodies(lines, batch)
    interval = batch / eps
    with _server(workdir, code, env) as srv:
        url = f"http://127.0.0.1:{srv.port}/v1/events"
        headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/x-ndjson"}
        httpx.post(url, content=lines[0].encode(), headers=headers, timeout=60).raise_for_status()
        timeline: list[tuple[int, float, float]] = []
        lock = threading.Lock()
        t0 = time.perf_counter() + 0.5

        def client(k0: int) -> None:
            with httpx.Client(timeout=120) as c:
                for k in range(k0, len(bodies), clients):
                    due = t0 + k * interval
                    wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    r = c.post(url, content=bodies[k], headers=headers)
                    done = time.perf_counter()
                    if r.status_code != 200:
                        raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
                    with lock:
                        timeline.append((k, due, done - due))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        with WalWatch(srv.db) as wal:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        seconds = time.perf_counter() - t0
    lat = sorted(x[2] for x in timeline)
    return {"offered_eps": eps, "achieved_eps": len(lines) / seconds, "requests": len(lat),
            "checkpoints": len(wal.checkpoints),
            "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "max_ms": 1000 * lat[-1], "timeline": sorted(timeline)}


def saturation_run(lines: list[str], workdir: Path, clients: int = 16, batch: int = 1000,
                   queue_events: int = 8000, memory_limit: str | None = None) -> dict:
    """More clients than the collector can serve, a write queue of `queue_events`: it must answer 429 and hold
    its memory flat. Clients retry a 429 after min(Retry-After, 0.2 s) to keep the pressure on; the collector's
    RSS is sampled every 0.25 s, and its SQL-backed gauges' age every second (bench/watch.py: `RefreshWatch`;
    before the first pass the collector exposes 0, never, and the age is then the time since sampling began).
    `memory_limit`: OBSERVATORY_DUCKDB_MEMORY_LIMIT (none: DuckDB's default)."""
    bodies = _bodies(lines, batch)
    env = dict(os.environ, OBSERVATORY_MAX_QUEUE_EVENTS=str(queue_events))
    env.pop("OBSERVATORY_DUCKDB_MEMORY_LIMIT", None)
    if memory_limit:
        env["OBSERVATORY_DUCKDB_MEMORY_LIMIT"] = memory_limit
    with Server(workdir, env=env) as srv:
        url = f"http://127.0.0.1:{srv.port}/v1/events"
        headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/x-ndjson"}
        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def sampler() -> None:
            while not done.is_set():
                samples.append((time.perf_counter(), status_number(srv.pid)))
                time.sleep(0.25)

        mon = threading.Thread(target=sampler)
        mon.start()
        t0 = time.perf_counter()
        with RefreshWatch(srv.port, srv.token, every=1.0) as refresher:
            res = post_all(url, headers, bodies, clients, max_wait=0.2)
        seconds = time.perf_counter() - t0
        done.set()
        mon.join()
        peak = status_number(srv.pid, "VmHWM")
    counts = res["status"]
    rss = [kib for _, kib in samples]
    q = len(rss) // 4 or 1
    half = len(refresher.memory) // 2
    return {"events": len(lines), "clients": clients, "queue_events": queue_events, "memory_limit": memory_limit,
            "seconds": seconds, "eps": len(lines) / seconds,
            "status": dict(counts), "peak_rss_mib": peak / 1024, "max_gauge_age_s": max(refresher.ages, default=None),
            "rss_mib_by_quarter": [round(max(rss[i * q:(i + 1) * q] or [0]) / 1024, 1) for i in range(4)],
            "memory_by_half": [memory_split(refresher.memory[:half]), memory_split(refresher.memory[half:])],
            "outside_duckdb_mib_by_half": [outside_duckdb(refresher.memory[:half]),
                                           outside_duckdb(refresher.memory[half:])]}


def outside_duckdb(reads: list[dict[str, float]]) -> float | None:
    """The highest RSS outside DuckDB's allocator among `reads`, in MiB: what the collector itself holds (DuckDB's
    part grows with what it caches until its memory limit, by design). None: not exposed."""
    got = [r["rss"] - r["duckdb_in_use"] - r["duckdb_free"] for r in reads if "duckdb_in_use" in r and "rss" in r]
    return round(max(got) / 2 ** 20) if got else None


def memory_split(reads: list[dict[str, float]]) -> dict[str, float] | None:
    """The collector's memory at the highest of `reads` (bench/watch.py: RefreshWatch.memory), in MiB: its RSS; the
    resident pages by kind; of the anonymous ones, DuckDB's allocator (in use, and resident but free) and glibc's
    heap in use (Arrow's pool among it), and the rest: glibc's free chunks as far as they are resident (`malloc_free`
    bounds them from above; the kernel cannot say which are), Python's object arenas, polars' allocator and the
    threads' stacks. DuckDB's allocator in use is its buffer manager's memory (`duckdb_memory()`, within 3% when
    read at the same moment: docs/performance.md, forty-sixth round), which the collector's own gauge
    (`observatory_duckdb_memory_bytes`) has only as of the refresher's last pass. None: nothing read (a collector
    without these gauges)."""
    reads = [r for r in reads if "rss" in r and "anonymous" in r and "malloc_in_use" in r]
    if not reads:
        return None
    top = max(reads, key=lambda r: r["rss"])
    heaps = ("duckdb_in_use", "duckdb_free", "malloc_in_use")
    out = {k: top.get(k, 0.0) for k in ("rss", "file", "anonymous", *heaps, "malloc_free", "arrow")}
    out["rest"] = top["anonymous"] - sum(out[k] for k in heaps)
    return {k: round(v / 2 ** 20) for k, v in out.items()}


def _memory_text(m: dict | None) -> str:
    """A memory split as the report words it."""
    if m is None:
        return "(not exposed)"
    return (f"RSS {m['rss']} MiB = file {m['file']} + anonymous {m['anonymous']}: DuckDB's allocator "
            f"{m['duckdb_in_use']} in use + {m['duckdb_free']} free, glibc's heap {m['malloc_in_use']} in use (Arrow "
            f"{m['arrow']}), the rest "
            f"{m['rest']} (glibc's free chunks, at most {m['malloc_free']}, Python's arenas, polars, stacks)")


# ---------------------------------------------------------------------------------------------------------
# (b) bulk CLI, (c) raw insert
# ---------------------------------------------------------------------------------------------------------


def _cli(code: Path | None) -> tuple[list[str], dict[str, str]]:
    """The `observatory` command of this checkout, or of the checkout `code` (first on PYTHONPATH, same virtualenv),
    and what it adds to the environment."""
    if code is None:
        return [OBSERVATORY], {}
    return ([sys.executable, "-c", "import sys; from collector.cli import app; sys.argv[0] = 'observatory'; app()"],
            {"PYTHONPATH": str(code)})


def cli_run(path: Path, workdir: Path, chunk_rows: int | None, code: Path | None = None) -> dict:
    """`observatory ingest --db` of `path` on a fresh database: its wall clock (process start to exit), its own
    timer, and its CPU and minor page faults (the child's rusage; the bench runs one command at a time)."""
    db = workdir / f"bulk-{path.suffix[1:]}.duckdb"
    for p in workdir.glob(db.name + "*"):
        p.unlink()
    cmd, extra = _cli(code)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    size = ["--batch-size", str(chunk_rows)] if chunk_rows else []
    proc = subprocess.run([*cmd, "ingest", str(path), "--db", str(db), "--no-progress", *size],
                          capture_output=True, text=True, env=dict(os.environ, **extra), cwd=workdir)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"ingest failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"events": summary["events"], "accepted": summary["accepted"], "seconds": seconds,
            "eps": summary["events"] / seconds, "inner_seconds": summary["seconds"], "db": db,
            "cpu_s": cpu, "sys_s": after.ru_stime - before.ru_stime,
            "faults": after.ru_minflt - before.ru_minflt}


def stored_table(db: Path) -> pa.Table:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(f"SELECT {STORED_COLUMNS} FROM events").to_arrow_table()
    finally:
        con.close()


def raw_insert(table: pa.Table, workdir: Path, keyed: bool = True) -> dict:
    """The same rows, already valid, into a copy of `events` in one statement and committed: with a primary key on
    (source, id) (`keyed`: the issue's anchor, the table as it was until migration 0217, whose dedup is now the
    writer's index, ingest/keys.py), or without it (the append-only physical limit, as `events` now is)."""
    db = workdir / "raw.duckdb"
    for p in workdir.glob("raw.duckdb*"):
        p.unlink()
    con = dbmod.connect(db)
    try:
        target = "events_keyed" if keyed else "events_nokey"
        # A copy as `events` is defined, its columns' compression included (`data` ZSTD since migration 0218): a
        # CREATE TABLE AS would take DuckDB's default compression and make the anchor slower than the table is.
        ddl = con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = 'events'").fetchall()[0][0]
        assert ddl.startswith("CREATE TABLE events("), ddl
        con.execute(ddl.replace("CREATE TABLE events(", f"CREATE TABLE {target}(", 1))
        if keyed:
            con.execute(f"ALTER TABLE {target} ADD PRIMARY KEY (source, id)")
        con.register("t", table)
        now = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        con.execute(f"INSERT INTO {target} ({STORED_COLUMNS}, ingested_at, batch_id) "
                    f"SELECT {STORED_COLUMNS}, ?, 1 FROM t", [now])
        con.execute("COMMIT")
        seconds = time.perf_counter() - t0
    finally:
        con.close()
    return {"events": table.num_rows, "seconds": seconds, "eps": table.num_rows / seconds}


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


def process_cpu() -> float:
    """CPU seconds of this process, every thread (DuckDB's included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def head_lines(ndjson: Path, n: int) -> "pa.Array":
    """The first n lines of an NDJSON file, split as the collector splits a body (an Arrow array of lines)."""
    from collector.contract import vectorized as bulk

    buf = bytearray()
    with open(ndjson, "rb") as fh:
        for i, line in enumerate(fh):
            if i >= n:
                break
            buf += line
    return bulk.split_lines(bytes(buf))[0]


def breakdown(ndjson: Path, workdir: Path, n: int = 200_000) -> dict:
    """CPU-µs per event of validation and of the writer transaction, measured alone in this process (one thread
    each), at the HTTP batch size (1,000 events, group commits of 4) and at the bulk chunk size (100,000)."""
    from concurrent.futures import Future

    from collector.contract import vectorized as bulk
    from collector.ingest.files import _open_store
    from collector.ingest.writer import _Write

    cpu = process_cpu
    lines = head_lines(ndjson, n)
    out: dict = {"events": len(lines)}
    for label, chunk, group in (("http", 1000, 4), ("bulk", dbmod.ROW_GROUP_ROWS, 1)):
        v = bulk.BulkValidator()
        v.validate_lines(lines.slice(0, 1000))  # compile once
        c0 = cpu()
        results = [v.validate_lines(lines.slice(k, chunk), offset=k) for k in range(0, len(lines), chunk)]
        c_val = cpu() - c0
        v.close()
        db = workdir / f"breakdown-{label}.duckdb"
        store = _open_store(db, max(chunk * group, 1))
        try:
            c0 = cpu()
            for k in range(0, len(results), group):
                store.writer._transaction([_Write(r.table, r.rejections, "file", None, Future(), r.table.num_rows)
                                           for r in results[k:k + group]])
            c_write = cpu() - c0
        finally:
            store.close()
        out[label] = {"chunk": chunk, "group": group, "validate_us": 1e6 * c_val / len(lines),
                      "write_us": 1e6 * c_write / len(lines),
                      "fast_share": sum(r.fast for r in results) / len(lines)}
    return out


def breakdown_only(ndjson: Path, data_dir: Path, n: int, reps: int) -> None:
    """`--breakdown-only`: `breakdown()` `reps` times (fresh databases), each figure's median and spread."""
    runs = []
    for rep in range(reps):
        bw = Path(tempfile.mkdtemp(prefix="bench-breakdown-", dir=data_dir))
        try:
            runs.append(breakdown(ndjson, bw, n))
        finally:
            shutil.rmtree(bw, ignore_errors=True)
        print(f"rep {rep + 1}: " + ", ".join(f"{s} validate {runs[-1][s]['validate_us']:.1f} / write "
                                             f"{runs[-1][s]['write_us']:.1f}" for s in ("http", "bulk")), flush=True)
    for shape in ("http", "bulk"):
        for key in ("validate_us", "write_us"):
            vals = [r[shape][key] for r in runs]
            print(f"{shape:4s} {key:11s} median {statistics.median(vals):6.1f} CPU-us/event  "
                  f"(runs {', '.join(f'{v:.1f}' for v in vals)})")
    print(f"fast share {runs[-1]['bulk']['fast_share']:.4f}, events {runs[-1]['events']:,}")


def _alternated(ndjson: Path, data_dir: Path, n: int, reps: int,
                configs: dict[str, tuple[Path | None, dict[str, str] | None]]) -> tuple[list[str], dict[str, list[dict]]]:
    """(a) `reps` times for each configuration (label -> (checkout or None for this one, extra environment)),
    alternated: a same-run comparison on a noisy machine. Returns the lines posted and the runs by label."""
    with open(ndjson) as fh:
        lines = [line.rstrip("\n") for _, line in zip(range(n), fh)]
    runs: dict[str, list[dict]] = {label: [] for label in configs}
    order = list(enumerate(configs.items()))
    for rep in range(reps):  # ABBA: each configuration goes first in every other repetition
        for k, (label, (code, env)) in (order if rep % 2 == 0 else order[::-1]):
            with tempfile.TemporaryDirectory(prefix="bench-http-ab-", dir=data_dir) as d:
                r = http_run([x.replace('"id":"', f'"id":"c{k}-{rep}-', 1) for x in lines], Path(d), code=code, env=env)
            runs[label].append(r)
            print(f"(a) {label} rep {rep + 1}: {r['events']:,} events in {r['seconds']:.1f} s = {r['eps']:,.0f}/s, "
                  f"checkpoints {r['checkpoints']}, refresher passes {r['refreshes']} ({r['refresh_seconds']:.1f} s), "
                  f"collector {r['server_cpu_us']:.1f} CPU-µs per event, "
                  f"{r['faults_per_event']:.2f} page faults per event, {r['threads']} threads, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB; "
                  f"{_settled_text(r)}", flush=True)
    for label, rs in runs.items():
        print(f"(a) {label}: median {med(rs):,.0f}/s ({_each(rs, 'eps')}), collector CPU-µs per event "
              f"{med(rs, 'server_cpu_us'):.1f}, page faults per event {med(rs, 'faults_per_event'):.2f}, "
              f"peak RSS {med(rs, 'peak_rss_mib'):.0f} MiB; derived tables caught "
              f"up: {med(rs, 'eps_settled'):,.0f}/s ({_each(rs, 'eps_settled')}), "
              f"{med(rs, 'server_cpu_us_settled'):.1f} CPU-µs per event")
    return lines, runs


def _latencies(lines: list[str], data_dir: Path, reps: int,
               configs: dict[str, tuple[Path | None, dict[str, str] | None]], eps: float) -> dict[str, list[dict]]:
    """The latency of each configuration (as `_alternated`'s) at one offered rate, `reps` times, alternated, each
    run on a fresh database with fresh ids (a run holds a checkpoint or two, so its p99 is one checkpoint's stall:
    a single run read 607-1,086 ms at one load). Returns the runs by label, their timelines left out
    (bench/latency_timeline.py prints one)."""
    lat: dict[str, list[dict]] = {label: [] for label in configs}
    order = list(enumerate(configs.items()))
    for rep in range(reps):  # ABBA, as `_alternated`
        for k, (label, (code, env)) in (order if rep % 2 == 0 else order[::-1]):
            with tempfile.TemporaryDirectory(prefix="bench-http-lat-", dir=data_dir) as d:
                r = latency_run([x.replace('"id":"', f'"id":"l{k}-{rep}-', 1) for x in lines],
                                Path(d), eps, code=code, env=env)
            r.pop("timeline")
            lat[label].append(r)
            print(f"latency {label} rep {rep + 1} at {eps:,.0f} events/s offered: p50 {r['p50_ms']:.0f} ms, "
                  f"p99 {r['p99_ms']:.0f} ms, checkpoints {r['checkpoints']}", flush=True)
    for label, rs in lat.items():
        print(f"latency {label} at {eps:,.0f} events/s offered (medians): p50 {med(rs, 'p50_ms'):.0f} ms "
              f"({_each(rs, 'p50_ms')}), p99 {med(rs, 'p99_ms'):.0f} ms ({_each(rs, 'p99_ms')})")
    return lat


def http_before(ndjson: Path, data_dir: Path, n: int, reps: int, before: Path) -> None:
    """(a) for this checkout and `before`, alternated, then the latency of both at one offered rate: half the code
    before's median throughput."""
    configs = {"before": (before, None), "after": (None, None)}
    lines, runs = _alternated(ndjson, data_dir, n, reps, configs)
    _latencies(lines[:200_000], data_dir, reps, configs, med(runs["before"]) / 2)


def http_envs(ndjson: Path, data_dir: Path, n: int, reps: int, envs: dict[str, dict[str, str]]) -> None:
    """(a) for this checkout's collector under each environment, alternated (e.g. the allocator settings one at a
    time: docs/performance.md, twelfth round), then the latency of each at one offered rate: half the first
    environment's median throughput (a trade-off of throughput against tail latency, such as
    OBSERVATORY_DUCKDB_CHECKPOINT_THRESHOLD, is then read at one load)."""
    configs = {label: (None, env) for label, env in envs.items()}
    lines, runs = _alternated(ndjson, data_dir, n, reps, configs)
    _latencies(lines[:200_000], data_dir, reps, configs, med(next(iter(runs.values()))) / 2)


def bulk_before(files: list[Path], data_dir: Path, reps: int, before: Path) -> None:
    """(b) for this checkout and `before`, alternated per file, `reps` times each, on fresh databases: wall clock,
    CPU and minor page faults of the command; medians, and in how many pairs this checkout was faster."""
    for path in files:
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        with tempfile.TemporaryDirectory(prefix="bench-bulk-ab-", dir=data_dir) as d:
            for rep in range(reps):
                for label, code in (("before", before), ("after", None)):
                    r = cli_run(path, Path(d), None, code)
                    runs[label].append(r)
                    print(f"(b) {path.name} {label} rep {rep + 1}: {r['seconds']:.2f} s ({r['eps']:,.0f} events/s), "
                          f"CPU {r['cpu_s']:.2f} s (system {r['sys_s']:.2f}), {r['faults']:,} page faults",
                          flush=True)
        faster = sum(a["seconds"] < b["seconds"] for a, b in zip(runs["after"], runs["before"]))
        for label, rs in runs.items():
            print(f"(b) {path.name} {label}: median {med(rs, 'seconds'):.2f} s ({_each_f(rs, 'seconds')}), "
                  f"{med(rs):,.0f} events/s, CPU {med(rs, 'cpu_s'):.2f} s ({_each_f(rs, 'cpu_s')}), system "
                  f"{med(rs, 'sys_s'):.2f} s, page faults {med(rs, 'faults'):,.0f}")
        print(f"(b) {path.name}: after faster in {faster} of {reps} pairs")


def _env_arg(text: str) -> tuple[str, dict[str, str]]:
    """`LABEL` or `LABEL:NAME=VALUE,NAME=VALUE` -> (label, environment)."""
    label, _, rest = text.partition(":")
    return label, dict(kv.split("=", 1) for kv in rest.split(",") if kv)


def med(runs: list[dict], key: str = "eps") -> float:
    return statistics.median(r[key] for r in runs)


def render(m: dict, n: int, n_http: int, res: dict, reps: int, cmd: str, bd: dict, lat: list[dict],
           sat: list[dict]) -> str:
    c = med(res["raw"])
    rows = [
        ("(a) HTTP `POST /v1/events`, NDJSON batches of 1,000, 4 concurrent clients, auth on", "≥ 0.25", res["http"],
         n_http),
        ("(a′) the same, the clients sending `Prefer: return=minimal` (answers list only the events not accepted, "
         "as the shipped clients ask)", "–", res["http_minimal"], n_http),
        ("(b) `observatory ingest --db` of a Parquet file", "≥ 0.5", res["parquet"], n),
        ("(b) `observatory ingest --db` of an NDJSON file", "≥ 0.5", res["ndjson"], n),
        ("(c) limit: raw insert of the same events as one Arrow table into a copy of `events` with a primary key "
         "on (source, id)", "1.00",
         res["raw"], n),
        ("(d) physical limit: the same insert into a copy of `events` without the key", "–", res["raw_nokey"], n),
    ]
    out = [
        "Measured by `bench/bench_ingest.py`.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu'] or 'unknown CPU'}), {m['memory_gib']} GiB, shared and noisy "
        f"(load average at start {m['load_avg'][0]}); Python {m['python']}, DuckDB {m['duckdb']}, "
        f"polars {m['polars']}.",
        f"Command: `{cmd}`. Medians of {reps} repetitions, each on a fresh database, all measurements of a "
        "repetition taken together so that the ratios compare like with like. Events: the vectorised generator in "
        "bench/gen_events.py (run lifecycles with hashes and per-cell timings, kernel sessions, probes, checks, "
        "artifacts, registry and security events, 0.5% of failures carrying a planted secret).",
        "",
        "| measurement | events | target ratio | events/s (median) | runs | ratio to (c) |",
        "|---|---|---|---|---|---|",
    ]
    for label, target, runs, count in rows:
        eps = med(runs)
        out.append(f"| {label} | {count:,} | {target} | **{eps:,.0f}** | {_each(runs, 'eps')} | {eps / c:.2f} |")
    bp, bn = res["parquet"], res["ndjson"]
    h, b = bd["http"], bd["bulk"]
    out += [
        "",
        f"Request latency at half the maximum HTTP throughput (open loop, {lat[0]['offered_eps']:,.0f} events/s "
        f"offered as 1,000-event requests from 4 clients, {lat[0]['requests']} requests per run, latency from when a "
        f"request was due to its 2xx; medians of {len(lat)} runs, each on a fresh database): **p50 "
        f"{med(lat, 'p50_ms'):.0f} ms, p99 {med(lat, 'p99_ms'):.0f} ms** (runs: p50 {_each(lat, 'p50_ms')}; p99 "
        f"{_each(lat, 'p99_ms')}; achieved {med(lat, 'achieved_eps'):,.0f} events/s; checkpoints per run "
        f"{_each(lat, 'checkpoints')}: the p99 is a checkpoint's stall, nineteenth and thirtieth rounds below).",
        "",
        f"Saturation ({sat[0]['events']:,} events, {sat[0]['clients']} clients posting 1,000-event requests back to "
        f"back, write queue {sat[0]['queue_events']:,} events, a 429 retried after at most 0.2 s), "
        + "; ".join(_saturation(r) for r in sat)
        + f". Peak RSS after (a): {med(res['http'], 'peak_rss_mib'):.0f} MiB. DuckDB caches what it read or wrote up "
        "to its memory limit (80% of the host's memory unless OBSERVATORY_DUCKDB_MEMORY_LIMIT says otherwise), so "
        "without a limit the RSS follows the stored history (docs/operations.md).",
        "",
        "Notes:",
        f"- (b) is the wall clock of the whole command (process start, imports and migrations included); the "
        f"command's own timer says {med(bp, 'inner_seconds'):.1f} s (Parquet) and {med(bn, 'inner_seconds'):.1f} s "
        "(NDJSON) at the median.",
        "- (a) and (b) do everything per event: the contract (collector/contract/vectorized: msgspec Structs, then "
        "generated checks, rows they cannot vouch for re-checked by pydantic), secret redaction, dedup on (source, id), derived tables "
        "(runs, kernel sessions, notebooks, schedules, reproducibility baselines) from typed columns, persisted "
        "counters, all in the writer's transactions; (a) answers once the events are committed, and the writer "
        "hands them to the deriver, which folds them into the derived tables in a transaction of its own while "
        "the writer commits the next ones, and every read waits for that (docs/reliability.md); (b) commits "
        "each chunk's events and the deriver folds them the same way, up to 6 chunks behind, and the command "
        "waits for it before it reports; (c) and (d) only "
        "insert already-valid rows. (d) - (c) is what DuckDB's key on (source, id) costs at the storage layer; "
        "since migration 0217 `events` has none, and (a) and (b) pay instead the writer's index of the stored "
        "keys (dedup across the whole history, across restarts, exactly once under SIGKILL: "
        "collector/ingest/keys.py, bench/bench_key_index.py).",
        f"- CPU per event measured alone in process ({bd['events']:,} events): at the HTTP shape (1,000-event "
        f"batches, group commits of 4) validation {h['validate_us']:.1f} µs and writer {h['write_us']:.1f} µs "
        "(events and derived rows in one transaction each); "
        f"at the bulk shape ({dbmod.ROW_GROUP_ROWS:,}-event chunks, the command's) validation "
        f"{b['validate_us']:.1f} µs and writer {b['write_us']:.1f} µs; {100 * b['fast_share']:.2f}% of events decided by the generated fast "
        "path. "
        "Validation and the writer run at once (two threads; validation holds the GIL, DuckDB releases it).",
        "- (a) and (a′) count an event when its answer arrives, after its commit and before the deriver has folded "
        "it into the derived tables (the collector's design: docs/reliability.md). Timed instead until a read (which "
        "waits for the deriver) answers after the last request, so that every acknowledged event's derive work is "
        f"in: (a) **{med(res['http'], 'eps_settled'):,.0f}** events/s "
        f"({_each(res['http'], 'eps_settled')}; "
        f"{med(res['http'], 'eps_settled') / med(res['raw']):.2f} of (c)), "
        f"{med(res['http'], 'server_cpu_us_settled'):.1f} collector CPU-µs per event; (a′) "
        f"{med(res['http_minimal'], 'eps_settled'):,.0f} "
        f"({med(res['http_minimal'], 'eps_settled') / med(res['raw']):.2f}), "
        f"{med(res['http_minimal'], 'server_cpu_us_settled'):.1f} CPU-µs per event.",
        _during_note(res["http"], res["http_minimal"]),
        f"- 429 retries in (a) and (a′): {sum(r['retries_429'] for r in res['http'] + res['http_minimal'])} over "
        "all runs. The collector's CPU per event (all its threads, from /proc): (a) "
        f"{med(res['http'], 'server_cpu_us'):.1f} µs, (a′) {med(res['http_minimal'], 'server_cpu_us'):.1f} µs; (a) "
        "and (a′) of a repetition run back to back, in alternating order. The cores the collector kept busy (its CPU "
        f"over the run's wall clock): (a) {_each_f(res['http'], 'server_cores')}, (a′) "
        f"{_each_f(res['http_minimal'], 'server_cores')}; the machine's cores left idle meanwhile (/proc/stat): (a) "
        f"{_each_f(res['http'], 'idle_cores')}, (a′) {_each_f(res['http_minimal'], 'idle_cores')}, of "
        f"{m['nproc']}. A core left idle while the clients wait is the requests' lock-step (validated, committed "
        "as one group, answered), not a lack of CPU (twenty-third and thirty-sixth rounds).",
    ]
    return "\n".join(out) + "\n"


def _during_note(http: list[dict], minimal: list[dict]) -> str:
    """What else the collector did during the timed HTTP runs: checkpoints and the gauge
    refresher's passes (bench/watch.py), and what the runs with and without either made."""
    both = http + minimal
    text = (f"- During the timed HTTP runs: checkpoints (the collector's WAL emptied, sampled every 50 ms) (a) "
            f"{_each(http, 'checkpoints')}, (a′) {_each(minimal, 'checkpoints')}; gauge refresher passes begun "
            f"(/metrics read every 0.5 s until 2 s after the run; each folds what was ingested since the last into "
            f"the SLI tables) (a) "
            f"{_each(http, 'refreshes')}, (a′) {_each(minimal, 'refreshes')}, "
            f"{sum(r['refresh_seconds'] for r in both):.1f} s of passes in all. A run ends near the WAL's threshold "
            "(~220,000 events at 128 MiB) and lasts about the refresher's least gap (5 s), so some runs hold one "
            "or the other and some neither.")
    if all(r.get("deriver_wait") is not None for r in both):
        text += (" The writer waited for its deriver (as it does once the deriver is its lag bound behind, the "
                 "largest group commit: 50,000 events by default; ingest/writer.py) "
                 f"(a) {_each_s(http, 'deriver_wait')}, (a′) {_each_s(minimal, 'deriver_wait')}; the deriver's "
                 f"highest lag seen, in events: (a) {_each(http, 'lag_max')}, (a′) {_each(minimal, 'lag_max')}.")
    if all(r.get("commits") is not None and r.get("derives") is not None for r in both):
        text += (" The writer's transactions (observatory_writer_transaction_duration_seconds, until 2 s after the "
                 f"run), count (mean): group commits (a) {_each_tx(http, 'commits')}, (a′) "
                 f"{_each_tx(minimal, 'commits')}; the deriver's passes (a) {_each_tx(http, 'derives')}, (a′) "
                 f"{_each_tx(minimal, 'derives')}.")
    busy = [r for r in both if r["checkpoints"] or r["refreshes"]]
    idle = [r for r in both if not (r["checkpoints"] or r["refreshes"])]
    if not busy:
        text += " None of these runs held either."
    elif idle:
        text += (f" Runs of (a) and (a′) with either: {med(busy):,.0f} events/s and {med(busy, 'server_cpu_us'):.1f} "
                 f"collector CPU-µs per event at the median ({_runs(len(busy))}); with neither: {med(idle):,.0f} and "
                 f"{med(idle, 'server_cpu_us'):.1f} ({_runs(len(idle))}).")
    return text


def _writer_text(r: dict) -> str:
    """The writer's side of one HTTP run, when the collector says it (bench/watch.py: RefreshWatch)."""
    if r.get("commits") is None or r.get("derives") is None or r.get("deriver_wait") is None:
        return ""
    return (f"; group commits {_each_tx([r], 'commits')}, derive passes {_each_tx([r], 'derives')}, the writer "
            f"waited {r['deriver_wait']:.2f} s for the deriver")


def _each_tx(runs: list[dict], key: str) -> str:
    return ", ".join(f"{r[key][0]} ({1000 * r[key][1] / max(1, r[key][0]):.0f} ms)" for r in runs)


def _each_f(runs: list[dict], key: str) -> str:
    return ", ".join(f"{r[key]:.2f}" for r in runs)


def _each_s(runs: list[dict], key: str) -> str:
    return ", ".join(f"{r[key]:.2f} s" for r in runs)


def _runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def write_doc(section: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    block = f"{START}\n{section}{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## Ingest\n\n" + block + "\n"
    DOC.write_text(text)


def _saturation(r: dict) -> str:
    """One saturation run as the report words it."""
    limit = (f"OBSERVATORY_DUCKDB_MEMORY_LIMIT={r['memory_limit']}" if r["memory_limit"]
             else "DuckDB's default memory limit")
    text = (f"with {limit}: answers {r['status']}, {r['eps']:,.0f} events/s committed, collector **peak RSS "
            f"{r['peak_rss_mib']:.0f} MiB**, highest RSS per quarter of the run {r['rss_mib_by_quarter']} MiB "
            f"({_growth(r['rss_mib_by_quarter'])}), SQL-backed gauges at most "
            + (f"{r['max_gauge_age_s']:.0f} s old" if r["max_gauge_age_s"] is not None else "(age not read)"))
    halves = r.get("memory_by_half") or [None, None]
    if None not in halves:
        text += (f"; read from /metrics at its highest in each half: {_memory_text(halves[0])}, then "
                 f"{_memory_text(halves[1])}")
    first, second = r.get("outside_duckdb_mib_by_half") or [None, None]
    if first and second:
        text += (f"; the RSS outside DuckDB's allocator at its highest in each half {first} then {second} MiB "
                 f"({second / first - 1:+.0%})")
    return text


def _growth(quarters: list[float]) -> str:
    """Whether the RSS grows, measured rather than assumed: the highest RSS of the run's second half against the
    highest of its first. Halves, not the last quarter against one before it: the RSS peaks when the gauge refresher
    folds what was ingested since its last pass and when DuckDB checkpoints, a few times a run, and which quarters
    those peaks fall in decides a quarter-to-quarter comparison (the twenty-fifth round's run with a memory limit
    read +34% from the second quarter to the last, a refresh's peak in the last and none in the second, with the
    peaks of the two halves 820 and 824 MiB)."""
    if len(quarters) < 4 or not max(quarters[:2]):
        return "too short to tell"
    first, second = max(quarters[:2]), max(quarters[2:])
    g = second / first - 1
    return f"{g:+.0%} from the first half's highest to the second half's" + ("; level" if g <= 0.05 else "; growing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events for (b), (c) and (d) (default 1M)")
    ap.add_argument("--http-events", type=int, default=None,
                    help="events for (a) (default: min(--events, 200000))")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--saturation-events", type=int, default=1_000_000,
                    help="events posted in the saturation run (default 1000000, at most --events): long enough for "
                         "DuckDB's cache to grow with the stored history when no memory limit bounds it (300,000 "
                         "until the twenty-fifth round)")
    ap.add_argument("--saturation-memory-limit", default="512MB",
                    help="the saturation run again with this OBSERVATORY_DUCKDB_MEMORY_LIMIT (default 512MB; "
                         "`none`: only the run with DuckDB's default)")
    ap.add_argument("--chunk-rows", type=int, default=None,
                    help="(b) with `--batch-size N` (default: the command's own, whole DuckDB row groups)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/performance.md alone")
    ap.add_argument("--breakdown-only", action="store_true",
                    help="only the in-process CPU breakdown (validation and writer CPU-us per event), printed; "
                         "--reps repetitions, medians (the docs are left alone)")
    ap.add_argument("--http-before", type=Path, metavar="CHECKOUT",
                    help="only (a), --reps times alternately with the collector of CHECKOUT (e.g. `git worktree add "
                         "/tmp/before REV`) on the same events; medians printed (the docs are left alone)")
    ap.add_argument("--bulk-before", type=Path, metavar="CHECKOUT",
                    help="only (b), --reps times alternately with the command of CHECKOUT, for the Parquet and the "
                         "NDJSON file; medians printed (the docs are left alone)")
    ap.add_argument("--http-env", type=_env_arg, action="append", metavar="LABEL[:NAME=VALUE,...]",
                    help="only (a), --reps times alternately for each environment given (repeat the option), e.g. "
                         "`--http-env default --http-env untuned:OBSERVATORY_TUNE_ALLOCATORS=false`; medians printed "
                         "(the docs are left alone)")
    args = ap.parse_args()
    # The raw inserts and the in-process breakdown run here: with the allocators the collector's processes set.
    allocators.tune()
    m = machine()
    print(f"machine: {m}", flush=True)
    parquet, ndjson, n = data_files(args.events, args.data_dir, args.seed)
    if args.breakdown_only:
        breakdown_only(ndjson, args.data_dir, min(n, 200_000), args.reps)
        return
    if args.http_env:
        http_envs(ndjson, args.data_dir, min(n, args.http_events or 200_000), args.reps, dict(args.http_env))
        return
    if args.bulk_before:
        bulk_before([parquet, ndjson], args.data_dir, args.reps, args.bulk_before)
        return
    if args.http_before:
        http_before(ndjson, args.data_dir, min(n, args.http_events or 200_000), args.reps, args.http_before)
        return
    n_http = min(n, args.http_events or 200_000)
    res: dict[str, list[dict]] = {"http": [], "http_minimal": [], "parquet": [], "ndjson": [], "raw": [],
                                  "raw_nokey": []}
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.data_dir))
    n_sat = min(n, args.saturation_events)
    sat_lines = []
    with open(ndjson) as fh:
        for line in fh:
            sat_lines.append(line.rstrip("\n"))
            if len(sat_lines) >= max(n_http, n_sat):
                break
    lines = sat_lines[:n_http]
    try:
        table = None
        for rep in range(args.reps):
            for name, path in (("parquet", parquet), ("ndjson", ndjson)):
                r = cli_run(path, work, args.chunk_rows)
                res[name].append(r)
                print(f"(b) {name:7s} rep {rep + 1}: {r['events']:,} events in {r['seconds']:.1f} s = "
                      f"{r['eps']:,.0f}/s (accepted {r['accepted']:,})", flush=True)
                if table is None:
                    table = stored_table(r["db"])
                r["db"].unlink(missing_ok=True)
                Path(str(r["db"]) + ".wal").unlink(missing_ok=True)
            assert table is not None
            for key, keyed in (("raw", True), ("raw_nokey", False)):
                r = raw_insert(table, work, keyed)
                res[key].append(r)
                print(f"({'c' if keyed else 'd'}) {key:9s} rep {rep + 1}: {r['events']:,} rows in {r['seconds']:.2f} s"
                      f" = {r['eps']:,.0f}/s", flush=True)
            # HTTP events: the first n_http lines of the NDJSON file, with fresh ids per repetition.
            # Both answers, in alternating order (the machine drifts within a repetition too).
            answers = [("http", None), ("http_minimal", "return=minimal")]
            for key, prefer in answers if rep % 2 == 0 else answers[::-1]:
                rep_lines = [x.replace('"id":"', f'"id":"h{rep}{key[-1]}-', 1) for x in lines]
                hw = work / f"{key}{rep}"
                hw.mkdir()
                r = http_run(rep_lines, hw, prefer=prefer)
                res[key].append(r)
                print(f"(a) {key:12s} rep {rep + 1}: {r['events']:,} events in {r['seconds']:.1f} s = "
                      f"{r['eps']:,.0f}/s (429 retries {r['retries_429']}, checkpoints {r['checkpoints']}, "
                      f"refresher passes {r['refreshes']} ({r['refresh_seconds']:.1f} s), "
                      f"peak RSS {r['peak_rss_mib']:.0f} MiB, "
                      f"collector {r['server_cpu_us']:.1f} CPU-µs per event, {r['server_cores']:.2f} cores busy, "
                      f"{r['idle_cores']:.2f} idle on the machine; {_settled_text(r)}{_writer_text(r)})",
                      flush=True)
                shutil.rmtree(hw, ignore_errors=True)
        del table
        half = med(res["http"]) / 2
        lat = _latencies(lines[:max(20_000, int(half * 30))], work, args.reps, {"(a)": (None, None)}, half)["(a)"]
        sw = work / "saturation"
        sw.mkdir()
        sat = []
        for k, limit in enumerate([None] + ([] if args.saturation_memory_limit == "none"
                                            else [args.saturation_memory_limit])):
            (sw / str(k)).mkdir()
            sat.append(saturation_run([x.replace('"id":"', '"id":"sat-', 1) for x in sat_lines[:n_sat]], sw / str(k),
                                      memory_limit=limit))
            print(f"saturation: {sat[-1]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bw = Path(tempfile.mkdtemp(prefix="bench-breakdown-", dir=args.data_dir))
    try:
        bd = breakdown(ndjson, bw)
    finally:
        shutil.rmtree(bw, ignore_errors=True)
    print(f"breakdown: {bd}", flush=True)
    cmd = "python bench/bench_ingest.py" + ("" if args.events == 1_000_000 else f" --events {args.events}") + \
        ("" if args.http_events is None else f" --http-events {args.http_events}") + \
        ("" if args.reps == 3 else f" --reps {args.reps}") + \
        ("" if args.saturation_events == 1_000_000 else f" --saturation-events {args.saturation_events}") + \
        ("" if args.saturation_memory_limit == "512MB"
         else f" --saturation-memory-limit {args.saturation_memory_limit}")
    section = render(m, n, n_http, res, args.reps, cmd, bd, lat, sat)
    (args.data_dir / "last_ingest.json").write_text(json.dumps(
        {"machine": m, "events": n, "http_events": n_http, "reps": args.reps, "cmd": cmd, "breakdown": bd,
         "latency": lat, "saturation": sat,
         "results": {k: [{x: y for x, y in r.items() if x != "db"} for r in v] for k, v in res.items()}}, indent=1))
    print()
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"written to {DOC}")


if __name__ == "__main__":
    main()
