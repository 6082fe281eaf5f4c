"""Collector settings: environment variables (`OBSERVATORY_*`) override the defaults; the CLI overrides both."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OBSERVATORY_", extra="ignore")

    db: Path = Field(Path("var/observatory.duckdb"), description="DuckDB file (OBSERVATORY_DB)")
    host: str = "127.0.0.1"
    port: int = 8080
    auth: bool = Field(True, description="Require bearer tokens; only loopback binds may turn this off")
    tokens_file: Path | None = Field(None, description="YAML/JSON file with hashed tokens")
    tokens: str | None = Field(None, description="JSON list of tokens (plain `token` or `sha256`), hashed at load")
    metrics_public: bool = Field(False, description="Serve /metrics without a token")

    max_body_bytes: int = Field(16 * 1024 * 1024, description="Largest request body as sent (413 above)")
    max_inflated_bytes: int = Field(64 * 1024 * 1024, description="Largest body after gzip decoding (413 above)")
    max_events_per_request: int = Field(50_000, description="Most events in one request (413 above)")
    max_queue_events: int = Field(200_000, description="Events waiting for the writer before 429")
    max_batch_events: int = Field(50_000, description="Most events in one group commit")
    gauge_refresh_seconds: float = Field(15.0, description="Period of the SQL-backed gauge refresh")
    gauge_min_gap_seconds: float = Field(
        5.0, description="Least time between two gauge refreshes when ingest keeps poking the refresher: the SLI "
                         "and cost gauges are scraped every 15-60 s, recomputing them after every commit would "
                         "only take CPU from ingest")
    sli_max_windows: int = Field(8, ge=1, description="Most windows one GET /v1/sli may ask for (422 above)")
    sli_max_window_days: float = Field(
        400.0, gt=0, description="Longest window GET /v1/sli computes (422 above)")
    read_timeout_seconds: float = Field(
        60.0, gt=0, description="A read query (GET /v1/sli) running longer is interrupted and answered 503")
    shutdown_timeout_seconds: float = Field(
        10.0, gt=0, description="After SIGTERM, requests still running after this long are cancelled and their "
                                "queries interrupted; the process exits at most this long again after that")
    label_cap_team: int = 500
    label_cap_source: int = 500
    log_level: str = "INFO"
