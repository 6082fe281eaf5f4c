"""FastAPI dependencies shared by the routers: the store, the settings, a read cursor, the caller's team scope
and time parameters. Routes declare what they need instead of reaching into `request.app.state`."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Iterable, Iterator, TypeVar

import anyio
import duckdb
from fastapi import Depends, Header, Request

from collector import spare_cores
from collector.api.auth import Principal
from collector.api.coalesce import Coalescer
from collector.api.errors import BadRequest, Forbidden
from collector.contract.events import TIME_MAX, TIME_MIN
from collector.contract.redaction import redact_text
from collector.ingest.store import Store
from collector.settings import Settings


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# One preference of a `Prefer` header (RFC 7240): a token, an optional `=` and a token or quoted string, optional
# `;` parameters (ignored here). Elements are cut at commas outside quoted strings.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_OPEN_QUOTED = r'"(?:[^"\\]|\\.)*'  # a quoted string up to its closing quote (a cut one runs to the end)
_QUOTED = _OPEN_QUOTED + '"'
_ELEMENTS = re.compile(rf'(?:[^,"]|{_OPEN_QUOTED}"?)+')
_PREFERENCE = re.compile(rf"\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|{_QUOTED}))?\s*(?:;.*)?", re.DOTALL)
PREFER_MAX_CHARS = 8192  # of each Prefer header read; a longer one is not a real client's


def preferences(values: Iterable[str]) -> dict[str, str]:
    """The preferences of `Prefer` header values (RFC 7240): name (lower case) -> value (unquoted; empty when none).
    The first of a name counts (the RFC: later ones are ignored); parameters and malformed elements are ignored."""
    out: dict[str, str] = {}
    for value in values:
        for element in _ELEMENTS.findall(value[:PREFER_MAX_CHARS]):
            m = _PREFERENCE.fullmatch(element)
            if m is None:
                continue
            name, word = m.group(1).lower(), m.group(2) or ""
            if word.startswith('"'):
                word = re.sub(r"\\(.)", r"\1", word[1:-1])
            out.setdefault(name, word)
    return out


def return_minimal(prefer: Annotated[list[str] | None, Header(
        description="RFC 7240 preferences. `return=minimal`: the answer lists only the events not accepted "
                    "(duplicates and rejections), with the same counts, and says so in `Preference-Applied`; "
                    "the default (`return=representation`) lists every event.",
        examples=["return=minimal"])] = None) -> bool:
    """Whether the client asked for the minimal answer (`Prefer: return=minimal`)."""
    return preferences(prefer or []).get("return", "").lower() == "minimal"


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


T = TypeVar("T")
J = TypeVar("J")


async def validated_in_thread(request: Request, validate: Callable[[], T]) -> T:
    """`validate()` (a request's validation) in a worker thread, at most `validation_threads` at once (the app's
    limiter: the others wait their turn, in arrival order).

    Why a limit: validation holds the GIL for most of its work, so requests validated side by side take turns on
    one core and contend for it (thread switches, caches), while those of a group commit are answered together
    anyway. On 2 cores, the HTTP bench's four clients: 49.3k events/s and 24.4 CPU-µs per event with every request
    at once (the thread pool's 40), 53.9k and 22.6 with two at a time (8 alternated pairs; one at a time saved
    more CPU but not throughput every time; docs/performance.md, twenty-fourth round). By default the cores
    left beside the writer's and the deriver's (`spare_cores`, at least one): on 2 cores one at a time took 3-7%
    less CPU per event than two, at the same rate (four alternated runs, fiftieth round). A large request holds
    its slot for its whole validation, on 2 cores the only one (a 50,000-event request, the most one may hold,
    ~0.4 s at ~8 CPU-µs per event): `validation_threads` 2 keeps a slot for the others, for that CPU."""
    return await anyio.to_thread.run_sync(validate, limiter=_validation_limiter(request))


async def validated_together(request: Request, job: J, run: Callable[[list[J]], list[T | Exception]],
                             weight: Callable[[J], int], budget: int) -> T:
    """`job`'s outcome from `run(jobs)`, run in a worker thread with the jobs of the other requests waiting for
    validation then, up to `budget` of their `weight` (api/coalesce.py: one call's fixed cost for all of them),
    within the limiter of `validated_in_thread`. Its result is returned, the error its request caused raised."""
    state = request.app.state
    coalescers = getattr(state, "coalescers", None)
    if coalescers is None:  # made on the event loop, on first use (no await between the look and the set)
        coalescers = state.coalescers = {}
    coalescer = coalescers.get(run)
    if coalescer is None:
        coalescer = coalescers[run] = Coalescer(_validation_limiter(request), run, weight, budget)
    return await coalescer.submit(job)


def _validation_limiter(request: Request) -> anyio.CapacityLimiter:
    """The app's bound on validations at once, made on the event loop on first use (no await between the look and
    the set)."""
    state = request.app.state
    limiter = getattr(state, "validation_limiter", None)
    if limiter is None:
        limiter = state.validation_limiter = anyio.CapacityLimiter(state.settings.validation_threads or spare_cores())
    return limiter


def read_cursor(request: Request, store: Store = Depends(get_store)) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor of the shared connection for one request (reads never block the writer), registered so that a
    shutdown interrupts it (collector/api/reads.py)."""
    with store.read_cursor() as cur, request.app.state.queries.track(cur):
        yield cur


def query(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    """Rows as dicts, with values bound as parameters."""
    cur.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def identifier_param(value: str | None, name: str) -> str | None:
    """A filter on an identifier (team, notebook_id) that an answer may echo: one holding a control character or
    a credential is a 422 naming the parameter (the contract refuses such identifiers, so none is stored)."""
    if value is not None and (_CONTROL.search(value) or redact_text(value[:1024])[1]):
        raise BadRequest(f"`{name}`: not an identifier (it holds a control character or a credential)", 422)
    return value


def multi(values: list[str] | None) -> list[str]:
    """A multi-valued filter: repeated parameters and comma-separated values (`team=a&team=b`, `team=a,b`), so
    Grafana's `${var:csv}` works."""
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def scoped_teams(principal: Principal, requested: list[str]) -> list[str]:
    """The team filter, narrowed to the token's team when the token is limited to one (403 for another team)."""
    for t in requested:
        identifier_param(t, "team")
    if principal.team is None:
        return requested
    if requested and any(t != principal.team for t in requested):
        raise Forbidden(f"token {principal.name!r} may only read team {principal.team!r}")
    return [principal.team]


def scoped_team(principal: Principal, requested: str | None) -> str | None:
    """One optional team, narrowed to the token's team."""
    teams = scoped_teams(principal, [requested] if requested else [])
    return teams[0] if teams else None


def parse_time(value: str | None, name: str) -> datetime | None:
    """RFC 3339 or epoch milliseconds (Grafana's `${__from}`) -> aware UTC within the contract's time range;
    anything else is a 422 naming the parameter."""
    if value is None or value == "":
        return None
    v = value.strip()
    try:
        if v.lstrip("-").isascii() and v.lstrip("-").isdigit() and len(v) <= 16:
            dt = datetime.fromtimestamp(int(v) / 1000, tz=timezone.utc)
        else:
            if not v.isascii():
                raise ValueError(v)
            dt = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
            dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"`{name}`: expected an RFC 3339 time or epoch milliseconds", 422) from None
    return bounded_time(dt, name)


def bounded_time(dt: datetime, name: str) -> datetime:
    """A time parameter inside [TIME_MIN, TIME_MAX) (what storage and the engines handle), as UTC; else 422."""
    try:
        utc = as_utc(dt)
    except OverflowError:
        utc = None
    if utc is None or not TIME_MIN <= utc < TIME_MAX:
        raise BadRequest(f"`{name}`: must be between {TIME_MIN:%Y-%m-%d} and {TIME_MAX:%Y-%m-%d} (UTC)", 422)
    return utc


def as_utc(dt: datetime) -> datetime:
    """A naive datetime from a query parameter is UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
