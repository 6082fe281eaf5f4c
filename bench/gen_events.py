"""A fast, vectorised generator of realistic event files for the ingest benchmarks.

The mix follows a notebook platform: run lifecycles (queued, started, one terminal event; terminal events carry
hashes, resource use and often per-cell timings; failures carry an error message, some with a traceback),
kernel sessions (started then shutdown, a few deaths and restarts), availability probes, quality checks,
artifacts, schedules, registry events, a little security traffic, and a few planted secrets in error messages.
Every event is valid against the contract. Built column-wise with polars (pseudo-random numbers from seeded
hashes, so no numpy is needed): millions of events in seconds, the same seed gives the same events.
"""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

TEAMS = ["finance", "ml", "growth", "platform", "risk", "ops", "marketing", "research"]
OWNERS = [f"user{i:02d}@corp.example" for i in range(40)]
SOURCES_RUN = ["papermill://batch-1", "papermill://batch-2", "airflow://prod", "dagster://prod"]
SOURCES_KERNEL = ["jupyter://hub-a", "jupyter://hub-b", "jupyter://hub-c"]
SOURCES_OTHER = ["probe://blackbox", "ci://github", "quality://gx", "registry://catalog"]
TRIGGERS = ["scheduled", "manual", "api", "ci"]
ENVS = ["prod", "staging", "dev"]
ERRORS = [
    ("ValueError", "could not convert string to float: 'n/a'"),
    ("KeyError", "'customer_id'"),
    ("MemoryError", "Unable to allocate 12.4 GiB for an array with shape (1664000000,) and data type float64"),
    ("ConnectionError", "HTTPSConnectionPool(host='api.internal', port=443): Max retries exceeded"),
    ("CellExecutionError", "An error occurred while executing the following cell:\n------------------\n"
                           "df = load()\n------------------\n\nTraceback (most recent call last):\n"
                           "  File \"<cell>\", line 1, in <module>\nFileNotFoundError: s3://lake/raw/2026-11-20.parquet"),
]
# Planted in about 0.5% of failures: the collector must store it redacted.
SECRET_ERROR = ("OperationalError", "could not connect to postgres://etl:hunter2secret@db.internal/prod (timeout)")


# Cached files are named for the generator's output: a change of what it writes changes the name, so a stale file is
# never read as the new mix (data 2: hashes are 64 hex digits, as the emitters write them, no longer decimal).
NAME = "events2"
_HEX = pl.Series(list("0123456789abcdef"))


def _hex64(keys: pl.Series, seed: int) -> pl.Series:
    """64 hex digits per key (four seeded 64-bit hashes), as `sha256:<hex>` digests look: hex text holds digit,
    `e`, digit sequences that a number-looking scan must not take for numbers."""
    words = [keys.hash(seed=seed * 4 + w) for w in range(4)]
    digits = [_HEX.gather(((h // 16 ** (15 - i)) % 16).cast(pl.UInt32)) for h in words for i in range(16)]
    return pl.select(pl.concat_str(digits)).to_series()


class Rng:
    """Vectorised seeded pseudo-random numbers (polars hashes of a counter)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.k = 0

    def random(self, n: int) -> pl.Series:
        self.k += 1
        h = pl.int_range(n, eager=True, dtype=pl.UInt64).hash(seed=self.seed * 7919 + self.k)
        return ((h // 2048).cast(pl.Float64) / float(2**53)).alias("u")

    def integers(self, lo: int, hi: int, n: int) -> pl.Series:
        return (self.random(n) * (hi - lo)).floor().cast(pl.Int64) + lo

    def choice(self, values: list, n: int) -> pl.Series:
        return pl.Series(values).gather(self.integers(0, len(values), n))

    def exponential(self, scale: float, n: int) -> pl.Series:
        return -(1.0 - self.random(n)).log() * scale

    def lognormal(self, mu: float, sigma: float, n: int) -> pl.Series:
        u1, u2 = 1.0 - self.random(n), self.random(n)
        normal = (-2.0 * u1.log()).sqrt() * (2 * math.pi * u2).cos()
        return (mu + sigma * normal).exp()


def _frame(kind: str, times: pl.Series, source: pl.Series, data: pl.DataFrame, ids: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({
        "t": times.cast(pl.Int64), "id": ids, "source": source,
        "type": pl.repeat(kind, len(times), eager=True, dtype=pl.String),
        "data": data.select(pl.struct(pl.all()).struct.json_encode()).to_series(),
    })


def generate(n: int, seed: int = 7, end: datetime | None = None, days: float = 30.0) -> pl.DataFrame:
    """About `n` valid events as a frame (specversion,id,source,type,time,subject,data), data a JSON string."""
    rng = Rng(seed)
    end = end or datetime.now(timezone.utc) - timedelta(minutes=5)
    end_us = int(end.timestamp() * 1_000_000)
    span_us = int(days * 86400 * 1_000_000)
    n_notebooks = max(10, n // 2000)
    notebooks = pl.Series([f"nb-{i:05d}" for i in range(n_notebooks)], dtype=pl.String)
    nb_team = pl.Series([TEAMS[i % len(TEAMS)] for i in range(n_notebooks)], dtype=pl.String)
    nb_owner = pl.Series([OWNERS[(i * 7) % len(OWNERS)] for i in range(n_notebooks)], dtype=pl.String)
    frames: list[pl.DataFrame] = []
    counter = [0]

    def ids(prefix: str, m: int) -> pl.Series:
        start = counter[0]
        counter[0] += m
        return f"{prefix}-{seed}-" + pl.int_range(start, start + m, eager=True).cast(pl.String)

    def when(m: int) -> pl.Series:
        return end_us - rng.integers(0, span_us, m)

    def nb_cols(m: int) -> tuple[pl.Series, pl.Series, pl.Series]:
        k = rng.integers(0, n_notebooks, m)
        return notebooks.gather(k), nb_team.gather(k), nb_owner.gather(k)

    # ---- runs: queued, started, terminal (45% of events) -----------------------------------------------
    n_runs = int(n * 0.15)
    nb, team, owner = nb_cols(n_runs)
    run = pl.DataFrame({
        "team": team, "owner": owner, "notebook_id": nb,
        "run_id": f"run-{seed}-" + pl.int_range(n_runs, eager=True).cast(pl.String),
        "attempt": (rng.random(n_runs) < 0.05).cast(pl.Int64) + 1,
        "trigger": rng.choice(TRIGGERS, n_runs),
        "environment": pl.Series(ENVS).gather(
            pl.Series(rng.random(n_runs) >= 0.8).cast(pl.Int64) * rng.integers(1, 3, n_runs)),
    })
    src = rng.choice(SOURCES_RUN, n_runs)
    queued = when(n_runs)
    started = queued + rng.integers(1_000_000, 60_000_000, n_runs)
    duration = rng.lognormal(4.5, 1.0, n_runs).round(3)
    ended = started + (duration * 1_000_000).cast(pl.Int64)
    frames.append(_frame("notebook.run.queued", queued, src, run, ids("q", n_runs)))
    frames.append(_frame("notebook.run.started", started, src, run, ids("s", n_runs)))
    hashes = pl.int_range(n_runs, eager=True)
    hx = lambda: "sha256:" + _hex64(hashes, seed + rng.k)  # noqa: E731
    rng.k += 1
    term = run.with_columns(
        duration_seconds=duration, cpu_seconds=(duration * rng.random(n_runs)).round(2),
        max_memory_bytes=rng.integers(50_000_000, 16_000_000_000, n_runs),
        output_hash=hx(), input_hash=hx(), parameters_hash=hx(), env_hash=hx(),
        _src=src, _ended=ended, _outcome=rng.random(n_runs), _cells=rng.random(n_runs),
        _ncell=rng.integers(3, 13, n_runs),
    ).with_row_index("_row")
    ok = term.filter(pl.col("_outcome") < 0.88)
    plain = ok.filter(pl.col("_cells") >= 0.5)
    cells = ok.filter(pl.col("_cells") < 0.5)
    flat = cells.select("_row", index=pl.int_ranges(0, pl.col("_ncell"))).explode("index")
    flat = flat.with_columns(duration_seconds=rng.exponential(3.0, flat.height).round(3),
                             status=pl.lit("ok", pl.String))
    lists = flat.group_by("_row", maintain_order=True).agg(cells=pl.struct("index", "duration_seconds", "status"))
    cells = cells.join(lists, on="_row", how="left")
    drop = ["_row", "_src", "_ended", "_outcome", "_cells", "_ncell"]
    for df, prefix in ((plain, "ok"), (cells, "okc")):
        frames.append(_frame("notebook.run.succeeded", df["_ended"], df["_src"], df.drop(drop), ids(prefix, df.height)))
    for kind, lo, hi in (("notebook.run.failed", 0.88, 0.96), ("notebook.run.timed_out", 0.96, 0.98),
                         ("notebook.run.cancelled", 0.98, 1.01)):
        df = term.filter((pl.col("_outcome") >= lo) & (pl.col("_outcome") < hi))
        data = df.drop(drop + ["cpu_seconds", "max_memory_bytes", "output_hash"])
        if kind == "notebook.run.failed":
            pick = rng.integers(0, len(ERRORS), df.height)
            secret = rng.random(df.height) < 0.005
            etype = pl.Series([e[0] for e in ERRORS]).gather(pick)
            emsg = pl.Series([e[1] for e in ERRORS]).gather(pick)
            data = data.with_columns(
                error_type=pl.select(pl.when(secret).then(pl.lit(SECRET_ERROR[0])).otherwise(etype)).to_series(),
                error_message=pl.select(pl.when(secret).then(pl.lit(SECRET_ERROR[1])).otherwise(emsg)).to_series())
        frames.append(_frame(kind, df["_ended"], df["_src"], data, ids(kind.rsplit(".", 1)[1][:2], df.height)))

    # ---- kernel sessions (about 30%) -------------------------------------------------------------------
    n_k = int(n * 0.145)
    nb, team, owner = nb_cols(n_k)
    kbase = pl.DataFrame({
        "team": team, "owner": owner, "notebook_id": nb,
        "kernel_id": f"k-{seed}-" + pl.int_range(n_k, eager=True).cast(pl.String),
        "notebook_path": "/home/" + owner.str.split("@").list.first() + "/" + nb + ".ipynb",
    })
    ksrc = rng.choice(SOURCES_KERNEL, n_k)
    kstart = when(n_k)
    frames.append(_frame("notebook.kernel.started", kstart, ksrc, kbase.with_columns(kernel_name=pl.lit("python3")),
                         ids("ks", n_k)))
    fate = rng.random(n_k)
    kend = kstart + rng.integers(60_000_000, 8 * 3600_000_000, n_k)
    k = kbase.with_columns(_fate=fate, _end=kend, _start=kstart, _src=ksrc)
    kdrop = ["_fate", "_end", "_start", "_src"]
    df = k.filter(pl.col("_fate") < 0.96)
    frames.append(_frame("notebook.kernel.shutdown", df["_end"], df["_src"],
                         df.drop(kdrop).with_columns(reason=rng.choice(["user", "culled", "server_stop"], df.height)),
                         ids("kx", df.height)))
    df = k.filter(pl.col("_fate") >= 0.96)
    frames.append(_frame("notebook.kernel.died", df["_end"], df["_src"],
                         df.drop(kdrop).with_columns(reason=rng.choice(["crash", "oom", "signal", "unknown"], df.height),
                                                     exit_code=rng.integers(-15, 140, df.height)),
                         ids("kd", df.height)))
    df = k.filter(pl.col("_fate") < 0.02)
    frames.append(_frame("notebook.kernel.restarted", df["_start"] + 1_000_000, df["_src"],
                         df.drop(kdrop).with_columns(reason=rng.choice(["user", "crash", "oom"], df.height)),
                         ids("kr", df.height)))

    # ---- the rest --------------------------------------------------------------------------------------
    def simple(kind: str, share: float, prefix: str, build) -> None:
        m = max(1, int(n * share))
        nb, team, owner = nb_cols(m)
        frames.append(_frame(kind, when(m), rng.choice(SOURCES_OTHER, m), build(m, nb, team, owner), ids(prefix, m)))

    simple("platform.probe", 0.12, "p", lambda m, nb, team, owner: pl.DataFrame({
        "target": rng.choice(["hub-a/api", "hub-a/ui", "hub-b/api", "hub-b/ui"], m),
        "ok": rng.random(m) < 0.995, "latency_seconds": rng.exponential(0.08, m).round(4)}))
    simple("notebook.quality.checked", 0.06, "qc", lambda m, nb, team, owner: pl.DataFrame({
        "team": team, "notebook_id": nb, "check": rng.choice(["row_count", "not_null", "freshness", "schema"], m),
        "result": pl.Series(["pass", "fail"]).gather((rng.random(m) < 0.03).cast(pl.Int64))}))
    simple("notebook.artifact.published", 0.04, "a", lambda m, nb, team, owner: pl.DataFrame({
        "team": team, "notebook_id": nb, "artifact": "s3://lake/marts/" + nb + ".parquet",
        "sla_seconds": rng.choice([3600.0, 86400.0], m), "size_bytes": rng.integers(1_000, 5_000_000_000, m)}))
    simple("notebook.reproducibility.checked", 0.01, "r", lambda m, nb, team, owner: pl.DataFrame({
        "team": team, "notebook_id": nb,
        "result": pl.Series(["match", "mismatch"]).gather((rng.random(m) < 0.1).cast(pl.Int64))}))
    simple("notebook.schedule.registered", 0.005, "sc", lambda m, nb, team, owner: pl.DataFrame({
        "team": team, "notebook_id": nb, "cron": rng.choice(["0 * * * *", "*/15 * * * *", "0 6 * * 1-5"], m),
        "timezone": rng.choice(["UTC", "Europe/Paris", "America/New_York"], m)}))
    simple("notebook.registered", 0.005, "nr", lambda m, nb, team, owner: pl.DataFrame({
        "notebook_id": nb, "owner": owner, "team": team,
        "tags": pl.DataFrame({"domain": team, "tier": rng.choice(["gold", "silver"], m)}).select(
            pl.struct(pl.all())).to_series(),
        "critical": rng.random(m) < 0.2, "has_tests": rng.random(m) < 0.5}))
    simple("notebook.updated", 0.003, "nu", lambda m, nb, team, owner: pl.DataFrame({
        "notebook_id": nb, "has_tests": rng.random(m) < 0.6}))
    simple("notebook.promoted", 0.001, "pr", lambda m, nb, team, owner: pl.DataFrame({"notebook_id": nb, "team": team}))
    simple("notebook.security.secret_detected", 0.0005, "sd", lambda m, nb, team, owner: pl.DataFrame({
        "team": team, "notebook_id": nb, "detector": pl.repeat("gitleaks", m, eager=True)}))
    simple("notebook.security.access_denied", 0.003, "ad", lambda m, nb, team, owner: pl.DataFrame({
        "principal": owner, "resource": "notebook:" + nb, "action": pl.repeat("open", m, eager=True)}))
    simple("notebook.artifact.retired", 0.0005, "ar", lambda m, nb, team, owner: pl.DataFrame({
        "team": team, "notebook_id": nb, "artifact": "s3://lake/marts/" + nb + ".parquet"}))

    df = pl.concat([f for f in frames if f.height], how="vertical").sort("t")
    return df.select(
        specversion=pl.lit("1.0", pl.String), id="id", source="source", type="type",
        time=pl.from_epoch("t", time_unit="us").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
        subject=pl.lit(None, pl.String), data="data",
    )


def to_ndjson_lines(df: pl.DataFrame) -> pl.Series:
    """One compact JSON line per event (no subject key, like most producers; ids and sources are plain ASCII)."""
    return df.select(pl.concat_str([
        pl.lit('{"specversion":"1.0","id":"'), pl.col("id"), pl.lit('","source":"'), pl.col("source"),
        pl.lit('","type":"'), pl.col("type"), pl.lit('","time":"'), pl.col("time"), pl.lit('","data":'),
        pl.col("data"), pl.lit("}"),
    ])).to_series()


def write(n: int, out_dir: Path, seed: int = 7, formats: tuple[str, ...] = ("ndjson", "parquet")) -> dict[str, Path]:
    """Write exactly `n` events (the earliest of a slightly larger mix) as NDJSON and/or Parquet into `out_dir`;
    returns the paths by format."""
    out_dir.mkdir(parents=True, exist_ok=True)
    df = generate(int(n * 1.03) + 100, seed).head(n)
    paths: dict[str, Path] = {}
    if "parquet" in formats:
        paths["parquet"] = out_dir / f"{NAME}-{seed}-{df.height}.parquet"
        df.write_parquet(paths["parquet"], row_group_size=100_000)
    if "ndjson" in formats:
        paths["ndjson"] = out_dir / f"{NAME}-{seed}-{df.height}.ndjson"
        with open(paths["ndjson"], "wb") as fh:
            for start in range(0, df.height, 500_000):
                lines = to_ndjson_lines(df.slice(start, 500_000))
                fh.write(lines.str.join("\n").item().encode() + b"\n")
    return paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path("var/bench"))
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    print(write(a.events, a.out, a.seed))
