"""What the collector's request context (collector/api/request_context.py) costs per request, in process.

    .venv/bin/python bench/bench_request_overhead.py            # writes its section of docs/performance.md
    .venv/bin/python bench/bench_request_overhead.py --no-write

Why: every request passes through it, and on the ingest path that CPU holds the GIL that validation needs. Each
variant is a FastAPI app with one POST route that reads a 400 KB body and answers the JSON of a 1,000-event ingest
answer, driven over ASGI in this process (no sockets: only the app's own work is timed). Variants: no middleware;
the collector's `RequestContext` (a plain ASGI middleware); and the same request context written as
`@app.middleware("http")` (Starlette's BaseHTTPMiddleware), as the collector had it before. CPU per request,
medians of alternated repetitions. No assertions: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from opentelemetry import trace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from collector.api.request_context import RequestContext, log, request_id, tracer  # noqa: E402
from collector.contract.redaction import redact_text  # noqa: E402
from collector.telemetry import request_id_var  # noqa: E402
from report import machine, write_section  # noqa: E402

ANSWER = orjson.dumps({"accepted": 1000, "results": [
    {"index": i, "status": "accepted", "code": 201, "source": "bench", "id": f"id-{i}"} for i in range(1000)]})
BODY = b"x" * 400_000


def _base_http_middleware(app: FastAPI) -> None:
    """The same work as RequestContext, as a BaseHTTPMiddleware (the collector's way until the fourteenth round)."""

    @app.middleware("http")
    async def request_context(request: Request, call_next: Any) -> Any:
        rid = request_id(request.headers.get("x-request-id"))
        token = request_id_var.set(rid)
        t0 = time.perf_counter()
        status = 500
        path = redact_text(request.url.path[:512])[0]
        with tracer.start_as_current_span(f"{request.method} {path}", kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("url.path", path)
            span.set_attribute("request.id", rid)
            try:
                response = await call_next(request)
                status = response.status_code
                response.headers["X-Request-ID"] = rid
                return response
            finally:
                log.info("request", extra={"method": request.method, "path": path, "status": status,
                                           "duration_ms": round((time.perf_counter() - t0) * 1000, 2)})
                request_id_var.reset(token)


def make_app(variant: str) -> FastAPI:
    app = FastAPI()
    if variant == "RequestContext (plain ASGI)":
        app.add_middleware(RequestContext)
    elif variant == "BaseHTTPMiddleware":
        _base_http_middleware(app)

    @app.post("/v1/events")
    async def post(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    return app


async def one_request(app: FastAPI) -> None:
    chunks = [BODY[i:i + 65_536] for i in range(0, len(BODY), 65_536)]
    messages = iter([{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                     for i, c in enumerate(chunks)])

    async def receive() -> dict:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict) -> None:
        pass

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/events", "raw_path": b"/v1/events", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/x-ndjson"), (b"x-request-id", uuid.uuid4().hex.encode()),
                         (b"content-length", str(len(BODY)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)


async def measure(requests: int, reps: int) -> dict[str, list[float]]:
    variants = ["no middleware", "RequestContext (plain ASGI)", "BaseHTTPMiddleware"]
    runs: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(reps):
        for v in variants:
            app = make_app(v)
            for _ in range(50):  # warm-up
                await one_request(app)
            c0 = time.process_time()
            for _ in range(requests):
                await one_request(app)
            runs[v].append(1e3 * (time.process_time() - c0) / requests)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/performance.md alone")
    args = ap.parse_args()
    runs = asyncio.run(measure(args.requests, args.reps))
    rows = ["| variant | CPU ms per request (median) | runs |", "|---|---|---|"]
    for v, xs in runs.items():
        rows.append(f"| {v} | **{statistics.median(xs):.3f}** | {', '.join(f'{x:.3f}' for x in xs)} |")
    section = "\n".join([
        f"Measured by `bench/bench_request_overhead.py` on {machine()}. Command: `python "
        f"bench/bench_request_overhead.py --requests {args.requests} --reps {args.reps}`. A FastAPI app whose one "
        "route reads a 400 KB body and answers a 1,000-event ingest answer, driven over ASGI in process; CPU per "
        "request, variants alternated. The request context (id, span, `X-Request-ID`, one log line) as the "
        "collector runs it, and the same as Starlette's BaseHTTPMiddleware (the collector's way before): on the "
        "ingest path this CPU holds the GIL validation needs.",
        "",
        *rows,
    ]) + "\n"
    print(section)
    if not args.no_write:
        write_section("request-overhead", section)


if __name__ == "__main__":
    main()
