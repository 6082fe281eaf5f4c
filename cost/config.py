"""Cost settings: tag keys for allocation, per-team monthly budgets, sharing of unallocated cost, sync windows.

Read from environment variables prefixed ``OBSERVATORY_COST_`` (nested with ``__``, e.g.
``OBSERVATORY_COST_BUDGETS='{"ml": 1200}'``) and, optionally, a YAML file whose ``cost:`` section (or whole body)
holds the same keys. The file path is ``OBSERVATORY_COST_CONFIG_FILE`` or else ``OBSERVATORY_CONFIG``.
Environment variables win over the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_TAG_KEYS: dict[str, list[str]] = {
    # first the configured key, then the common spellings (matching ignores case and punctuation,
    # so "Team", "TEAM", "team-name" and "team_name" are one key; AWS "user:" / "user_" prefixes are stripped)
    "team": ["team", "team_name", "teamname", "team_id", "owner_team"],
    "notebook_id": ["notebook_id", "notebookid", "notebook", "nb_id", "notebook_name"],
    "run_id": ["run_id", "runid", "run", "job_run_id", "notebook_run_id", "papermill_run_id"],
}


class TagKeys(BaseModel):
    team: list[str] = Field(default_factory=lambda: list(DEFAULT_TAG_KEYS["team"]))
    notebook_id: list[str] = Field(default_factory=lambda: list(DEFAULT_TAG_KEYS["notebook_id"]))
    run_id: list[str] = Field(default_factory=lambda: list(DEFAULT_TAG_KEYS["run_id"]))

    @field_validator("team", "notebook_id", "run_id", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("team", "notebook_id", "run_id")
    @classmethod
    def _not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one tag key is needed")
        return v


class CostSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OBSERVATORY_COST_", env_nested_delimiter="__", extra="ignore")

    tag_keys: TagKeys = Field(
        default_factory=TagKeys, json_schema_extra={"shown_default": "team, notebook_id, run_id and their common "
                                                                     "spellings"},
        description="Billing tag keys that attribute a line to a team, notebook or run, as JSON "
                    "(`{\"team\": [\"team\", \"cost-center\"]}`) or one key per variable "
                    "(`OBSERVATORY_COST_TAG_KEYS__TEAM='[\"team\", \"cost-center\"]'`)")
    budgets: dict[str, Decimal] = Field(default_factory=dict, description="Monthly budget per team in the billing "
                                                                          "currency, JSON (`{\"ml\": 1200}`)")
    share_unallocated: Literal["none", "weighted", "even"] = Field(
        "none", description="Spread unallocated cost over the teams: `none` (keep it visible as `__unallocated__`), "
                            "`weighted` (by their allocated cost) or `even`")
    currency: str = Field("USD", description="Billing currency shown in reports")
    gcp_rescan_days: int = Field(10, gt=0, description="Trailing days of GCP export partitions re-checked on every "
                                                       "sync")
    gcp_initial_days: int = Field(62, gt=0, description="How far back the first GCP sync looks")
    forecast_lookback_days: int = Field(7, gt=0, description="Days of recent spend the month-end forecast "
                                                             "extrapolates")
    spike_min_elapsed_days: int = Field(7, gt=0, description="Whole days of the month before the cost-spike gauges "
                                                             "(CostSpike) compare anything")
    config_file: Path | None = Field(None, description="YAML file whose `cost:` section (or whole body) holds "
                                                       "these keys; environment variables win (also read from "
                                                       "`OBSERVATORY_CONFIG`)")

    @field_validator("budgets")
    @classmethod
    def _budgets_positive(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        for team, amount in v.items():
            if amount < 0:
                raise ValueError(f"budget for team {team!r} is negative: {amount}")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)

    def fingerprint(self) -> str:
        """Hash of the settings that change normalised lines (tag keys): part of every ingest id."""
        return hashlib.sha256(json.dumps(self.tag_keys.model_dump(), sort_keys=True).encode()).hexdigest()[:12]


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("OBSERVATORY_COST_CONFIG_FILE") or os.environ.get("OBSERVATORY_CONFIG")
        if not path:
            return {}
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"cost config file {p} does not exist")
        body = yaml.safe_load(p.read_text()) or {}
        if not isinstance(body, dict):
            raise ValueError(f"{p}: expected a mapping at the top level")
        section = body.get("cost", body)
        return dict(section or {}, config_file=p)


def load_settings(**overrides: Any) -> CostSettings:
    return CostSettings(**overrides)
