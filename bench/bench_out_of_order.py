"""What runs whose events arrive out of order cost the SLI fold (slo/sli/missed.py: reopen_unserved), and whether
the missed slots then equal those of the same events in order, on bench_sli.py's folded history.

    .venv/bin/python bench/bench_out_of_order.py                          # this checkout, 5 runs per case
    .venv/bin/python bench/bench_out_of_order.py --before /tmp/base       # alternated with another checkout

The history is bench_sli.py's, folded once (var/bench_sli.folded.duckdb, built and folded here when missing). The
10,000 new events of bench_sli.py's incremental phase (the same mix, ~the last two days) are cut in two batches,
each committed through the checkout's own writer and deriver and folded: `ordered` first the queued and started
events, then the terminal ones; `reversed` first the terminal events (each run first seen at its end), then the
others (first seen earlier: a slot served by an end may no longer be). Timed: the second fold. Reported beside it:
the misses in force after it, which one fold of all the events gives whatever the order. Each run in a fresh process
(one DuckDB thread, as the collector's refresher) on a fresh copy, the checkout's code first on PYTHONPATH. Figures
go to docs/performance.md between the out-of-order markers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_sli  # noqa: E402
from report import alternated, alternated_rows, machine, write_section  # noqa: E402

RUN = """
import json, sys, time
from datetime import datetime
import pyarrow.parquet as pq
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.storage import db
from collector.storage.schema import INGEST_SCHEMA
from slo.sli.config import SliConfig
from slo.sli.fold import fold
con = db.connect(sys.argv[1], threads=1)
now, cfg = datetime.fromisoformat(sys.argv[3]), SliConfig()
fold(con, cfg, now=now)
for i, batch in enumerate(json.loads(sys.argv[2])):
    w = Writer(con, CounterStore())
    w.start()
    w.submit(pq.read_table(batch).cast(INGEST_SCHEMA), []).result()
    w.stop()
    t0 = time.perf_counter()
    st = fold(con, cfg, now=now)
    ms = (time.perf_counter() - t0) * 1e3
missed = con.execute("SELECT count(*) FROM sli_missed_slots WHERE retracted_at IS NULL").fetchone()[0]
print(json.dumps({"ms": ms, "attempts": st.attempts, "new_missed": st.new_missed, "in_force": missed}))
con.close()
"""


def batches(work: Path, now: datetime) -> dict[str, list[str]]:
    """Both cases' two batches, as Parquet files of INGEST_SCHEMA rows."""
    new = bench_sli.generate(300_000, now, seed=11, prefix="new-", registry=False)
    new = new.slice(new.num_rows - 10_000, 10_000)  # bench_sli.py's incremental batch
    terminal = pc.match_substring_regex(new.column("type"), r"\.(succeeded|failed|timed_out|cancelled)$")
    parts = {"terminal": new.filter(terminal), "others": new.filter(pc.invert(terminal))}
    for name, table in parts.items():
        pq.write_table(table, work / f"{name}.parquet")
    order = {"ordered": ("others", "terminal"), "reversed": ("terminal", "others")}
    return {case: [str(work / f"{p}.parquet") for p in names] for case, names in order.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=ROOT / "var" / "bench_sli.duckdb",
                    help="bench_sli.py's history (its .folded.duckdb and .json beside it are read; built and folded "
                         "first when missing, as bench_sli.py does)")
    ap.add_argument("--events", type=int, default=10_000_000, help="the history's events, when it is built")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--before", type=Path, help="a checkout whose fold runs alternately with this one's")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    folded, info = bench_sli.folded_history(args.db, args.events)
    now = info["now"]
    codes = {"this": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    with tempfile.TemporaryDirectory(dir=folded.parent) as d:
        work = Path(d)
        cases = batches(work, datetime.fromisoformat(now))
        runs = alternated(RUN, {case: (folded, [json.dumps(parts), now]) for case, parts in cases.items()}, codes,
                          args.reps, work)
    rows = alternated_rows(runs, ("attempts", "new_missed", "in_force"))
    text = (
        f"Measured by `bench/bench_out_of_order.py` on {machine()}: bench_sli.py's 10,000 incremental events on its "
        f"folded history ({folded.name}), cut in two batches, each committed and folded; `ordered`: queued and "
        "started events first, terminal ones second; `reversed`: terminal events first (each run first seen at its "
        "end), the others second. The second fold timed; one DuckDB thread, a fresh process and copy per run, "
        f"cases and checkouts alternated, {args.reps} runs each.\n\n"
        "| case | code | second fold, ms (median) | runs | attempts folded | misses found | misses in force after |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "The misses in force are the same in both orders when the fold takes back the slots that runs first seen "
        "earlier no longer serve. Command: `python bench/bench_out_of_order.py"
        + (" --before CHECKOUT" if args.before else "") + "`.\n")
    print(text)
    if not args.no_write:
        write_section("out-of-order", text)


if __name__ == "__main__":
    main()
