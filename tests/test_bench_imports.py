"""Every bench script still loads against the product's code.

Why: a figure in docs/performance.md is only as good as the command that reproduces it, and nothing else runs the
benches. bench_rules.py imported a private helper of slo/rules/slo_alerts.py that a later change removed, and failed
at its first line for many rounds before anyone ran it again. Loading each script (its imports and top-level
definitions, not its `main`) catches that in the suite, in one interpreter, in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))

# Runs each script as a module that is not __main__ (so its `main()` does not run), as the benches run: with the
# repository and bench/ on the path. Prints {script: error} for those that fail to load.
_LOADER = """
import json, runpy, sys, traceback
sys.path[:0] = [{root!r}, {bench!r}]
failed = {{}}
for path in {scripts!r}:
    try:
        runpy.run_path(path, run_name="bench_load_check")
    except BaseException:
        failed[path] = traceback.format_exc(limit=3)[-600:]
print(json.dumps(failed))
"""


def test_there_are_bench_scripts_to_load():
    assert len(SCRIPTS) > 20 and ROOT / "bench" / "bench_rules.py" in SCRIPTS


def test_every_bench_script_loads():
    code = _LOADER.format(root=str(ROOT), bench=str(ROOT / "bench"), scripts=[str(p) for p in SCRIPTS])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    failed = json.loads(out.stdout.strip().splitlines()[-1])
    assert not failed, "\n\n".join(f"{Path(p).name}:\n{err}" for p, err in failed.items())
