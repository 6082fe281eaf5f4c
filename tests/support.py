"""Helpers shared by the tests: real collector processes, free ports, event builders."""

from __future__ import annotations

import os
import signal
import socket
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OBSERVATORY = str(BIN / "observatory")
SHARED = ROOT.parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookSink:
    """A webhook receiver on loopback (Alertmanager's receivers in tests): records every POST's path, headers and
    JSON body."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.headers: list[tuple[str, dict[str, str]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.headers.append((self.path, dict(self.headers)))
                sink.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self, path: str) -> list[dict]:
        return [p for rp, p in list(self.received) if rp == path]

    def alerts(self, path: str) -> list[dict]:
        return [a for p in self.payloads(path) for a in p["alerts"]]

    def close(self) -> None:
        self.server.shutdown()


def event(i: int | str, type_: str, data: dict[str, Any], *, source: str = "test://suite",
          time_: str = "2026-11-20T10:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(i), "source": source, "type": type_, "time": time_, "data": data, **extra}


@dataclass
class Collector:
    """A real `observatory serve` process on a loopback port."""

    db: Path
    port: int = field(default_factory=free_port)
    token: str | None = None
    tokens_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, timeout: float = 30.0) -> "Collector":
        args = [OBSERVATORY, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--db", str(self.db)]
        if self.tokens_file is None:
            args.append("--no-auth")
        else:
            args += ["--tokens-file", str(self.tokens_file)]
        self.log_path = self.log_path or self.db.with_suffix(f".{self.port}.log")
        log = open(self.log_path, "ab")
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.db.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"collector not ready in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


def create_token(tokens_file: Path, name: str, scopes: str, team: str | None = None) -> str:
    args = [OBSERVATORY, "tokens", "create", "--name", name, "--scopes", scopes, "--file", str(tokens_file)]
    if team:
        args += ["--team", team]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text -> {(sample name, sorted labels): value} using prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_sum(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == val for k, val in labels.items()))


def write_events(con: Any, events: list[dict]) -> None:
    """Events straight through the real writer into `con` (validated, committed, derived), without the app: its
    refresher would fold the SLI tables at the wall clock, where tests fold at chosen moments."""
    from collector.contract.vectorized import validate_json_items
    from collector.ingest.writer import Writer
    from collector.metrics.counters import CounterStore

    w = Writer(con, CounterStore())
    w.start()
    try:
        got = validate_json_items(events)
        assert not got.rejections, got.rejections
        w.submit(got.table, []).result()
    finally:
        w.stop()


def assert_slot_counts_kept(con: Any) -> None:
    """The counts the fold keeps for the slot counters (migration 0213) are those of the rows they count: every
    decided slot outcome, every miss ever detected."""
    assert con.execute("SELECT team, environment, outcome, n FROM sli_slot_counts WHERE n > 0 "
                       "ORDER BY ALL").fetchall() == con.execute(
        "SELECT team, environment, outcome, count(*) FROM sli_slot_outcomes WHERE outcome IS NOT NULL "
        "GROUP BY ALL ORDER BY ALL").fetchall()
    assert con.execute("SELECT team, n FROM sli_missed_counts WHERE n > 0 ORDER BY ALL").fetchall() == con.execute(
        "SELECT team, count(*) FROM sli_missed_slots GROUP BY ALL ORDER BY ALL").fetchall()


def refuse_to_derive(monkeypatch: Any, run_id: str) -> None:
    """The deriver's fold fails for any pass holding the run `run_id` and works for the others: a batch whose
    derived rows cannot be written (the writer then retries each batch of the pass alone)."""
    from collector.ingest import writer as writer_mod

    real = writer_mod.fold_batches

    def failing(con: Any, batches: list, **kw: Any) -> Any:
        if any(run_id in new.column("run_id").to_pylist() for _, new in batches):
            raise RuntimeError(f"derived row refused: {run_id}")
        return real(con, batches, **kw)

    monkeypatch.setattr(writer_mod, "fold_batches", failing)


def database_before(path: Path, version: int) -> Any:
    """A DuckDB file (a connection to it, in UTC) as a collector before migration `version` left it: the migrations
    below it applied and recorded, so that `apply_migrations` applies that one and those after it."""
    import duckdb

    from collector.storage import db as dbmod

    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    for v, name, p in dbmod.migrations():
        if v < version:
            con.execute(p.read_text())
            dbmod.backfill(con, p)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [v, name])
    return con
