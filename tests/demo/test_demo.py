"""The demo platform (collector/demo.py): valid, deterministic, realistic history; backfill through the real writer
with nothing secret left in the file; HTTP backfill honouring 429; live traffic that survives an absent collector."""

from __future__ import annotations

import collections
import importlib.util
import logging
import math
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import duckdb
import httpx
import orjson
import pytest
from croniter import croniter
from zoneinfo import ZoneInfo

from collector.demo import platform as demo
from collector.contract.events import EVENT_TYPES, TERMINAL_RUN_TYPES
from collector.contract.validation import validate_items
from tests.support import ROOT, Collector, free_port, metric_sum, parse_metrics

END = datetime(2026, 3, 2, 9, 41, 17, tzinfo=timezone.utc)

# What a planted credential looks like in the generated (unredacted) events; the group is the secret itself.
SECRET_PATTERNS = {
    "aws_access_key": re.compile(r"(AKIA[A-Z0-9]{16})"),
    "aws_secret_key": re.compile(r'aws_secret_access_key=\\?"([A-Za-z0-9/+]{40})'),
    "postgres_password": re.compile(r"postgresql://[a-z_]+:([A-Za-z0-9]{16})@"),
    "github_token": re.compile(r"(ghp_[A-Za-z0-9]{36})"),
}


def _events(days: int, seed: int = 7, end: datetime = END) -> list[dict]:
    return [ev for chunk in demo.generate(days, seed, end) for ev in chunk]


@pytest.fixture(scope="module")
def three_days() -> list[dict]:
    return _events(3)


def _planted(events: list[dict]) -> tuple[dict[str, set[str]], int]:
    """Secrets found in the raw generated events by kind, and how many events carry at least one."""
    found: dict[str, set[str]] = {k: set() for k in SECRET_PATTERNS}
    carriers = 0
    for ev in events:
        text = orjson.dumps(ev).decode()
        hit = False
        for kind, rx in SECRET_PATTERNS.items():
            for m in rx.finditer(text):
                found[kind].add(m.group(1))
                hit = True
        carriers += hit
    return found, carriers


def _terminal(ev: dict) -> bool:
    return ev["type"] in TERMINAL_RUN_TYPES


# ---- the generated history ------------------------------------------------------------------------------------


def test_every_event_validates_and_every_type_occurs(three_days):
    for i in range(0, len(three_days), 5000):
        v = validate_items(three_days[i:i + 5000])
        assert v.rejections == [], v.rejections[:3]
    assert set(EVENT_TYPES) <= {ev["type"] for ev in three_days}


def test_time_order_window_ids_and_chunks():
    chunks = list(demo.generate(3, 7, END))
    assert all(len(c) <= demo.CHUNK_EVENTS for c in chunks) and all(len(c) == demo.CHUNK_EVENTS for c in chunks[:-1])
    events = [ev for c in chunks for ev in c]
    times = [datetime.fromisoformat(ev["time"].replace("Z", "+00:00")) for ev in events]
    assert times == sorted(times)
    assert times[0] >= END - timedelta(days=3) and times[-1] < END
    keys = [(ev["source"], ev["id"]) for ev in events]
    assert len(keys) == len(set(keys))
    assert all(ev["specversion"] == "1.0" and ev["time"].endswith("Z") for ev in events)


def test_same_inputs_same_history_other_seed_other_history():
    a = [orjson.dumps(ev) for ev in _events(2)]
    b = [orjson.dumps(ev) for ev in _events(2)]
    assert a == b
    c = [orjson.dumps(ev) for ev in _events(2, seed=8)]
    assert c != a
    ids_a = {orjson.loads(x)["id"] for x in a}
    ids_c = {orjson.loads(x)["id"] for x in c}
    # probes and scheduled runs are keyed by time slot; ad-hoc runs and kernels get other ids
    assert ids_a != ids_c and len(ids_a ^ ids_c) > 1000


def test_run_lifecycles_are_consistent(three_days):
    by_attempt: dict[tuple[str, int], dict[str, dict]] = collections.defaultdict(dict)
    for ev in three_days:
        if ev["type"].startswith("notebook.run."):
            d = ev["data"]
            by_attempt[(d["run_id"], d["attempt"])][ev["type"].rsplit(".", 1)[1]] = ev
    assert len(by_attempt) > 500
    attempts_of: dict[str, list[int]] = collections.defaultdict(list)
    retried = 0
    for (run_id, attempt), evs in by_attempt.items():
        attempts_of[run_id].append(attempt)
        assert "queued" in evs  # every attempt starts inside the window; only the end cuts lifecycles
        phases = [p for p in ("queued", "started") if p in evs]
        terms = [p for p in evs if p not in ("queued", "started")]
        assert len(terms) <= 1
        ordered = [evs[p]["time"] for p in phases + terms]
        assert ordered == sorted(ordered)
        if not terms:
            continue
        assert "started" in evs
        d = evs[terms[0]]["data"]
        cells = d["cells"]
        assert [c["index"] for c in cells] == list(range(len(cells)))
        assert math.isclose(sum(c["duration_seconds"] for c in cells), d["duration_seconds"], abs_tol=1e-6)
        if terms[0] == "succeeded":
            assert all(c["status"] == "ok" for c in cells) and d["output_hash"].startswith("sha256:")
        else:
            assert sum(c["status"] == "error" for c in cells) == 1 and d["error_type"]
        assert d["cpu_seconds"] >= 0 and d["max_memory_bytes"] > 0
        for h in ("input_hash", "parameters_hash", "env_hash"):
            assert d[h].startswith("sha256:")
        if d["trigger"] == "scheduled":
            assert d["scheduled_for"] <= evs[terms[0]]["time"]
        if attempt > 1:
            retried += 1
            prev = by_attempt[(run_id, attempt - 1)]
            assert {"failed", "timed_out"} & set(prev), "a retry follows a failed or timed out attempt"
    for run_id, attempts in attempts_of.items():
        assert sorted(attempts) == list(range(1, len(attempts) + 1))
    assert retried > 0


def test_cron_slots_agree_with_croniter():
    lo = datetime(2026, 3, 20, tzinfo=timezone.utc).timestamp()  # spans the EU and US DST changes
    hi = lo + 20 * demo.DAY
    for cron, tz in (("5 * * * *", "UTC"), ("0 6 * * *", "Europe/Berlin"), ("0 8 * * *", "America/New_York"),
                     ("15 6 * * 1-5", "UTC"), ("30 5 * * *", None)):
        it = croniter(cron, datetime.fromtimestamp(lo - 1, ZoneInfo(tz or "UTC")))
        ref = []
        while (t := it.get_next(datetime).timestamp()) < hi:
            ref.append(t)
        assert demo.cron_slots(cron, tz, lo, hi) == ref, cron


def test_the_story_of_thirty_days():
    """Volumes, healthy vs flaky notebooks, the failing critical notebook, missed slots, registry gaps."""
    n = 0
    types = collections.Counter()
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    sched_runs: dict[str, set[str]] = collections.defaultdict(set)
    schedules: dict[str, tuple[str, str, str]] = {}
    registered: dict[str, dict] = {}
    promoted: dict[str, str] = {}
    last_sched: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    repro = collections.Counter()
    for chunk in demo.generate(30, 7, END):
        n += len(chunk)
        for ev in chunk:
            ty, d = ev["type"], ev["data"]
            types[ty] += 1
            if ty in TERMINAL_RUN_TYPES:
                outcomes[d["notebook_id"]][TERMINAL_RUN_TYPES[ty]] += 1
                if d["trigger"] == "scheduled":
                    last_sched[d["notebook_id"]].append((d["scheduled_for"], TERMINAL_RUN_TYPES[ty]))
            if ty == "notebook.run.started" and d["trigger"] == "scheduled":
                sched_runs[d["notebook_id"]].add(d["scheduled_for"])
            elif ty == "notebook.schedule.registered":
                schedules[d["notebook_id"]] = (d["cron"], d["timezone"], ev["time"])
            elif ty == "notebook.registered":
                registered[d["notebook_id"]] = d
            elif ty == "notebook.promoted":
                promoted[d["notebook_id"]] = ev["time"]
            elif ty == "notebook.reproducibility.checked":
                repro[d["result"]] += 1
    assert 100_000 <= n <= 300_000  # generation speed is a figure in docs/demo.md, not a test

    teams = {d["team"] for d in registered.values()}
    assert 5 <= len(teams) <= 6 and 35 <= len(registered) <= 45
    required = ("team", "cost_center", "data_classification")
    missing = [nb for nb, d in registered.items() if not all(k in d.get("tags", {}) for k in required)]
    assert 3 <= len(missing) <= 10
    critical = [d for d in registered.values() if d["critical"]]
    assert any(not d["has_tests"] for d in critical) and sum(d["has_tests"] for d in critical) >= len(critical) // 2
    assert promoted and all(registered[nb]["created_at"] < t for nb, t in promoted.items())

    def rate(nb: str) -> float:
        c = outcomes[nb]
        return c["succeeded"] / (c["succeeded"] + c["failed"] + c["timed_out"])

    healthy = ("fin-revenue-daily", "fin-invoice-reconciliation", "ml-feature-store-refresh",
               "de-events-ingest-validate", "pa-dau-mau", "mkt-seo-report")
    big = collections.Counter()
    for nb in healthy:
        big.update(outcomes[nb])
    assert 0.98 <= big["succeeded"] / (big["succeeded"] + big["failed"] + big["timed_out"]) <= 0.998
    for flaky in ("risk-chargeback-monitor", "de-orders-dedup"):
        assert 0.85 <= rate(flaky) <= 0.97
    # the critical notebook failing in a row at the end
    tail = sorted(last_sched["risk-fraud-scoring"])[-9:]
    assert [o for _, o in tail] == ["failed"] * 9
    assert registered["risk-fraud-scoring"]["critical"] is True
    # missed slots: registered cron slots with no run
    missed = 0
    end_ts = END.timestamp()
    for nb, (cron, tz, reg) in schedules.items():
        lo = datetime.fromisoformat(reg.replace("Z", "+00:00")).timestamp()
        slots = demo.cron_slots(cron, tz, lo, end_ts - 3600)
        ran = {datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in sched_runs[nb]}
        missed += sum(1 for s in slots if s not in ran)
    assert 10 <= missed <= 200
    assert types["notebook.run.timed_out"] > 0 and types["notebook.run.cancelled"] > 0
    assert types["notebook.kernel.died"] > 0 and types["platform.probe"] == 2 * 30 * 24 * 60
    assert repro["match"] > repro["mismatch"] > 0


# ---- into DuckDB through the writer ---------------------------------------------------------------------------


def test_backfill_counts_match_the_generated_events_and_no_secret_is_stored(tmp_path):
    events = _events(2)
    found, carriers = _planted(events)
    assert all(found.values()), {k: len(v) for k, v in found.items()}  # each kind is planted within 2 days
    db = tmp_path / "demo.duckdb"
    summary = demo.backfill(db, days=2, seed=7, end=END)
    assert summary.startswith(f"backfilled {len(events)} events, 6 teams")

    attempts = {(ev["data"]["run_id"], ev["data"]["attempt"]) for ev in events
                if ev["type"].startswith("notebook.run.")}
    kernels = {ev["data"]["kernel_id"] for ev in events if ev["type"].startswith("notebook.kernel.")}
    notebooks = {ev["data"]["notebook_id"] for ev in events
                 if ev["type"] in ("notebook.registered", "notebook.updated", "notebook.promoted")}
    failed_attempts = {(ev["data"]["run_id"], ev["data"]["attempt"]) for ev in events
                       if ev["type"] == "notebook.run.failed"}
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == len(events)
        assert con.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM run_attempts").fetchone()[0] == len(attempts)
        assert con.execute("SELECT count(*) FROM run_attempts WHERE state = 'failed'").fetchone()[0] == len(
            failed_attempts)
        assert con.execute("SELECT count(*) FROM kernel_sessions").fetchone()[0] == len(kernels)
        assert con.execute("SELECT count(*) FROM notebooks").fetchone()[0] == len(notebooks)
        # exactly the events that carry a planted secret were redacted: no false positives on the rest
        assert con.execute("SELECT count(*) FROM events WHERE redactions > 0").fetchone()[0] == carriers
        # no planted secret in any text column of any table
        text_cols = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND (data_type = 'VARCHAR' OR data_type = 'JSON')").fetchall()
        assert len(text_cols) > 20
        for kind, secrets in found.items():
            for secret in secrets:
                for table, col in text_cols:
                    hits = con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{col}" AS VARCHAR) LIKE ?',
                                       [f"%{secret}%"]).fetchone()[0]
                    assert hits == 0, f"{kind} secret stored in {table}.{col}"
        assert con.execute("SELECT count(*) FROM events WHERE data LIKE '%[REDACTED:%'").fetchone()[0] == carriers
        if importlib.util.find_spec("cost.demo") is not None:
            lines = int(re.search(r", (\d+) billing lines", summary).group(1))
            assert lines > 0
            assert con.execute("SELECT count(*) FROM cost_line_items").fetchone()[0] == lines
    finally:
        con.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("demo.duckdb"))
    for kind, secrets in found.items():
        for secret in secrets:
            assert secret.encode() not in raw, f"{kind} secret found in the raw DuckDB file"


def test_write_ndjson_round_trips(tmp_path):
    out = tmp_path / "demo.ndjson.gz"
    n = demo.write_ndjson(out, days=1, seed=3, end=END)
    import gzip

    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert n == len(lines) == sum(len(c) for c in demo.generate(1, 3, END))
    assert [orjson.loads(x) for x in lines[:50]] == _events(1, seed=3)[:50]


# ---- over HTTP ------------------------------------------------------------------------------------------------


def test_backfill_url_waits_out_429_with_retry_after(monkeypatch):
    calls: list[int] = []
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["authorization"] == "Bearer tok"
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "3"}, json={"detail": "full"})
        import gzip

        n = len(gzip.decompress(request.content).splitlines())
        return httpx.Response(200, json={"accepted": n, "duplicates": 0, "rejected": 0})

    monkeypatch.setattr(demo, "_client", lambda token, timeout=60.0: httpx.Client(
        transport=httpx.MockTransport(handler), headers={"Authorization": f"Bearer {token}"}))
    # `demo.time` is the time module: only this thread's sleeps are the backfill's (a background thread of an
    # earlier test in the same worker keeps its real sleep)
    me, real_sleep = threading.current_thread(), demo.time.sleep
    monkeypatch.setattr(demo.time, "sleep",
                        lambda s: slept.append(s) if threading.current_thread() is me else real_sleep(s))
    n = sum(len(c) for c in demo.generate(1, 7, END))
    summary = demo.backfill_url("http://collector.invalid", "tok", days=1, seed=7, end=END)
    assert slept == [3.0]
    assert f"accepted {n}, duplicates 0, rejected 0" in summary
    assert len(calls) == 1 + math.ceil(n / demo.HTTP_BATCH_EVENTS)


@pytest.mark.integration
def test_stream_live_into_a_real_collector_stops_cleanly(tmp_path, caplog):
    col = Collector(tmp_path / "live.duckdb").start()
    try:
        stop = threading.Event()
        caplog.set_level(logging.INFO, logger="collector.demo.platform")
        th = threading.Thread(target=demo.stream_live, args=(col.url, None, 40.0), kwargs={"stop": stop})
        th.start()
        time.sleep(2.0)
        t_stop = time.monotonic()
        stop.set()
        th.join(15)
        assert not th.is_alive()
        assert time.monotonic() - t_stop < 10
        final = [r for r in caplog.records if hasattr(r, "sent")][-1]
        assert final.sent > 10 and final.rejected == 0
        deadline = time.monotonic() + 10
        while True:
            samples = parse_metrics(httpx.get(col.url + "/metrics").text)
            ingested = metric_sum(samples, "observatory_events_ingested_total")
            if ingested >= final.sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert ingested == final.sent  # answered 2xx only after commit: all of them are counted
        assert metric_sum(samples, "notebook_platform_probes_total") >= 2 or ingested > 10
    finally:
        col.stop()
    assert "specversion" not in caplog.text and "notebook_id" not in caplog.text


def test_stream_live_without_a_collector_never_crashes(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="collector.demo.platform")
    monkeypatch.setattr(demo, "LIVE_BUFFER_EVENTS", 10)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            demo.stream_live(f"http://127.0.0.1:{free_port()}", "secret-token-xyz", 50.0, seed=7, stop=stop)
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    th = threading.Thread(target=target)
    th.start()
    time.sleep(1.5)
    stop.set()
    th.join(10)
    assert not th.is_alive() and errors == []
    final = [r for r in caplog.records if hasattr(r, "sent")][-1]
    assert final.sent == 0 and final.unsent == 10 and final.dropped > 0  # bounded: the oldest were dropped
    assert any("not accepting events" in r.getMessage() for r in caplog.records)
    for text in ("specversion", "notebook_id", "secret-token-xyz", "kernel_id"):
        assert text not in caplog.text


def _searchable(events: list[dict], as_of: datetime) -> tuple[int, int]:
    """Independent M9 on the generated events: per notebook the latest value of each registry field before as_of;
    searchable = an owner, a team and at least one non-blank tag (the default requirement)."""
    state: dict[str, dict] = {}
    for ev in sorted(events, key=lambda e: e["time"]):
        if ev["type"] not in ("notebook.registered", "notebook.updated"):
            continue
        if datetime.fromisoformat(ev["time"].replace("Z", "+00:00")) >= as_of:
            continue
        s = state.setdefault(ev["data"]["notebook_id"], {"registered": False})
        s["registered"] |= ev["type"] == "notebook.registered"
        for k in ("owner", "team", "tags"):
            if ev["data"].get(k) is not None:
                s[k] = ev["data"][k]
    reg = [s for s in state.values() if s["registered"]]
    ok = [s for s in reg if s.get("owner") and s.get("team")
          and any(str(v).strip() for v in (s.get("tags") or {}).values())]
    return len(ok), len(reg)


def test_searchability_counts_notebooks_registered_without_owner_or_tags(tmp_path):
    """Notebooks registered without an owner or tags are accepted (not dead-lettered) and count as not searchable;
    the figure at the end of the window is the one docs/demo.md states."""
    from slo.sli.compute import compute
    from slo.sli.config import SliConfig, SliQuery

    events = _events(2)
    bare = [ev["data"]["notebook_id"] for ev in events if ev["type"] == "notebook.registered"
            and ("owner" not in ev["data"] or not ev["data"].get("tags"))]
    assert "de-scratch" in bare and len(bare) >= 3
    db = tmp_path / "demo.duckdb"
    demo.backfill(db, days=2, seed=7, end=END)
    con = duckdb.connect(str(db))
    try:
        assert con.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
        got = {}
        for when in (END - timedelta(days=1, hours=6), END):  # before and after de-scratch gets its owner and tags
            q = SliQuery(as_of=when, windows=["1d"], slis=["M9"], levels=("platform",))
            (row,) = [r for r in compute(con, q, SliConfig()) if r["team"] is None]
            got[when] = (row["good"], row["total"])
            assert got[when] == _searchable(events, when)
            assert row["value"] == pytest.approx(row["good"] / row["total"]) and row["bad"] == row["total"] - \
                row["good"]
        assert got[END][0] == got[END - timedelta(days=1, hours=6)][0] + 1  # de-scratch became searchable
    finally:
        con.close()
    doc = ROOT / "docs" / "demo.md"
    stated = re.search(r"M9 searchability \((\d+)/(\d+) at the end", doc.read_text())
    assert stated and (int(stated.group(1)), int(stated.group(2))) == got[END]
