"""What folding a backlog costs the SLI fold (slo/sli/fold.py), in time and memory, by its slice size
(`OBSERVATORY_SLI_FOLD_MAX_EVENTS`).

    .venv/bin/python bench/bench_fold_backlog.py                 # 1M events, 3 runs per case
    .venv/bin/python bench/bench_fold_backlog.py --reps 5 --most 50000 --most 100000

The history is the first `--events` events of bench/gen_events.py's file, committed as the collector commits HTTP
requests (`--batch` events per ingest batch, `observatory ingest --db --chunk-rows`). Two backlogs:
- restart: the first `--folded` events folded, the rest not (a collector started after a bulk import, or a gauge
  refresher that fell behind a flood);
- first: nothing folded (a collector's first fold over an imported history).
Each is folded at its last event's time + 30 s, in a fresh process (one DuckDB thread, as the collector's refresher),
once per slice size, the cases alternated: the fold's wall time, and its peak RSS above the process's RSS when it
began (the kernel's high-water mark, reset just before the fold). Figures go to docs/performance.md between the
fold-backlog markers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import alternated, machine, write_section  # noqa: E402
from slo.sli.config import SliConfig  # noqa: E402

UNBOUNDED = 10**12
DEFAULT = SliConfig.model_fields["fold_max_events"].default

FOLD = """
import json, sys, time
from datetime import datetime
from pathlib import Path
from collector.storage import db
from slo.sli.config import SliConfig
from slo.sli.fold import fold
import collector.contract.events  # imported in a running collector: not the fold's cost (missed.py imports it lazily)

def status(key):
    return int(Path("/proc/self/status").read_text().split(key + ":")[1].split()[0]) * 1024

con = db.connect(sys.argv[1], threads=1)
now, most = datetime.fromisoformat(sys.argv[2]), int(sys.argv[3])
con.execute("SELECT count(*) FROM events").fetchall()
before = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # the high-water mark from here
t0 = time.perf_counter()
st = fold(con, SliConfig(fold_max_events=most), now=now)
ms = (time.perf_counter() - t0) * 1e3
peak = (status("VmHWM") - before) / 2**20
t1 = time.perf_counter()
con.execute("CHECKPOINT")  # what the fold left in the WAL: the next commit past the threshold would write it
print(json.dumps({"ms": ms, "checkpoint_ms": (time.perf_counter() - t1) * 1e3, "peak_mib": peak,
                  "slices": st.slices, "new_missed": st.new_missed, "decided": st.slots_decided}))
con.close()
"""


def build(events: int, folded: int, batch: int, work: Path) -> tuple[dict[str, Path], str]:
    """The two backlogs' databases, and the time they are folded at."""
    import bench_ingest
    from collector.ingest.files import ingest_files_to_db
    from collector.storage import db
    from slo.sli.config import SliConfig
    from slo.sli.fold import fold

    parquet, _, _ = bench_ingest.data_files(max(events, 1_000_000), ROOT / "var" / "bench", 7)
    table = pq.read_table(parquet).slice(0, events)
    head, rest = work / "head.parquet", work / "rest.parquet"
    pq.write_table(table.slice(0, folded), head)
    pq.write_table(table.slice(folded), rest)
    first = work / "first.duckdb"
    ingest_files_to_db([head, rest], first, chunk_rows=batch, progress=False)
    con = db.connect(first, threads=1)
    now = con.execute("SELECT max(time) FROM events").fetchone()[0] + timedelta(seconds=30)
    con.close()
    restart = work / "restart.duckdb"
    ingest_files_to_db([head], restart, chunk_rows=batch, progress=False)
    con = db.connect(restart, threads=1)
    fold(con, SliConfig(), now=now)
    con.close()
    ingest_files_to_db([rest], restart, chunk_rows=batch, progress=False)
    return {"restart": restart, "first": first}, now.isoformat()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--folded", type=int, default=100_000, help="events folded before the restart backlog")
    ap.add_argument("--batch", type=int, default=4_000, help="events per ingest batch")
    ap.add_argument("--most", type=int, action="append", help="slice sizes (default: 100,000, 250,000, 400,000)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--history", type=Path, help="also the first fold of this unfolded database and its JSON beside "
                                                 "(bench_sli.py's var/bench_sli.duckdb: 10M events)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    sizes = [*(args.most or [100_000, 250_000, 400_000]), UNBOUNDED]

    with tempfile.TemporaryDirectory(dir=ROOT / "var") as d:
        work = Path(d)
        dbs, now = build(args.events, args.folded, args.batch, work)
        cases = {(name, most): (path, [now, str(most)]) for name, path in dbs.items() for most in sizes
                 if name == "restart" or most in (DEFAULT, UNBOUNDED)}
        if args.history:  # bench_sli.py's history, not folded: its first fold, at bench_sli.py's `now`
            meta = json.loads(args.history.with_suffix(".json").read_text())
            for most in (DEFAULT, UNBOUNDED):
                cases[(f"history-{meta['events'] / 1e6:.0f}M", most)] = (args.history, [meta["now"], str(most)])
        runs = alternated(FOLD, {f"{name} {most}": c for (name, most), c in cases.items()}, {"this": ROOT},
                          args.reps, work)
    rows = []
    for (case, _), rs in runs.items():
        name, most = case.split()
        ms = [r["ms"] for r in rs]
        whole = [r["ms"] + r["checkpoint_ms"] for r in rs]
        peak = [r["peak_mib"] for r in rs]
        rows.append(f"| {name} | {'unbounded' if int(most) == UNBOUNDED else f'{int(most):,}'} | {rs[-1]['slices']} "
                    f"| **{statistics.median(ms):,.0f}** | {', '.join(f'{x:,.0f}' for x in ms)} "
                    f"| **{statistics.median(whole):,.0f}** | {', '.join(f'{x:,.0f}' for x in whole)} "
                    f"| **{statistics.median(peak):,.0f}** | {', '.join(f'{x:,.0f}' for x in peak)} "
                    f"| {rs[-1]['new_missed']:,} | {rs[-1]['decided']:,} |")
    print("\n".join(rows), flush=True)
    pending = {"restart": args.events - args.folded, "first": args.events}
    history = (f"; {next(name for name, _ in cases if name.startswith('history'))}: the first fold of "
               "bench/bench_sli.py's history, in its batches of up to 200,000 events" if args.history else "")
    text = (
        f"Measured by `bench/bench_fold_backlog.py` on {machine()}: the SLI fold of a backlog of the ingest bench's "
        f"events committed in batches of {args.batch:,} (restart: {pending['restart']:,} events after "
        f"{args.folded:,} folded; first: {pending['first']:,}, nothing folded{history}), by the most events a slice "
        f"takes (`OBSERVATORY_SLI_FOLD_MAX_EVENTS`, default {DEFAULT:,}); one DuckDB thread, a fresh process per "
        f"fold, the cases alternated, {args.reps} runs each.\n\n"
        "| backlog | slice, events | slices | fold, ms (median) | runs | fold and checkpoint, ms (median) | runs "
        "| peak RSS above the fold's start, MiB (median) | runs | misses found | slots decided |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\nfold and checkpoint: the fold, then a `CHECKPOINT` of what it left in the WAL "
        "(a slice's COMMIT checkpoints once the WAL passes DuckDB's threshold; one fold of everything leaves it to the "
        "writer's next commit). Command: `python bench/bench_fold_backlog.py"
        + (" --history var/bench_sli.duckdb" if args.history else "") + "`.\n")
    if not args.no_write:
        write_section("fold-backlog", text)


if __name__ == "__main__":
    main()
