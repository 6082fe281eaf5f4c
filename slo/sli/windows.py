"""A window [as_of - W, as_of) cut into the pieces the rollups can answer: whole days, whole hours, raw edges.

The incremental engine reads a 30-day window as ~29 daily rollup rows, up to 46 hourly ones and the two partial
hours at its ends from the facts, instead of a month of facts; the cut is computed once per request here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, TypeVar

from slo.sli.config import parse_window


@dataclass
class Win:
    """One window and its cut: raw [s, hs) and [he, e), hours [hs, ds) and [de, he), days [ds, de)."""

    name: str
    seconds: int
    s: datetime
    e: datetime
    hs: datetime  # first whole hour inside the window
    he: datetime  # end of the last whole hour inside the window
    ds: datetime  # first whole day inside [hs, he)
    de: datetime  # end of the last whole day inside [hs, he)


def _hour_floor(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(dt: datetime) -> datetime:
    f = _hour_floor(dt)
    return f if f == dt else f + timedelta(hours=1)


def _day_floor(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


def _day_ceil(dt: datetime) -> datetime:
    f = _day_floor(dt)
    return f if f == dt else f + timedelta(days=1)


def windows(names: Iterable[str], as_of: datetime) -> list[Win]:
    """The windows named (`1h`, `30d`, ...) ending at `as_of` (UTC), with their cuts."""
    out = []
    for name in names:
        secs = parse_window(name)
        s = as_of - timedelta(seconds=secs)
        hs, he = _hour_ceil(s), _hour_floor(as_of)
        if hs >= he:
            hs = he = as_of  # no whole hour inside: the window is read from raw rows only
        ds, de = _day_ceil(hs), _day_floor(he)
        if ds >= de:
            ds = de = he  # no whole day inside: hours only
        out.append(Win(name, secs, s, as_of, hs, he, ds, de))
    return out


_B = TypeVar("_B", datetime, int)  # a bound: a time, or epoch microseconds (slo/sli/durations.py)


def merge_ranges(ranges: list[tuple[_B, _B]]) -> list[tuple[_B, _B]]:
    """Non-empty half-open ranges, overlapping or touching ones merged, sorted."""
    out: list[list[_B]] = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]
