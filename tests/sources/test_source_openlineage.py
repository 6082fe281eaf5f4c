"""OpenLineage source: the real openlineage-python client (HTTP transport, bearer auth, gzip) against a real
collector process; a run that succeeds, one that fails and is retried, a batch with one invalid event."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone

import duckdb
import httpx
import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import DatasetEvent, InputDataset, Job, Run, RunEvent, RunState, StaticDataset
from openlineage.client.facet_v2 import (
    data_quality_assertions_dataset,
    error_message_run,
    execution_parameters_run,
    nominal_time_run,
    parent_run,
    tags_run,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpCompression, HttpConfig, HttpTransport

from tests.support import Collector, create_token, metric_sum, parse_metrics

PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.0.0"
T0 = datetime(2026, 11, 20, 6, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def collector(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    ingest = create_token(tokens, "scheduler", "ingest")
    admin = create_token(tokens, "admin", "ingest,read,admin")
    col = Collector(db=tmp_path / "o.duckdb", tokens_file=tokens, token=admin).start()
    col.ingest_token = ingest  # type: ignore[attr-defined]
    yield col
    col.stop()


def ol_client(col, *, gzip_body: bool = True) -> OpenLineageClient:
    config = HttpConfig(url=col.url, auth=ApiKeyTokenProvider({"apiKey": col.ingest_token}),
                        compression=HttpCompression.GZIP if gzip_body else None, timeout=10,
                        retry={"total": 0})
    return OpenLineageClient(transport=HttpTransport(config))


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def rows(col, sql: str, params=()):
    col.stop()
    con = duckdb.connect(str(col.db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def run_event(state, run_id, when, *, job="revenue_daily", namespace="airflow-prod", facets=None, inputs=None):
    return RunEvent(eventType=state, eventTime=iso(when), run=Run(runId=run_id, facets=facets or {}),
                    job=Job(namespace=namespace, name=job), producer=PRODUCER, inputs=inputs or [])


def test_successful_scheduled_run_with_facets_and_quality_checks(collector):
    client = ol_client(collector)
    rid = str(uuid.uuid4())
    facets = {
        "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime=iso(T0)),
        "tags": tags_run.TagsRunFacet(tags=[tags_run.TagsRunFacetFields(key="team", value="finance"),
                                            tags_run.TagsRunFacetFields(key="owner", value="maria"),
                                            tags_run.TagsRunFacetFields(key="notebook_id", value="fin-revenue"),
                                            tags_run.TagsRunFacetFields(key="tier", value="gold")]),
        "executionParameters": execution_parameters_run.ExecutionParametersRunFacet(parameters=[
            execution_parameters_run.ExecutionParameter(key="region", value="emea")]),
    }
    dq = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=[
        data_quality_assertions_dataset.Assertion(assertion="not_null", success=True, column="order_id"),
        data_quality_assertions_dataset.Assertion(assertion="row_count_gt_0", success=False),
    ])
    orders = InputDataset(namespace="postgres://warehouse", name="sales.orders",
                          inputFacets={"dataQualityAssertions": dq})
    client.emit(run_event(RunState.START, rid, T0 + timedelta(seconds=90), facets=facets))
    complete = run_event(RunState.COMPLETE, rid, T0 + timedelta(seconds=390), facets=facets, inputs=[orders])
    client.emit(complete)
    client.emit(complete)  # an at-least-once transport re-sends: stored once

    m = parse_metrics(httpx.get(collector.url + "/metrics", headers=collector.headers).text)
    assert metric_sum(m, "notebook_run_attempts_total", team="finance", trigger="scheduled",
                      outcome="succeeded") == 1
    assert metric_sum(m, "notebook_quality_checks_total", team="finance", result="pass") == 1
    assert metric_sum(m, "notebook_quality_checks_total", team="finance", result="fail") == 1
    assert metric_sum(m, "observatory_events_duplicate_total") == 3  # the COMPLETE and its two quality checks

    got = rows(collector, "SELECT run_id, attempt, notebook_id, team, owner, trigger, state, duration_seconds, "
                          "strftime(scheduled_for, '%H:%M:%S'), strftime(started_at, '%H:%M:%S') FROM run_attempts")
    assert got == [(rid, 1, "fin-revenue", "finance", "maria", "scheduled", "succeeded", 300.0, "06:00:00",
                    "06:01:30")]  # schedule lag (started - scheduled) = 90 s
    ev = rows(collector, "SELECT source, data->>'parameters_hash', data->'parameters', data->'tags' FROM events "
                         "WHERE type = 'notebook.run.succeeded'")
    assert ev[0][0] == "openlineage://airflow-prod"
    assert ev[0][1].startswith("sha256:") and json.loads(ev[0][2]) == {"region": "emea"}
    assert json.loads(ev[0][3])["tier"] == "gold"  # unmapped tags are kept (the client adds its version too)
    checks = rows(collector, "SELECT data->>'check', data->>'result', notebook_id, run_id FROM events "
                             "WHERE type = 'notebook.quality.checked' ORDER BY 1")
    assert checks == [("sales.orders.order_id:not_null", "pass", "fin-revenue", rid),
                      ("sales.orders:row_count_gt_0", "fail", "fin-revenue", rid)]


def test_failed_run_retried_is_two_attempts_of_the_parent_run(collector):
    client = ol_client(collector, gzip_body=False)
    dag_run, try1, try2 = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    parent = {"parent": parent_run.ParentRunFacet(run=parent_run.Run(runId=dag_run),
                                                  job=parent_run.Job(namespace="airflow-prod", name="etl_dag"))}
    failure = {**parent, "errorMessage": error_message_run.ErrorMessageRunFacet(
        message="ValueError: cannot reach db with password=Sup3rS3cretPassw0rd!", programmingLanguage="python",
        stackTrace='Traceback (most recent call last):\n  File "task.py", line 3\nValueError: cannot reach db')}
    job = "etl_dag.run_notebook"
    client.emit(run_event(RunState.START, try1, T0, job=job, facets=parent))
    client.emit(run_event(RunState.FAIL, try1, T0 + timedelta(seconds=12), job=job, facets=failure))
    client.emit(run_event(RunState.START, try2, T0 + timedelta(seconds=300), job=job, facets=parent))
    client.emit(run_event(RunState.RUNNING, try2, T0 + timedelta(seconds=310), job=job, facets=parent))
    client.emit(run_event(RunState.COMPLETE, try2, T0 + timedelta(seconds=345), job=job, facets=parent))

    m = parse_metrics(httpx.get(collector.url + "/metrics", headers=collector.headers).text)
    assert metric_sum(m, "notebook_run_attempts_total", outcome="failed") == 1
    assert metric_sum(m, "notebook_run_attempts_total", outcome="succeeded") == 1
    assert metric_sum(m, "notebook_secret_exposures_total") == 1
    got = rows(collector, "SELECT run_id, attempt, notebook_id, state, duration_seconds, error_type, error_message "
                          "FROM run_attempts ORDER BY attempt")
    run_id = f"{dag_run}/{job}"
    assert got == [
        (run_id, 1, f"airflow-prod/{job}", "failed", 12.0, "ValueError",
         "ValueError: cannot reach db with password=[REDACTED:password_assignment]"),
        (run_id, 2, f"airflow-prod/{job}", "succeeded", 45.0, None, None),
    ]
    stored = rows(collector, "SELECT count(*) FROM events WHERE data::VARCHAR LIKE '%Sup3rS3cret%'")
    assert stored == [(0,)]


def test_attempt_numbering_survives_a_collector_restart(collector):
    client = ol_client(collector)
    dag_run, tries = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(3)]
    parent = {"parent": parent_run.ParentRunFacet(run=parent_run.Run(runId=dag_run),
                                                  job=parent_run.Job(namespace="ns", name="dag"))}
    client.emit(run_event(RunState.START, tries[0], T0, namespace="ns", job="dag.t", facets=parent))
    client.emit(run_event(RunState.FAIL, tries[0], T0 + timedelta(seconds=5), namespace="ns", job="dag.t",
                          facets=parent))
    collector.stop()
    collector.start()
    client.emit(run_event(RunState.START, tries[1], T0 + timedelta(seconds=60), namespace="ns", job="dag.t",
                          facets=parent))
    client.emit(run_event(RunState.FAIL, tries[0], T0 + timedelta(seconds=5), namespace="ns", job="dag.t",
                          facets=parent))  # late duplicate of attempt 1
    client.emit(run_event(RunState.COMPLETE, tries[1], T0 + timedelta(seconds=70), namespace="ns", job="dag.t",
                          facets=parent))
    got = rows(collector, "SELECT r.attempt, r.state, r.duration_seconds, e.data->>'openlineage_run_id' FROM run_attempts r "
                          "JOIN events e ON e.id = r.terminal_event_id ORDER BY r.attempt")
    assert got == [(1, "failed", 5.0, tries[0]), (2, "succeeded", 10.0, tries[1])]


def test_batch_with_one_invalid_event_reports_it_per_the_spec(collector):
    rid = str(uuid.uuid4())
    good = [json.loads(Serde.to_json(run_event(RunState.START, rid, T0, job="batch_job"))),
            json.loads(Serde.to_json(run_event(RunState.COMPLETE, rid, T0 + timedelta(seconds=30), job="batch_job")))]
    bad = json.loads(Serde.to_json(run_event(RunState.COMPLETE, str(uuid.uuid4()), T0, job="batch_job")))
    bad["eventTime"] = "yesterday"
    dataset_event = json.loads(Serde.to_json(DatasetEvent(eventTime=iso(T0), producer=PRODUCER,
                                                          dataset=StaticDataset(namespace="s3://b", name="x"))))
    body = gzip.compress(json.dumps([good[0], bad, good[1], dataset_event]).encode())
    headers = {"Authorization": f"Bearer {collector.ingest_token}", "Content-Type": "application/json",
               "Content-Encoding": "gzip"}
    r = requests.post(collector.url + "/api/v1/lineage/batch", data=body, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "partial_success"
    assert answer["summary"] == {"received": 4, "successful": 3, "failed": 1, "retriable": 0, "non_retriable": 1}
    assert len(answer["failed_events"]) == 1
    failed = answer["failed_events"][0]
    assert failed["index"] == 1 and failed["retriable"] is False and "eventTime" in failed["reason"]

    dl = httpx.get(collector.url + "/v1/dead-letters", headers=collector.headers).json()["items"]
    assert [(d["channel"], d["item_index"], d["reason"]) for d in dl] == [("openlineage", 1, "datetime_parsing")]
    again = requests.post(collector.url + "/api/v1/lineage/batch", data=gzip.compress(json.dumps(good).encode()),
                          headers=headers, timeout=10).json()
    assert again["status"] == "success" and again["failed_events"] == []
    got = rows(collector, "SELECT run_id, state, duration_seconds FROM run_attempts")
    assert got == [(rid, "succeeded", 30.0)]


def test_single_endpoint_auth_and_ignored_kinds(collector):
    rid = str(uuid.uuid4())
    ev = json.loads(Serde.to_json(run_event(RunState.START, rid, T0)))
    assert httpx.post(collector.url + "/api/v1/lineage", json=ev).status_code == 401
    other = dict(ev, eventType="OTHER")
    r = httpx.post(collector.url + "/api/v1/lineage", json=other,
                   headers={"Authorization": f"Bearer {collector.ingest_token}"})
    assert r.status_code == 200 and r.json()["ignored"] == 1 and r.json()["accepted"] == 0
    broken = {k: v for k, v in ev.items() if k != "run"}
    broken["job"] = ev["job"]
    broken["eventType"] = "START"
    r = httpx.post(collector.url + "/api/v1/lineage", json={**broken, "run": {"facets": {}}},
                   headers={"Authorization": f"Bearer {collector.ingest_token}"})
    assert r.status_code == 422 and r.json()["results"][0]["errors"][0]["path"] == "run.runId"
    assert httpx.post(collector.url + "/api/v1/lineage", json=[ev],
                      headers={"Authorization": f"Bearer {collector.ingest_token}"}).status_code == 400
    m = parse_metrics(httpx.get(collector.url + "/metrics", headers=collector.headers).text)
    assert metric_sum(m, "observatory_native_records_ignored_total", channel="openlineage") == 1
