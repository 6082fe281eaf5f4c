"""Folding several batches in one pass gives what folding each in its own transaction gives.

The deriver folds every batch pending since its last transaction at once (collector/storage/derive.py:
`fold_batches`; collector/storage/batch.py combines a key's batch rows by each upsert's rule). Several of those
rules are not associative (a run's identity fields keep the stored value unless an older batch carries one; a
kernel's end reason and a schedule's team are replaced only by a newer row that sets them; a run's counters are
labelled as the attempt was stored just before its first terminal event; a reproducibility check compares with
the baseline its own batch leaves). So the streams here are built to hit them: few keys, each touched by many
small batches, values that disagree and are often missing, event times out of order and tied, several terminal
events per attempt, and succeeded reruns with the same inputs in different batches.

The reference is the writer without `defer_derive`, which derives each batch in the transaction that commits it;
the same batches go through the deferred writer, folded all at once, or in two passes (the second over stored
rows). Every derived table, with the id of the batch that last updated each attempt, and every counter must be
equal.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from collector.contract.vectorized import validate_json_items
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.storage import db as dbmod
from tests.support import event

T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
TABLES = {
    "run_attempts": "SELECT * FROM run_attempts ORDER BY ALL",
    "kernel_sessions": "SELECT * FROM kernel_sessions ORDER BY ALL",
    "notebooks": "SELECT * FROM notebooks ORDER BY ALL",
    "schedules": "SELECT * FROM schedules ORDER BY ALL",
    "repro_baselines": "SELECT * FROM repro_baselines ORDER BY ALL",
    "metric_counters": "SELECT * FROM metric_counters ORDER BY ALL",
}


def _maybe(rnd: random.Random, values: list, p_none: float = 0.4):
    return None if rnd.random() < p_none else rnd.choice(values)


def _data(rnd: random.Random, **fields) -> dict:
    """`fields` without the ones drawn as missing (None)."""
    return {k: v for k, v in fields.items() if v is not None}


def _stream(seed: int) -> list[dict]:
    rnd = random.Random(seed)
    # a few hours, in whole minutes: ties between events of different batches are common
    when = lambda: (T0 + timedelta(minutes=rnd.randrange(0, 240))).isoformat()  # noqa: E731
    out: list[dict] = []
    n = 0

    def add(type_: str, data: dict) -> None:
        nonlocal n
        n += 1
        out.append(event(f"e{n}", type_, data, time_=when()))

    for _ in range(60):  # runs: 4 run ids x 2 attempts, lifecycle events in any order, several terminal ones
        run, attempt = f"r{rnd.randrange(4)}", rnd.choice([1, 2])
        kind = rnd.choice(["queued", "started", "succeeded", "succeeded", "failed"])
        ident = dict(run_id=run, attempt=attempt if rnd.random() < 0.8 else None,
                     notebook_id=rnd.choice(["nb1", "nb2"]), team=_maybe(rnd, ["a", "b", "c"]),
                     owner=_maybe(rnd, ["o1", "o2"]), trigger=_maybe(rnd, ["scheduled", "manual"]),
                     environment=_maybe(rnd, ["prod", "dev"]))
        if kind in ("succeeded", "failed"):
            ident.update(duration_seconds=rnd.choice([5.0, 50.0, 500.0]), output_hash=rnd.choice(["o1", "o2"]),
                         input_hash="i", parameters_hash="p", env_hash=rnd.choice(["e", "f"]))
        add(f"notebook.run.{kind}", _data(rnd, **ident))
    for _ in range(40):  # kernels: 3 ids, restarts, deaths and shutdowns with and without reasons
        kernel = f"k{rnd.randrange(3)}"
        common = dict(kernel_id=kernel, team=_maybe(rnd, ["a", "b"]), owner=_maybe(rnd, ["o1", "o2"]),
                      notebook_id=_maybe(rnd, ["nb1", "nb2"]), notebook_path=_maybe(rnd, ["/x.ipynb", "/y.ipynb"]))
        kind = rnd.choice(["started", "restarted", "died", "shutdown"])
        if kind == "restarted":
            common["reason"] = rnd.choice(["user", "crash", "oom"])
        elif kind == "died":
            common.update(reason=rnd.choice(["crash", "oom", "unknown"]), exit_code=_maybe(rnd, [1, 137]))
        elif kind == "shutdown":
            common["reason"] = rnd.choice(["user", "culled"])
        add(f"notebook.kernel.{kind}", _data(rnd, **common))
    for _ in range(25):  # the registry and schedules of two notebooks
        nb = rnd.choice(["nb1", "nb2"])
        kind = rnd.choice(["registered", "updated", "promoted", "schedule.registered"])
        if kind == "schedule.registered":
            add("notebook.schedule.registered", _data(rnd, notebook_id=nb, team=_maybe(rnd, ["a", "b"]),
                                                     cron=rnd.choice(["0 * * * *", "*/5 * * * *"]),
                                                     timezone=_maybe(rnd, ["UTC", "Europe/Paris"]),
                                                     grace_seconds=_maybe(rnd, [60.0, 600.0])))
        elif kind == "promoted":
            add("notebook.promoted", {"notebook_id": nb})
        else:
            add(f"notebook.{kind}", _data(rnd, notebook_id=nb, team=_maybe(rnd, ["a", "b"]),
                                          owner=_maybe(rnd, ["o1", "o2"]), critical=_maybe(rnd, [True, False]),
                                          has_tests=_maybe(rnd, [True, False])))
    rnd.shuffle(out)
    return out


def _batches(seed: int) -> list[list[dict]]:
    events = _stream(seed)
    rnd = random.Random(seed + 1000)
    cuts = sorted(rnd.sample(range(1, len(events)), 30))
    return [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)])]


def _tables(con) -> dict[str, list]:
    return {name: con.execute(q).fetchall() for name, q in TABLES.items()}


def _ingest(path, batches: list[list[dict]], deferred: bool, passes: int = 1) -> dict[str, list]:
    con = dbmod.connect(path)
    w = Writer(con, CounterStore(), defer_derive=deferred, derive_delay=3600)
    w.start()
    try:
        cut = len(batches) // 2
        for k, b in enumerate(batches):
            got = validate_json_items(b)
            assert not got.rejections, got.rejections[0].errors
            w.submit(got.table, []).result(timeout=30)
            if deferred and passes > 1 and k + 1 == cut:  # the first half folded, the rest over stored rows
                assert w.wait_derived(timeout=30)
        if deferred:
            assert w.wait_derived(timeout=30)
            assert w.stats.derives == passes
    finally:
        w.stop()
    rows = _tables(con)
    con.close()
    return rows


@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("seed", range(10))
def test_one_pass_over_many_batches_equals_one_transaction_per_batch(tmp_path, seed, passes):
    batches = _batches(seed)
    reference = _ingest(tmp_path / "each.duckdb", batches, deferred=False)
    combined = _ingest(tmp_path / "combined.duckdb", batches, deferred=True, passes=passes)
    for name in TABLES:
        assert combined[name] == reference[name], name
    assert all(reference.values())  # not vacuous: every table has rows


def test_the_streams_reach_the_rules_that_are_not_associative(tmp_path):
    """The equality above is only evidence where batches disagree: check that the streams make the one-pass fold
    take each non-trivial branch (a run's identity replaced by an older batch, a stored value kept against a newer
    batch's, a run counted in a batch after others touched it, two batches' reruns compared with one baseline)."""
    seen = {"older_identity": 0, "first_end_after_others": 0, "shared_baseline": 0}
    for seed in range(10):
        events = _stream(seed)
        batches = _batches(seed)
        of = {e["id"]: k for k, b in enumerate(batches) for e in b}
        by_run: dict[tuple, list[dict]] = {}
        for e in events:
            if e["type"].startswith("notebook.run."):
                by_run.setdefault((e["data"]["run_id"], e["data"].get("attempt") or 1), []).append(e)
        baselines: dict[tuple, set[int]] = {}
        for evs in by_run.values():
            evs.sort(key=lambda e: of[e["id"]])
            firsts = [min((x["time"] for x in evs if of[x["id"]] == of[e["id"]])) for e in evs]
            seen["older_identity"] += any(later < earlier for earlier, later in zip(firsts, firsts[1:]))
            ends = [of[e["id"]] for e in evs if e["type"] in ("notebook.run.succeeded", "notebook.run.failed")]
            seen["first_end_after_others"] += bool(ends) and min(ends) > of[evs[0]["id"]]
            for e in evs:
                if e["type"] == "notebook.run.succeeded":
                    key = (e["data"]["notebook_id"], e["data"]["env_hash"])
                    baselines.setdefault(key, set()).add(of[e["id"]])
        seen["shared_baseline"] += sum(len(b) > 1 for b in baselines.values())
    assert all(n >= 5 for n in seen.values()), seen
