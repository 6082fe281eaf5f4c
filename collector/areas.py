"""The product's areas, listed once: which routers the app mounts, which SQL-backed gauge sources the refresher
runs, and which command groups the CLI mounts. Every area is part of the one distribution (pyproject), so this is
a plain list, not a discovery loop: a missing module is a broken install and fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import typer

from collector.metrics.refresher import GaugeSource
from collector.settings import Settings

if TYPE_CHECKING:
    from fastapi import APIRouter


@dataclass(frozen=True)
class Router:
    router: "APIRouter"
    tag: dict[str, str] | None = None  # an OpenAPI tag the router adds to the app's


@lru_cache(maxsize=None)
def routers() -> tuple[Router, ...]:
    """The routers the app mounts, imported when the app is built: the CLI imports this module to mount its command
    groups, and importing every router (fastapi, the Alertmanager and OTLP models) cost every command ~0.8 s."""
    from collector.api import alertmanager, cost, derive, docs, ingest, jupyter, openlineage, ops, otlp, runs, sli

    return (
        Router(ingest.router),
        Router(ops.router),
        Router(derive.router),
        Router(jupyter.router),
        Router(openlineage.router),
        Router(otlp.router),
        Router(runs.router, runs.TAG),
        Router(sli.router),
        Router(cost.router, cost.TAG),
        Router(alertmanager.router, alertmanager.TAG),
        Router(docs.router),
    )


def gauge_sources(settings: Settings | None = None) -> list[GaugeSource]:
    """The SQL-backed gauges of the SLO and cost areas, computed by the refresher (never during a scrape), with the
    sections of the collector's settings."""
    from cost.metrics import COST_GAUGES, cost_metrics
    from slo.sli.gauges import SLI_GAUGES, sli_metrics

    settings = settings or Settings()
    return [GaugeSource("slo.sli", SLI_GAUGES, partial(sli_metrics, cfg=settings.sli)),
            GaugeSource("cost", COST_GAUGES, partial(cost_metrics, settings=settings.cost))]


def cli_groups() -> list[tuple[str, typer.Typer]]:
    """(name, typer app) of the command groups of the other areas."""
    from cost.cli import billing_app, report_app
    from collector.ingest.derive_cli import derive_app
    from collector.lake.cli import lake_app
    from collector.storage.db_cli import db_app
    from dashboards.cli import dashboards_app
    from slo.cli import slo_app
    from slo.sli.cli import sli_app

    return [("slo", slo_app), ("billing", billing_app), ("report", report_app), ("dashboards", dashboards_app),
            ("sli", sli_app), ("lake", lake_app), ("derive", derive_app), ("db", db_app)]


def openapi_tags() -> list[dict[str, Any]]:
    return [r.tag for r in routers() if r.tag]
