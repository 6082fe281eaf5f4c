"""`observatory run NOTEBOOK [-p key value]… [--output OUT] [--collector URL]`: execute a notebook with papermill
and report the run to the collector.

Events (CloudEvents, `source` = `papermill://<host>`, ids derived from run id + attempt, so a re-sent report is
stored once):

* `notebook.run.started` before execution;
* one terminal event: `succeeded`, `failed` (cell error, kernel death, kernel failed to start …), `timed_out`
  (`--execution-timeout` hit) or `cancelled` (SIGINT/SIGTERM), with `duration_seconds`, per-cell `cells`
  (`{index, duration_seconds, status}` from papermill's cell metadata; index = position in the executed
  notebook, which includes the injected-parameters cell), `error_type`/`error_message`/`traceback` (the
  collector redacts secrets in them before storage), and the hashes of collector/notebook_hash.py;
* `notebook.artifact.published` for each `--artifact PATH` the notebook wrote during a successful run.

The run id is passed to the notebook as a parameter (`run_id` by default, `--run-id-parameter` to rename) and
left out of `parameters_hash`, so reruns with the same parameters are comparable.

Exit codes are papermill's: 0 success, 1 failure (a cell raised, a timeout, anything else), 138 the kernel died;
plus 130/143 when interrupted, and 2 for usage errors. Events that cannot be delivered (collector away after
retries) are written to `--events-file` or `./observatory-undelivered-<run id>.ndjson` for `observatory ingest`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEAD_KERNEL = 0, 1, 2, 138
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_TEXT = 60_000


class RunCancelled(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT so the run is reported as cancelled."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class RunOptions:
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None
    collector: str | None = None
    token: str | None = None
    notebook_id: str | None = None
    team: str | None = None
    owner: str | None = None
    trigger: str = "manual"
    environment: str | None = None
    run_id: str | None = None
    attempt: int = 1
    run_id_parameter: str = "run_id"
    kernel_name: str | None = None
    cwd: Path | None = None
    execution_timeout: float | None = None
    start_timeout: float = 60.0
    artifacts: list[Path] = field(default_factory=list)
    artifact_sla: float | None = None
    events_file: Path | None = None
    source: str | None = None
    log_output: bool = False
    kernel_transport: str = "ipc"
    scheduled_for: str | None = None
    delivery_attempts: int = 5


# ---- argument parsing (the CLI hands us its raw arguments) ------------------------------------------------------


def _resolve_type(value: str) -> Any:
    """Same typing of `-p` values as papermill's CLI (True/False/None, int, float, else str)."""
    from papermill.cli import _resolve_type as pm_resolve

    return pm_resolve(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="observatory run",
        description="Execute a notebook with papermill and report run.started + one terminal event (duration, "
                    "per-cell timings, error, input/parameters/env/output hashes) to the collector.",
    )
    p.add_argument("notebook", type=Path, help="the notebook to execute")
    p.add_argument("-p", "--parameters", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="a parameter, typed like papermill's -p (int, float, True/False/None, else string)")
    p.add_argument("-r", "--parameters-raw", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="a parameter kept as a string")
    p.add_argument("-o", "--output", type=Path, help="where to write the executed notebook (default: a temp file)")
    p.add_argument("--collector", default=os.environ.get("OBSERVATORY_URL"),
                   help="collector base URL, e.g. http://127.0.0.1:8080 (env OBSERVATORY_URL)")
    p.add_argument("--token", default=os.environ.get("OBSERVATORY_TOKEN"), help="bearer token (env OBSERVATORY_TOKEN)")
    p.add_argument("--notebook-id", help="default: metadata observatory.notebook_id, else the notebook path")
    p.add_argument("--team", help="default: metadata observatory.team, else env OBSERVATORY_TEAM")
    p.add_argument("--owner", help="default: metadata observatory.owner, else env OBSERVATORY_OWNER")
    p.add_argument("--trigger", default=os.environ.get("OBSERVATORY_TRIGGER", "manual"),
                   choices=["scheduled", "manual", "api", "ci"])
    p.add_argument("--environment", default=os.environ.get("OBSERVATORY_ENVIRONMENT"),
                   choices=["prod", "staging", "dev"])
    p.add_argument("--run-id", help="default: a new UUID")
    p.add_argument("--attempt", type=int, default=1, help="attempt number of this run id (retries), from 1")
    p.add_argument("--run-id-parameter", default="run_id", help="name of the parameter carrying the run id")
    p.add_argument("-k", "--kernel", dest="kernel_name", help="kernel name (default: the notebook's kernelspec)")
    p.add_argument("--cwd", type=Path, help="working directory of the kernel")
    p.add_argument("--execution-timeout", type=float, help="seconds per cell before the run is timed_out")
    p.add_argument("--start-timeout", type=float, default=60.0, help="seconds to wait for the kernel to start")
    p.add_argument("--kernel-transport", choices=["ipc", "tcp"], default="ipc",
                   help="how papermill talks to the kernel: ipc, Unix sockets in a directory of this run's own (no "
                        "port for concurrent runs to take between its choice and the kernel's bind, nothing on the "
                        "network); tcp, localhost ports (for kernel provisioners that start kernels elsewhere)")
    p.add_argument("--artifact", action="append", type=Path, default=[], dest="artifacts",
                   help="a file the notebook writes; reported as notebook.artifact.published (repeatable)")
    p.add_argument("--artifact-sla", type=float, help="freshness SLA of the artifacts, seconds")
    p.add_argument("--scheduled-for", help="RFC 3339 time of the schedule slot this run fills")
    p.add_argument("--events-file", type=Path, help="also append the events (redacted) to this NDJSON file")
    p.add_argument("--source", help="event source (default papermill://<hostname>)")
    p.add_argument("--delivery-attempts", type=int, default=5,
                   help="tries per POST to the collector before the events are kept in a file (backoff 0.5 s, x2)")
    p.add_argument("--log-output", action="store_true", help="stream the notebook's output to the terminal")
    return p


def parse_args(argv: list[str]) -> RunOptions:
    ns = build_parser().parse_args(argv)
    params: dict[str, Any] = {k: _resolve_type(v) for k, v in ns.parameters}
    params.update({k: v for k, v in ns.parameters_raw})
    if ns.attempt < 1:
        raise SystemExit("error: --attempt must be >= 1")
    return RunOptions(
        notebook=ns.notebook, parameters=params, output=ns.output, collector=ns.collector, token=ns.token,
        notebook_id=ns.notebook_id, team=ns.team, owner=ns.owner, trigger=ns.trigger, environment=ns.environment,
        run_id=ns.run_id, attempt=ns.attempt, run_id_parameter=ns.run_id_parameter, kernel_name=ns.kernel_name,
        cwd=ns.cwd, execution_timeout=ns.execution_timeout, start_timeout=ns.start_timeout,
        artifacts=list(ns.artifacts), artifact_sla=ns.artifact_sla, events_file=ns.events_file, source=ns.source,
        log_output=ns.log_output, scheduled_for=ns.scheduled_for, delivery_attempts=max(1, ns.delivery_attempts),
        kernel_transport=ns.kernel_transport,
    )


# ---- delivery ----------------------------------------------------------------------------------------------------


class Emitter:
    """POSTs events to /v1/events with retries; keeps what could not be delivered for a later `ingest`."""

    def __init__(self, collector: str | None, token: str | None, events_file: Path | None,
                 attempts: int = 5, backoff: float = 0.5, timeout: float = 10.0) -> None:
        self.url = collector.rstrip("/") + "/v1/events" if collector else None
        self.token = token
        self.events_file = events_file
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.undelivered: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []

    def emit(self, events: list[dict[str, Any]]) -> bool:
        if self.events_file is not None:
            self._append(self.events_file, events)
        if self.url is None:
            return True
        import httpx

        headers = {"Prefer": "return=minimal"}  # only the rejections are read: the answer lists just those
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        delay, error = self.backoff, ""
        for attempt in range(self.attempts):
            try:
                r = httpx.post(self.url, json=events, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code in (200, 422):
                    body = r.json()
                    self.rejected += [x for x in body.get("results", []) if x.get("status") == "rejected"]
                    for x in body.get("results", []):
                        if x.get("status") == "rejected":
                            print(f"observatory: event {x.get('id')} rejected: {x.get('errors')}", file=sys.stderr)
                    return r.status_code == 200
                if r.status_code not in (408, 429, 500, 502, 503, 504):
                    print(f"observatory: collector answered {r.status_code}: {r.text[:500]}", file=sys.stderr)
                    self.undelivered += events
                    return False
                error = f"HTTP {r.status_code}"
                retry_after = r.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            if attempt + 1 < self.attempts:
                time.sleep(min(delay, 10.0))
                delay *= 2
        print(f"observatory: could not deliver {len(events)} event(s) to {self.url} ({error})", file=sys.stderr)
        self.undelivered += events
        return False

    @staticmethod
    def _append(path: Path, events: list[dict[str, Any]]) -> None:
        from collector.contract.events import IDENTIFIER_KEYS
        from collector.contract.redaction import redact_value

        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            for ev in events:
                safe, _ = redact_value(ev, skip_keys=IDENTIFIER_KEYS | {"id", "source", "type", "time"})
                fh.write(json.dumps(safe, separators=(",", ":")) + "\n")


# ---- the run -----------------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _clean(text: Any, limit: int = MAX_TEXT) -> str:
    if isinstance(text, (list, tuple)):
        text = "\n".join(str(t) for t in text)
    text = _ANSI.sub("", str(text))
    return text if len(text) <= limit else text[:limit] + "\n… [truncated]"


def _cells(nb: Any, ended_badly: bool) -> list[dict[str, Any]]:
    """Per code cell: duration and status from papermill's cell metadata.

    `index` is the cell's position in the executed notebook without papermill's error-marker cells (so it
    includes the injected-parameters cell). papermill marks cells that never ran as "completed" when it
    finishes, so a cell without a start time is `skipped`; and a cell cut short by a dead kernel, a timeout or
    a cancellation is not marked failed by papermill, so the last cell that started is the `error` one then.
    """
    out: list[dict[str, Any]] = []
    cells = [c for c in nb.get("cells") or [] if "papermill-error-cell-tag" not in
             ((c.get("metadata") or {}).get("tags") or [])]
    last_started = None
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        pm = (cell.get("metadata") or {}).get("papermill") or {}
        duration = pm.get("duration")
        if pm.get("status") == "failed" or pm.get("exception"):
            status = "error"
        elif not pm.get("start_time"):
            status = "skipped"
        else:
            status = "ok"
            last_started = len(out)
        out.append({"index": i, "duration_seconds": round(float(duration), 6) if duration else 0.0,
                    "status": status})
    if ended_badly and last_started is not None and not any(c["status"] == "error" for c in out):
        out[last_started]["status"] = "error"
    return out


def _identity(opts: RunOptions, nb: Any) -> dict[str, Any]:
    meta = (nb.get("metadata") or {}).get("observatory") or {}
    try:
        rel = opts.notebook.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        rel = opts.notebook.resolve()
    ident = {
        "notebook_id": opts.notebook_id or meta.get("notebook_id") or rel.as_posix(),
        "team": opts.team or meta.get("team") or os.environ.get("OBSERVATORY_TEAM"),
        "owner": opts.owner or meta.get("owner") or os.environ.get("OBSERVATORY_OWNER"),
        "notebook_path": rel.as_posix(),
        "trigger": opts.trigger,
        "environment": opts.environment,
    }
    return {k: v for k, v in ident.items() if v}


# A Unix socket's path is at most 107 bytes (sun_path); the kernel appends "-<n>" to its prefix.
_MAX_SOCKET_PREFIX = 96


@contextmanager
def _kernel_sockets(transport: str) -> Iterator[Any]:
    """The kernel manager's configuration for `transport`. ipc: sockets under a private temporary directory, removed
    after the run. Over tcp, jupyter_client picks free ports by binding and releasing them, and the kernel binds them
    a moment later: another run, or any connection's ephemeral port, can take one meanwhile, and the kernel then dies
    at start (`Address already in use`; seen with three runs at once in the suite). Falls back to tcp when the
    temporary directory's path is too long for a socket."""
    from traitlets.config import Config

    if transport != "ipc":
        yield Config()
        return
    with tempfile.TemporaryDirectory(prefix="obs-kernel-") as d:
        prefix = os.path.join(d, "k")
        if len(prefix.encode()) > _MAX_SOCKET_PREFIX:
            print(f"observatory: {d} is too long a path for the kernel's sockets; using tcp", file=sys.stderr)
            yield Config()
        else:
            yield Config({"KernelManager": {"transport": "ipc", "ip": prefix}})


def execute(opts: RunOptions) -> int:
    import nbformat

    from collector.emitters import notebook_hash as nh

    if not opts.notebook.is_file():
        print(f"error: no such notebook: {opts.notebook}", file=sys.stderr)
        return EXIT_USAGE
    try:
        nb_in = nbformat.read(str(opts.notebook), as_version=4)
    except Exception as exc:  # noqa: BLE001 - not JSON, not a notebook
        print(f"error: cannot read {opts.notebook}: {exc}", file=sys.stderr)
        return EXIT_USAGE

    run_id = opts.run_id or str(uuid.uuid4())
    attempt = opts.attempt
    source = opts.source or f"papermill://{socket.gethostname()}"
    kernel_name = opts.kernel_name or ((nb_in.get("metadata") or {}).get("kernelspec") or {}).get("name")
    ident = _identity(opts, nb_in)
    params = dict(opts.parameters)
    user_params = {k: v for k, v in params.items() if k != opts.run_id_parameter}
    params[opts.run_id_parameter] = run_id
    common = {"run_id": run_id, "attempt": attempt, **ident}
    if user_params:
        common["parameters"] = user_params
    if opts.scheduled_for:
        common["scheduled_for"] = opts.scheduled_for
    hashes = {
        "input_hash": nh.input_hash(nb_in),
        "parameters_hash": nh.parameters_hash(user_params),
        "env_hash": nh.env_hash(kernel_name),
    }

    def event(kind: str, when: datetime, data: dict[str, Any], suffix: str | None = None) -> dict[str, Any]:
        return {"specversion": "1.0", "id": f"{run_id}:{attempt}:{suffix or kind}", "source": source,
                "type": f"notebook.{kind}", "time": _rfc3339(when), "subject": ident.get("notebook_path"),
                "data": data}

    emitter = Emitter(opts.collector, opts.token, opts.events_file, attempts=opts.delivery_attempts)
    started_at, t0 = _now(), time.monotonic()
    emitter.emit([event("run.started", started_at, dict(common), "started")])

    tmpdir = None
    output = opts.output
    if output is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="observatory-run-")
        output = Path(tmpdir.name) / opts.notebook.name

    outcome, exit_code, error = "succeeded", EXIT_OK, {}
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def _cancel(signum: int, frame: Any) -> None:
        raise RunCancelled(signum)

    for s in previous:
        signal.signal(s, _cancel)
    try:
        import nbclient.exceptions as nbx
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError

        try:
            kwargs: dict[str, Any] = {}
            if opts.execution_timeout:
                kwargs["execution_timeout"] = opts.execution_timeout
            with _kernel_sockets(opts.kernel_transport) as config:
                pm.execute_notebook(
                    str(opts.notebook), str(output), parameters=params, kernel_name=kernel_name,
                    progress_bar=False, log_output=opts.log_output, start_timeout=opts.start_timeout,
                    cwd=str(opts.cwd) if opts.cwd else None, config=config, **kwargs,
                )
        except PapermillExecutionError as exc:
            outcome, exit_code = "failed", EXIT_FAILED
            error = {"error_type": exc.ename, "error_message": _clean(exc.evalue),
                     "traceback": _clean(exc.traceback), "failed_cell_index": exc.cell_index}
        except nbx.DeadKernelError as exc:
            outcome, exit_code = "failed", EXIT_DEAD_KERNEL
            error = {"error_type": "DeadKernelError", "error_message": _clean(exc) or "Kernel died",
                     "kernel_died": True}
        except nbx.CellTimeoutError as exc:
            outcome, exit_code = "timed_out", EXIT_FAILED
            error = {"error_type": "CellTimeoutError", "error_message": _clean(exc)}
        except RunCancelled as exc:
            outcome = "cancelled"
            exit_code = EXIT_TERMINATED if exc.signum == signal.SIGTERM else EXIT_INTERRUPTED
            error = {"error_type": "Cancelled", "error_message": f"received {exc}"}
        except Exception as exc:  # noqa: BLE001 - kernel failed to start, no such kernel, bad parameters …
            outcome, exit_code = "failed", EXIT_FAILED
            error = {"error_type": type(exc).__name__, "error_message": _clean(exc)}
    except RunCancelled as exc:  # arrived outside papermill's call
        outcome = "cancelled"
        exit_code = EXIT_TERMINATED if exc.signum == signal.SIGTERM else EXIT_INTERRUPTED
        error = {"error_type": "Cancelled", "error_message": f"received {exc}"}
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

    ended_at, duration = _now(), time.monotonic() - t0
    data: dict[str, Any] = {**common, "duration_seconds": round(duration, 6), **hashes, **error}
    if output.exists():
        try:
            nb_out = nbformat.read(str(output), as_version=4)
            data["cells"] = _cells(nb_out, outcome != "succeeded")
            data["output_hash"] = nh.output_hash(nb_out)
        except Exception as exc:  # noqa: BLE001
            print(f"observatory: cannot read the executed notebook {output}: {exc}", file=sys.stderr)
    events = [event(f"run.{outcome}", ended_at, data, outcome)]

    if outcome == "succeeded":
        for path in opts.artifacts:
            p = (opts.cwd / path) if (opts.cwd and not path.is_absolute()) else path
            if not p.exists():
                print(f"observatory: artifact {path} was not written", file=sys.stderr)
                continue
            st = p.stat()
            if st.st_mtime < started_at.timestamp() - 1:
                print(f"observatory: artifact {path} was not modified by this run; not reported", file=sys.stderr)
                continue
            art = {**{k: common[k] for k in ("run_id", "attempt") if k in common}, **ident,
                   "artifact": str(path), "size_bytes": st.st_size}
            if opts.artifact_sla:
                art["sla_seconds"] = opts.artifact_sla
            digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
            events.append(event("artifact.published", datetime.fromtimestamp(st.st_mtime, timezone.utc), art,
                                 f"artifact:{digest}"))
    delivered = emitter.emit(events)
    if emitter.undelivered and opts.events_file is None:
        spool = Path(f"observatory-undelivered-{run_id}.ndjson")
        Emitter._append(spool, emitter.undelivered)
        print(f"observatory: kept {len(emitter.undelivered)} undelivered event(s) in {spool}; send them later with "
              f"`observatory ingest --url <collector> {spool}`", file=sys.stderr)
    if tmpdir is not None:
        tmpdir.cleanup()

    from collector.contract.redaction import redact_text

    summary = f"observatory: run {run_id} attempt {attempt} {outcome} in {duration:.2f}s"
    if error.get("error_type"):
        summary += f" ({error['error_type']}: {redact_text(str(error.get('error_message', '')))[0][:300]})"
    if opts.collector:
        summary += "; reported" if delivered else "; NOT fully reported"
    print(summary, file=sys.stderr)
    return exit_code


def main(argv: list[str]) -> int:
    try:
        opts = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        code = exc.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            return EXIT_USAGE
        return int(code or 0)
    return execute(opts)
