"""BigQuery at the request level: the real google-cloud-bigquery client against the fake BigQuery REST endpoint of
the cost tests. Every statement the SLI computation sends is BigQuery SQL (parsed by sqlglot's BigQuery dialect),
carries its values as query parameters, runs in the lake's dataset, and `--dry-run` prints BigQuery's estimate."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlglot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.cost.bq_fake import FakeBigQuery  # noqa: E402

from collector.engines import select  # noqa: E402
from collector.engines import sli as engine_sli  # noqa: E402
from slo.sli.config import SliQuery  # noqa: E402
from support import OBSERVATORY  # noqa: E402

AS_OF = datetime(2026, 11, 21, 9, tzinfo=timezone.utc)


class DryRunBigQuery(FakeBigQuery):
    """Answers DDL (no rows) and dry-run jobs (an estimate of 1000 bytes per character of SQL, so that the test
    knows what BigQuery "estimated" for each statement)."""

    def handle_post(self, path: str, body: dict):
        parts = path.strip("/").split("/")
        if parts[-1] == "jobs" and "query" in body.get("configuration", {}):
            q = body["configuration"]["query"]
            self.queries.append((q["query"], {p.get("name"): p["parameterValue"] for p in q.get("queryParameters", [])}))
            job_id = body.get("jobReference", {}).get("jobId") or "job_" + uuid.uuid4().hex[:12]
            self.jobs[job_id] = {"project": parts[3], "schema": [], "rows": [], "sql": q["query"]}
            res = self._job_resource(job_id)
            res["configuration"]["dryRun"] = bool(body["configuration"].get("dryRun"))
            res["statistics"]["query"]["totalBytesProcessed"] = str(1000 * len(q["query"]))
            res["statistics"]["totalBytesProcessed"] = str(1000 * len(q["query"]))
            return 200, res
        return super().handle_post(path, body)


@pytest.fixture
def fake():
    f = DryRunBigQuery()
    url = f.start()
    f.url = url
    yield f
    f.stop()


def test_every_statement_is_bigquery_sql_with_bound_parameters(fake):
    es = select.EngineSettings(engine="bigquery", lake="gs://lake-bucket/obs", bq_project="proj", bq_dataset="obs",
                               bq_api_endpoint=fake.url)
    eng = select.open_engine(es, dry_run=True)
    q = SliQuery(as_of=AS_OF, windows=["1h", "30d"], levels=("platform", "team", "notebook", "trigger"))
    rows = engine_sli.compute(eng, q)
    assert rows and all(r["value"] is None for r in rows)  # a dry run returns no data
    jobs = [r for r in fake.requests if r[0] == "POST" and r[1].endswith("/jobs")]
    setup = [b for _, _, b in jobs if not b["configuration"].get("dryRun")]
    dry = [b for _, _, b in jobs if b["configuration"].get("dryRun")]
    # set-up: one external table per lake table, one view per relation (a dry run materialises nothing)
    ddl = [b["configuration"]["query"]["query"] for b in setup]
    assert sum("EXTERNAL TABLE" in s for s in ddl) == 4 and sum(" VIEW " in s for s in ddl) == 6
    assert all("hive_partition_uri_prefix = 'gs://lake-bucket/obs/" in s for s in ddl if "EXTERNAL" in s)
    assert len(dry) == len(eng.estimates) >= 8
    for b, (sql, est) in zip(dry, eng.estimates):
        qc = b["configuration"]["query"]
        assert qc["query"] == sql and est == 1000 * len(sql)
        sqlglot.parse_one(sql, read="bigquery")  # raises on anything BigQuery's grammar does not have
        assert qc["defaultDataset"] == {"projectId": "proj", "datasetId": "obs"}
        assert not re.search(r"(?<!')\$\w", sql) and "TIMESTAMPTZ" not in sql  # no DuckDB parameter left
        names = {p["name"] for p in qc.get("queryParameters", []) if p.get("name")}

        assert set(re.findall(r"@(\w+)", sql)) == names, (sql, names)
    for s in ddl:
        sqlglot.parse_one(s, read="bigquery")


def test_cli_dry_run_prints_the_estimates(fake, tmp_path):
    env = {"OBSERVATORY_BQ_API_ENDPOINT": fake.url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([OBSERVATORY, "sli", "--engine", "bigquery", "--lake", "gs://lake-bucket/obs",
                          "--bq-project", "proj", "--dry-run", "--as-of", AS_OF.isoformat(), "-w", "1d"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    dry = [b["configuration"]["query"]["query"] for _, p, b in fake.requests
           if p.endswith("/jobs") and b["configuration"].get("dryRun")]
    assert len(lines) == len(dry) + 1
    assert lines[-1] == f"total {sum(1000 * len(s) for s in dry):,d} bytes in {len(dry)} statements"
    for line, sql in zip(lines, dry):
        assert f"{1000 * len(sql):,d} bytes" in line
