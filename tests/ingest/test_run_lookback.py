"""The writer looks for a batch's stored attempts and kernel sessions among the recent ones first
(collector/storage/derive.py: RUN_LOOKBACK, KERNEL_LOOKBACK) and does the transaction again over the whole table
when one was stored before that bound. Either way the derived tables and counters must be what the exhaustive way
gives: checked here on streams of run and kernel events spanning weeks (late terminal events of old runs, retries,
duplicates), cut into random batches, against a writer that always goes the exhaustive way."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from collector.contract.vectorized import validate_json_items
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.storage import db as dbmod
from collector.storage import derive
from tests.support import event

T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)  # its last events, 34 days on, are in the past
TABLES = ("SELECT * EXCLUDE (updated_batch, first_batch) FROM run_attempts ORDER BY ALL",
          "SELECT * FROM kernel_sessions ORDER BY ALL",
          "SELECT * FROM repro_baselines ORDER BY ALL",
          "SELECT * FROM metric_counters ORDER BY ALL")


def _stream(seed: int) -> list[dict]:
    rnd = random.Random(seed)
    out: list[dict] = []
    for r in range(30):
        start = T0 + timedelta(hours=rnd.randrange(0, 24 * 20))
        base = {"run_id": f"r{r}", "notebook_id": f"nb{r % 4}", "team": f"t{r % 3}", "trigger": "scheduled",
                "input_hash": "i", "parameters_hash": "p", "env_hash": "e"}
        for attempt in range(1, rnd.choice([2, 3]) + 1):
            t = start + timedelta(hours=attempt)
            a = {**base, "attempt": attempt}
            out.append(event(f"q{r}.{attempt}", "notebook.run.queued", a, time_=t.isoformat()))
            # most end within hours; some ten days later (stored long before the batch that ends them), some
            # a day or two later (stored near the bound)
            u = rnd.random()
            end = t + (timedelta(days=10) if u < 0.2 else timedelta(hours=rnd.uniform(24, 60)) if u < 0.5
                       else timedelta(minutes=rnd.randrange(1, 300)))
            state = rnd.choice(["succeeded", "succeeded", "failed"])
            out.append(event(f"e{r}.{attempt}", f"notebook.run.{state}",
                             {**a, "duration_seconds": 60, "output_hash": rnd.choice(["o1", "o2"])},
                             time_=end.isoformat()))
    for k in range(15):  # kernels: restarted within hours, ended hours or days (up to two weeks) later
        t = T0 + timedelta(hours=rnd.randrange(0, 24 * 20))
        base = {"kernel_id": f"k{k}", "team": f"t{k % 3}", "notebook_id": f"nb{k % 4}"}
        out.append(event(f"ks{k}", "notebook.kernel.started", base, time_=t.isoformat()))
        out.append(event(f"kr{k}", "notebook.kernel.restarted", {**base, "reason": rnd.choice(["crash", "user"])},
                         time_=(t + timedelta(hours=2)).isoformat()))
        end = t + timedelta(hours=rnd.choice([3, 30, 24 * 5, 24 * 9, 24 * 14]))
        ending = rnd.choice([("notebook.kernel.died", {"reason": "oom", "exit_code": 137}),
                             ("notebook.kernel.shutdown", {"reason": "culled"})])
        out.append(event(f"kd{k}", ending[0], {**base, **ending[1]}, time_=end.isoformat()))
    rnd.shuffle(out)
    out.sort(key=lambda e: (e["time"] if rnd.random() < 0.8 else ""))  # mostly in time order, some arrive first
    return out + rnd.sample(out, 5)  # and a few duplicates


def _ingest(tmp_path, name: str, events: list[dict], cuts: list[int], exhaustive: bool) -> tuple[list, int]:
    con = dbmod.connect(tmp_path / f"{name}.duckdb")
    w = Writer(con, CounterStore())
    if exhaustive:
        w._transaction = lambda writes: w._transaction_once(writes, exhaustive=True)  # type: ignore[method-assign]
    w.start()
    try:
        for a, b in zip([0, *cuts], [*cuts, len(events)]):
            got = validate_json_items(events[a:b])
            assert not got.rejections
            w.submit(got.table, []).result(timeout=30)
    finally:
        w.stop()
    rows = [con.execute(q).fetchall() for q in TABLES]
    con.close()
    return rows, w.stats.redone["before_lookback"]


@pytest.mark.parametrize("seed", range(6))
def test_bounded_lookups_give_what_the_exhaustive_way_gives(tmp_path, seed):
    events = _stream(seed)
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(events)), 12))
    bounded, retries = _ingest(tmp_path, "bounded", events, cuts, exhaustive=False)
    exhaustive, _ = _ingest(tmp_path, "exhaustive", events, cuts, exhaustive=True)
    assert bounded == exhaustive
    assert bounded[0] and bounded[2]  # not vacuous: attempts and counters were written


def test_the_stream_reaches_behind_the_bound(tmp_path):
    """Over the seeds above, some batch meets an attempt stored before RUN_LOOKBACK (the retry runs)."""
    total = 0
    for seed in range(6):
        events = _stream(seed)
        cuts = sorted(random.Random(seed).sample(range(1, len(events)), 12))
        (tmp_path / str(seed)).mkdir()
        total += _ingest(tmp_path / str(seed), "b", events, cuts, exhaustive=False)[1]
    assert total > 0
    assert derive.RUN_LOOKBACK < timedelta(days=10)  # the stream's late ends are behind the bounds
    assert derive.KERNEL_LOOKBACK < timedelta(days=9)
