"""Small PromQL builders for the dashboards, so that metric and label names come from collector/conventions.py.

`sel(C.RUN_ATTEMPTS_TOTAL, eq(C.TRIGGER, "scheduled"), TEAM_ANY)` -> `notebook_run_attempts_total{trigger="scheduled",
team=~"$team"}`. Values are Grafana variables or product constants, never user input (a dashboard is static text).
"""

from __future__ import annotations

from collector import conventions as C


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def ne(label: str, value: str) -> str:
    return f'{label}!="{value}"'


def match(label: str, regex: str) -> str:
    return f'{label}=~"{regex}"'


def sel(metric: str, *matchers: str) -> str:
    """`metric{m1, m2}` (just `metric` without matchers)."""
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def by(*labels: str) -> str:
    """`by (a, b)`."""
    return f"by ({', '.join(labels)})"


def legend(*labels: str) -> str:
    """A legend format naming the labels: `{{a}} {{b}}`."""
    return " ".join("{{" + lab + "}}" for lab in labels)


TEAM_ANY = match(C.TEAM, "$team")  # the multi-value $team variable
TEAM_ONE = eq(C.TEAM, "$team")  # a single-value $team variable
PLATFORM = eq(C.TEAM, C.ALL_TEAMS)  # the platform row of the SLI gauges
