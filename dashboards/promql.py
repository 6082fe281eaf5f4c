"""Small PromQL builders for the dashboards, so that metric and label names come from collector/conventions.py.

`sel(C.RUN_ATTEMPTS_TOTAL, eq(C.TRIGGER, "scheduled"), TEAM_ANY)` -> `notebook_run_attempts_total{trigger="scheduled",
team=~"$team"}`. Values are Grafana variables or product constants, never user input (a dashboard is static text).
"""

from __future__ import annotations

from pathlib import Path

from collector import conventions as C
from slo.spec import load_spec

SPEC = Path(__file__).resolve().parents[1] / "slo" / "slos.yaml"


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def ne(label: str, value: str) -> str:
    return f'{label}!="{value}"'


def match(label: str, regex: str) -> str:
    return f'{label}=~"{regex}"'


def sel(metric: str, *matchers: str) -> str:
    """`metric{m1, m2}` (just `metric` without matchers): for recorded and synthetic series (`slo:*`, `ALERTS`)."""
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def m(metric: str, *matchers: str) -> str:
    """A series the collector exports, scoped to its scrape job like the alert rules (`job="observatory"`), so a
    second job exporting the same names cannot leak into a panel."""
    return sel(metric, JOB, *matchers)


def by(*labels: str) -> str:
    """`by (a, b)`."""
    return f"by ({', '.join(labels)})"


def legend(*labels: str) -> str:
    """A legend format naming the labels: `{{a}} {{b}}`."""
    return " ".join("{{" + lab + "}}" for lab in labels)


JOB = eq(C.JOB, C.JOB_NAME)  # the collector's scrape job (alerts select it too)
TEAM_ANY = match(C.TEAM, "$team")  # the multi-value $team variable
TEAM_ONE = eq(C.TEAM, "$team")  # a single-value $team variable
PLATFORM = eq(C.TEAM, C.ALL_TEAMS)  # the platform row of the SLI gauges
# the production environments of the SLOs (slo/slos.yaml), matched positively as the rules match them
PRODUCTION = match(C.ENVIRONMENT, load_spec(SPEC).production_regex())
