"""Gauge sources declare the metric names they emit; a second claim on a name is refused at registration (as
prometheus_client's CollectorRegistry.register refuses duplicated timeseries)."""

from __future__ import annotations

import duckdb
import pytest
from prometheus_client.core import GaugeMetricFamily

from collector import areas
from collector.metrics.refresher import DuplicateMetric, GaugeRefresher, GaugeSource


def _refresher() -> GaugeRefresher:
    con = duckdb.connect()
    return GaugeRefresher(con.cursor)


def _fam(name: str):
    return lambda cur: [GaugeMetricFamily(name, "test", value=1.0)]


def test_two_sources_claiming_one_name_is_an_error() -> None:
    r = _refresher()
    r.register(GaugeSource("a", ("x_gauge",), _fam("x_gauge")))
    with pytest.raises(DuplicateMetric, match="x_gauge"):
        r.register(GaugeSource("b", ("y_gauge", "x_gauge"), _fam("y_gauge")))


def test_a_source_cannot_claim_a_builtin_name() -> None:
    with pytest.raises(DuplicateMetric, match="observatory_ingest_queue_depth"):
        _refresher().register(GaugeSource("a", ("observatory_ingest_queue_depth",), _fam("x")),
                              reserved={"observatory_ingest_queue_depth"})


def test_same_source_name_twice_is_an_error() -> None:
    r = _refresher()
    r.register(GaugeSource("a", ("x_gauge",), _fam("x_gauge")))
    with pytest.raises(DuplicateMetric):
        r.register(GaugeSource("a", ("z_gauge",), _fam("z_gauge")))


def test_undeclared_family_is_dropped_not_exposed() -> None:
    r = _refresher()
    r.register(GaugeSource("a", ("x_gauge",), lambda cur: [GaugeMetricFamily("x_gauge", "t", value=1.0),
                                                           GaugeMetricFamily("sneaky", "t", value=2.0)]))
    r.refresh_now()
    assert [m.name for m in r.metrics()] == ["x_gauge"]


def test_product_gauge_sources_do_not_overlap() -> None:
    r = _refresher()
    for source in areas.gauge_sources():
        r.register(source)
    names = [m for s in areas.gauge_sources() for m in s.metrics]
    assert len(names) == len(set(names))


def _starts_under_constant_pokes(refresh: float, seconds: float, **kwargs) -> list[float]:
    """When each pass started, for a source taking `refresh` s while something pokes the refresher every 10 ms for
    `seconds` s (a commit pokes it; under sustained ingest, all the time)."""
    import threading
    import time

    starts: list[float] = []

    def slow(cur):
        starts.append(time.monotonic())
        time.sleep(refresh)
        return [GaugeMetricFamily("slow_gauge", "test", value=1.0)]

    r = GaugeRefresher(duckdb.connect().cursor, interval=60.0, min_gap=0.01, **kwargs)
    r.register(GaugeSource("slow", ("slow_gauge",), slow))
    r.start()
    stop = threading.Event()

    def poke() -> None:
        while not stop.is_set():
            r.poke()
            time.sleep(0.01)

    poker = threading.Thread(target=poke)
    poker.start()
    time.sleep(seconds)
    stop.set()
    poker.join()
    r.stop()
    return starts


def test_constant_pokes_get_at_most_a_tenth_of_the_time() -> None:
    """Every commit pokes the refresher; under sustained ingest it must not refresh back to back. A refresh that
    takes d seconds is followed by at least 9d of rest (MAX_DUTY 0.1), so 1.5 s of constant pokes allow at most
    2 refreshes of 0.1 s, however slowly the machine runs them (without the bound: about 13)."""
    from collector.metrics import refresher as mod

    calls = _starts_under_constant_pokes(0.1, 1.5)
    assert mod.MAX_DUTY == 0.1
    assert 1 <= len(calls) <= 2, calls


def test_each_source_reports_its_own_success_duration_and_failures() -> None:
    """A failing source keeps exposing its last values, so the pass's timestamp cannot say how old they are: each
    source has its own success time, duration and failure count (as Prometheus reports its rule groups)."""
    import time

    from collector import conventions as C

    state = {"fail": False}

    def flaky(cur):
        if state["fail"]:
            raise RuntimeError("boom")
        cur.execute("SELECT 1").fetchall()
        return [GaugeMetricFamily("flaky_gauge", "t", value=7.0)]

    r = _refresher()
    r.register(GaugeSource("steady", ("steady_gauge",), _fam("steady_gauge")))
    r.register(GaugeSource("flaky", ("flaky_gauge",), flaky))

    def health() -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for fam in r.health_metrics():
            for s in fam.samples:
                out.setdefault(s.name, {})[s.labels[C.GAUGE_SOURCE]] = s.value
        return out

    never = health()
    assert never[C.SQL_REFRESH_LAST_SUCCESS] == {"flaky": 0.0, "steady": 0.0}
    assert never[C.SQL_REFRESH_FAILURES + "_total"] == {"flaky": 0.0, "steady": 0.0}

    before = time.time()
    r.refresh_now()
    first = health()
    assert all(before <= t <= time.time() for t in first[C.SQL_REFRESH_LAST_SUCCESS].values())
    assert all(d > 0 for d in first[C.SQL_REFRESH_LAST_DURATION].values())

    state["fail"] = True
    time.sleep(0.01)
    r.refresh_now()
    r.refresh_now()
    second = health()
    assert second[C.SQL_REFRESH_FAILURES + "_total"] == {"flaky": 2.0, "steady": 0.0}
    assert second[C.SQL_REFRESH_LAST_SUCCESS]["flaky"] == first[C.SQL_REFRESH_LAST_SUCCESS]["flaky"]
    assert second[C.SQL_REFRESH_LAST_SUCCESS]["steady"] > first[C.SQL_REFRESH_LAST_SUCCESS]["steady"]
    # the failed source's gauges are its last success's
    assert {m.name: m.samples[0].value for m in r.metrics()} == {"steady_gauge": 1.0, "flaky_gauge": 7.0}


@pytest.mark.parametrize("duration, waited, rest", [
    (0.1, 0.0, 0.9),    # MAX_DUTY: 9 times the refresh
    (0.001, 0.0, 0.5),  # never less than min_gap
    (5.0, 0.0, 25.0),   # 45 s of duty rest, but the next pass must start by 30 s after this one
    (5.0, 10.0, 15.0),  # ... of which 10 s went by waiting for a poke
    (40.0, 0.0, 0.5),   # a refresh longer than max_age: the next one after min_gap
    (0.1, 15.0, 0.9),   # idle (no poke for the whole interval): the duty rest, as before
])
def test_the_rest_after_a_refresh(duration: float, waited: float, rest: float) -> None:
    """Under sustained ingest each refresh folds more than the last; the duty bound alone would let the gauges age
    without limit (its rest grows with each refresh), so the rest is cut to keep each pass within max_age of the
    previous one's start."""
    r = GaugeRefresher(duckdb.connect().cursor, interval=15.0, min_gap=0.5, max_age=30.0)
    r.last_duration = duration
    assert r.rest_after(waited) == pytest.approx(rest)


def test_sustained_pokes_with_slow_refreshes_keep_the_gauges_within_max_age() -> None:
    """Refreshes of 0.2 s under constant pokes: the duty bound alone would rest 1.8 s after each (as
    test_constant_pokes_get_at_most_a_tenth_of_the_time); with max_age 0.6 s the passes start 0.6 s apart."""
    starts = _starts_under_constant_pokes(0.2, 3.0, max_age=0.6)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) >= 4, starts  # the duty bound alone: 2 in 3 s
    assert max(gaps) < 0.6 + 0.3, gaps  # a pass's own 0.2 s slower than asked, and thread scheduling
