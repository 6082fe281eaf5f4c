"""OpenLineage RunEvents (spec 2-0-2) -> run lifecycle events (routes: collector/api/openlineage.py,
`POST /api/v1/lineage` and `/api/v1/lineage/batch`).

Point any OpenLineage HTTP transport at the collector (`url=http://collector:8080`, default endpoint
`api/v1/lineage`, `Authorization: Bearer <token with ingest scope>`, gzip allowed): Airflow's provider, Spark,
dbt-ol, the Python client.

Mapping (docs/sources.md has the full table and the reasons):

* eventType START and RUNNING -> `notebook.run.started`; COMPLETE -> `succeeded`; FAIL -> `failed`;
  ABORT -> `cancelled`; OTHER or no eventType -> ignored (counted). DatasetEvents and JobEvents -> ignored.
* run id and attempts: an event with a `parent` run facet is an *attempt* of the parent's run: `run_id` is the
  parent's runId when the parent is the same job, else `<parent runId>/<job name>` (an Airflow task under its
  DAG run); each distinct OpenLineage runId under it is one attempt. The attempt number is taken from the
  `attempt`/`try_number` tag or execution parameter, or Airflow's `airflow.taskInstance.try_number` facet, or
  else numbered in order of first arrival (remembered in the stored events, so it survives restarts). Without a
  parent, `run_id` is the runId and the attempt is 1 (or the explicit number).
* `notebook_id`: tag or execution parameter `notebook_id`, else `<job namespace>/<job name>`.
* `errorMessage` -> error_message, traceback (stackTrace), error_type (the `Name:` prefix of the message);
  `nominalTime` -> scheduled_for (schedule lag) and trigger `scheduled`; `executionParameters` -> parameters and
  parameters_hash; `tags` (run and job facets; run wins) -> team, owner, environment, trigger, notebook_id,
  attempt, the rest in `tags`; job `ownership` -> owner when no tag says;
  `dataQualityAssertions` on input/output datasets -> one `notebook.quality.checked` per assertion.
* duration_seconds of a terminal event = its eventTime minus the START of the same OpenLineage run (same request
  or stored).

The event id is `<runId>:<eventType>:<eventTime>`, so a re-sent event is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from collector.emitters.notebook_hash import parameters_hash
from collector.sources.common import MappingError, NativeBatch, rfc3339

AttemptLoader = Callable[[str, str], Awaitable[list[tuple[str, int, datetime | None]]]]

RUN_TYPES = {"START": "started", "RUNNING": "started", "COMPLETE": "succeeded", "FAIL": "failed",
             "ABORT": "cancelled"}
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}
TRIGGERS = ("scheduled", "manual", "api", "ci")
ENVIRONMENTS = ("prod", "staging", "dev")
MAPPED_TAGS = ("team", "owner", "environment", "trigger", "notebook_id", "attempt", "try_number")
_ERROR_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]{0,127}):\s")


def _parse_time(value: Any, path: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise MappingError(path, "missing", f"`{path}` (an RFC 3339 date-time) is required")
    s = value.strip()
    if s[-1:] in ("Z", "z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise MappingError(path, "datetime_parsing", "not an RFC 3339 date-time") from None
    if dt.tzinfo is None:
        raise MappingError(path, "timezone_aware", f"`{path}` has no UTC offset")
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:
        raise MappingError(path, "datetime_range", f"`{path}` is out of range") from None


def _str(doc: Any, *path: str) -> str | None:
    for p in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(p)
    return doc if isinstance(doc, str) and doc else None


def _facet(facets: Any, name: str) -> dict[str, Any]:
    value = facets.get(name) if isinstance(facets, dict) else None
    return value if isinstance(value, dict) else {}


def _pairs(items: Any, key: str, value: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items if isinstance(items, list) else []:
        if isinstance(it, dict) and isinstance(it.get(key), str):
            out[it[key]] = it.get(value)
    return out


def _int(value: Any) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


class Parsed:
    """What the mapper needs from one RunEvent, before attempt numbering."""

    def __init__(self, ev: dict[str, Any]) -> None:
        if not isinstance(ev, dict):
            raise MappingError("", "object_type", "an OpenLineage event must be a JSON object")
        self.event_type = ev.get("eventType")
        if self.event_type is not None and not isinstance(self.event_type, str):
            raise MappingError("eventType", "string_type", "eventType must be a string")
        self.time = _parse_time(ev.get("eventTime"), "eventTime")
        if not _str(ev, "producer"):
            raise MappingError("producer", "missing", "`producer` (a URI) is required by the spec")
        if not _str(ev, "schemaURL"):
            raise MappingError("schemaURL", "missing", "`schemaURL` (a URI) is required by the spec")
        run, job = ev.get("run"), ev.get("job")
        if not isinstance(run, dict) or not _str(run, "runId"):
            raise MappingError("run.runId", "missing", "a RunEvent needs `run.runId`")
        if not isinstance(job, dict) or not _str(job, "namespace") or not _str(job, "name"):
            raise MappingError("job", "missing", "a RunEvent needs `job.namespace` and `job.name`")
        self.ol_run_id: str = run["runId"]
        self.namespace: str = job["namespace"]
        self.job: str = job["name"]
        run_facets, job_facets = run.get("facets") or {}, job.get("facets") or {}
        self.tags = {**_pairs(_facet(job_facets, "tags").get("tags"), "key", "value"),
                     **_pairs(_facet(run_facets, "tags").get("tags"), "key", "value")}
        self.params = _pairs(_facet(run_facets, "executionParameters").get("parameters"), "key", "value")
        self.error = _facet(run_facets, "errorMessage")
        self.nominal = _facet(run_facets, "nominalTime")
        parent = _facet(run_facets, "parent")
        self.parent_run = _str(parent, "run", "runId")
        self.parent_job = (_str(parent, "job", "namespace"), _str(parent, "job", "name"))
        owners = _facet(job_facets, "ownership").get("owners")
        self.ownership = next((o["name"] for o in owners or [] if isinstance(o, dict) and isinstance(o.get("name"), str)),
                              None)
        airflow = _facet(run_facets, "airflow")
        self.explicit_attempt = (_int(self.tags.get("attempt")) or _int(self.tags.get("try_number"))
                                 or _int(self.params.get("attempt")) or _int(self.params.get("try_number"))
                                 or _int((airflow.get("taskInstance") or {}).get("try_number")
                                         if isinstance(airflow.get("taskInstance"), dict) else None))
        self.datasets = [d for key in ("inputs", "outputs") for d in (ev.get(key) or []) if isinstance(d, dict)]

    @property
    def source(self) -> str:
        return f"openlineage://{self.namespace}"

    @property
    def run_id(self) -> str:
        if not self.parent_run:
            return self.ol_run_id
        if self.parent_job == (self.namespace, self.job):
            return self.parent_run
        return f"{self.parent_run}/{self.job}"


class AttemptRegistry:
    """OpenLineage runId -> attempt number of its logical run, and the START time of each attempt.

    Backed by the stored events (through `load`, collector/storage/queries.py) so numbering survives a restart;
    cached (LRU) so the store is read once per logical run; one lock so concurrent requests never give two runIds
    the same number.
    """

    def __init__(self, load: AttemptLoader, max_runs: int = 20_000) -> None:
        self.load = load
        self.max_runs = max_runs
        self.lock = asyncio.Lock()
        self._runs: OrderedDict[tuple[str, str], dict[str, list[Any]]] = OrderedDict()

    async def entry(self, source: str, run_id: str) -> dict[str, list[Any]]:
        key = (source, run_id)
        if key in self._runs:
            self._runs.move_to_end(key)
            return self._runs[key]
        rows = await self.load(source, run_id)
        entry = {ol: [attempt, started] for ol, attempt, started in rows if ol}
        self._runs[key] = entry
        while len(self._runs) > self.max_runs:
            self._runs.popitem(last=False)
        return entry


def _identity(p: Parsed) -> dict[str, Any]:
    tags, params = p.tags, p.params
    out: dict[str, Any] = {
        "notebook_id": str(tags.get("notebook_id") or params.get("notebook_id") or f"{p.namespace}/{p.job}"),
    }
    for key in ("team", "owner"):
        if tags.get(key):
            out[key] = str(tags[key])
    if "owner" not in out and p.ownership:
        out["owner"] = p.ownership.split(":", 1)[-1]
    if tags.get("environment") in ENVIRONMENTS:
        out["environment"] = tags["environment"]
    if tags.get("trigger") in TRIGGERS:
        out["trigger"] = tags["trigger"]
    elif p.nominal.get("nominalStartTime"):
        out["trigger"] = "scheduled"
    rest = {k: v for k, v in tags.items() if k not in MAPPED_TAGS}
    if rest:
        out["tags"] = rest
    return out


def _quality_events(p: Parsed, common: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for ds in p.datasets:
        ds_name = f"{ds.get('namespace', '')}/{ds.get('name', '')}"
        for holder in ("inputFacets", "outputFacets", "facets"):
            assertions = _facet(ds.get(holder), "dataQualityAssertions").get("assertions")
            for a in assertions if isinstance(assertions, list) else []:
                if not isinstance(a, dict) or not isinstance(a.get("assertion"), str) or "success" not in a:
                    continue
                column = a.get("column") if isinstance(a.get("column"), str) else None
                check = f"{ds.get('name', '')}{'.' + column if column else ''}:{a['assertion']}"
                key = f"{p.ol_run_id}|{ds_name}|{a['assertion']}|{column or ''}"
                data = {**{k: v for k, v in common.items() if k not in ("parameters",)},
                        "check": check[:128], "result": "pass" if a.get("success") is True else "fail",
                        "dataset": ds_name}
                for k in ("severity", "expected", "actual"):
                    if a.get(k) is not None:
                        data[k] = a[k]
                out.append({"specversion": "1.0", "id": "olq-" + hashlib.sha256(key.encode()).hexdigest()[:40],
                            "source": p.source, "type": "notebook.quality.checked", "time": rfc3339(p.time),
                            "data": data})
    return out


async def map_events(registry: AttemptRegistry, events: list[Any]) -> NativeBatch:
    """Map a list of OpenLineage events (input order) onto our events; per-event failures become Rejections."""
    batch = NativeBatch(records=len(events))
    async with registry.lock:
        for i, ev in enumerate(events):
            if batch.reject_bad_shape(i, ev, type="openlineage"):
                continue
            try:
                if isinstance(ev, dict) and "run" not in ev and ("dataset" in ev or "job" in ev):
                    batch.ignored["dataset_or_job_event"] += 1
                    continue
                p = Parsed(ev)
            except MappingError as exc:
                source = None
                if isinstance(ev, dict) and isinstance(ev.get("job"), dict) and _str(ev["job"], "namespace"):
                    source = f"openlineage://{ev['job']['namespace']}"
                batch.reject(i, ev, exc.error, source=source, type="openlineage")
                continue
            kind = RUN_TYPES.get((p.event_type or "OTHER").upper())
            if kind is None:  # a bounded reason: it becomes a label value
                batch.ignored["event_type_missing" if not p.event_type else "event_type_other"] += 1
                continue
            run_id = p.run_id
            entry = await registry.entry(p.source, run_id)
            known = entry.get(p.ol_run_id)
            if known is None:
                attempt = p.explicit_attempt or (1 if not p.parent_run else
                                                 max((a for a, _ in entry.values()), default=0) + 1)
                known = entry[p.ol_run_id] = [attempt, None]
            elif p.explicit_attempt:
                known[0] = p.explicit_attempt
            if kind == "started" and (known[1] is None or p.time < known[1]):
                known[1] = p.time
            common: dict[str, Any] = {"run_id": run_id, "attempt": known[0], **_identity(p),
                                      "openlineage_run_id": p.ol_run_id, "job": f"{p.namespace}/{p.job}"}
            data = dict(common)
            if p.params:
                data["parameters"] = p.params
                data["parameters_hash"] = parameters_hash(p.params, exclude=("run_id",))
            if p.nominal.get("nominalStartTime"):
                data["scheduled_for"] = p.nominal["nominalStartTime"]
            if p.event_type.upper() in TERMINAL:
                if known[1] is not None and p.time >= known[1]:
                    data["duration_seconds"] = round((p.time - known[1]).total_seconds(), 6)
                message = p.error.get("message")
                if isinstance(message, str) and message:
                    data["error_message"] = message
                    m = _ERROR_NAME.match(message) or _ERROR_NAME.match(
                        (p.error.get("stackTrace") or "").strip().splitlines()[-1] if p.error.get("stackTrace") else "")
                    if m:
                        data["error_type"] = m.group(1)
                    if isinstance(p.error.get("stackTrace"), str):
                        data["traceback"] = p.error["stackTrace"]
                    if isinstance(p.error.get("programmingLanguage"), str):
                        data["error_language"] = p.error["programmingLanguage"]
            batch.add(i, {
                "specversion": "1.0", "id": f"{p.ol_run_id}:{p.event_type.upper()}:{ev.get('eventTime')}"[:256],
                "source": p.source, "type": f"notebook.run.{kind}", "time": rfc3339(p.time),
                "subject": f"{p.namespace}/{p.job}", "data": data,
            })
            for q in _quality_events(p, common):
                batch.add(i, q)
    return batch
