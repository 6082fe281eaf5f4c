"""A real collector app on its own DuckDB file (auth off), fed through the HTTP API, exporting to a lake."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from collector.app import create_app
from collector.lake import export as lake_export
from collector.lake.stores import LakeStore
from collector.settings import Settings


class Collector:
    def __init__(self, tmp: Path, name: str) -> None:
        self.name = name
        self.db = tmp / f"{name}.duckdb"
        self.app = create_app(Settings(db=self.db, auth=False, gauge_refresh_seconds=3600))
        self.client = TestClient(self.app)
        self.client.__enter__()

    def post(self, events: list[dict]) -> None:
        if not events:
            return
        r = self.client.post("/v1/events", json=events)
        assert r.status_code == 200 and r.json()["rejected"] == 0, r.text

    def alerts(self, payload: dict) -> None:
        r = self.client.post("/v1/alertmanager", json=payload)
        assert r.status_code == 200, r.text

    def export(self, store: LakeStore) -> lake_export.ExportReport:
        with self.app.state.store.read_cursor() as cur:
            return lake_export.export(cur, store, self.name)

    def cursor(self):
        return self.app.state.store.read_cursor()

    def close(self) -> None:
        self.client.__exit__(None, None, None)
