"""Time of SLIs M4 (whole allocated cost per run) and M10 (month over month) against all 15 SLIs, on the demo platform
(history and billing). Usage: python bench/bench_cost_slis.py [DAYS]; the database is kept in var/ between runs."""
from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from collector.demo import platform as demo
from slo.sli.compute import compute
from slo.sli.config import SliConfig, SliQuery
days = int(sys.argv[1]) if len(sys.argv) > 1 else 30
db = Path(f"var/bench-cost-slis-{days}d.duckdb")
end = datetime(2026, 3, 20, 12, tzinfo=timezone.utc)
if not db.exists():
    print(demo.backfill(db, days=days, end=end))
con = duckdb.connect(str(db))
n_lines = con.execute("SELECT count(*) FROM cost_line_items").fetchone()[0]
n_runs = con.execute("SELECT count(*) FROM run_attempts").fetchone()[0]
def t(slis):
    q = SliQuery(as_of=end, windows=["1h", "1d", "7d", "30d"], slis=slis, levels=("platform", "team"))
    out = []
    for _ in range(5):
        t0 = time.perf_counter(); compute(con, q, SliConfig()); out.append(time.perf_counter() - t0)
    return statistics.median(out)
print(f"{days} days: {n_lines} billing lines, {n_runs} run attempts")
print(f"M4 alone {t(['M4'])*1000:.0f} ms; M10 alone {t(['M10'])*1000:.0f} ms; all 15 SLIs {t([f'M{i}' for i in range(1,16)])*1000:.0f} ms (medians of 5)")
