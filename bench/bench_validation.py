"""The batch validator alone (collector/contract/vectorized/): CPU-µs per event on JSON lines, by variant.

    .venv/bin/python bench/bench_validation.py                        # writes its section of docs/performance.md
    .venv/bin/python bench/bench_validation.py --before /tmp/base15   # also another checkout's validator
    .venv/bin/python bench/bench_validation.py --no-write --reps 3

Why: bench_ingest.py measures validation inside the whole product, where the writer, the deriver and the HTTP
server share the 2 cores. This runs `BulkValidator.validate_lines` alone on the bench's events (bench/gen_events.py)
at the two shapes of issue 11: 1,000-line requests (HTTP) and 100,000-line chunks (`observatory ingest --db`); and
the ingest route's whole preparation of 1,000 events posted as one JSON array (`_prepare`: since the sixteenth
round the array is split by msgspec and its items take the struct stage; before, orjson parsed it whole and the
generated checks took the dicts). Variants, each in a fresh process (PYTHONPATH), alternated, with the collector's
allocator settings:

- `stage on`: this code, the msgspec struct stage first (the collector's way);
- `stage off`: this code with `BulkValidator(struct_stage=False)` (the route: its validator's stage removed):
  orjson and the generated checks only;
- `before`: another checkout's validator (`--before`), e.g. the round's start.

Reported: the median over repetitions of each process's median CPU time (user + system) per event. No
assertions: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import machine, write_section  # noqa: E402

# Runs in the measured process: validates the first N lines of FILE (R times after one warm-up) and prints the
# median CPU-µs per event and how many rows each stage decided.
_PROBE = """
import json, statistics, sys, time
from collector.ingest import allocators
allocators.tune(True)
import pyarrow as pa
from collector.contract.vectorized.validator import BulkValidator, default_validator
path, n, reps, stage, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "on", sys.argv[5]
with open(path, "rb") as f:
    lines = [line for _, line in zip(range(n), f)]
if kind == "route":  # the ingest route's whole preparation of a JSON-array body, parsing included
    from collector.api.ingest import _prepare
    body = b"[" + b",".join(line.strip() for line in lines) + b"]"
    if not stage:
        default_validator().structs = None
    run = lambda: _prepare(body, "application/json", None, 1 << 40, 1 << 40)
else:
    arr = pa.array(lines, pa.binary())
    try:
        v = BulkValidator(struct_stage=stage)
    except TypeError:  # a checkout from before the struct stage
        v = BulkValidator()
    run = lambda: v.validate_lines(arr)
res = run()
times = []
for _ in range(reps):
    t = time.process_time()
    run()
    times.append(time.process_time() - t)
print(json.dumps({"us": statistics.median(times) / n * 1e6, "fast": res.fast, "exact": res.exact, "total": res.total}))
"""


def _run(code: Path, data: Path, n: int, reps: int, stage: bool, kind: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code))
    out = subprocess.run([sys.executable, "-c", _PROBE, str(data), str(n), str(reps), "on" if stage else "off", kind],
                         env=env, cwd=code, check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="alternated processes per variant and shape")
    ap.add_argument("--before", type=Path, help="another checkout whose validator is measured too")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/performance.md alone")
    args = ap.parse_args()

    from bench_ingest import data_files  # the same events as bench_ingest.py, generated once and cached

    _, data, _ = data_files(100_000, args.data_dir, 7)
    variants = [("stage on", ROOT, True), ("stage off", ROOT, False)]
    if args.before:
        variants.append((f"before ({args.before})", args.before.resolve(), True))
    shapes = [("1,000-line requests (HTTP)", 1_000, 40, "lines"), ("100,000-line chunks (bulk)", 100_000, 3, "lines"),
              ("1,000-event JSON arrays (the route, parsing included)", 1_000, 40, "route")]
    results: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.reps):
        for shape, n, inner, kind in shapes:
            for name, code, stage in variants:
                r = _run(code, data, n, inner, stage, kind)
                results.setdefault((shape, name), []).append(r["us"])
                print(f"rep {rep + 1} {shape:28} {name:30} {r['us']:6.2f} CPU-us/event "
                      f"(fast {r['fast']:,}, exact {r['exact']:,})", flush=True)
    rows = []
    for shape, *_ in shapes:
        base = statistics.median(results[(shape, "stage off")])
        for name, _, _ in variants:
            runs = results[(shape, name)]
            med = statistics.median(runs)
            rows.append(f"| {shape} | {name} | **{med:.2f}** | {', '.join(f'{x:.2f}' for x in runs)} | "
                        f"{med / base:.2f} |")
    cmd = "python bench/bench_validation.py" + (f" --before {args.before}" if args.before else "") + \
        (f" --reps {args.reps}" if args.reps != 5 else "")
    section = "\n".join([
        "Measured by `bench/bench_validation.py`.", "",
        f"Machine: {machine()}, shared and noisy. Command: `{cmd}`. `BulkValidator.validate_lines` alone on the "
        "bench's events, and the ingest route's preparation of the same events posted as one JSON array "
        "(`api/ingest.py: _prepare`: split, parse, checks), each variant in a fresh process, alternated; CPU "
        f"(user + system) per event, median of {args.reps} processes (runs listed).", "",
        "| shape | variant | CPU-µs per event | runs | ratio to stage off |", "|---|---|---|---|---|", *rows])
    print()
    print(section)
    if not args.no_write:
        write_section("validation", section)


if __name__ == "__main__":
    main()
