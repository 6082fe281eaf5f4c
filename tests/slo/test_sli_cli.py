"""`observatory sli` for a newcomer: a platform summary with percentages by default, and one-line errors that say
what to do (the collector holds the database: use --url; the collector wants a token: --token or
OBSERVATORY_TOKEN; a database path that does not exist)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import httpx

from tests.support import OBSERVATORY, Collector, create_token, event



def _run(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OBSERVATORY_")} | (env or {})
    return subprocess.run([OBSERVATORY, "sli", *args], capture_output=True, text=True, timeout=120, env=full,
                          cwd=cwd)


def _events() -> list[dict]:
    now = datetime.now(timezone.utc)  # at the test's start: `sli` asks about the last hour
    t = lambda m: (now - timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    return [event(f"r{i}", "notebook.run.succeeded" if i % 4 else "notebook.run.failed",
                  {"run_id": f"r{i}", "notebook_id": f"nb{i % 3}", "team": ["a", "b"][i % 2],
                   "trigger": "scheduled", "duration_seconds": 10.0 + i}, time_=t(5 + i)) for i in range(12)]


def test_cli_errors_a_newcomer_can_act_on(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tok = create_token(tokens, "reader", "ingest,read")
    col = Collector(tmp_path / "o.duckdb", tokens_file=tokens, token=tok).start()
    try:
        assert httpx.post(col.url + "/v1/events", json=_events(), headers=col.headers).status_code == 200
        # the collector holds the database: one line that names --url, no traceback
        r = _run("--db", str(col.db))
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "--url" in r.stderr and "in use by process" in r.stderr
        # --url without a token: the hint names --token and OBSERVATORY_TOKEN
        r = _run("--url", col.url)
        assert r.returncode == 1 and "--token" in r.stderr and "OBSERVATORY_TOKEN" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        # with the token from the environment, and the URL from the environment too
        r = _run("--sli", "M1", "--window", "1h", "--json", env={"OBSERVATORY_URL": col.url,
                                                                  "OBSERVATORY_TOKEN": tok})
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        (row,) = doc["slis"]
        assert (row["team"], row["good"], row["total"]) == (None, 9, 12)  # the platform summary by default
        r = _run("--url", "http://127.0.0.1:9")
        assert r.returncode == 1 and "cannot reach the collector" in r.stderr
    finally:
        col.stop()
    r = _run("--db", str(tmp_path / "typo.duckdb"))
    assert r.returncode == 2 and f"no database at {tmp_path / 'typo.duckdb'}" in r.stderr
    assert not (tmp_path / "typo.duckdb").exists()
    # the default is a summary: one row per SLI and window at the platform level, ratios as percentages
    r = _run("--db", str(col.db), "--window", "1h")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("│ M")]
    assert len(lines) == 15 + 3  # 15 SLIs x 1 window (M3: mean, p50, p95, p99), no per-team or trigger rows
    assert "│ team" not in r.stdout and "│ trigger" not in r.stdout
    m1 = next(ln for ln in lines if "run_success_rate" in ln)
    assert "75.00 %" in m1 and " 9 " in m1 and " 3 " in m1 and " 12 " in m1
    r = _run("--db", str(col.db), "--window", "1h", "--sli", "M1", "--level", "team")
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("│ M1")]
    assert len(rows) == 2 and any("│ a " in ln and "50.00 %" in ln for ln in rows)  # team a: 3 of 6


def test_failure_rate_slis_and_units_are_consistent(client):
    """M8 and M12: value = bad / total with good + bad = total; M7's max_age_seconds is in seconds."""
    from tests.conftest import auth

    now = datetime.now(timezone.utc).replace(microsecond=0)
    t = lambda m: (now - timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    evs = [event(f"q{i}", "notebook.quality.checked", {"notebook_id": "nb", "team": "a", "check": "c",
                                                       "result": "fail" if i < 2 else "pass"}, time_=t(10 + i))
           for i in range(8)]
    evs += [event(f"s{i}", "notebook.run.failed" if i == 0 else "notebook.run.succeeded",
                  {"run_id": f"s{i}", "notebook_id": "nb", "team": "a", "trigger": "scheduled"}, time_=t(5 + i))
            for i in range(4)]
    evs += [event("art", "notebook.artifact.published", {"notebook_id": "nb", "team": "a", "artifact": "x",
                                                         "sla_seconds": 3600}, time_=t(30))]
    assert client.post("/v1/events", json=evs, headers=auth("ingest")).status_code == 200
    rows = client.get("/v1/sli", params={"sli": "M7,M8,M12", "window": "1h", "level": "platform",
                                         "as_of": now.isoformat()}, headers=auth("read")).json()["slis"]
    by = {(r["sli"], r["stat"]): r for r in rows}
    m12, m8 = by[("M12", "ratio")], by[("M8", "ratio")]
    assert (m12["good"], m12["bad"], m12["total"]) == (6, 2, 8) and m12["value"] == 2 / 8
    assert (m8["good"], m8["bad"], m8["total"]) == (3, 1, 4) and m8["value"] == 1 / 4
    assert by[("M7", "ratio")]["unit"] == "ratio"
    age = by[("M7", "max_age_seconds")]
    assert age["unit"] == "seconds" and age["value"] == 30 * 60  # published 30 minutes before as_of


def test_a_backlog_is_folded_in_slices_behind_a_progress_bar(tmp_path):
    """`observatory ingest --db` twice (two ingest batches), then `observatory sli --db`: with one event per slice
    the fold takes two slices behind a bar on stderr, and prints what one fold prints."""
    evs = _events()
    db = tmp_path / "o.duckdb"
    for k, part in enumerate((evs[:6], evs[6:])):
        f = tmp_path / f"part{k}.json"
        f.write_text(json.dumps(part))
        r = subprocess.run([OBSERVATORY, "ingest", str(f), "--db", str(db), "--no-progress"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(db.read_bytes())
    args = ("--sli", "M1,M3", "--window", "1h", "--level", "team", "--json")
    sliced = _run("--db", str(db), *args, env={"OBSERVATORY_SLI_FOLD_MAX_EVENTS": "1"})
    assert sliced.returncode == 0, sliced.stderr
    assert "fold" in sliced.stderr and "12/12 events" in sliced.stderr  # (drawn only for more than one slice)
    whole = _run("--db", str(copy), *args, "--no-progress")
    assert whole.returncode == 0 and whole.stderr == "", whole.stderr
    rows = lambda r: sorted(json.dumps({k: v for k, v in x.items() if k != "provenance"})  # noqa: E731
                            for x in json.loads(r.stdout)["slis"])
    assert rows(sliced) == rows(whole) and json.loads(whole.stdout)["slis"]
    assert {(x["sli"], x["team"], x["total"]) for x in json.loads(whole.stdout)["slis"] if x["sli"] == "M1"} == {
        ("M1", "a", 6), ("M1", "b", 6)}
