"""The one settings object: every default is written here once, and it feeds the environment and the CLI flags.

Precedence, lowest first: the defaults below, then environment variables (`OBSERVATORY_<FIELD>`), then command-line
flags. The flags are built from the same fields (`option()`), default to "not given" and are passed to `load()` as
init values, which pydantic-settings ranks above the environment. So `OBSERVATORY_PORT=9000 observatory serve`
binds 9000 and `observatory serve --port 9001` binds 9001 whatever the environment says (datasette's single
settings table feeding both its flags and its environment, for the same reason: two lists of defaults drift).

The areas configure themselves through sections of this object, each a settings class of its own beside the code it
configures, with its own prefix so that its variables read as one family:

- `sli` (`slo.sli.config.SliConfig`, `OBSERVATORY_SLI_*`): windows, searchability tags, missed-run grace,
  artifact retention, the cap on per-notebook series.
- `cost` (`cost.config.CostSettings`, `OBSERVATORY_COST_*`, plus the optional YAML file `OBSERVATORY_CONFIG`):
  allocation tag keys, budgets, currency, sync windows.

A section is read when the settings are loaded, so `Settings().sli` and `Settings().cost` are the effective values;
the collector hands them to the API, the gauges and the CLIs (`app.state.settings`), so there is one way to
configure each thing.

`python -m collector.settings --write README.md` regenerates the README's configuration table from these fields;
`--check` (run by `make check-generated` and the tests) fails when the two disagree.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal, Optional

import typer
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cost.config import CostSettings
from slo.sli.config import SliConfig

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Collector and CLI settings (`OBSERVATORY_*`); the areas' sections are fields of their own."""

    model_config = SettingsConfigDict(env_prefix="OBSERVATORY_", extra="ignore")

    db: Path = Field(Path("var/observatory.duckdb"), description="DuckDB file of the collector and the CLI")
    host: str = Field("127.0.0.1", description="Address `serve` binds")
    port: int = Field(8080, ge=1, le=65535, description="TCP port `serve` binds")
    auth: bool = Field(True, description="Require bearer tokens (`--no-auth` is refused unless the address is "
                                         "loopback)")
    tokens_file: Path = Field(Path("var/tokens.yaml"), description="Tokens as `{name, sha256, scopes, team?}` "
                                                                   "(`observatory tokens create` writes it)")
    tokens: Optional[SecretStr] = Field(None, description="JSON list of tokens (`token` or `sha256`), hashed at "
                                                          "load")
    metrics_public: bool = Field(False, description="Serve `/metrics` without a token")
    log_level: LogLevel = Field("INFO", description="Log level of the collector's JSON logs")
    url: Optional[str] = Field(None, description="A running collector the CLI asks instead of opening the "
                                                 "database (`--url`), e.g. `http://127.0.0.1:8080`")
    token: Optional[SecretStr] = Field(None, description="Bearer token the CLI and the emitters send with "
                                                         "`--url`")

    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="Largest request body as sent (413 above)")
    max_inflated_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest body after gzip decoding "
                                                                        "(413 above)")
    max_events_per_request: int = Field(50_000, gt=0, description="Most events in one request (413 above)")
    max_queue_events: int = Field(200_000, gt=0, description="Events waiting for the writer before 429")
    max_batch_events: int = Field(50_000, gt=0, description="Most events in one group commit")
    commit_delay_seconds: float = Field(
        0.1, ge=0, le=1, description="Longest the writer waits for requests still being validated to join its "
                                      "group commit (none waiting: it commits at once)")
    derive_delay_seconds: float = Field(
        0.5, ge=0, le=10, description="Longest an acknowledged event waits before the deriver folds it into the "
                                       "derived tables (a read folds at once whatever waits, so it changes how far "
                                       "they run behind between reads, never what a read sees). A pass costs ~65 "
                                       "ms of CPU whatever it folds, so under load a longer wait folds more per "
                                       "pass: measured on 2 cores, 0.5 instead of 0 took HTTP ingest from 32.8 to "
                                       "28.0 CPU-µs per event and from 39.9k to 42.7k events/s "
                                       "(docs/performance.md)")
    deriver_nice: int = Field(
        0, ge=0, le=19, description="How much lower the CPU priority of the thread that folds acknowledged events "
                                    "into the derived tables is than the collector's (Linux nice increment; 0: "
                                    "the same). On a host of its own, it yields the cores to validation and "
                                    "commits, which clients wait for: measured on 2 cores, HTTP ingest 41.7k -> "
                                    "46.0k events/s with 10. On a shared host it also yields to every other "
                                    "process, and reads and ingest then wait for it (measured with 19 beside "
                                    "two busy processes: ingest 4.5k instead of 21k events/s, reads up to 10 s; "
                                    "docs/performance.md)")
    validation_threads: Optional[int] = Field(
        None, ge=1, le=256, description="Validation calls of ingest requests at once, in worker threads (none: "
                                         "the cores left beside the writer's and the deriver's, at least one, as "
                                         "for `duckdb_threads`); the requests that wait meanwhile are validated "
                                         "together in the next call, in arrival order, and answered apart. "
                                         "Validation holds Python's GIL for most of its work, so more at once only "
                                         "take turns and contend for it: on 2 cores, HTTP ingest with 4 clients "
                                         "took 3-7% less CPU per event with one at a time than with two, at the "
                                         "same rate (four alternated runs; docs/performance.md, fiftieth round)")
    duckdb_threads: Optional[int] = Field(
        None, ge=1, le=256, description="DuckDB worker threads of the collector's database, and of "
                                         "`observatory ingest --db` (none: the cores less two, at least one; "
                                         "DuckDB's own default is one per core). A trade-off, measured on 2 "
                                         "cores: 1 thread took the incremental SLI refresh from ~112-125 to "
                                         "~97-105 ms, HTTP ingest from 11.5k to 14.9k events/s and 1M Parquet "
                                         "events through `ingest --db` from 16.7 to 15.5 s, and a full SLI "
                                         "computation from 0.85 to ~1.7 s (docs/performance.md)")
    duckdb_memory_limit: Optional[str] = Field(
        None, description="Most memory DuckDB may hold for the collector's database, in every command that opens "
                          "it for writing (`serve`, `ingest --db`, `sli --db`, the cost commands, `lake export`) and "
                          "the migrations it runs, in DuckDB's syntax: `2GiB`, `1500MB`, or a share of the host's "
                          "memory, `25%` (none: DuckDB's own default, 80% of the memory). DuckDB caches the blocks "
                          "it read or wrote up to the limit, so without one the collector's RSS follows the stored "
                          "history (at saturation, 1M events: peak 0.93-1.56 GiB without, 0.80-0.93 GiB with "
                          "`512MB`; docs/performance.md). "
                          "At least 256 MiB, DuckDB's working set for the collector (a chunk being committed, the "
                          "rows the WAL holds until a checkpoint, the statements running): a commit that finds too "
                          "little fails for memory, and DuckDB may then refuse every statement until a restart "
                          "(docs/operations.md)")
    duckdb_checkpoint_threshold: Optional[str] = Field(
        None, description="Size of DuckDB's write-ahead log past which a commit of the collector's database (and "
                          "of `observatory ingest --db`) also checkpoints it, in DuckDB's syntax: `32MB`, `1GiB` "
                          "(none: 128MB). On the DuckDB installed, no append to `events` gets through while a "
                          "checkpoint writes it, so the requests of that moment wait for it: the threshold trades "
                          "tail latency against throughput. Measured on 2 cores, 32MB cut p99 at half load by "
                          "14-34% and sustained throughput by 17% (docs/operations.md, Latency). At least 1MB")
    tune_allocators: bool = Field(
        True, description="Keep freed memory for the next batch instead of giving it back to the OS at once "
                          "(glibc's trim and mmap thresholds, pyarrow's system pool; collector/ingest/allocators.py): "
                          "measured, a fifth less CPU per event on HTTP ingest (docs/performance.md)")
    gc_freeze: bool = Field(
        True, description="Keep the objects built at start-up out of Python's full garbage collections, which "
                          "otherwise walk them all and stop every thread for tens of ms each under load "
                          "(collector/ingest/gc_freeze.py; docs/performance.md)")
    gauge_refresh_seconds: float = Field(15.0, gt=0, description="Period of the SQL-backed gauge refresh")
    gauge_min_gap_seconds: float = Field(
        5.0, ge=0, description="Least time between two gauge refreshes while ingest keeps poking the refresher "
                               "(the gauges are scraped every 15-60 s; recomputing them after every commit would "
                               "only take CPU from ingest)")
    gauge_max_age_seconds: float = Field(
        60.0, gt=0, description="Under sustained ingest the refresher rests 9 times its last refresh's duration (a "
                                "tenth of the time at most), and each refresh folds more than the last; it starts "
                                "the next refresh early enough to end this long after the last one ended, were it "
                                "to take as long, taking more of the CPU, so that the SLIs, slot counters and costs "
                                "Prometheus reads are about this old at most: a refresh that folds more than the one "
                                "before ends that much later (at most 64-68 s old under a 3M-event flood at 60; "
                                "docs/operations.md)")
    sli_max_windows: int = Field(8, ge=1, description="Most windows one `GET /v1/sli` may ask for (400 above)")
    sli_max_window_days: float = Field(400.0, gt=0, description="Longest window `GET /v1/sli` computes (400 above)")
    read_timeout_seconds: float = Field(60.0, gt=0, description="An SLI computation running longer is interrupted "
                                                                "and answered 503")
    shutdown_timeout_seconds: float = Field(
        10.0, gt=0, description="SIGTERM: requests still running after this long are cancelled and their queries "
                                "interrupted; the process exits at most this long again after that")
    label_cap_team: int = Field(500, gt=0, description="Most `team` label values per metric (the rest fold into "
                                                       "`__other__`)")
    label_cap_source: int = Field(500, gt=0, description="Most `source` label values per metric")

    lake_export_to: Optional[str] = Field(None, description="Lake `serve` exports to on a schedule (DIR, "
                                                            "`s3://bucket/prefix`, `gs://bucket/prefix`); none: no "
                                                            "scheduled export (docs/scale.md)")
    lake_export_every: str = Field("5m", pattern=r"^[1-9][0-9]*[smhd]$",
                                   description="Period of the scheduled lake export (`30s`, `5m`, `1h`)")
    lake_collector_id: Optional[str] = Field(None, description="Name of this collector's files in the lake; "
                                                               "default `<host>-<hash of the database path>`")

    sli: SliConfig = Field(default_factory=SliConfig, description="SLI section (`OBSERVATORY_SLI_*`)")
    cost: CostSettings = Field(default_factory=CostSettings, description="Cost section (`OBSERVATORY_COST_*`)")

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory_limit(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else memory_limit(v)

    @field_validator("duckdb_checkpoint_threshold")
    @classmethod
    def _checkpoint_threshold(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else checkpoint_threshold(v)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    def collector_to_ask(self, db: Path | None, url: str | None) -> str | None:
        """The running collector a CLI command asks: `--url`, else OBSERVATORY_URL unless `--db` names a file; None:
        the command opens the database itself."""
        return url or (self.url if db is None else None)

    def token_value(self) -> str | None:
        """The client token as text (it is a SecretStr so that printing the settings never shows it)."""
        return self.token.get_secret_value() if self.token else None

    def tokens_value(self) -> str | None:
        return self.tokens.get_secret_value() if self.tokens else None


# A size as DuckDB reads them (KB = 1000 bytes, KiB = 1024), or a share of the host's memory.
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(bytes|B|[KMGTP]i?B|%)", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "bytes": 1, **{f"{p}{i}b": (1024 if i else 1000) ** (n + 1)
                                      for n, p in enumerate("kmgtp") for i in ("", "i")}}
MIN_MEMORY_BYTES = 256 * 1024**2  # DuckDB's working set for the collector: a chunk committed, the WAL's rows, queries


def size_bytes(text: str) -> int | None:
    """A size as DuckDB reads and shows them (`512MB`, `2 GiB`, `488.2 MiB`, `100 bytes`) in bytes; None for
    anything else (a share of the memory included)."""
    m = _SIZE.fullmatch(text.strip())
    if not m or m.group(2) == "%":
        return None
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def memory_limit(text: str) -> str:
    """A DuckDB memory limit, checked before DuckDB sees it: DuckDB takes `-1GB` as "no limit" and `0MB` as a limit
    that fails every allocation, both far from what was meant. Returned as DuckDB reads it (`512MB`, `25%`)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError("expected a size such as 512MB, 2GiB or 25% (of the host's memory)")
    number, unit = m.groups()
    if unit == "%":
        if not 1 <= float(number) <= 100:
            raise ValueError("a share of the memory is between 1% and 100%")
    elif float(number) * _SIZE_UNITS[unit.lower()] < MIN_MEMORY_BYTES:
        raise ValueError(f"at least {MIN_MEMORY_BYTES // 1024**2}MiB")
    return number + unit


MIN_CHECKPOINT_BYTES = 10**6


def checkpoint_threshold(text: str) -> str:
    """A WAL size for DuckDB's `checkpoint_threshold`, checked before DuckDB sees it (DuckDB reads `0MB` as a
    checkpoint at every commit, and a share of the memory means nothing here). Returned as DuckDB reads it."""
    n = size_bytes(text)
    if n is None:
        raise ValueError("expected a size such as 32MB or 1GiB")
    if n < MIN_CHECKPOINT_BYTES:
        raise ValueError("at least 1MB")
    return "".join(text.split())


SECTIONS: dict[str, str] = {"sli": "OBSERVATORY_SLI_", "cost": "OBSERVATORY_COST_"}


class SettingsError(ValueError):
    """A setting from the environment or a flag is invalid; the message names the variable and the flag."""


def load(**flags: Any) -> Settings:
    """The effective settings: defaults < environment < the flags given (a flag left as None is "not given")."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as err:
        raise SettingsError(_human(err, given)) from None
    except (OSError, ValueError) as err:  # a section's config file is missing or malformed
        raise SettingsError(f"invalid setting: {err}") from None


def settings_or_exit(**flags: Any) -> Settings:
    """`load` for a command: an invalid value is one line on stderr and exit 2, not a traceback. Commands call it when
    they run, never at import (the CLI imports every command group to mount it)."""
    try:
        return load(**flags)
    except SettingsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _human(err: ValidationError, given: dict[str, Any]) -> str:
    prefix = next((p for s, p in SECTIONS.items()
                   if err.title == Settings.model_fields[s].annotation.__name__), "OBSERVATORY_")  # type: ignore
    parts = []
    for e in err.errors():
        name = str(e["loc"][0]) if e["loc"] else "?"
        if prefix == "OBSERVATORY_" and name in given:
            where = f"--{name.replace('_', '-')}"
        else:
            where = prefix + "__".join(str(x).upper() for x in e["loc"])
        value = e.get("input")
        shown = "" if isinstance(value, dict) or name in ("token", "tokens") else f" (got {value!r})"
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{shown}")
    return "invalid setting: " + "; ".join(parts)


def env_name(field: str) -> str:
    return f"OBSERVATORY_{field.upper()}"


def default_text(field: str) -> str:
    """A field's default as the README and `--help` show it."""
    return _show(Settings.model_fields[field].get_default(call_default_factory=True))


def option(field: str, *decls: str, help: str | None = None) -> Any:
    """A typer option for settings field `field`: not given by default (the environment or the default applies),
    its help naming the variable and the default, so `--help` and the README say the same thing."""
    info = Settings.model_fields[field]
    text = help or info.description or ""
    shown = default_text(field) or "none"
    return typer.Option(None, *decls, help=f"{text} (env {env_name(field)}, default {shown})", show_default=False)


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _rows(model: type[BaseSettings], prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    for name, info in model.model_fields.items():
        if name in SECTIONS:
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        shown = str(extra.get("shown_default") or _show(info.get_default(call_default_factory=True)))
        rows.append((prefix + name.upper(), shown, info.description or ""))
    return rows


def markdown_table() -> str:
    """The README's configuration table, from the fields of `Settings` and of every section."""
    rows = _rows(Settings, "OBSERVATORY_")
    for name, prefix in SECTIONS.items():
        rows += _rows(Settings.model_fields[name].annotation, prefix)  # type: ignore[arg-type]
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for var, default, meaning in rows:
        shown = f"`{default}`" if default else ""
        cell = meaning.replace("|", "\\|")
        lines.append(f"| `{var}` | {shown} | {cell} |")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- settings-table: generated by `python -m collector.settings --write README.md` -->\n"
END = "<!-- end settings-table -->\n"


def render_into(text: str) -> str:
    """`text` with the block between the markers replaced by the generated table."""
    head, sep, rest = text.partition(BEGIN)
    if not sep or END not in rest:
        raise SettingsError("README has no settings-table markers")
    return head + BEGIN + markdown_table() + END + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m collector.settings", description=__doc__.splitlines()[0])
    p.add_argument("readme", type=Path)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="rewrite the table in the file")
    g.add_argument("--check", action="store_true", help="fail when the table in the file is stale")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    fresh = render_into(text)
    if args.check:
        if fresh != text:
            print(f"{args.readme}: the configuration table differs from collector/settings.py; run "
                  f"`python -m collector.settings --write {args.readme}`", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
