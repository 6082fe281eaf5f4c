"""CPU seconds of each thread of a command, in total and per half second: which thread holds the critical path.

    .venv/bin/python bench/thread_cpu.py -- .venv/bin/python -m collector.cli ingest FILE --db X --no-progress

Runs the command and reads /proc/PID/task/*/stat every 50 ms (Linux only). Threads are named by what py-spy dump
says of the Python ones (MainThread, duckdb-writer, duckdb-deriver) when py-spy is installed, else by their kernel
name (DuckDB's workers show as `python`, polars' as `polars-N`). Prints each thread's CPU over the run, then the
six busiest threads' cores in use per half second. Measures; asserts nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _sample(pid: int) -> dict[int, tuple[str, float]]:
    """(kernel name, CPU seconds) of each thread of `pid`."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the thread ended
            continue
        name, rest = text.split("(", 1)[1].rsplit(")", 1)
        fields = rest.split()
        out[int(stat.parent.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _python_names(pid: int) -> dict[int, str]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True).stdout
    return {int(m.group(1), 0): m.group(2) for m in re.finditer(r'^Thread (\S+) \([^)]*\): "([^"]+)"', dump, re.M)}


def main() -> None:
    cmd = sys.argv[1:]
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd or cmd[0] in ("-h", "--help"):
        sys.exit(__doc__)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0, names, last, series, due = time.perf_counter(), {}, {}, [], 0.5
    while proc.poll() is None:
        last.update(_sample(proc.pid))
        now = time.perf_counter() - t0
        if not names and now > 4:
            names = _python_names(proc.pid)
        if now >= due:
            series.append((now, {t: c for t, (_, c) in last.items()}))
            due += 0.5
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    label = {t: names.get(t, n) for t, (n, _) in last.items()}
    total = {t: c for t, (_, c) in last.items()}
    print(f"wall {wall:.2f} s, CPU {sum(total.values()):.2f} s, exit {proc.returncode}")
    for t, c in sorted(total.items(), key=lambda x: -x[1]):
        if c >= 0.05:
            print(f"  {label[t]:>16} {c:7.2f} s")
    top = sorted(total, key=lambda t: -total[t])[:6]
    print("cores in use per half second:")
    print("     t " + " ".join(f"{label[t][:10]:>10}" for t in top) + "      total")
    prev: dict[int, float] = {}
    for at, snap in series:
        row = [2 * (snap.get(t, 0) - prev.get(t, 0)) for t in top]
        print(f"{at:6.1f} " + " ".join(f"{v:10.2f}" for v in row)
              + f" {2 * (sum(snap.values()) - sum(prev.values())):10.2f}")
        prev = snap


if __name__ == "__main__":
    main()
