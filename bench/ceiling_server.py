"""The HTTP side of bench_contract_ceiling.py: the least an ingest server can do per request, on the collector's
server stack (uvicorn with uvloop and httptools), so that the ingest bench's clients can measure a ceiling.

    python bench/ceiling_server.py --port 8130 --db /tmp/c.duckdb --token T --mode native

`POST /v1/events` checks the bearer token, reads the NDJSON body and answers an ingest answer, either at once
(`transport`: no storage at all) or after one statement has parsed, checked and inserted its lines (`native`:
bench_contract_ceiling.ceiling_sql over the lines of up to 4 waiting requests in one statement and transaction, on
one writer thread and DuckDB connection: the collector's group commit). `GET /readyz` answers 200. Nothing else: no
middleware, no FastAPI, no dead letters, no counters, no derived tables.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import queue
import sys
import threading
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_contract_ceiling import LINES_SOURCE, ceiling_sql  # noqa: E402
from collector.contract.vectorized.lines import split_lines  # noqa: E402
from collector.storage import db as dbmod  # noqa: E402


GROUP = 4  # requests per statement at most: the collector's group commit


class Writer:
    """One thread and one DuckDB connection: takes the requests waiting (at most GROUP), runs the ceiling's
    statement over all their lines in one transaction, and answers each with how many of its lines were stored."""

    def __init__(self, db: Path, threads: int) -> None:
        self.con = dbmod.connect(db, threads=threads)
        self.pending: queue.Queue[tuple[bytes, Future]] = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, body: bytes) -> Future:
        fut: Future = Future()
        self.pending.put((body, fut))
        return fut

    def _run(self) -> None:
        while True:
            group = [self.pending.get()]
            while len(group) < GROUP:
                try:
                    group.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            try:
                counts = self._store([body for body, _ in group])
                for i, (_, fut) in enumerate(group):
                    fut.set_result(counts.get(i, 0))
            except Exception as exc:  # noqa: BLE001 - the requests of the group get the error
                for _, fut in group:
                    fut.set_exception(exc)

    def _store(self, bodies: list[bytes]) -> dict[int, int]:
        parts = [split_lines(b)[0].cast(pa.string()) for b in bodies]
        lines = pa.table({"line": pa.concat_arrays(parts),
                          "req": pa.array([i for i, p in enumerate(parts) for _ in range(len(p))], pa.int64())})
        now = datetime.now(timezone.utc)
        self.con.register("lines", lines)
        try:
            stored = self.con.execute(ceiling_sql(LINES_SOURCE, now, batch="req") + " RETURNING batch_id",
                                      [now]).to_arrow_table()
        finally:
            self.con.unregister("lines")
        return {v["values"]: v["counts"] for v in pc.value_counts(stored.column(0)).to_pylist()}


def app_for(mode: str, token: str, db: Path, threads: int) -> Callable[..., Awaitable[None]]:
    """The ASGI app: bare on purpose, so that what it costs is the least any ingest server pays."""
    expected = f"Bearer {token}".encode()
    writer = Writer(db, threads) if mode == "native" else None

    async def answer(send, status: int, doc: dict) -> None:
        body = orjson.dumps(doc)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/readyz":
            await answer(send, 200, {"status": "ready"})
            return
        auth = dict(scope["headers"]).get(b"authorization", b"")
        if scope["method"] != "POST" or scope["path"] != "/v1/events" or not hmac.compare_digest(auth, expected):
            await answer(send, 401, {"error": "unauthorised"})
            return
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        if writer is not None:
            accepted = await asyncio.wrap_future(writer.submit(body))
        else:
            accepted = body.count(b"\n") + (not body.endswith(b"\n"))
        await answer(send, 200, {"accepted": accepted, "duplicates": 0, "rejected": 0})

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--mode", choices=("transport", "native"), required=True)
    ap.add_argument("--threads", type=int, default=1, help="DuckDB threads (the collector's default on 2 cores: 1)")
    args = ap.parse_args()
    uvicorn.run(app_for(args.mode, args.token, args.db, args.threads), host="127.0.0.1", port=args.port,
                log_config=None, access_log=False)


if __name__ == "__main__":
    main()
