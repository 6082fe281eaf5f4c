"""What a schedule (re)registration costs the SLI fold (slo/sli/missed.py, slots.py): the fold after every scheduled
notebook registers its schedule again, on the ingest bench's history.

    .venv/bin/python bench/bench_registrations.py                       # this checkout, 5 runs per case
    .venv/bin/python bench/bench_registrations.py --before /tmp/base    # alternated with the collector of a checkout

The history is the first `--events` events of bench/gen_events.py's file (`observatory ingest --db`, folded once at
its last event's time). Two cases, each on a fresh copy, folded at that time + 1 minute:
- restart: every notebook's latest registration again, unchanged, at the history's end (a scheduler re-announcing
  its schedules when it starts);
- late: the same registrations timed `--late-days` before the history's end (a registration arriving late).
A no-op case (probes instead of registrations) gives the fold's fixed cost. Each fold runs in a fresh process (one
DuckDB thread, as the collector's refresher), `--before`'s first on PYTHONPATH. Figures go to docs/performance.md
between the registrations markers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import alternated, alternated_rows, machine, write_section  # noqa: E402

FOLD = """
import json, sys, time
from datetime import datetime, timedelta
from collector.storage import db
from slo.sli.config import SliConfig
from slo.sli.fold import fold
import collector.contract.events  # imported in a running collector: not the fold's cost (missed.py imports it lazily)
con = db.connect(sys.argv[1], threads=1)
now = datetime.fromisoformat(sys.argv[2])
t0 = time.perf_counter()
st = fold(con, SliConfig(), now=now)
print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3, "new_missed": st.new_missed,
                  "decided": st.slots_decided}))
con.close()
"""


def build(events: int, work: Path) -> tuple[Path, list[tuple[str, str]], datetime]:
    """The folded history: (its database, each scheduled notebook's latest registration as (source, data), the
    time of its last event)."""
    import bench_ingest
    from collector.ingest.files import ingest_files_to_db
    from collector.storage import db
    from slo.sli.config import SliConfig
    from slo.sli.fold import fold

    parquet, _, _ = bench_ingest.data_files(max(events, 1_000_000), ROOT / "var" / "bench", 7)
    head = work / "history.parquet"
    pq.write_table(pq.read_table(parquet).slice(0, events), head)
    base = work / "history.duckdb"
    ingest_files_to_db([head], base, progress=False)
    con = db.connect(base, threads=1)
    end = con.execute("SELECT max(time) FROM events").fetchone()[0]
    fold(con, SliConfig(), now=end + timedelta(seconds=30))
    regs = con.execute("""
        SELECT source, data FROM (SELECT *, row_number() OVER (PARTITION BY notebook_id ORDER BY time DESC, id) AS k
                                  FROM events WHERE type = 'notebook.schedule.registered') WHERE k = 1
        ORDER BY source, data""").fetchall()
    con.close()
    return base, regs, end


def write_case(path: Path, kind: str, regs: list, at: str) -> None:
    with path.open("w") as f:
        for i, (source, data) in enumerate(regs):
            if kind == "noop":
                e = {"type": "platform.probe", "source": "probe://bench", "data": {"target": "hub", "ok": True}}
            else:
                e = {"type": "notebook.schedule.registered", "source": source, "data": json.loads(data)}
            f.write(json.dumps({"specversion": "1.0", "id": f"{kind}-{i}", "time": at, **e}) + "\n")


def main() -> None:
    from collector.ingest.files import ingest_files_to_db

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--late-days", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--before", type=Path, help="a checkout whose fold runs alternately with this one's")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=ROOT / "var") as d:
        work = Path(d)
        base, regs, end_t = build(args.events, work)
        now = (end_t + timedelta(minutes=1)).isoformat()
        at = {"noop": end_t, "restart": end_t, "late": end_t - timedelta(days=args.late_days)}
        cases = {}
        for kind, when in at.items():
            write_case(work / f"{kind}.ndjson", kind, regs, when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            db = work / f"{kind}.duckdb"
            shutil.copy(base, db)
            ingest_files_to_db([work / f"{kind}.ndjson"], db, progress=False)
            cases[kind] = db
        codes = {"this": ROOT} | ({"before": args.before.resolve()} if args.before else {})
        runs = alternated(FOLD, {kind: (db, [now]) for kind, db in cases.items()}, codes, args.reps, work)
    rows = alternated_rows(runs, ("new_missed", "decided"))
    print("\n".join(rows), flush=True)
    text = (
        f"Measured by `bench/bench_registrations.py` on {machine()}: the SLI fold after each of the "
        f"{len(regs)} scheduled notebooks of the first {args.events:,} events of the ingest bench's history "
        f"registers its schedule again; one DuckDB thread, a fresh process per fold, the cases and checkouts "
        f"alternated, {args.reps} runs each.\n\n"
        "| case | code | fold, ms (median) | runs | misses found | slots decided |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\n"
        f"restart: the registrations unchanged at the history's end; late: the same, timed {args.late_days:g} days "
        "before it; noop: as many probes instead (the fold's fixed cost). Command: `python "
        "bench/bench_registrations.py" + (" --before CHECKOUT" if args.before else "") + "`.\n")
    if not args.no_write:
        write_section("registrations", text)


if __name__ == "__main__":
    main()
