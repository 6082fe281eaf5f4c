"""What marking the SLIs with the run attempts they miss costs (slo/sli/underived.py), at the bench's 10M history.

Every SLI computation first asks which batches the deriver gave up on and did not derive again; normally none, and
that one statement is all it pays. When there are some, it groups their run events by attempt. This bench times
`missing_attempts` and the whole incremental `compute` (the refresher's, platform and team levels, the configured
windows) with none given up on, with the newest batch given up on, and with the oldest and the newest, on a copy of
bench/bench_sli.py's folded history (`var/bench_sli.folded.duckdb`; run bench_sli.py first). Also the answer of
`GET /v1/runs/{id}` for a run not found (`rederive.holding`), the count a cost report of the running month adds
(cost/reports/data.py: `underived_attempts`) and the one every page of `GET /v1/runs` adds, unfiltered
(`rederive.attempts_held`). Prints medians; writes nothing.

    python bench/bench_underived.py [--db var/bench_sli.folded.duckdb] [--reps 9]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.ingest import rederive  # noqa: E402
from collector.storage import db as dbmod  # noqa: E402
from collector.storage.queries import RUN_EVENT  # noqa: E402
from cost import budget, variance  # noqa: E402
from cost.reports.data import underived_attempts  # noqa: E402
from slo.sli.compute import compute  # noqa: E402
from slo.sli.config import SliConfig, SliQuery  # noqa: E402
from slo.sli.underived import missing_attempts  # noqa: E402
from slo.sli.windows import windows  # noqa: E402


def _ms(fn: Callable[[], object], reps: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1e3)
    return statistics.median(runs), runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=ROOT / "var" / "bench_sli.folded.duckdb")
    ap.add_argument("--reps", type=int, default=9)
    a = ap.parse_args()
    if not a.db.exists():
        sys.exit(f"{a.db} is missing: run `python bench/bench_sli.py --events 10003589` first")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "u.duckdb"
        shutil.copy(a.db, copy)
        con = dbmod.connect(copy)
        cur = con.cursor()
        events, lo, hi, now = cur.execute("SELECT count(*), min(batch_id), max(batch_id), max(time) FROM events"
                                          ).fetchone()
        cfg = SliConfig()
        q = SliQuery(as_of=now, windows=list(cfg.windows), levels=("platform", "team"))
        wins = windows(q.windows, now)
        period, _ = variance.periods(budget.current_month(now), now)  # the running month, to date
        compute(cur, q, cfg)  # folded up to date, caches warm
        some_run = cur.execute("SELECT run_id FROM events WHERE batch_id = ? AND run_id IS NOT NULL LIMIT 1",
                               [lo]).fetchone()[0]
        print(f"history: {events:,} events in batches {lo}-{hi}; {a.reps} repetitions each, medians")
        for label, given_up in (("no batch given up on", []), ("the newest batch", [hi]),
                                ("the oldest and the newest", [lo, hi])):
            for b in given_up:
                cur.execute("INSERT INTO derive_failures (batch_id, failed_at, events, error) "
                            "SELECT ?, now(), 0, 'Bench' WHERE NOT EXISTS "
                            "(SELECT 1 FROM derive_failures WHERE batch_id = ?)", [b, b])
            got = missing_attempts(cur, wins, now, ["(), (team)"])
            held = cur.execute(f"SELECT count(*) FROM events WHERE list_contains(?, batch_id) AND {RUN_EVENT}",
                               [given_up]).fetchone()[0] if given_up else 0
            m, runs = _ms(lambda: missing_attempts(cur, wins, now, ["(), (team)"]), a.reps)
            c, _ = _ms(lambda: compute(cur, q, cfg, fold_first=False), a.reps)
            r, _ = _ms(lambda: rederive.holding(cur, some_run), a.reps)
            k, _ = _ms(lambda: underived_attempts(cur, period), a.reps)
            li, _ = _ms(lambda: rederive.attempts_held(cur), a.reps)
            platform = {k[0]: v for k, v in got.items() if k[1] is None}
            print(f"- {label}: {held:,} run events in them; missing_attempts **{m:.1f} ms** (runs "
                  f"{', '.join(f'{x:.1f}' for x in runs)}), the whole computation {c:.1f} ms, a run's 404 "
                  f"(`rederive.holding`) {r:.1f} ms, a cost report's count {k:.1f} ms "
                  f"({underived_attempts(cur, period)} attempts of {period.label}), a listing's count {li:.1f} ms "
                  f"({sum(rederive.attempts_held(cur).values())} attempts); attempts marked at the platform level per "
                  f"window {platform}")
        con.close()


if __name__ == "__main__":
    main()
