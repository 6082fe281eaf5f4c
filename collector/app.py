"""The collector's HTTP application: wiring only (routers, middleware, lifespan)."""

from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI

from collector import areas
from collector.api import errors
from collector.api.auth import TokenStore
from collector.api.reads import ActiveQueries
from collector.api.request_context import RequestContext
from collector.ingest import allocators, gc_freeze
from collector.settings import Settings
from collector.ingest.store import Store
from collector.lake.schedule import LakeExporter
from collector.telemetry import setup_tracing

log = logging.getLogger("collector.http")

DESCRIPTION = """
Ingests kernel, scheduler and billing events from notebook platforms into DuckDB, computes the platform's SLIs and
exports them to Prometheus.

Authentication: `Authorization: Bearer <token>`; each endpoint names the scope it needs (`ingest`, `read`,
`admin`). Every response carries `X-Request-ID` (send your own to correlate).
"""

TAGS = [
    {"name": "ingest", "description": "Send events (CloudEvents 1.0 structured mode, JSON or NDJSON, gzip)."},
    {"name": "contract", "description": "The event contract: JSON Schemas of every type."},
    {"name": "operations", "description": "Health, readiness, Prometheus metrics, dead letters, batches whose derived rows are "
                                                    "missing."},
]


def create_app(settings: Settings | None = None, *, tokens: TokenStore | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings)
        app.state.store = store
        for source in areas.gauge_sources(settings):
            store.refresher.register(source, reserved=store.builtin_metric_names())
        for hook in app.state.startup_hooks:
            hook(app)
        store.start()
        exporter = LakeExporter.from_settings(settings, store)
        app.state.lake_exporter = exporter
        if exporter is not None:
            exporter.start()
        frozen = gc_freeze.freeze(settings.gc_freeze)  # last: what start-up built, out of full collections
        log.info("collector started", extra={"db": str(settings.db), "auth": app.state.tokens.enabled,
                                             "allocators": allocators.applied(), "gc_frozen_objects": frozen})
        try:
            yield
        finally:
            if exporter is not None:
                exporter.stop()
            app.state.queries.interrupt_all()  # a read still running must not hold the shutdown
            store.close()
            log.info("collector stopped")

    app = FastAPI(
        title="Notebook Observatory collector", version="0.1.0", description=DESCRIPTION, openapi_tags=list(TAGS),
        lifespan=lifespan, docs_url=None, redoc_url=None,  # served from the package by collector/api/docs.py
    )
    app.state.settings = settings
    app.state.tokens = tokens or TokenStore.load(settings.tokens_file, settings.tokens_value(), enabled=settings.auth)
    app.state.startup_hooks = []
    app.state.queries = ActiveQueries()
    setup_tracing()

    app.add_middleware(RequestContext)
    errors.install(app)
    for r in areas.routers():
        app.include_router(r.router)
    app.openapi_tags.extend(areas.openapi_tags())
    return app
