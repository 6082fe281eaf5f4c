"""Shared by the benchmarks: machine description, writing one marked section of docs/performance.md, running a
measurement with another checkout's code."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def machine() -> str:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {mem}, Python {platform.python_version()}, {platform.machine()}"


def write_section(name: str, markdown: str) -> None:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    block = f"{start}\n{markdown.strip()}\n{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    DOC.write_text(text)


_IN_CHECKOUT = """
import sys
import collector, slo
_code = sys.argv.pop()
assert all(m.__file__.startswith(_code) for m in (collector, slo)), (_code, collector.__file__, slo.__file__)
"""


def run_in_checkout(script: str, args: list[str], code: Path, cwd: Path) -> dict:
    """Run `script` (Python source, which prints one JSON object last) in a fresh process with the checkout `code`
    first on its path (checked before it runs), and return that object: benches that alternate this checkout with
    another (`--before`)."""
    # cwd: `python -c` puts the working directory first on sys.path, before PYTHONPATH
    out = subprocess.run([sys.executable, "-c", _IN_CHECKOUT + script, *args, str(code)], check=True, text=True,
                         capture_output=True, cwd=cwd, env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def alternated(script: str, cases: dict[str, tuple[Path, list[str]]], codes: dict[str, Path], reps: int,
               work: Path) -> dict[tuple[str, str], list[dict]]:
    """`reps` rounds of every case (a database, copied afresh for each run, and the script's other arguments) with
    every checkout of `codes` (`run_in_checkout`), alternated so that the machine's drift falls on all alike; the
    runs' objects by (case, checkout label)."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(reps):
        for case, (db, args) in cases.items():
            for label, code in codes.items():
                run = work / "run.duckdb"
                shutil.copy(db, run)
                runs.setdefault((case, label), []).append(run_in_checkout(script, [str(run), *args], code, work))
                print(case, label, runs[(case, label)][-1], flush=True)
    return runs


def alternated_rows(runs: dict[tuple[str, str], list[dict]], counts: tuple[str, ...]) -> list[str]:
    """Markdown rows of `alternated`'s runs: case, checkout, median `ms` and every run's, then the `counts` of the
    last run (what the fold found, the same in every run)."""
    rows = []
    for (case, label), rs in runs.items():
        each = ", ".join(f"{r['ms']:,.0f}" for r in rs)
        found = " | ".join(f"{rs[-1][c]:,}" for c in counts)
        rows.append(f"| {case} | {label} | **{statistics.median(r['ms'] for r in rs):,.0f}** | {each} | {found} |")
    return rows

