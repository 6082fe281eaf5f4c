"""`make run` / `observatory serve --demo` for a newcomer: the port is checked before the backfill and before the
running collector's token file is touched, the banner says what to do next, the live demo's request lines do not
bury it, `make run` passes HOST/PORT/DB only when given, and `observatory demo` without a target says so."""

from __future__ import annotations

import logging
import os
import socket
import subprocess

from typer.testing import CliRunner

from collector import cli
from collector.settings import Settings
from tests.support import OBSERVATORY, ROOT


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OBSERVATORY_")}


def test_a_busy_port_stops_serve_before_the_backfill_and_the_token_file(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens: [{name: demo, sha256: " + "a" * 64 + ", scopes: [read]}]\n")
    before = tokens.read_text()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([OBSERVATORY, "serve", "--demo", "--port", str(port), "--db", str(tmp_path / "o.duckdb"),
                            "--tokens-file", str(tokens)], capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port" in r.stderr and "PORT=" in r.stderr
    assert "backfilling" not in r.stdout  # no 12-second wait for nothing
    assert tokens.read_text() == before  # the running collector's token still works
    assert not (tmp_path / "o.duckdb").exists()


def test_the_demo_banner_gives_the_next_steps():
    text = cli.banner(Settings(port=8123), "obs_demo_token", demo=True)
    for step in ("export OBSERVATORY_TOKEN=obs_demo_token", "export OBSERVATORY_URL=http://127.0.0.1:8123",
                 "observatory sli", "observatory report cost --out report.html", "docker compose --profile demo up",
                 "http://127.0.0.1:8123/docs"):
        assert step in text, step
    plain = cli.banner(Settings(auth=False), None, demo=False)
    assert "Next steps" not in plain and "auth:      disabled" in plain


def test_the_live_demo_does_not_log_every_request(caplog):
    log = logging.getLogger("collector.http")
    saved = list(log.filters)
    try:
        cli.quiet_request_log()
        cli.quiet_request_log()  # idempotent
        assert sum(isinstance(f, cli._QuietRequests) for f in log.filters) == 1
        with caplog.at_level(logging.INFO, logger="collector.http"):
            log.info("request", extra={"status": 200, "path": "/v1/events"})
            log.info("request", extra={"status": 503, "path": "/v1/events"})
            log.info("collector started")
        kept = [(r.getMessage(), getattr(r, "status", None)) for r in caplog.records]
        assert kept == [("request", 503), ("collector started", None)]
    finally:
        log.filters[:] = saved


def test_make_run_passes_host_port_db_only_when_given():
    def dry(*args: str) -> str:
        r = subprocess.run(["make", "-n", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in _env().items() if k not in ("HOST", "PORT", "DB")})
        assert r.returncode == 0, r.stderr
        return next(line for line in r.stdout.splitlines() if "observatory serve" in line)

    plain = dry()
    assert "--port" not in plain and "--host" not in plain and "--db" not in plain and "--demo" in plain
    given = dry("PORT=9000", "DB=var/x.duckdb", "HOST=0.0.0.0")
    assert "--port 9000" in given and "--db var/x.duckdb" in given and "--host 0.0.0.0" in given


def test_demo_without_a_target_is_an_error():
    r = CliRunner().invoke(cli.app, ["demo"])
    assert r.exit_code == 2 and "give a target: --db FILE" in r.output and "--url" in r.output
    r = CliRunner().invoke(cli.app, ["demo", "--live"])
    assert r.exit_code == 2
