"""papermill runner: `observatory run` (the real CLI, real papermill, real ipykernel) against a real collector, and
the hashing rules that make reruns comparable."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx
import nbformat
import papermill  # noqa: F401 - the real runner must be installed: a missing one fails, never skips
import pytest

from collector.emitters import notebook_hash as nh
from tests.support import OBSERVATORY, Collector, create_token, metric_sum, parse_metrics

NOTEBOOKS = Path(__file__).parent / "notebooks"
SECRET = "Sup3rS3cretPassw0rd!"


def observatory_run(col: Collector | None, notebook: str, *args: str, cwd: Path, token: str | None = None,
                    collector_url: str | None = None) -> subprocess.CompletedProcess:
    cmd = [OBSERVATORY, "run", str(NOTEBOOKS / notebook), *args]
    url = collector_url or (col.url if col else None)
    if url:
        cmd += ["--collector", url]
    if token:
        cmd += ["--token", token]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=180)


# ---- hashing rules ---------------------------------------------------------------------------------------------


def executed(outputs_per_cell, **meta):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    for i, outs in enumerate(outputs_per_cell):
        cell = nbformat.v4.new_code_cell(f"cell_{i}()", execution_count=i + 1)
        cell.outputs = [nbformat.from_dict(o) for o in outs]
        cell.metadata.update(meta)
        nb.cells.append(cell)
    return nb


def test_output_hash_ignores_volatile_fields_but_not_results():
    base = executed([
        [{"output_type": "stream", "name": "stdout", "text": "total 42\n"}],
        [{"output_type": "execute_result", "execution_count": 2, "metadata": {},
          "data": {"text/plain": "<Model at 0x7f3a2c1b9d60>", "image/png": "iVBORw0KGgo=",
                   "application/vnd.jupyter.widget-view+json": {"model_id": "a1b2", "version_major": 2}}}],
    ])
    rerun = executed([
        [{"output_type": "stream", "name": "stdout", "text": "total "},  # split differently
         {"output_type": "stream", "name": "stdout", "text": "42\n"},
         {"output_type": "stream", "name": "stderr", "text": "Warning: took 1.23 s\n"}],
        [{"output_type": "execute_result", "execution_count": 9, "metadata": {"isolated": True},
          "data": {"text/plain": "<Model at 0x7f00dead0000>", "image/png": "AAAAAAAA",
                   "application/vnd.jupyter.widget-view+json": {"model_id": "zz99", "version_major": 2}}}],
    ], papermill={"duration": 3.2}, execution={"iopub.status.busy": "2026-11-20T10:00:00Z"})
    assert nh.output_hash(base) == nh.output_hash(rerun)
    changed = copy.deepcopy(base)
    changed.cells[0].outputs[0]["text"] = "total 43\n"
    assert nh.output_hash(changed) != nh.output_hash(base)
    errored = copy.deepcopy(base)
    errored.cells[1].outputs = [nbformat.from_dict({"output_type": "error", "ename": "KeyError", "evalue": "'x'",
                                                    "traceback": ["..."]})]
    assert nh.output_hash(errored) != nh.output_hash(base)
    ignored = copy.deepcopy(changed)
    ignored.cells[0].metadata["tags"] = ["nbval-ignore-output"]
    base_ignored = copy.deepcopy(base)
    base_ignored.cells[0].metadata["tags"] = ["nbval-ignore-output"]
    assert nh.output_hash(ignored) == nh.output_hash(base_ignored)


def test_input_and_parameter_hashes():
    nb = nbformat.read(NOTEBOOKS / "deterministic.ipynb", as_version=4)
    same = copy.deepcopy(nb)
    same.cells[2].outputs = [nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "x"})]
    same.cells[2].execution_count = 7
    same.cells[0].source = "changed markdown"
    same.cells.insert(2, nbformat.v4.new_code_cell("x = 5", metadata={"tags": ["injected-parameters"]}))
    assert nh.input_hash(same) == nh.input_hash(nb)
    code = copy.deepcopy(nb)
    code.cells[2].source += "\nprint('more')"
    assert nh.input_hash(code) != nh.input_hash(nb)
    kernel = copy.deepcopy(nb)
    kernel.metadata.kernelspec.name = "python-other"
    assert nh.input_hash(kernel) != nh.input_hash(nb)
    assert nh.parameters_hash({"a": 1, "b": "x"}) == nh.parameters_hash({"b": "x", "a": 1})
    assert nh.parameters_hash({"a": 1}) != nh.parameters_hash({"a": 2})
    assert nh.parameters_hash({"a": 1, "run_id": "r1"}, exclude=["run_id"]) == nh.parameters_hash({"a": 1})
    assert nh.env_hash("python3") == nh.env_hash("python3") and nh.env_hash("python3").startswith("sha256:")


# ---- the real runner -------------------------------------------------------------------------------------------


@pytest.fixture
def collector(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    ingest = create_token(tokens, "runner", "ingest")
    col = Collector(db=tmp_path / "o.duckdb", tokens_file=tokens,
                    token=create_token(tokens, "admin", "ingest,read,admin")).start()
    col.ingest_token = ingest  # type: ignore[attr-defined]
    yield col
    col.stop()


def test_observatory_run_outcomes_hashes_and_cells(collector, tmp_path):
    tok = collector.ingest_token
    out = tmp_path / "executed.ipynb"
    artifact = tmp_path / "result.txt"
    run_ids = {name: str(uuid.uuid4()) for name in ("det1", "det2", "det3", "rnd1", "rnd2")}

    jobs = {
        "det1": ("deterministic.ipynb", "-p", "x", "3", "--output", str(out), "--run-id", run_ids["det1"],
                 "--trigger", "scheduled"),
        "det2": ("deterministic.ipynb", "-p", "x", "3", "--run-id", run_ids["det2"], "--trigger", "scheduled"),
        "det3": ("deterministic.ipynb", "-p", "x", "3", "-p", "artifact_path", str(artifact), "--artifact",
                 str(artifact), "--artifact-sla", "3600", "--run-id", run_ids["det3"]),
        "rnd1": ("random_output.ipynb", "--run-id", run_ids["rnd1"]),
        "rnd2": ("random_output.ipynb", "--run-id", run_ids["rnd2"]),
        "raised": ("raises.ipynb",),
        "killed": ("kills_kernel.ipynb",),
        "slow": ("sleeps.ipynb", "--execution-timeout", "2"),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:  # independent runs; each is mostly kernel start-up
        futures = {k: pool.submit(observatory_run, collector, *args, cwd=tmp_path, token=tok)
                   for k, args in jobs.items()}
        res = {k: f.result() for k, f in futures.items()}
    for k in ("det1", "det2", "det3", "rnd1", "rnd2"):
        assert res[k].returncode == 0, res[k].stderr
    det1, det2, det3 = res["det1"], res["det2"], res["det3"]
    raised, killed, slow = res["raised"], res["killed"], res["slow"]
    # papermill's exit codes: a cell error is 1, a dead kernel is 138 (distinct), a timeout is 1
    assert (raised.returncode, killed.returncode, slow.returncode) == (1, 138, 1), (raised.stderr, killed.stderr)
    assert SECRET not in raised.stderr and "[REDACTED:password_assignment]" in raised.stderr
    for r in (det1, det2, det3, raised, killed, slow):
        assert r.stderr.rstrip().endswith("; reported"), r.stderr[-2000:]

    # The run id went into the notebook as a parameter.
    injected = [c for c in nbformat.read(out, as_version=4).cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert f'run_id = "{run_ids["det1"]}"' in injected[0].source and "x = 3" in injected[0].source

    m = parse_metrics(httpx.get(collector.url + "/metrics", headers=collector.headers).text)
    collector.stop()
    con = duckdb.connect(str(collector.db), read_only=True)
    try:
        runs = {r[0]: r[1:] for r in con.execute(
            "SELECT notebook_id, state, error_type, error_message, output_hash, input_hash, parameters_hash, "
            "env_hash, duration_seconds, cells, started_at IS NOT NULL FROM run_attempts "
            "WHERE notebook_id IN ('nb-raises', 'nb-kills-kernel', 'nb-sleeps')").fetchall()}
        det = con.execute("SELECT run_id, output_hash, input_hash, parameters_hash, env_hash FROM run_attempts "
                          "WHERE notebook_id = 'nb-deterministic' ORDER BY run_id").fetchall()
        rnd = con.execute("SELECT output_hash, input_hash, parameters_hash, env_hash, team FROM run_attempts "
                          "WHERE notebook_id = 'nb-random'").fetchall()
        artifacts = con.execute("SELECT data->>'artifact', (data->>'size_bytes')::INT, (data->>'sla_seconds')::DOUBLE, "
                                "run_id FROM events WHERE type = 'notebook.artifact.published'").fetchall()
        all_cells = con.execute("SELECT cells FROM run_attempts").fetchall()
        leaks = con.execute(f"SELECT (SELECT count(*) FROM events WHERE data::VARCHAR LIKE '%{SECRET}%') + "
                            f"(SELECT count(*) FROM dead_letters WHERE payload LIKE '%{SECRET}%')").fetchall()[0][0]
        sources = con.execute("SELECT DISTINCT split_part(source, '://', 1) FROM events").fetchall()
    finally:
        con.close()

    by_id = {r[0]: r[1:] for r in det}
    assert by_id[run_ids["det1"]] == by_id[run_ids["det2"]], det  # same output, input, parameters, environment
    assert by_id[run_ids["det1"]][0] == by_id[run_ids["det3"]][0]  # reproducible
    assert len({r[1:] for r in det}) == 2  # same input and env; det3 has one more parameter (artifact_path)
    assert rnd[0][1:] == rnd[1][1:] and rnd[0][0] != rnd[1][0], rnd  # same inputs, environment, team; other output
    assert artifacts == [(str(artifact), 4, 3600.0, run_ids["det3"])]
    # Hashes first (a package installed into the venv mid-test changes env_hash: the rows say so), then counters.
    checks = {k: v for k, v in m.items() if k[0] == "notebook_reproducibility_checks_total"}
    assert metric_sum(m, "notebook_reproducibility_checks_total", team="analytics", result="match") == 1, checks
    assert metric_sum(m, "notebook_reproducibility_checks_total", team="analytics", result="mismatch") == 1, checks
    assert metric_sum(m, "notebook_run_attempts_total", outcome="succeeded") == 5
    assert metric_sum(m, "notebook_run_attempts_total", outcome="failed") == 2
    assert metric_sum(m, "notebook_run_attempts_total", outcome="timed_out") == 1
    assert metric_sum(m, "notebook_run_attempts_total", outcome="succeeded", trigger="scheduled") == 2
    assert metric_sum(m, "notebook_secret_exposures_total", team="finance") == 1

    assert leaks == 0 and sources == [("papermill",)]

    state, etype, emsg, *_, cells, started = runs["nb-raises"]
    assert (state, etype, started) == ("failed", "ConnectionError", True)
    assert emsg == "could not connect to warehouse: password=[REDACTED:password_assignment]"
    assert [c["status"] for c in json.loads(cells)] == ["ok", "ok", "ok", "error", "skipped"]
    state, etype, _, *_, cells, _ = runs["nb-kills-kernel"]
    assert (state, etype) == ("failed", "DeadKernelError")
    assert [c["status"] for c in json.loads(cells)] == ["ok", "ok", "error", "skipped"]
    state, etype, *_, duration, cells, _ = runs["nb-sleeps"]
    assert (state, etype) == ("timed_out", "CellTimeoutError") and 2 <= duration < 60
    timed = json.loads(cells)
    assert timed[-1]["status"] == "error" and timed[-1]["duration_seconds"] >= 1.9
    for (cells_json,) in all_cells:  # every terminal event carried per-cell durations
        cells = json.loads(cells_json)
        assert cells and all(c["duration_seconds"] >= 0 and c["status"] in ("ok", "error", "skipped") for c in cells)


def test_runner_keeps_events_when_the_collector_is_away(tmp_path):
    dead = "http://127.0.0.1:9"  # discard port: connection refused
    r = observatory_run(None, "random_output.ipynb", "--delivery-attempts", "1", "--run-id", "offline-1",
                        cwd=tmp_path, collector_url=dead)
    assert r.returncode == 0, r.stderr  # the notebook's outcome decides the exit code, not the delivery
    spool = tmp_path / "observatory-undelivered-offline-1.ndjson"
    events = [json.loads(line) for line in spool.read_text().splitlines()]
    assert [e["type"] for e in events] == ["notebook.run.started", "notebook.run.succeeded"]
    assert "NOT fully reported" in r.stderr
    # ... and the kept file is plain NDJSON for POST /v1/events (what `observatory ingest --url` sends): once.
    col = Collector(db=tmp_path / "o.duckdb").start()
    try:
        for _ in range(2):
            r = httpx.post(col.url + "/v1/events", content=spool.read_bytes(),
                           headers={"Content-Type": "application/x-ndjson"})
            assert r.status_code == 200 and r.json()["rejected"] == 0
        m = parse_metrics(httpx.get(col.url + "/metrics").text)
        assert metric_sum(m, "notebook_run_attempts_total", outcome="succeeded") == 1
    finally:
        col.stop()


def test_usage_errors_exit_2(tmp_path):
    assert subprocess.run([OBSERVATORY, "run", str(tmp_path / "missing.ipynb")], capture_output=True
                          ).returncode == 2
    r = subprocess.run([OBSERVATORY, "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "-p KEY VALUE" in r.stdout and "--artifact" in r.stdout


@pytest.mark.parametrize("args, long_tmp, transport", [
    ((), False, "ipc"),                             # the default: no ports to race for
    (("--kernel-transport", "tcp"), False, "tcp"),  # for provisioners that start kernels elsewhere
    ((), True, "tcp"),                              # a temporary directory too long for a socket's path
])
def test_the_kernel_is_reached_over_unix_sockets_unless_told_otherwise(tmp_path, args, long_tmp, transport):
    """Over tcp, jupyter_client picks free ports and the kernel binds them a moment later; with runs at once (the
    suite's three concurrent runs above), one lost a port in between and its kernel died at start (`Address already
    in use`). The kernel says which transport it was started with."""
    import os

    env = dict(os.environ)
    if long_tmp:
        env["TMPDIR"] = str(tmp_path / ("t" * 100))
        Path(env["TMPDIR"]).mkdir()
    out = tmp_path / "out.ipynb"
    r = subprocess.run([OBSERVATORY, "run", str(NOTEBOOKS / "kernel_transport.ipynb"), "--output", str(out),
                        "--events-file", str(tmp_path / "events.ndjson"), *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=180, env=env)
    assert r.returncode == 0, r.stderr
    printed = nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"].strip()
    assert printed == transport
    assert ("too long a path for the kernel's sockets" in r.stderr) == long_tmp
