"""/metrics equals counts computed independently from the posted events; counters survive a restart;
`promtool check metrics` finds nothing to say."""

from __future__ import annotations

import random
import subprocess
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from collector.contract.events import EVENT_TYPES
from collector.metrics.counters import COUNTERS, HISTOGRAM
from collector.storage.derive import DURATION_BUCKETS
from tests.conftest import auth
from tests.support import event, parse_metrics

T0 = datetime(2026, 11, 10, tzinfo=timezone.utc)
TEAMS = ["alpha", "beta", "gamma"]
SECRET = "AKIAIOSFODNN7EXAMPL3"


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def corpus(seed: int) -> list[list[dict]]:
    """Batches of events with duplicates, retries, out-of-order and duplicate terminal events, invalid events."""
    rng = random.Random(seed)
    events: list[dict] = []
    n = 0

    def add(type_, data, minute, source="test://gen"):
        nonlocal n
        n += 1
        events.append(event(f"e{n}", type_, data, source=source, time_=ts(minute)))

    for r in range(60):
        team, trig = rng.choice(TEAMS), rng.choice(["scheduled", "manual", "api"])
        env = rng.choice(["prod", "dev"])
        nb = f"nb{rng.randrange(6)}"
        base = {"run_id": f"run{r}", "notebook_id": nb, "team": team, "trigger": trig, "environment": env}
        start = rng.uniform(0, 5000)
        for attempt in range(1, rng.choice([1, 1, 2, 3]) + 1):
            d = {**base, "attempt": attempt}
            add("notebook.run.started", d, start)
            outcome = rng.choice(["succeeded"] * 5 + ["failed", "timed_out", "cancelled"])
            dur = rng.choice([0.5, 3, 29, 30, 31, 400, 5000, 90000])
            term = {**d, "duration_seconds": dur, "input_hash": "i", "parameters_hash": "p", "env_hash": "e",
                    "output_hash": rng.choice(["o1", "o1", "o2"])}
            if rng.random() < 0.1:
                term["error_message"] = f"boto failed with key {SECRET}"
            add(f"notebook.run.{outcome}", term, start + dur / 60)
            if rng.random() < 0.15:  # a second terminal event for the same attempt, later
                add("notebook.run.failed", {**d, "duration_seconds": dur + 1}, start + dur / 60 + 1)
            start += dur / 60 + 2
    for k in range(40):
        team = rng.choice(TEAMS)
        add("notebook.kernel.started", {"kernel_id": f"k{k}", "team": team}, rng.uniform(0, 5000))
        for _ in range(rng.randrange(3)):
            add("notebook.kernel.restarted", {"kernel_id": f"k{k}", "team": team,
                                              "reason": rng.choice(["user", "crash", "oom"])}, rng.uniform(0, 5000))
        if rng.random() < 0.3:
            add("notebook.kernel.died", {"kernel_id": f"k{k}", "team": team,
                                         "reason": rng.choice(["crash", "oom", "signal", "unknown"])},
                rng.uniform(0, 5000))
    for q in range(30):
        add("notebook.quality.checked", {"notebook_id": "nb1", "team": rng.choice(TEAMS), "check": f"c{q}",
                                         "result": rng.choice(["pass", "pass", "fail"])}, rng.uniform(0, 5000))
        add("notebook.reproducibility.checked", {"notebook_id": "nb1", "team": rng.choice(TEAMS),
                                                 "result": rng.choice(["match", "mismatch"])}, rng.uniform(0, 5000))
        add("platform.probe", {"target": rng.choice(["ui", "api"]), "ok": rng.random() < 0.9}, rng.uniform(0, 5000))
    add("notebook.security.secret_detected", {"notebook_id": "nb2", "team": "beta", "detector": "x"}, 10)
    events.append(event("bad1", "platform.probe", {"target": "ui"}))               # missing ok
    events.append(event("bad2", "notebook.kernel.died", {"kernel_id": "k", "reason": "nope"}))
    events.append({"type": "what"})

    rng.shuffle(events)  # out of order on purpose
    batches = [events[i:i + 37] for i in range(0, len(events), 37)]
    batches.append(rng.sample(events, 25))  # re-sent events: duplicates
    return batches


def reference(batches: list[list[dict]]) -> dict[tuple[str, tuple], float]:
    """Plain-Python counters, batch by batch, as DESIGN.md defines them."""
    exp: Counter = Counter()
    seen: set = set()
    attempt_done: set = set()
    baselines: dict = {}

    def c(name, value=1.0, **labels):
        exp[(name, tuple(sorted(labels.items())))] += value

    for batch in batches:
        new = []
        for ev in batch:
            if ev.get("type") not in EVENT_TYPES:
                c("observatory_events_rejected_total", reason="unknown_type")
                continue
            d = ev["data"]
            if (ev["type"] == "platform.probe" and "ok" not in d):
                c("observatory_events_rejected_total", reason="missing")
                continue
            if ev["type"] == "notebook.kernel.died" and d["reason"] not in ("crash", "oom", "signal", "unknown"):
                c("observatory_events_rejected_total", reason="literal_error")
                continue
            key = (ev["source"], ev["id"])
            if key in seen:
                c("observatory_events_duplicate_total")
                continue
            seen.add(key)
            new.append(ev)
        terminals = defaultdict(list)
        for ev in new:
            t, d = ev["type"], ev["data"]
            c("observatory_events_ingested_total", source=ev["source"], type=t)
            team = d.get("team", "unknown")
            if t == "notebook.kernel.started":
                c("notebook_kernel_sessions_total", team=team)
            if t == "notebook.kernel.died" or (t == "notebook.kernel.restarted" and d["reason"] in ("crash", "oom")):
                c("notebook_kernel_crashes_total", team=team, reason=d["reason"])
            if t == "notebook.quality.checked":
                c("notebook_quality_checks_total", team=team, result=d["result"])
            if t == "notebook.reproducibility.checked":
                c("notebook_reproducibility_checks_total", team=team, result=d["result"])
            if t == "platform.probe":
                c("notebook_platform_probes_total", target=d["target"], result="ok" if d["ok"] else "failed")
            if t == "notebook.security.secret_detected" or SECRET in d.get("error_message", ""):
                c("notebook_secret_exposures_total", team=team)
            if t in ("notebook.run.succeeded", "notebook.run.failed", "notebook.run.timed_out",
                     "notebook.run.cancelled"):
                terminals[(d["run_id"], d["attempt"])].append(ev)
        firsts = []
        for key, evs in terminals.items():
            if key in attempt_done:
                continue
            attempt_done.add(key)
            last = max(evs, key=lambda e: (e["time"], e["id"]))
            d = last["data"]
            outcome = last["type"].rsplit(".", 1)[1]
            c("notebook_run_attempts_total", team=d["team"], trigger=d["trigger"], environment=d["environment"],
              outcome=outcome)
            dur = d["duration_seconds"]
            lab = {"team": d["team"], "trigger": d["trigger"]}
            for b in DURATION_BUCKETS:
                if dur <= b:
                    c("notebook_run_duration_seconds_bucket", le=str(float(b)), **lab)
            c("notebook_run_duration_seconds_bucket", le="+Inf", **lab)
            c("notebook_run_duration_seconds_count", **lab)
            c("notebook_run_duration_seconds_sum", dur, **lab)
            if outcome == "succeeded":
                firsts.append((last["time"], key, d))
        # reproducibility: earliest succeeded attempt per (notebook, hashes) is the baseline
        for t_end, key, d in firsts:
            hk = (d["notebook_id"], d["input_hash"], d["parameters_hash"], d["env_hash"])
            cand = (t_end, key[0], key[1], d["output_hash"])
            if hk not in baselines or cand[:3] < baselines[hk][:3]:
                baselines[hk] = cand
        for t_end, key, d in firsts:
            hk = (d["notebook_id"], d["input_hash"], d["parameters_hash"], d["env_hash"])
            b = baselines[hk]
            if (b[1], b[2]) != key:
                c("notebook_reproducibility_checks_total", team=d["team"],
                  result="match" if b[3] == d["output_hash"] else "mismatch")
    return dict(exp)


# cumulative buckets compare directly with the exposition; the reference above adds one per bucket >= duration
COUNTER_SAMPLES = set(COUNTERS) | {f"{HISTOGRAM}_{s}" for s in ("bucket", "sum", "count")}


def exposed(text: str) -> dict:
    """The event counters and the duration histogram (SQL-backed gauges are tested with the SLIs)."""
    return {k: v for k, v in parse_metrics(text).items() if k[0] in COUNTER_SAMPLES and v != 0}


@pytest.mark.parametrize("seed", [1, 2])
def test_metrics_equal_independent_counts_and_survive_restart(make_client, seed):
    batches = corpus(seed)
    c = make_client()
    for b in batches:
        r = c.post("/v1/events", json=b, headers=auth("ingest"))
        assert r.status_code in (200, 422)
    text = c.get("/metrics", headers=auth("read")).text
    expected = {k: v for k, v in reference(batches).items() if v != 0}
    got = exposed(text)
    assert got == pytest.approx(expected), sorted(set(got.items()) ^ set(expected.items()))[:10]
    assert SECRET not in text

    c.__exit__(None, None, None)  # restart on the same file
    again = make_client()
    assert exposed(again.get("/metrics", headers=auth("read")).text) == pytest.approx(expected)


def test_promtool_check_metrics_is_silent(client):
    for b in corpus(3):
        client.post("/v1/events", json=b, headers=auth("ingest"))
    text = client.get("/metrics", headers=auth("read")).text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
    # OpenMetrics when asked (promtool only lints the text format; the strict OpenMetrics parser checks this one)
    w = client.app.state.store.writer
    assert w.wait_derived(timeout=60)  # (so that the writer's figures below stay as the scrape read them)
    r = client.get("/metrics", headers={**auth("read"), "Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    fams = {f.name for f in openmetrics_families(r.text)}
    assert {"notebook_run_attempts", "notebook_run_duration_seconds"} <= fams
    # the writer's own families, each as the writer counts it
    live = {f.name: f.samples[0].value for f in openmetrics_families(r.text) if f.name.startswith("observatory_writer")}
    assert live["observatory_writer_derive_lag_events"] == w.derive_lag_events
    assert live["observatory_writer_deriver_wait_seconds"] == w.stats.deriver_wait_seconds
    counts = {s.labels["stage"]: s.value for f in openmetrics_families(r.text)
              if f.name == "observatory_writer_transaction_duration_seconds"
              for s in f.samples if s.name.endswith("_count")}
    assert counts == {"commit": w.stats.batches, "derive": w.stats.derives} and w.stats.batches > 0


def test_scrape_reads_the_snapshot_not_the_database(client, monkeypatch):
    client.post("/v1/events", json=corpus(4)[0], headers=auth("ingest"))
    store = client.app.state.store

    def boom(*a, **k):
        raise AssertionError("a scrape must not open a database cursor")

    monkeypatch.setattr(store, "cursor", boom)
    monkeypatch.setattr(store, "read_cursor", boom)
    assert client.get("/metrics", headers=auth("read")).status_code == 200


def test_duckdbs_memory_is_exposed_by_what_for(client):
    """observatory_duckdb_memory_bytes and _temporary_bytes: one sample per tag of DuckDB's duckdb_memory(), computed
    with the SQL-backed gauges (a scrape still opens no cursor); the events' key index is among them once events
    are stored; observatory_duckdb_memory_limit_bytes is the limit DuckDB applies (here its default)."""
    import duckdb

    for b in corpus(5):
        client.post("/v1/events", json=b, headers=auth("ingest"))
    store = client.app.state.store
    store.refresher.refresh_now()
    samples = parse_metrics(client.get("/metrics", headers=auth("read")).text)
    with store.read_cursor() as cur:
        tags = {t.lower() for (t,) in cur.execute("SELECT tag FROM duckdb_memory()").fetchall()}
    plain = duckdb.connect(":memory:")
    assert tags == {t.lower() for (t,) in plain.execute("SELECT tag FROM duckdb_memory()").fetchall()}
    for name in ("observatory_duckdb_memory_bytes", "observatory_duckdb_temporary_bytes"):
        got = {dict(labels)["tag"]: v for (n, labels), v in samples.items() if n == name}
        assert set(got) == tags and all(v >= 0 for v in got.values()), (name, got)
    assert samples[("observatory_duckdb_memory_bytes", (("tag", "art_index"),))] > 0
    limit = plain.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # the same default, unset
    number, unit = limit.split()
    want = float(number) * 1024 ** ["bytes", "KiB", "MiB", "GiB", "TiB"].index(unit)
    assert samples[("observatory_duckdb_memory_limit_bytes", ())] == pytest.approx(want)
