"""The fire times of a (cron, time zone), enumerated once per process and then sliced.

croniter costs about 200 µs per slot. Missed-run detection (missed.py), slot outcomes (slots.py) and the lake
engines each enumerate the same schedules, and a (re)registration makes them enumerate a notebook's whole lookback
again; but platforms use a handful of distinct cron expressions across thousands of notebooks. Measured before this
cache (bench/profile_ingest.py, HTTP): the gauge refresher's folds spent 3-5 s per pass in croniter, most of the
collector's CPU under sustained ingest.

A series holds, for one (cron, tz), every fire time in (lo, hi] in UTC, sorted. A query for the slots after `t`
extends it backwards (from `t`) or forwards (from its last slot) with croniter's own "next fire time after"
iteration, so the slots are exactly the ones `croniter(cron, t).get_next()` would give, in the same order.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

MAX_SERIES = 256  # distinct (cron, tz) kept; the least recently used is dropped beyond
MAX_SLOTS = 500_000  # per series: a series grown beyond this is started again from the next query's point
MAX_GAP = timedelta(days=45)  # a query further than this outside a series starts it again there (never a long walk)
CHUNK = 64  # slots enumerated at a time when a query runs past the end of its series


class _Series:
    def __init__(self, cron: str, tz: str | None, after: datetime) -> None:
        self.cron, self.zone = cron, (ZoneInfo(tz) if tz else UTC)
        self.lo = after  # every fire time in (lo, slots[-1]] is in `slots`
        self.slots: list[datetime] = []
        self._it = croniter(cron, after.astimezone(self.zone))

    def _next(self, it: croniter) -> datetime:
        return it.get_next(datetime).astimezone(UTC)

    def extend_back(self, after: datetime) -> None:
        """Add the fire times in (after, lo]."""
        it = croniter(self.cron, after.astimezone(self.zone))
        head = []
        while True:
            s = self._next(it)
            if s > self.lo or (self.slots and s >= self.slots[0]):
                break
            head.append(s)
        self.slots[:0] = head
        self.lo = after

    def extend(self) -> None:
        self.slots.extend(self._next(self._it) for _ in range(CHUNK))

    def after(self, t: datetime) -> Iterator[datetime]:
        """The fire times strictly after `t`, in order (unbounded: the caller stops)."""
        j = bisect_right(self.slots, t)
        while j == len(self.slots):
            self.extend()
            j = bisect_right(self.slots, t)
        while True:
            if j == len(self.slots):
                self.extend()
            yield self.slots[j]
            j += 1


class CronSlots:
    """Fire times per (cron, tz), shared by every pass of the process (thread-safe)."""

    def __init__(self) -> None:
        self._series: OrderedDict[tuple[str, str | None], _Series] = OrderedDict()
        self._lock = threading.Lock()

    def _series_for(self, cron: str, tz: str | None, after: datetime) -> _Series:
        key = (cron, tz)
        s = self._series.get(key)
        end = (s.slots[-1] if s.slots else s.lo) if s is not None else after
        if s is None or len(s.slots) > MAX_SLOTS or after < s.lo - MAX_GAP or after > end + MAX_GAP:
            s = self._series[key] = _Series(cron, tz, after)
            while len(self._series) > MAX_SERIES:
                self._series.popitem(last=False)
        elif after < s.lo:
            s.extend_back(after)
        self._series.move_to_end(key)
        return s

    def due(self, cron: str, tz: str | None, grace: float, after: datetime, before: datetime | None,
            now: datetime, limit: int) -> tuple[list[datetime], datetime | None]:
        """Fire times strictly after `after` and before `before`, decided by `now` (slot + grace <= now), at
        most `limit`; with the first undecided slot's due time (slot + grace), or None when `before` ends them."""
        g = timedelta(seconds=grace)
        out: list[datetime] = []
        with self._lock:
            series = self._series_for(cron, tz, after)
            for s in series.after(after):
                if len(out) >= limit:
                    return out, (out[-1] + g if out else None)
                if before is not None and s >= before:
                    return out, None
                if s + g > now:
                    return out, s + g
                out.append(s)
        return out, None  # not reached: the series is unbounded

    def clear(self) -> None:
        with self._lock:
            self._series.clear()


CRON_SLOTS = CronSlots()
