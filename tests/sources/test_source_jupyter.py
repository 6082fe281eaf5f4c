"""Jupyter source: Jupyter Events JSON mapping (POST /v1/jupyter/events), the extension's bounded sender, and the
real thing: jupyter_server + ipykernel with our extension, a SIGKILLed kernel brought back by the restarter, a
kernel that dies for good, and a kernel culled for idleness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
import jupyter_server  # noqa: F401 - the real server must be installed: a missing one fails, never skips
import nbformat
import pytest

from collector.sources.jupyter import KERNEL_ACTIONS, KERNEL_LIFECYCLE, parse_jupyter_timestamp
from collector.emitters.jupyter_extension import _jupyter_server_extension_points
from collector.emitters.jupyter_extension.sender import BufferedSender
from tests.conftest import auth
from tests.support import Collector, free_port, metric_sum, parse_metrics

import ipykernel  # noqa: F401 - the real kernel too


def rec(action: str, kernel_id: str | None = "k1", ts: str = "2026-11-20T10:00:00.123456+00:00Z", **extra):
    r = {"__timestamp__": ts, "__schema__": KERNEL_ACTIONS, "__schema_version__": "1", "__metadata_version__": 1,
         "action": action, "kernel_name": "python3", "status": "success", "msg": f"Kernel was {action}ed."}
    if kernel_id:
        r["kernel_id"] = kernel_id
    r.update(extra)
    return r


# ---- mapping (in-process app, real store) ------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("2025-01-01T12:00:00.123456+00:00Z", "2025-01-01T12:00:00.123456+00:00"),  # jupyter_events' quirk
    ("2025-01-01T12:00:00Z", "2025-01-01T12:00:00+00:00"),
    ("2025-01-01T14:00:00+02:00", "2025-01-01T12:00:00+00:00"),
    ("2025-01-01T14:00:00+02:00Z", "2025-01-01T12:00:00+00:00"),
])
def test_timestamp_quirk(value, expected):
    assert parse_jupyter_timestamp(value).isoformat() == expected


def test_kernel_actions_map_onto_kernel_events(client):
    records = [
        rec("start", ts="2026-11-20T10:00:00.000001+00:00Z", observatory={"team": "ml", "owner": "ann",
                                                                           "notebook_path": "a/b.ipynb"}),
        rec("restart", ts="2026-11-20T10:01:00+00:00Z", reason="crash", exit_code=-9, signal="SIGKILL",
            restart_attempt=1),
        rec("restart", ts="2026-11-20T10:01:05+00:00Z", reason="crash", restart_attempt=2),  # a retry: not counted
        rec("restart", ts="2026-11-20T10:02:00+00:00Z"),  # user restart
        rec("interrupt", ts="2026-11-20T10:02:30+00:00Z"),
        rec("shutdown", ts="2026-11-20T10:03:00+00:00Z", reason="culled"),
        {"__timestamp__": "2026-11-20T10:03:00Z", "__schema__": "https://events.jupyter.org/jupyter_server/"
         "contents_service/v1", "__schema_version__": "1", "__metadata_version__": 1, "action": "save", "path": "x"},
        {"__timestamp__": "2026-11-20T10:04:00+00:00Z", "__schema__": KERNEL_LIFECYCLE, "__schema_version__": "1",
         "__metadata_version__": 1, "action": "died", "kernel_id": "k2", "reason": "signal", "exit_code": -9,
         "signal": "SIGKILL", "msg": "Kernel k2 died"},
        rec("start", kernel_id=None, status="error", msg="No such kernel named nope"),  # start failed: no session
        rec("start", kernel_id=None),  # broken: a successful start without kernel_id
        {"__schema__": KERNEL_ACTIONS, "action": "start", "kernel_id": "k3"},  # broken: no timestamp
    ]
    r = client.post("/v1/jupyter/events?server=hub-a", json=records, headers=auth("ingest"))
    body = r.json()
    assert r.status_code == 200, body
    assert (body["accepted"], body["rejected"], body["ignored"]) == (5, 2, 4)
    assert body["ignored_reasons"] == {"crash_restart_retry": 1, "kernel_interrupt": 1, "schema_not_mapped": 1,
                                       "kernel_start_error": 1}
    assert [x["index"] for x in body["results"] if x["status"] == "rejected"] == [9, 10]
    errors = {x["index"]: x["errors"][0]["path"] for x in body["results"] if x["status"] == "rejected"}
    assert errors == {9: "kernel_id", 10: "__timestamp__"}

    with client.app.state.store.read_cursor() as cur:
        rows = cur.execute("SELECT type, data->>'reason', team, source, strftime(time, '%Y-%m-%dT%H:%M:%S.%f') "
                           "FROM events ORDER BY time").fetchall()
        ks = cur.execute("SELECT kernel_id, team, notebook_path, restarts, crash_restarts, deaths, end_reason, "
                         "last_exit_code FROM kernel_sessions ORDER BY kernel_id").fetchall()
        dl = cur.execute("SELECT channel, item_index, reason FROM dead_letters ORDER BY item_index").fetchall()
    assert rows == [
        ("notebook.kernel.started", None, "ml", "jupyter://hub-a", "2026-11-20T10:00:00.000001"),
        ("notebook.kernel.restarted", "crash", None, "jupyter://hub-a", "2026-11-20T10:01:00.000000"),
        ("notebook.kernel.restarted", "user", None, "jupyter://hub-a", "2026-11-20T10:02:00.000000"),
        ("notebook.kernel.shutdown", "culled", None, "jupyter://hub-a", "2026-11-20T10:03:00.000000"),
        ("notebook.kernel.died", "signal", None, "jupyter://hub-a", "2026-11-20T10:04:00.000000"),
    ]
    assert ks == [("k1", "ml", "a/b.ipynb", 2, 1, 0, "shutdown:culled", -9),
                  ("k2", None, None, 0, 0, 1, "died:signal", -9)]
    assert dl == [("jupyter", 9, "missing"), ("jupyter", 10, "missing")]

    again = client.post("/v1/jupyter/events?server=hub-a", json=records, headers=auth("ingest")).json()
    assert (again["accepted"], again["duplicates"]) == (0, 5)  # ids derive from the records: a re-ship is a no-op

    metrics = parse_metrics(client.get("/metrics", headers=auth("read")).text)
    assert metric_sum(metrics, "notebook_kernel_sessions_total") == 1
    assert metric_sum(metrics, "notebook_kernel_crashes_total", reason="crash") == 1
    assert metric_sum(metrics, "notebook_kernel_crashes_total", reason="signal") == 1
    assert metric_sum(metrics, "observatory_native_records_ignored_total", channel="jupyter") == 8


def test_minimal_answer_lists_only_the_records_not_accepted(client):
    records = [rec("start", kernel_id="m1"), rec("start", kernel_id=None), rec("start", kernel_id="m2")]
    headers = {**auth("ingest"), "Prefer": "return=minimal"}
    r = client.post("/v1/jupyter/events?server=hub-m", json=records, headers=headers)
    body = r.json()
    assert (r.status_code, r.headers["preference-applied"]) == (200, "return=minimal")
    assert (body["accepted"], body["rejected"], body["ignored"]) == (2, 1, 0)
    assert [(x["index"], x["status"]) for x in body["results"]] == [(1, "rejected")]
    again = client.post("/v1/jupyter/events?server=hub-m", json=records, headers=headers).json()
    assert (again["duplicates"], [x["status"] for x in again["results"]]) == (2, ["duplicate", "rejected",
                                                                                   "duplicate"])


def test_event_log_file_as_ndjson_and_auth(client):
    lines = [json.dumps(rec("start", kernel_id=f"k{i}", ts=f"2026-11-20T10:00:0{i}+00:00Z")) for i in range(3)]
    body = ("\n".join(lines[:2]) + "\n{not json\n" + lines[2] + "\n").encode()
    assert client.post("/v1/jupyter/events", content=body, headers={"content-type": "application/x-ndjson"}
                       ).status_code == 401
    assert client.post("/v1/jupyter/events", content=body, headers={"content-type": "application/x-ndjson",
                                                                     **auth("read")}).status_code == 403
    r = client.post("/v1/jupyter/events", content=body,
                    headers={"content-type": "application/x-ndjson", **auth("ingest")}).json()
    assert (r["accepted"], r["rejected"]) == (3, 1)
    assert [x["status"] for x in r["results"]] == ["accepted", "accepted", "rejected", "accepted"]
    assert r["results"][0]["source"] == "jupyter://default"


def test_secret_in_a_kernel_message_is_redacted(client):
    died = {"__timestamp__": "2026-11-20T10:04:00+00:00Z", "__schema__": KERNEL_LIFECYCLE, "action": "died",
            "kernel_id": "k9", "reason": "crash", "exit_code": 1,
            "msg": "kernel exited: boto3 failed with AKIAZ7Q3LMN5OPRSTUV2"}
    assert client.post("/v1/jupyter/events", json=died, headers=auth("ingest")).json()["accepted"] == 1
    with client.app.state.store.read_cursor() as cur:
        msg, redactions = cur.execute("SELECT data->>'msg', redactions FROM events").fetchall()[0]
    assert "AKIA" not in msg and "[REDACTED:aws_access_key]" in msg and redactions == 1


# ---- the extension's sender: bounded, never blocking, retrying with backoff --------------------------------------


def test_sender_drops_oldest_when_full_and_retries_with_backoff():
    calls: list[tuple[float, list]] = []
    up = threading.Event()

    def post(batch):
        calls.append((time.monotonic(), [r["n"] for r in batch]))
        if not up.is_set():
            raise ConnectionRefusedError("collector away")
        return 200

    s = BufferedSender("http://unused", max_buffer=5, batch_size=3, linger=0, backoff_initial=0.05,
                       backoff_max=0.2, post=post)
    t0 = time.monotonic()
    for n in range(8):
        s.put({"n": n})  # never blocks, never raises, even though nothing is sending yet
    assert time.monotonic() - t0 < 0.1
    assert s.pending == 5 and s.stats.dropped_overflow == 3  # the oldest three went
    s.start()
    time.sleep(0.6)
    failed = [c for c in calls]
    assert len(failed) >= 3 and all(b == [3, 4, 5] for _, b in failed)
    gaps = [b[0] - a[0] for a, b in zip(failed, failed[1:])]
    assert gaps[0] >= 0.03 and max(gaps) <= 0.35  # backoff from 0.05 s, capped at 0.2 s (±20 % jitter)
    up.set()
    assert s.flush(5)
    assert [n for _, b in calls[len(failed):] for n in b] == [3, 4, 5, 6, 7]
    assert s.stats.sent == 5 and s.stats.failures == len(failed)
    s.close(1)


def test_sender_drops_a_batch_the_collector_refuses_for_good():
    statuses = iter([401, 200])
    s = BufferedSender("http://unused", linger=0, backoff_initial=0.01, post=lambda b: next(statuses))
    s.start()
    s.put({"n": 1})
    assert s.flush(5)
    s.put({"n": 2})
    assert s.flush(5)
    assert (s.stats.dropped_rejected, s.stats.sent) == (1, 1)
    s.close(1)


def test_sender_buffers_while_the_collector_is_down_then_delivers(tmp_path):
    """Real HTTP: the collector starts after the events were produced; nothing is lost, nothing is doubled."""
    col = Collector(db=tmp_path / "o.duckdb")
    url = f"{col.url}/v1/jupyter/events?server=late"
    s = BufferedSender(url, linger=0, backoff_initial=0.2, backoff_max=1.0)
    s.start()
    for i in range(20):
        s.put(rec("start", kernel_id=f"late-{i}", ts=f"2026-11-20T10:00:{i:02d}+00:00Z"))
    time.sleep(1.0)
    assert s.stats.failures >= 1 and s.pending == 20
    col.start()
    try:
        assert s.flush(30), s.stats
        m = parse_metrics(httpx.get(col.url + "/metrics").text)
        assert metric_sum(m, "notebook_kernel_sessions_total") == 20
        assert s.stats.sent == 20 and s.stats.dropped_overflow == 0
    finally:
        s.close(1)
        col.stop()


# ---- the real thing: jupyter_server + ipykernel + the extension -----------------------------------------------------


def test_extension_point_is_declared():
    assert _jupyter_server_extension_points() == [{"module": "collector.emitters.jupyter_extension"}]


class JupyterServer:
    def __init__(self, root: Path, collector_url: str, *args: str) -> None:
        self.root = root
        self.port = free_port()
        self.token = "test-token-123"
        self.args = args
        self.collector_url = collector_url
        self.proc: subprocess.Popen | None = None
        self.log = root.parent / f"jupyter-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "JupyterServer":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSERVATORY_", "JUPYTERHUB_"))}
        rt = self.root.parent / f"jrt-{self.port}"
        env.update(OBSERVATORY_URL=self.collector_url, OBSERVATORY_SERVER_NAME=f"test-{self.port}",
                   JUPYTER_CONFIG_DIR=str(rt / "config"), JUPYTER_RUNTIME_DIR=str(rt / "runtime"),
                   JUPYTER_PLATFORM_DIRS="1")
        args = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={self.port}",
                "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root}",
                "--ServerApp.jpserver_extensions={'collector.emitters.jupyter_extension': True}",
                "--KernelRestarter.time_to_dead=0.5", "--ObservatoryForwarder.linger_seconds=0.05", *self.args]
        self.proc = subprocess.Popen(args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.get("/api/status").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("jupyter server did not start: " + self.log.read_text()[-3000:])

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"token {self.token}"}, timeout=10)

    def new_session(self, path: str) -> str:
        r = httpx.post(self.url + "/api/sessions", headers={"Authorization": f"token {self.token}"}, timeout=60,
                       json={"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}})
        assert r.status_code == 201, r.text
        return r.json()["kernel"]["id"]

    def kernel_pid(self, kernel_id: str, timeout: float = 30) -> int:
        """The kernel process: the one whose command line names its connection file kernel-<id>.json."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        cmd = (proc / "cmdline").read_bytes()
                    except OSError:
                        continue
                    if f"kernel-{kernel_id}.json".encode() in cmd:
                        return int(proc.name)
            time.sleep(0.1)
        raise AssertionError(f"no process for kernel {kernel_id}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(predicate, timeout: float = 45, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_real_jupyter_server_crash_restart_death_and_culling(tmp_path):
    col = Collector(db=tmp_path / "o.duckdb").start()
    root = tmp_path / "nb"
    (root / "teams" / "data").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(metadata={"observatory": {"team": "ml", "owner": "ann"}})
    nbformat.write(nb, root / "train.ipynb")
    # Server A: default restarter (5 restarts), no culling; team and owner from the notebook's metadata.
    a = JupyterServer(root, col.url, "--ObservatoryForwarder.team_sources=notebook_metadata:observatory.team")
    # Server B: the restarter gives up at once (restart_limit=0) and idle kernels are culled after 6 s; the team
    # comes from the notebook path (teams/<team>/…).
    b = JupyterServer(root, col.url, "--KernelRestarter.restart_limit=0",
                      "--MappingKernelManager.cull_idle_timeout=6", "--MappingKernelManager.cull_interval=1",
                      "--ObservatoryForwarder.team_sources=path_regex:^teams/(?P<value>[^/]+)/")

    def metrics():
        return parse_metrics(httpx.get(col.url + "/metrics").text)

    try:
        a.start()
        b.start()
        ka = a.new_session("train.ipynb")
        kx = b.new_session("teams/data/x.ipynb")
        ky = b.new_session("teams/data/y.ipynb")
        wait_for(lambda: metric_sum(metrics(), "notebook_kernel_sessions_total") == 3, what="3 kernel starts")

        # A: SIGKILL the kernel process; the restarter brings it back and the crash is attributed.
        pid_a = a.kernel_pid(ka)
        os.kill(pid_a, signal.SIGKILL)
        wait_for(lambda: metric_sum(metrics(), "notebook_kernel_crashes_total", reason="crash") == 1,
                 what="the crash restart")
        new_pid = wait_for(lambda: (p := a.kernel_pid(ka)) != pid_a and p, what="a new kernel process")
        assert new_pid != pid_a
        assert a.get(f"/api/kernels/{ka}").status_code == 200  # same kernel id, alive again

        # B: SIGKILL kernel x; restart_limit=0 so the restarter declares it dead (no kernel_actions event exists).
        os.kill(b.kernel_pid(kx), signal.SIGKILL)
        wait_for(lambda: metric_sum(metrics(), "notebook_kernel_crashes_total", reason="signal") == 1,
                 what="the kernel death")
        # B: kernel y stays idle and is culled: a shutdown with reason culled, not a crash.
        wait_for(lambda: b.get(f"/api/kernels/{ky}").status_code == 404, timeout=60, what="culling of y")
        wait_for(lambda: metric_sum(metrics(), "observatory_events_ingested_total",
                                    type="notebook.kernel.shutdown") == 1, what="the culled shutdown")
        m = metrics()
        assert metric_sum(m, "notebook_kernel_sessions_total") == 3  # a restart is not a new session
        assert metric_sum(m, "notebook_kernel_crashes_total") == 2
        sessions = {lab: v for (n, lab), v in m.items() if n == "notebook_kernel_sessions_total"}
        assert sessions == {(("team", "ml"),): 1.0, (("team", "data"),): 2.0}
        # M11 = (died + crash restarts) per 1000 sessions started: 2 of 3 overall; team ml 1 of 1; team data 1 of
        # 2 (x died; y was culled, which is not a crash).
        sli = httpx.get(col.url + "/v1/sli", params={"sli": "M11", "window": "1h"})
        assert sli.status_code == 200, sli.text
        m11 = {row["team"]: (row["bad"], row["total"], row["value"]) for row in sli.json()["slis"]
               if row["sli"] == "M11" and row["notebook_id"] is None and row["trigger"] is None}
        assert {k: v[:2] for k, v in m11.items()} == {None: (2, 3), "ml": (1, 1), "data": (1, 2)}, sli.text
        assert abs(m11[None][2] - 2000 / 3) < 1e-6 and m11["ml"][2] == 1000 and m11["data"][2] == 500
    finally:
        a.stop()  # server stop: kernel a is shut down with reason server_stop
        b.stop()
        time.sleep(0.5)
        col.stop()
    assert "observatory: forwarding kernel events" in a.log.read_text()

    con = duckdb.connect(str(col.db), read_only=True)
    try:
        ks = {r[0]: r[1:] for r in con.execute(
            "SELECT kernel_id, team, owner, notebook_path, restarts, crash_restarts, deaths, end_reason, "
            "last_exit_code FROM kernel_sessions").fetchall()}
        types = con.execute("SELECT kernel_id, type, data->>'reason', source FROM events ORDER BY time").fetchall()
    finally:
        con.close()
    assert ks[ka] == ("ml", "ann", "train.ipynb", 1, 1, 0, "shutdown:server_stop", -9)
    assert ks[kx][0] == "data" and ks[kx][2:] == ("teams/data/x.ipynb", 0, 0, 1, "died:signal", -9)
    assert ks[ky][0] == "data" and ks[ky][3:] == (0, 0, 0, "shutdown:culled", None)
    per_kernel = {}
    for kid, t, reason, source in types:
        per_kernel.setdefault(kid, []).append((t.rsplit(".", 1)[-1], reason))
    assert per_kernel[ka] == [("started", None), ("restarted", "crash"), ("shutdown", "server_stop")]
    assert per_kernel[kx] == [("started", None), ("died", "signal")]
    assert per_kernel[ky] == [("started", None), ("shutdown", "culled")]
    assert {s for *_, s in types} == {f"jupyter://test-{a.port}", f"jupyter://test-{b.port}"}
