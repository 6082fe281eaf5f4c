"""The one settings object: defaults < OBSERVATORY_* environment < command-line flags, for the model, for every
`serve` option, for a real `observatory serve` process, and for the README's generated configuration table."""

from __future__ import annotations

import subprocess
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from collector import settings as S
from collector.cli import app
from tests.support import OBSERVATORY, ROOT, free_port

ENV_PREFIX = "OBSERVATORY_"

# (environment, flags, expected effective values)
CASES = [
    ({}, {}, {"port": 8080, "host": "127.0.0.1", "db": Path("var/observatory.duckdb"), "log_level": "INFO",
              "auth": True, "tokens_file": Path("var/tokens.yaml"), "metrics_public": False}),
    ({"OBSERVATORY_PORT": "9000"}, {}, {"port": 9000}),
    ({"OBSERVATORY_PORT": "9000"}, {"port": 9001}, {"port": 9001}),
    ({}, {"port": 9002}, {"port": 9002}),
    ({"OBSERVATORY_LOG_LEVEL": "debug"}, {}, {"log_level": "DEBUG"}),
    ({"OBSERVATORY_LOG_LEVEL": "debug"}, {"log_level": "warning"}, {"log_level": "WARNING"}),
    ({"OBSERVATORY_DB": "/data/o.duckdb"}, {}, {"db": Path("/data/o.duckdb")}),
    ({"OBSERVATORY_DB": "/data/o.duckdb"}, {"db": Path("x.duckdb")}, {"db": Path("x.duckdb")}),
    ({"OBSERVATORY_AUTH": "false"}, {}, {"auth": False}),
    ({"OBSERVATORY_AUTH": "false"}, {"auth": True}, {"auth": True}),
    ({}, {"auth": False}, {"auth": False}),
    ({"OBSERVATORY_HOST": "0.0.0.0"}, {"host": "::1"}, {"host": "::1"}),
    ({"OBSERVATORY_TOKENS_FILE": "/etc/obs/t.yaml"}, {}, {"tokens_file": Path("/etc/obs/t.yaml")}),
    ({"OBSERVATORY_METRICS_PUBLIC": "1"}, {}, {"metrics_public": True}),
    ({"OBSERVATORY_METRICS_PUBLIC": "1"}, {"metrics_public": False}, {"metrics_public": False}),
    ({"OBSERVATORY_MAX_QUEUE_EVENTS": "123"}, {}, {"max_queue_events": 123}),
    ({"OBSERVATORY_URL": "http://c:1"}, {}, {"url": "http://c:1"}),
    ({"OBSERVATORY_URL": "http://c:1"}, {"url": "http://d:2"}, {"url": "http://d:2"}),
    # a flag left as None is "not given": the environment applies
    ({"OBSERVATORY_PORT": "9003"}, {"port": None}, {"port": 9003}),
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for k in list(os.environ):
        if k.startswith(ENV_PREFIX):
            monkeypatch.delenv(k)
    return monkeypatch


@pytest.mark.parametrize("env,flags,expected", CASES)
def test_environment_and_flags_give_the_effective_settings(clean_env, env, flags, expected):
    for k, v in env.items():
        clean_env.setenv(k, v)
    got = S.load(**flags)
    assert {k: getattr(got, k) for k in expected} == expected


def test_sections_read_their_own_prefix(clean_env):
    clean_env.setenv("OBSERVATORY_COST_BUDGETS", '{"ml": 1200}')
    clean_env.setenv("OBSERVATORY_COST_TAG_KEYS__TEAM", '["cost-center", "team"]')
    got = S.load()
    assert got.cost.budgets == {"ml": Decimal(1200)}
    assert got.cost.tag_keys.team == ["cost-center", "team"]


@pytest.mark.parametrize("env,flags,needle", [
    ({"OBSERVATORY_PORT": "eighty"}, {}, "OBSERVATORY_PORT"),
    ({}, {"port": 70000}, "--port"),
    ({"OBSERVATORY_LOG_LEVEL": "chatty"}, {}, "OBSERVATORY_LOG_LEVEL"),
    ({"OBSERVATORY_COST_BUDGETS": '{"ml": -5}'}, {}, "OBSERVATORY_COST_BUDGETS"),
])
def test_an_invalid_value_names_its_variable_or_flag(clean_env, env, flags, needle):
    for k, v in env.items():
        clean_env.setenv(k, v)
    with pytest.raises(S.SettingsError) as err:
        S.load(**flags)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_invalid_variable_is_one_line_from_the_cli(clean_env, tmp_path):
    clean_env.setenv("OBSERVATORY_PORT", "eighty")
    r = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "o.duckdb")])
    assert r.exit_code == 2
    assert r.output.strip().startswith("error: invalid setting: OBSERVATORY_PORT")
    assert "Traceback" not in r.output
    assert not (tmp_path / "o.duckdb").exists()


@pytest.mark.parametrize("args, variable", [
    (["serve"], "OBSERVATORY_PORT"),
    (["lake", "export", "--to", "LAKE"], "OBSERVATORY_DUCKDB_THREADS"),
    (["ingest", "FILE", "--db", "DB"], "OBSERVATORY_VALIDATION_THREADS"),
    (["ingest", "FILE", "--db", "DB"], "OBSERVATORY_DUCKDB_MEMORY_LIMIT"),
], ids=["serve", "lake-export", "ingest", "ingest-memory"])
def test_an_invalid_variable_is_one_line_from_a_real_process(tmp_path, args, variable):
    """In a process of its own, where the CLI is imported with the variable already set: no command may read the
    settings at import (the lake command's defaults once did, so every `observatory` command ended in a traceback)."""
    import os

    (tmp_path / "e.ndjson").write_text("")
    args = [str(tmp_path / "lake") if a == "LAKE" else str(tmp_path / "e.ndjson") if a == "FILE"
            else str(tmp_path / "o.duckdb") if a == "DB" else a for a in args]
    env = {**os.environ, "OBSERVATORY_DB": str(tmp_path / "o.duckdb"), variable: "0" if "THREADS" in variable
           else "eighty"}
    r = subprocess.run([OBSERVATORY, *args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith(f"error: invalid setting: {variable}"), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    help_ = subprocess.run([OBSERVATORY, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert help_.returncode == 0 and "Traceback" not in help_.stderr


def test_the_secrets_are_not_shown(clean_env):
    clean_env.setenv("OBSERVATORY_TOKEN", "obs_secret_value_123")
    clean_env.setenv("OBSERVATORY_TOKENS", '[{"name": "a", "token": "obs_other_secret_456", "scopes": ["read"]}]')
    got = S.load()
    assert "obs_secret_value_123" not in repr(got) and "obs_other_secret_456" not in repr(got)
    assert got.token_value() == "obs_secret_value_123"


def test_every_settings_option_of_serve_is_a_field_with_its_variable_in_the_help():
    import typer.main

    cmd = typer.main.get_command(app).commands["serve"]
    fields = [p.name for p in cmd.params if p.name in S.Settings.model_fields]
    assert {"host", "port", "db", "auth", "tokens_file", "log_level", "metrics_public"} <= set(fields)
    for p in cmd.params:
        if p.name in S.Settings.model_fields:
            assert p.default is None, p.name  # "not given", so the environment applies
            assert S.env_name(p.name) in p.help, p.name


def test_readme_configuration_table_is_generated_from_the_model():
    readme = (ROOT / "README.md").read_text()
    assert S.render_into(readme) == readme, "run `python -m collector.settings --write README.md`"
    table = readme.split(S.BEGIN)[1].split(S.END)[0]
    documented = {line.split("`")[1] for line in table.splitlines()[2:]}
    fields = {S.env_name(n) for n in S.Settings.model_fields if n not in S.SECTIONS}
    for section, prefix in S.SECTIONS.items():
        fields |= {prefix + n.upper() for n in S.Settings.model_fields[section].annotation.model_fields}
    assert documented == fields
    for name, info in S.Settings.model_fields.items():
        assert info.description, f"{name} has no description for the README"


def test_readme_check_fails_on_a_stale_table(tmp_path):
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    readme.write_text(text.replace("| `OBSERVATORY_PORT` | `8080` |", "| `OBSERVATORY_PORT` | `8081` |"))
    assert S.main([str(readme), "--check"]) == 1
    assert S.main([str(readme), "--write"]) == 0
    assert readme.read_text() == text


def test_make_variables_are_documented():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for var in ("HOST", "PORT", "DB"):
        assert f"$(if $({var})," in makefile
        assert f"`{var}`" in readme


def _serve(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)} | env
    return subprocess.Popen([OBSERVATORY, "serve", *args], cwd=cwd, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("serve did not become ready")


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.terminate()
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def test_serve_honours_the_environment_in_a_real_process(tmp_path):
    port = free_port()
    env = {"OBSERVATORY_PORT": str(port), "OBSERVATORY_DB": str(tmp_path / "env.duckdb"),
           "OBSERVATORY_AUTH": "false", "OBSERVATORY_LOG_LEVEL": "WARNING", "OBSERVATORY_METRICS_PUBLIC": "true"}
    proc = _serve([], env, tmp_path)
    try:
        _wait_ready(proc, port)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
    finally:
        out, err = _stop(proc)
    assert f"http://127.0.0.1:{port}" in out
    assert (tmp_path / "env.duckdb").exists() and not (tmp_path / "var").exists()
    levels = {yaml.safe_load(line).get("level") for line in err.splitlines() if line.startswith("{")}
    assert "info" not in levels  # OBSERVATORY_LOG_LEVEL=WARNING took effect ("collector started" is info)


def test_a_flag_wins_over_the_environment_in_a_real_process(tmp_path):
    env_port, flag_port = free_port(), free_port()
    env = {"OBSERVATORY_PORT": str(env_port), "OBSERVATORY_DB": str(tmp_path / "o.duckdb"),
           "OBSERVATORY_AUTH": "false"}
    proc = _serve(["--port", str(flag_port)], env, tmp_path)
    try:
        _wait_ready(proc, flag_port)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{env_port}/healthz", timeout=1)
    finally:
        _stop(proc)


def test_duckdb_threads_reach_the_collectors_database(clean_env, tmp_path, monkeypatch):
    """OBSERVATORY_DUCKDB_THREADS sets DuckDB's worker threads of the collector's database; unset, the cores less
    the collector's two statement streams, at least one (storage.db.collector_threads)."""
    import os

    from collector.ingest.store import Store

    default = max(1, len(os.sched_getaffinity(0)) - 2)
    for env, want in ((None, default), ("3", 3)):
        if env:
            monkeypatch.setenv("OBSERVATORY_DUCKDB_THREADS", env)
        store = Store(S.load().model_copy(update={"db": tmp_path / f"t{env}.duckdb", "auth": False}))
        try:
            assert store.con.execute("SELECT current_setting('threads')").fetchone()[0] == want
        finally:
            store.close()


@pytest.mark.parametrize("setting, cores, streams, want", [
    (None, 2, 2, 1), (None, 1, 2, 1), (None, 8, 2, 6), (None, 8, 0, 8), (None, 2, 0, 2), (3, 2, 2, 3), (3, 8, 0, 3),
])
def test_collector_threads_leave_the_busy_cores(monkeypatch, setting, cores, streams, want):
    """The default: the cores this process may use less the statement streams that keep cores busy, at least one;
    a setting wins."""
    import collector
    from collector.storage import db

    monkeypatch.setattr(collector.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert db.collector_threads(setting, streams) == want


@pytest.mark.parametrize("env, want", [(None, "spare"), ("3", 3), ("1", 1)])
def test_polars_pool_is_sized_like_duckdbs_unless_set(env, want):
    """A process that imports the collector gets polars' pool sized as DuckDB's workers (the cores less the
    collector's two busy threads, at least one), unless POLARS_MAX_THREADS is already set. polars reads it once,
    at its import, so this runs in a fresh interpreter, and `collector` is imported before polars, as in every
    command of the collector."""
    import os
    import subprocess
    import sys

    from collector import spare_cores

    environ = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
    if env is not None:
        environ["POLARS_MAX_THREADS"] = env
    code = "import collector.cli, polars; print(polars.thread_pool_size())"
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    assert int(out.stdout) == (max(1, len(os.sched_getaffinity(0)) - 2) if want == "spare" else want)
    assert spare_cores() == max(1, len(os.sched_getaffinity(0)) - 2)


def test_bulk_ingest_counts_its_writer_and_deriver_unless_set(clean_env, tmp_path, monkeypatch):
    """`observatory ingest --db` commits chunks on its writer while its deriver folds earlier ones (and its main
    thread validates): two statement streams, as in the collector, so DuckDB gets the cores less two (measured
    faster and cheaper with one thread than two on 2 cores); the setting still wins."""
    import os

    from collector.ingest.files import _open_store

    for env, want in ((None, max(1, len(os.sched_getaffinity(0)) - 2)), ("3", 3)):
        if env:
            monkeypatch.setenv("OBSERVATORY_DUCKDB_THREADS", env)
        store = _open_store(tmp_path / f"b{env}.duckdb", 1000)
        try:
            assert store.con.execute("SELECT current_setting('threads')").fetchone()[0] == want
        finally:
            store.close()


def _duckdb_shows(name: str, value: str | None) -> str:
    """How a plain DuckDB connection reports its setting `name` set to `value` (none: its own default): the
    collector's database must say the same."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        if value:
            con.execute(f"SET {name} = '{value}'")
        return con.execute(f"SELECT current_setting('{name}')").fetchone()[0]
    finally:
        con.close()


def _collector_shows(tmp_path, name: str) -> list[str]:
    """DuckDB's setting `name` on the collector's database and on `observatory ingest --db`'s, as the settings
    loaded from the environment open them."""
    from collector.ingest.files import _open_store
    from collector.ingest.store import Store

    shown = []
    for i, open_ in enumerate((lambda p: Store(S.load().model_copy(update={"db": p, "auth": False})),
                               lambda p: _open_store(p, 1000))):
        store = open_(tmp_path / f"{name}{i}.duckdb")
        try:
            shown.append(store.con.execute(f"SELECT current_setting('{name}')").fetchone()[0])
        finally:
            store.close()
    return shown


@pytest.mark.parametrize("env", [None, "300MB", "1GiB", "25%", " 1.5 gb "])
def test_duckdb_memory_limit_reaches_the_collectors_and_the_bulk_commands_database(clean_env, tmp_path, env):
    """OBSERVATORY_DUCKDB_MEMORY_LIMIT bounds DuckDB's memory for the collector's database and for `observatory
    ingest --db`; unset, DuckDB's own default applies."""
    if env:
        clean_env.setenv("OBSERVATORY_DUCKDB_MEMORY_LIMIT", env)
    want = _duckdb_shows("memory_limit", env.replace(" ", "") if env else None)
    assert _collector_shows(tmp_path, "memory_limit") == [want, want]


@pytest.mark.parametrize("value, needle", [
    ("lots", "expected a size such as 512MB"),
    ("-1GB", "expected a size"),  # DuckDB would read it as "no limit"
    ("1000000", "expected a size"),  # DuckDB wants a unit
    ("512 MBs", "expected a size"),
    ("0MB", "at least 256MiB"),  # DuckDB would fail every allocation
    ("255MiB", "at least 256MiB"),
    ("268MB", "at least 256MiB"),  # 268,000,000 bytes: below 256 MiB (268,435,456)
    ("269MB", None),
    ("256MiB", None),
    ("100%", None),
    ("0%", "between 1% and 100%"),
    ("101%", "between 1% and 100%"),
])
def test_duckdb_memory_limit_is_checked_before_duckdb_sees_it(clean_env, value, needle):
    clean_env.setenv("OBSERVATORY_DUCKDB_MEMORY_LIMIT", value)
    if needle is None:
        assert S.load().duckdb_memory_limit == value
        return
    with pytest.raises(S.SettingsError) as err:
        S.load()
    text = str(err.value)
    assert text.startswith("invalid setting: OBSERVATORY_DUCKDB_MEMORY_LIMIT") and needle in text, text


@pytest.mark.parametrize("env, want", [(None, "128MB"), ("32MB", "32MB"), (" 1 GiB ", "1GiB"), ("1MB", "1MB")])
def test_duckdb_checkpoint_threshold_reaches_the_collectors_and_the_bulk_commands_database(clean_env, tmp_path, env,
                                                                                          want):
    """OBSERVATORY_DUCKDB_CHECKPOINT_THRESHOLD sets the WAL size past which a commit checkpoints, for the collector's
    database and for `observatory ingest --db`; unset, the collector's 128MB (storage.db.CHECKPOINT_THRESHOLD),
    not DuckDB's 16MB."""
    from collector.storage.db import CHECKPOINT_THRESHOLD

    if env:
        clean_env.setenv("OBSERVATORY_DUCKDB_CHECKPOINT_THRESHOLD", env)
    assert S.load().duckdb_checkpoint_threshold == (want if env else None)
    assert env or want == CHECKPOINT_THRESHOLD
    shown = _duckdb_shows("checkpoint_threshold", want)
    assert shown != _duckdb_shows("checkpoint_threshold", None)  # not DuckDB's default
    assert _collector_shows(tmp_path, "checkpoint_threshold") == [shown, shown]


@pytest.mark.parametrize("value, needle", [
    ("lots", "expected a size such as 32MB"),
    ("25%", "expected a size"),  # a share of the memory means nothing for a WAL
    ("-1GB", "expected a size"),
    ("1000000", "expected a size"),  # DuckDB wants a unit
    ("0MB", "at least 1MB"),  # DuckDB would checkpoint at every commit
    ("999KB", "at least 1MB"),
])
def test_duckdb_checkpoint_threshold_is_checked_before_duckdb_sees_it(clean_env, value, needle):
    clean_env.setenv("OBSERVATORY_DUCKDB_CHECKPOINT_THRESHOLD", value)
    with pytest.raises(S.SettingsError) as err:
        S.load()
    text = str(err.value)
    assert text.startswith("invalid setting: OBSERVATORY_DUCKDB_CHECKPOINT_THRESHOLD") and needle in text, text


@pytest.mark.parametrize("text, want", [
    ("512MB", 512 * 10**6), (" 2 gib ", 2 * 1024**3), ("1.5TB", 1_500_000_000_000), ("100B", 100),
    ("256.0 MiB", 256 * 1024**2), ("512 bytes", 512), ("2.5 KiB", 2560),
    ("1000000", None), ("-1GB", None), ("25%", None), ("lots", None), ("1 GiBs", None),
])
def test_sizes_read_as_duckdb_reads_them(text, want):
    """KB is 1000 bytes and KiB 1024, as DuckDB reads them."""
    assert S.size_bytes(text) == want
