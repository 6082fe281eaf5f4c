"""The fire times of a (cron, time zone), enumerated once per process and then sliced.

croniter costs about 200 µs per slot. Missed-run detection (missed.py), slot outcomes (slots.py) and the lake
engines each enumerate the same schedules, and a (re)registration makes them enumerate a notebook's whole lookback
again; but platforms use a handful of distinct cron expressions across thousands of notebooks. Measured before this
cache (bench/profile_ingest.py, HTTP): the gauge refresher's folds spent 3-5 s per pass in croniter, most of the
collector's CPU under sustained ingest.

A series holds, for one (cron, tz), every fire time in (lo, hi] in UTC, sorted. A query for the slots after `t`
extends it backwards (from `t`) or forwards (from its last slot) with `fire_times`, which gives exactly the ones
`croniter(cron, t).get_next()` would give, in the same order (computed directly on days without a DST change).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

from croniter import croniter

MAX_SERIES = 256  # distinct (cron, tz) kept; the least recently used is dropped beyond
MAX_SLOTS = 500_000  # per series: a series grown beyond this is started again from the next query's point
MAX_GAP = timedelta(days=45)  # a query further than this outside a series starts it again there (never a long walk)
CHUNK = 64  # slots enumerated at a time when a query runs past the end of its series


def _plain_fields(cron: str) -> tuple[list[int], list[int], set[int] | None] | None:
    """(minutes, hours, weekdays or None for any) of a cron whose day of month and month are `*` and that uses
    no L, W or # (most schedules); None for the others, which croniter enumerates."""
    try:
        fields, nth = croniter.expand(cron)
    except Exception:  # noqa: BLE001 - croniter's own iteration reports it
        return None
    if len(fields) != 5 or nth or fields[2] != ["*"] or fields[3] != ["*"]:
        return None
    minute, hour, _, _, dow = fields
    if not all(isinstance(v, int) for f in (minute, hour, dow) if f != ["*"] for v in f):
        return None
    return (list(range(60)) if minute == ["*"] else sorted(minute), list(range(24)) if hour == ["*"] else sorted(hour),
            None if dow == ["*"] else {d % 7 for d in dow})


def _steady(zone, day: date) -> timedelta | None:
    """The UTC offset of `day` in `zone` when it is the same all day (midnight and the last second of the day,
    both folds: no transition, no gap or repeat at midnight), else None."""
    offs = {datetime.combine(day, t, zone).replace(fold=f).utcoffset() for t in (time(0), time(23, 59, 59))
            for f in (0, 1)}
    return offs.pop() if len(offs) == 1 else None


def fire_times(cron: str, zone, after: datetime) -> Iterator[datetime]:
    """The fire times of `cron` in `zone` strictly after `after`, in UTC and in order (unbounded), exactly as
    croniter's iteration gives them.

    croniter costs ~130 us per fire time; a registration asks for a month of them (a quarter-hourly schedule: 3,000).
    On a day with one UTC offset all day, the fire times of a plain cron (`_plain_fields`) are wall-clock times at
    that offset, computed directly; croniter enumerates the days around a DST change (its handling of skipped and
    repeated hours is its own) and every other cron."""
    plain = _plain_fields(cron)
    if plain is None:
        it = croniter(cron, after.astimezone(zone))
        while True:
            yield it.get_next(datetime).astimezone(UTC)
    minutes, hours, weekdays = plain
    last = after
    day = after.astimezone(zone).date()
    while True:
        off = _steady(zone, day)
        if off is not None:
            if weekdays is None or (day.weekday() + 1) % 7 in weekdays:
                base = datetime(day.year, day.month, day.day, tzinfo=UTC) - off
                for h in hours:
                    for m in minutes:
                        s = base + timedelta(hours=h, minutes=m)
                        if s > last:
                            last = s
                            yield s
            day += timedelta(days=1)
            continue
        # a DST change: croniter from the last fire time to the start of the next steady day
        nxt = day + timedelta(days=1)
        while _steady(zone, nxt) is None:
            nxt += timedelta(days=1)
        stop = datetime.combine(nxt, time(0), zone).astimezone(UTC)
        it = croniter(cron, last.astimezone(zone))
        while True:
            s = it.get_next(datetime).astimezone(UTC)
            if s >= stop:
                break
            last = s
            yield s
        day = nxt


class _Series:
    def __init__(self, cron: str, tz: str | None, after: datetime) -> None:
        self.cron, self.zone = cron, (ZoneInfo(tz) if tz else UTC)
        self.lo = after  # every fire time in (lo, slots[-1]] is in `slots`
        self.slots: list[datetime] = []
        self.us: list[int] = []  # the same fire times in microseconds since the epoch (Arrow takes them as is)
        self._it = fire_times(cron, self.zone, after)

    def extend_back(self, after: datetime) -> None:
        """Add the fire times in (after, lo]."""
        head = []
        for s in fire_times(self.cron, self.zone, after):
            if s > self.lo or (self.slots and s >= self.slots[0]):
                break
            head.append(s)
        self.slots[:0] = head
        self.us[:0] = map(to_us, head)
        self.lo = after

    def extend(self) -> None:
        more = list(islice(self._it, CHUNK))
        self.slots.extend(more)
        self.us.extend(map(to_us, more))


def to_us(t: datetime) -> int:
    """Microseconds since the epoch, exactly (no float)."""
    return (t - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


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

    def _span(self, cron: str, tz: str | None, grace: float, after: datetime, before: datetime | None,
              now: datetime, limit: int) -> tuple[_Series, int, int, datetime | None]:
        """(series, j, end, due time): the answer is the series' slots[j:end] (see `due`). Called with the lock
        held. A slice of the sorted series found by bisection: a Python loop over the slots (a datetime addition
        and comparisons each) cost ~1 us per slot, and a (re)registration asks for a month of them."""
        g = timedelta(seconds=grace)
        cutoff = now - g  # decided: slot <= cutoff
        series = self._series_for(cron, tz, after)
        slots = series.slots
        while True:  # the series must reach past the first slot that ends the answer
            j = bisect_right(slots, after)
            if len(slots) - j > limit or (slots and slots[-1] > after and (
                    slots[-1] > cutoff or (before is not None and slots[-1] >= before))):
                break
            series.extend()
        k_limit = j + limit
        k_before = len(slots) if before is None else bisect_left(slots, before, lo=j)
        k_cutoff = bisect_right(slots, cutoff, lo=j)
        end = min(k_limit, k_before, k_cutoff)
        # the slot at `end` ends the answer; the checks in the order a walk would make them
        if end == k_limit:
            return series, j, end, (slots[end - 1] + g if end > j else None)
        if end == k_before:
            return series, j, end, None
        return series, j, end, slots[end] + g

    def due(self, cron: str, tz: str | None, grace: float, after: datetime, before: datetime | None,
            now: datetime, limit: int) -> tuple[list[datetime], datetime | None]:
        """Fire times strictly after `after` and before `before`, decided by `now` (slot + grace <= now), at
        most `limit`; with the first undecided slot's due time (slot + grace), or None when `before` ends them."""
        with self._lock:
            series, j, end, due_at = self._span(cron, tz, grace, after, before, now, limit)
            return series.slots[j:end], due_at

    def due_us(self, cron: str, tz: str | None, grace: float, after: datetime, before: datetime | None,
               now: datetime, limit: int) -> tuple[list[int], datetime | None]:
        """`due` with the fire times in microseconds since the epoch: what the SLI tables take as Arrow columns
        (converting a month of datetimes for every (re)registered notebook cost ~1 us each)."""
        with self._lock:
            series, j, end, due_at = self._span(cron, tz, grace, after, before, now, limit)
            return series.us[j:end], due_at

    def clear(self) -> None:
        with self._lock:
            self._series.clear()


CRON_SLOTS = CronSlots()
