"""Team isolation on the write side: a token limited to one team (`team:` in the token file) writes only that
team's events and cannot change an entity (notebook, run, kernel) stored as another team's.

Applied by every ingest route (`POST /v1/events` and the native formats) to the validated batch before it goes
to the writer; an event that breaks the rule is rejected alone with the reason `team_scope` and dead-lettered
like any other rejection. The ownership check reads the committed tables just before enqueueing: two tokens of
different teams racing to create the same new entity in the same instant are not ordered by it (the registry
keeps the newest registration, as for platform tokens).
"""

from __future__ import annotations

from dataclasses import replace

import orjson
import pyarrow as pa
from starlette.concurrency import run_in_threadpool

from collector.api.auth import Principal
from collector.contract.validation import Rejection, safe_text
from collector.contract.vectorized import BulkResult
from collector.ingest.store import Store
from collector.storage.queries import foreign_entities

REASON = "team_scope"
_ENTITIES = ("notebook_id", "run_id", "kernel_id")


def _rejection(index: int, table: pa.Table, pos: int, path: str, message: str) -> Rejection:
    row = {c: table.column(c)[pos].as_py() for c in ("source", "id", "type", "time", "data")}
    payload = orjson.dumps({"specversion": "1.0", "id": row["id"], "source": row["source"], "type": row["type"],
                            "time": row["time"].isoformat(), "data": orjson.loads(row["data"])}).decode()
    return Rejection(index, [{"path": path, "type": REASON, "message": message}], safe_text(payload, 65_536),
                     row["source"], row["id"], row["type"])


def _check(store: Store, validated: BulkResult, team: str) -> BulkResult:
    table, index = validated.table, validated.row_index.to_pylist()
    cols = {c: table.column(c).to_pylist() for c in ("team", *_ENTITIES)}
    keep: list[int] = []
    rejected: list[Rejection] = []
    for pos, t in enumerate(cols["team"]):
        if t != team:
            rejected.append(_rejection(index[pos], table, pos, "data.team", safe_text(
                f"a token limited to team {team!r} may only send events whose data.team is {team!r}")))
        else:
            keep.append(pos)
    ids = {k: sorted({cols[k][p] for p in keep if cols[k][p]}) for k in _ENTITIES}
    if any(ids.values()):
        with store.read_cursor() as cur:
            foreign = foreign_entities(cur, team, ids["notebook_id"], ids["run_id"], ids["kernel_id"])
        still: list[int] = []
        for pos in keep:
            hit = next((k for k in _ENTITIES if cols[k][pos] in foreign[k]), None)
            if hit is None:
                still.append(pos)
            else:
                rejected.append(_rejection(index[pos], table, pos, f"data.{hit}", safe_text(
                    f"this {hit.removesuffix('_id')} belongs to another team; a token limited to team {team!r} "
                    "cannot change it")))
        keep = still
    if not rejected:
        return validated
    take = pa.array(keep, pa.int64())
    return replace(validated, table=table.take(take), row_index=validated.row_index.take(take),
                   rejections=sorted(validated.rejections + rejected, key=lambda r: r.index))


async def enforce_team(store: Store, principal: Principal, validated: BulkResult) -> BulkResult:
    """The batch minus what a team-scoped token may not write (those become per-event rejections)."""
    if principal.team is None or not validated.table.num_rows:
        return validated
    return await run_in_threadpool(_check, store, validated, principal.team)
