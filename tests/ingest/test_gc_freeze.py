"""What the collector's start-up built is kept out of Python's full garbage collections (collector/ingest/gc_freeze.py).

Freezing is process-wide, so each case runs in a fresh interpreter that starts two collector apps: the first start
freezes, the second does not again. What is checked is what a full collection walks afterwards (`gc.get_objects()`
lists the objects it walks; frozen ones are not among them), the count the `collector started` log line reports,
and that `OBSERVATORY_GC_FREEZE=false` leaves Python's collections as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import gc, json, logging, pathlib, sys, tempfile
from fastapi.testclient import TestClient
from collector.app import create_app
from collector.settings import Settings

logged = []
class Started(logging.Handler):
    def emit(self, record):
        if record.getMessage() == "collector started":
            logged.append(record.gc_frozen_objects)
log = logging.getLogger("collector.http")
log.addHandler(Started())
log.setLevel(logging.INFO)
tmp = pathlib.Path(tempfile.mkdtemp())
before = len(gc.get_objects())
with TestClient(create_app(Settings(db=tmp / "a.duckdb", auth=False))):
    frozen, walked = gc.get_freeze_count(), len(gc.get_objects())
with TestClient(create_app(Settings(db=tmp / "b.duckdb", auth=False))):
    again = gc.get_freeze_count()
print(json.dumps({"before": before, "frozen": frozen, "walked": walked, "again": again, "logged": logged}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OBSERVATORY_")} | env
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=clean, check=True, capture_output=True,
                         text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_start_up_freezes_what_it_built_once_and_says_so():
    got = _probe()
    # what the imports and the first start built: frozen, no longer walked by a full collection
    assert got["frozen"] > got["before"] > 10_000
    assert got["walked"] < got["frozen"] // 4
    # the second app's start froze nothing more (frozen objects are still freed when unreferenced: fewer, not more)
    assert got["again"] <= got["frozen"]
    # both starts log what the first froze (a few freed since by the time the probe counts)
    assert got["logged"][0] == got["logged"][1] >= got["frozen"]


@pytest.mark.parametrize("value", ["false", "0"])
def test_the_setting_off_leaves_collections_as_they_are(value):
    got = _probe(OBSERVATORY_GC_FREEZE=value)
    assert got["frozen"] == got["again"] == 0
    assert got["walked"] > got["before"] > 10_000  # a full collection still walks everything start-up built
    assert got["logged"] == [0, 0]
