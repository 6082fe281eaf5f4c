"""The process-wide cron slot cache gives exactly what a fresh croniter iteration gives, and enumerates a range once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import given, settings, strategies as st

from slo.sli import cron_slots
from slo.sli.cron_slots import CronSlots

CRONS = ["0 * * * *", "*/15 * * * *", "0 6 * * 1-5", "30 2 * * *", "0 0 1 * *", "*/7 3-5 * * *", "59 23 31 12 *"]
ZONES = [None, "UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]  # Lord Howe: 30-minute DST
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def reference(cron, tz, grace, after, before, now, limit):
    """What missed.due_slots computed before the cache: one croniter iteration from `after`."""
    it = croniter(cron, after.astimezone(ZoneInfo(tz) if tz else timezone.utc))
    out, g = [], timedelta(seconds=grace)
    while len(out) < limit:
        s = it.get_next(datetime).astimezone(timezone.utc)
        if before is not None and s >= before:
            return out, None
        if s + g > now:
            return out, s + g
        out.append(s)
    return out, (out[-1] + g if out else None)


minutes = st.integers(0, 60 * 24 * 400)
query = st.tuples(st.sampled_from(CRONS), st.sampled_from(ZONES), st.sampled_from([0, 60, 900, 3600]), minutes,
                  st.one_of(st.none(), st.integers(0, 60 * 24 * 12)), st.integers(0, 60 * 24 * 4),
                  st.sampled_from([1, 3, 100_000]))


@settings(max_examples=40, deadline=None)
@given(st.lists(query, min_size=1, max_size=8))
def test_every_query_equals_a_fresh_croniter_iteration(queries):
    cache = CronSlots()  # one cache across the queries: each is served from what the previous ones enumerated
    for cron, tz, grace, a, b, n, limit in queries:
        after = BASE + timedelta(minutes=a)
        before = None if b is None else after + timedelta(minutes=b)
        now = after + timedelta(minutes=n)
        want = reference(cron, tz, grace, after, before, now, limit)
        assert cache.due(cron, tz, grace, after, before, now, limit) == want
        us, due_at = cache.due_us(cron, tz, grace, after, before, now, limit)
        assert ([cron_slots.from_us(x) for x in us], due_at) == want


def test_a_range_is_enumerated_once(monkeypatch):
    made = []
    real = cron_slots.croniter

    def counting(*a, **kw):
        made.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(cron_slots, "croniter", counting)
    cache = CronSlots()
    now = BASE + timedelta(days=30)
    first = cache.due("*/15 * * * *", "Europe/Paris", 600, BASE, None, now, 100_000)
    assert len(first[0]) == 30 * 96 - 1  # every quarter hour after BASE whose grace has passed
    n_iterators = len(made)
    for k in range(1, 12):  # notebooks with the same schedule, registered at different times
        got = cache.due("*/15 * * * *", "Europe/Paris", 600, BASE + timedelta(hours=k), None, now, 100_000)
        assert got == reference("*/15 * * * *", "Europe/Paris", 600, BASE + timedelta(hours=k), None, now, 100_000)
    assert len(made) == n_iterators  # served from the series: no new croniter


def test_a_far_query_starts_the_series_again_rather_than_walking_to_it():
    cache = CronSlots()
    cache.due("* * * * *", None, 0, BASE, None, BASE + timedelta(hours=1), 100_000)
    far = BASE + timedelta(days=3650)
    got = cache.due("* * * * *", None, 0, far, None, far + timedelta(minutes=10), 100_000)
    assert got == reference("* * * * *", None, 0, far, None, far + timedelta(minutes=10), 100_000)
    assert len(cache._series[("* * * * *", None)].slots) < 1000  # not ten years of minutes


DST_ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Pacific/Chatham",
             "Asia/Kolkata", "UTC"]  # Santiago changes at midnight, Lord Howe by 30 min, Chatham at +12:45/+13:45
PLAIN = ["*/15 * * * *", "0 * * * *", "30 2 * * *", "0 0 * * *", "*/7 3-5 * * *", "0 6 * * 1-5", "45 23 * * 0",
         "0 0 1 * *"]  # the last one is not plain: croniter all along


def _transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    day, out = datetime(year, 1, 1, 12, tzinfo=timezone.utc), []
    while day.year == year:
        if day.astimezone(zone).utcoffset() != (day + timedelta(days=1)).astimezone(zone).utcoffset():
            out.append(day)
        day += timedelta(days=1)
    return out


def test_fire_times_equal_croniter_across_dst_changes():
    """The fire times computed on steady days and by croniter around DST changes are croniter's, in every zone
    kind (skipped and repeated hours, 30-minute and midnight changes, odd offsets), ten days around each change."""
    for tz in DST_ZONES:
        zone = ZoneInfo(tz)
        starts = [t - timedelta(days=5) for t in _transitions(zone, 2026)] or [BASE]
        for cron in PLAIN:
            for start in starts:
                end = start + timedelta(days=10)
                it = croniter(cron, start.astimezone(zone))
                want = []
                while (s := it.get_next(datetime).astimezone(timezone.utc)) < end:
                    want.append(s)
                got = []
                for s in cron_slots.fire_times(cron, zone, start):
                    if s >= end:
                        break
                    got.append(s)
                assert got == want, (tz, cron, start)
