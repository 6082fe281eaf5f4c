"""One valid example `data` per event type: rendered into docs/events.md and posted by the contract tests."""

from __future__ import annotations

from typing import Any

EXAMPLE_TIME = "2026-11-20T09:30:00Z"
SOURCES = {
    "notebook.kernel": "jupyter://hub-a",
    "notebook.run": "papermill://scheduler-1",
    "notebook.schedule": "airflow://prod",
    "notebook.reproducibility": "ci://github-actions",
    "notebook.quality": "great-expectations://prod",
    "notebook.artifact": "papermill://scheduler-1",
    "notebook.security": "scanner://nb-secrets",
    "notebook": "registry://catalog",
    "platform": "probe://blackbox-1",
}

_RUN = {"run_id": "run-2026-11-20-0930-revenue", "notebook_id": "nb-revenue-daily", "team": "finance",
        "owner": "ana", "trigger": "scheduled", "environment": "prod", "attempt": 1}

EXAMPLES: dict[str, dict[str, Any]] = {
    "notebook.kernel.started": {"kernel_id": "5f1c9a2e", "kernel_name": "python3", "team": "ml", "owner": "li",
                                "notebook_path": "research/churn.ipynb", "session_id": "s-81"},
    "notebook.kernel.restarted": {"kernel_id": "5f1c9a2e", "reason": "crash", "team": "ml"},
    "notebook.kernel.died": {"kernel_id": "5f1c9a2e", "reason": "oom", "exit_code": -9, "signal": "SIGKILL",
                             "team": "ml", "msg": "kernel exceeded its 8 GiB memory limit"},
    "notebook.kernel.shutdown": {"kernel_id": "5f1c9a2e", "reason": "culled", "team": "ml"},
    "notebook.run.queued": {**_RUN, "scheduled_for": "2026-11-20T09:30:00Z"},
    "notebook.run.started": {**_RUN, "scheduled_for": "2026-11-20T09:30:00Z",
                             "parameters": {"date": "2026-11-19", "region": "eu"}},
    "notebook.run.succeeded": {
        **_RUN, "duration_seconds": 182.4, "cpu_seconds": 140.2, "max_memory_bytes": 2_147_483_648,
        "cells": [{"index": 0, "duration_seconds": 2.1, "status": "ok"},
                  {"index": 1, "duration_seconds": 180.3, "status": "ok"}],
        "input_hash": "sha256:4b1e…code", "parameters_hash": "sha256:77aa…params", "env_hash": "sha256:c0de…env",
        "output_hash": "sha256:9f2c…out",
    },
    "notebook.run.failed": {
        **_RUN, "attempt": 2, "duration_seconds": 41.0, "error_type": "KeyError",
        "error_message": "KeyError: 'revenue_eur' in cell 3",
        "cells": [{"index": 0, "duration_seconds": 1.0, "status": "ok"},
                  {"index": 1, "duration_seconds": 40.0, "status": "error"}],
    },
    "notebook.run.timed_out": {**_RUN, "duration_seconds": 3600.0, "error_type": "TimeoutError",
                               "error_message": "cell 4 exceeded the 3600 s execution timeout"},
    "notebook.run.cancelled": {**_RUN, "trigger": "manual", "duration_seconds": 12.0},
    "notebook.schedule.registered": {"notebook_id": "nb-revenue-daily", "team": "finance", "cron": "30 9 * * *",
                                     "timezone": "Europe/Berlin", "grace_seconds": 900,
                                     "sla_seconds": 7200, "environment": "prod"},
    "notebook.reproducibility.checked": {"notebook_id": "nb-revenue-daily", "team": "finance", "result": "match",
                                         "run_id": "ci-4411", "baseline_run_id": "run-2026-11-01-0930-revenue"},
    "notebook.quality.checked": {"notebook_id": "nb-revenue-daily", "team": "finance", "check": "revenue_not_null",
                                 "result": "pass", "run_id": "run-2026-11-20-0930-revenue"},
    "notebook.artifact.published": {"notebook_id": "nb-revenue-daily", "team": "finance",
                                    "artifact": "s3://reports/revenue/2026-11-20.parquet", "sla_seconds": 86400,
                                    "size_bytes": 7_340_032, "run_id": "run-2026-11-20-0930-revenue"},
    "notebook.artifact.retired": {"notebook_id": "nb-revenue-daily", "team": "finance",
                                  "artifact": "s3://reports/revenue/legacy.parquet"},
    "notebook.security.secret_detected": {"notebook_id": "nb-etl-legacy", "team": "data-eng",
                                          "detector": "aws_access_key", "location": "cell 2 output"},
    "notebook.security.access_denied": {"principal": "user:bob", "resource": "notebooks/finance/payroll.ipynb",
                                        "action": "open", "team": "finance"},
    "notebook.registered": {"notebook_id": "nb-revenue-daily", "owner": "ana", "team": "finance",
                            "notebook_path": "finance/revenue_daily.ipynb",
                            "tags": {"domain": "revenue", "tier": "gold"}, "critical": True, "has_tests": True,
                            "created_at": "2026-09-01T08:00:00Z"},
    "notebook.updated": {"notebook_id": "nb-revenue-daily", "has_tests": True, "tags": {"domain": "revenue",
                                                                                        "tier": "gold"}},
    "notebook.promoted": {"notebook_id": "nb-revenue-daily", "team": "finance", "environment": "prod"},
    "platform.probe": {"target": "jupyterhub-ui", "ok": True, "latency_seconds": 0.182},
}


def example_event(type_name: str, n: int = 1) -> dict[str, Any]:
    prefix = max((p for p in SOURCES if type_name.startswith(p + ".")), key=len)
    return {
        "specversion": "1.0",
        "id": f"example-{type_name}-{n}",
        "source": SOURCES[prefix],
        "type": type_name,
        "time": EXAMPLE_TIME,
        "data": EXAMPLES[type_name],
    }
