"""Team isolation on the write side: a token limited to one team (`team:` in the token file) writes only that
team's events and cannot change an entity (notebook, run, kernel) stored as another team's.

Applied by every ingest route (`POST /v1/events` and the native formats) to the validated batch before it goes
to the writer; an event that breaks the rule is rejected alone with the reason `team_scope` and dead-lettered
like any other rejection. The ownership check reads the committed tables just before enqueueing: two tokens of
different teams racing to create the same new entity in the same instant are not ordered by it (the registry
keeps the newest registration, as for platform tokens).
"""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool

from collector.api.auth import Principal
from collector.contract.validation import Rejection, Validated, safe_text
from collector.ingest.store import Store
from collector.storage.queries import foreign_entities

REASON = "team_scope"


def _rejection(index: int, row: dict, path: str, message: str) -> Rejection:
    payload = orjson.dumps({"specversion": "1.0", "id": row["id"], "source": row["source"], "type": row["type"],
                            "time": row["time"].isoformat(), "data": orjson.loads(row["data"])}).decode()
    return Rejection(index, [{"path": path, "type": REASON, "message": message}], safe_text(payload, 65_536),
                     row["source"], row["id"], row["type"])


def _check(store: Store, validated: Validated, team: str) -> Validated:
    keep: list[int] = []
    rejected: list[Rejection] = []
    for pos, row in enumerate(validated.rows):
        if row.get("team") != team:
            rejected.append(_rejection(validated.row_index[pos], row, "data.team", safe_text(
                f"a token limited to team {team!r} may only send events whose data.team is {team!r}")))
        else:
            keep.append(pos)
    ids = {k: sorted({validated.rows[p][k] for p in keep if validated.rows[p].get(k)})
           for k in ("notebook_id", "run_id", "kernel_id")}
    if any(ids.values()):
        with store.read_cursor() as cur:
            foreign = foreign_entities(cur, team, ids["notebook_id"], ids["run_id"], ids["kernel_id"])
        still: list[int] = []
        for pos in keep:
            row = validated.rows[pos]
            hit = next((k for k in ("notebook_id", "run_id", "kernel_id") if row.get(k) in foreign[k]), None)
            if hit is None:
                still.append(pos)
            else:
                rejected.append(_rejection(validated.row_index[pos], row, f"data.{hit}", safe_text(
                    f"this {hit.removesuffix('_id')} belongs to another team; a token limited to team {team!r} "
                    "cannot change it")))
        keep = still
    if not rejected:
        return validated
    out = Validated(rows=[validated.rows[p] for p in keep], row_index=[validated.row_index[p] for p in keep],
                    rejections=sorted(validated.rejections + rejected, key=lambda r: r.index), total=validated.total)
    return out


async def enforce_team(store: Store, principal: Principal, validated: Validated) -> Validated:
    """The batch minus what a team-scoped token may not write (those become per-event rejections)."""
    if principal.team is None or not validated.rows:
        return validated
    return await run_in_threadpool(_check, store, validated, principal.team)
