"""`serve --lake-export-to TARGET --lake-export-every 5m`: the collector exports to the lake on a schedule, in a
thread of its own, reading through the store's cursors (the writer goes on). A failed export is logged and tried
again at the next tick; the manifest makes the next one pick up whatever the failed one did not finish."""

from __future__ import annotations

import logging
import threading

from collector.lake import export as lake_export
from collector.lake.stores import open_store

log = logging.getLogger(__name__)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def period_seconds(text: str) -> float:
    return float(int(text[:-1]) * _UNITS[text[-1]])


class LakeExporter:
    def __init__(self, store, target: str, every: str, collector_id: str) -> None:
        self.store, self.period = store, period_seconds(every)
        self.lake = open_store(target)
        self.collector_id = collector_id
        self.exports = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lake-export", daemon=True)

    @classmethod
    def from_settings(cls, settings, store) -> "LakeExporter | None":
        if not settings.lake_export_to:
            return None
        cid = settings.lake_collector_id or lake_export.default_collector_id(settings.db)
        return cls(store, settings.lake_export_to, settings.lake_export_every, cid)

    def start(self) -> None:
        self._thread.start()

    def export_now(self) -> lake_export.ExportReport:
        with self.store.read_cursor() as cur:
            rep = lake_export.export(cur, self.lake, self.collector_id)
        self.exports += 1
        return rep

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.export_now()
            except Exception:  # noqa: BLE001 - a lake outage must not stop the collector; logged, retried
                log.exception("scheduled lake export to %s failed; retrying in %.0f s", self.lake.uri, self.period)

    def stop(self) -> None:
        """Stop the schedule and export once more, so that what was committed before shutdown reaches the lake."""
        self._stop.set()
        self._thread.join(timeout=60)
        try:
            self.export_now()
        except Exception:  # noqa: BLE001
            log.exception("final lake export to %s failed", self.lake.uri)
