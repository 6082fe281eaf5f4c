"""A schedule catalogue (re)published: the SLI fold after N notebooks register their schedules again.

    .venv/bin/python bench/bench_schedules.py                          # 300 notebooks, */15 in three time zones
    .venv/bin/python bench/bench_schedules.py --code /path/to/checkout # another checkout's code, same virtualenv

Registries and schedulers republish their schedules (a catalogue sync, a deploy); each registration makes missed-run
detection and the slot outcomes enumerate the notebook's lookback (31 days) again: for a quarter-hourly schedule,
~3,000 slots per notebook. Each round posts one registration per notebook through the API (dated 30 days back, so
the whole lookback is due), then times `fold()`. The first round also pays the process's first enumeration of each
(cron, time zone) (slo/sli/cron_slots.py); the next ones are the steady state. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notebooks", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--cron", default="*/15 * * * *")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose code is measured (default: this one)")
    a = ap.parse_args()
    sys.path.insert(0, str(a.code))
    from fastapi.testclient import TestClient

    from collector.app import create_app
    from collector.settings import Settings
    from slo.sli.fold import fold

    now = datetime.now(timezone.utc).replace(microsecond=0)
    zones = ["UTC", "Europe/Paris", "America/New_York"]
    seconds = []
    with tempfile.TemporaryDirectory() as d:
        app = create_app(Settings(db=Path(d) / "o.duckdb", auth=False, gauge_refresh_seconds=3600))
        with TestClient(app) as client:
            for rnd in range(a.rounds):
                at = (now - timedelta(days=30, minutes=rnd)).isoformat()
                evs = [{"specversion": "1.0", "id": f"r{rnd}-{i}", "source": "bench://registry",
                        "type": "notebook.schedule.registered", "time": at,
                        "data": {"notebook_id": f"nb{i}", "team": "t", "cron": a.cron, "timezone": zones[i % 3]}}
                       for i in range(a.notebooks)]
                r = client.post("/v1/events", json=evs)
                assert r.status_code == 200, r.text
                with app.state.store.read_cursor() as cur:
                    t0 = time.perf_counter()
                    fold(cur, now=now)
                    seconds.append(time.perf_counter() - t0)
    print(f"code {a.code}: fold after {a.notebooks} re-registrations ({a.cron!r}, 3 time zones), seconds per round: "
          f"{[round(s, 2) for s in seconds]}; first (cold cron cache) {seconds[0]:.2f}, "
          f"median of the others {statistics.median(seconds[1:]):.2f}")


if __name__ == "__main__":
    main()
