"""What the SLIs over run attempts miss: the run attempts of the batches the deriver gave up on.

Why: a batch the deriver gave up on (collector/ingest/rederive.py) is stored and acknowledged, but its run attempts
are not derived, so M1-M4 and M8 undercount its runs until `observatory derive retry` folds it in, and for good once
it is dismissed. Without a mark, an SLI computed then looks as trustworthy as any other. GET /v1/sli (and
`observatory sli`) therefore give every row of those SLIs `provenance.underived_run_attempts`: how many run attempts
of the row's scope have an event in such a batch inside the row's window. 0 means the row misses nothing; more
means at most that many of its attempts are missing or incomplete (an attempt whose other events were derived is
counted too: its derived row lacks those events).

The count is by the events' own time, team, notebook and trigger, so that a team sees only its own attempts. It costs
one statement on an empty table when nothing was given up on. A lake engine needs none of it: it rebuilds the run
attempts from every stored event (collector/lake/rebuild.py), so its rows miss nothing and say 0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import duckdb

from collector.ingest import rederive
from collector.storage.queries import batch_params
from collector.storage.sqltext import Params
from slo.sli import sql as Q
from slo.sli.windows import Win

# The SLIs computed from the derived run attempts (docs/sli.md): the ones a batch not derived makes undercount.
FROM_RUN_ATTEMPTS = frozenset({"M1", "M2", "M3", "M4", "M8"})

Scope = tuple[str, str | None, str | None, str | None]  # (window, team, notebook_id, trigger); None: all


def missing_attempts(cur: duckdb.DuckDBPyConnection, wins: list[Win], as_of: datetime,
                     grouping: Iterable[str]) -> dict[Scope, int]:
    """Run attempts of not-derived batches per window and scope (`grouping`: SQL grouping sets over team,
    notebook_id, trigger, as compute.py's `_grouping` writes them); scopes missing nothing are left out."""
    batches = rederive.not_derived(cur)  # normally none: the one statement a computation then pays
    if not batches or not wins:
        return {}
    # GROUPING() needs every column grouped by some set: the full one's rows are notebook-and-trigger scopes, which
    # only a computation asking for both looks up
    sets = ", ".join([*grouping, "(team, notebook_id, trigger)"])
    p = Params(**batch_params(batches), as_of=as_of, since=min(w.s for w in wins))
    windows = " UNION ALL ".join(f"SELECT {p(w.name)} AS name, {p(w.s)} AS s" for w in wins)
    out: dict[Scope, int] = {}
    for name, team, nb, trig, team_g, nb_g, trig_g, n in cur.execute(
            Q.UNDERIVED_ATTEMPTS.format(windows=windows, grouping=sets), p).fetchall():
        if not nb_g and nb is None:
            continue  # attempts without a notebook have no notebook row to mark
        out[(name, None if team_g else team, None if nb_g else nb, None if trig_g else trig)] = int(n)
    return out
