"""Requests waiting for validation, validated together: one call for all of them, each answered apart.

Why: a validation call costs ~1.1-1.4 ms whatever its size (its polars and Arrow calls, each column's conversion)
on top of its work per event, so the HTTP bench's 1,000-event requests, validated one call each, took 15% more CPU
per event than the same events in calls of 1,000 and 3,000 (7 of 7 alternated repetitions; docs/performance.md,
fifty-first round). Requests validate at most `validation_threads` at a time (api/deps.py), one on 2 cores, and a
group commit's requests arrive within milliseconds of each other, so those that arrive while one is validated wait
anyway. Each call takes the jobs waiting when it starts, in arrival order, within a budget (the route's: about one
validator slice of body; all of them with one token, else its share among the drivers not in a call), and each
job gets its own outcome: its result, or the error its request alone caused. A job alone is run alone, as soon as
a call can start: nothing is held back to wait for others.

The calls are made by driver tasks on the event loop, at most as many as the limiter has tokens, each taking a
token around its call (so other routes' validation shares the bound); a driver ends when nothing waits. A request
awaits only its own job's outcome, so it answers as soon as the call that held its job ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable, Generic, TypeVar

import anyio

J = TypeVar("J")
R = TypeVar("R")


class Coalescer(Generic[J, R]):
    """Jobs run by `run(jobs) -> outcomes` in a worker thread (one outcome per job, in order: its result, or the
    exception to raise for it), the jobs waiting when a call starts in that call."""

    def __init__(self, limiter: anyio.CapacityLimiter, run: Callable[[list[J]], list[R | Exception]],
                 weight: Callable[[J], int] = lambda job: 1, budget: int = 64) -> None:
        self._limiter = limiter
        self._run = run
        self._weight = weight
        self._budget = budget
        self._waiting: deque[tuple[J, asyncio.Future[R]]] = deque()
        self._drivers: set[asyncio.Task[None]] = set()
        self._calling = 0  # drivers in a call

    async def submit(self, job: J) -> R:
        """`job`'s outcome: its result returned, or its exception raised."""
        entry: tuple[J, asyncio.Future[R]] = (job, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        if len(self._drivers) < self._limiter.total_tokens:
            self._drivers.add(asyncio.get_running_loop().create_task(self._drive()))
        try:
            return await entry[1]
        except asyncio.CancelledError:  # the client left: its job is not run, if no call has taken it yet
            try:
                self._waiting.remove(entry)
            except ValueError:
                pass
            raise

    async def _drive(self) -> None:
        try:
            await self._calls()
        finally:  # in the step that found nothing waiting, so a job submitted after it starts another driver
            self._drivers.discard(asyncio.current_task())  # type: ignore[arg-type]

    def _take(self, share: int) -> list[tuple[J, asyncio.Future[R]]]:
        """Up to `share` waiting jobs, in arrival order, within the budget (the first whatever its weight): a call's
        jobs are answered when it ends, so it holds about what one call should."""
        taken: list[tuple[J, asyncio.Future[R]]] = []
        used = 0
        while self._waiting and len(taken) < share:
            w = self._weight(self._waiting[0][0])
            if taken and used + w > self._budget:
                break
            taken.append(self._waiting.popleft())
            used += w
        return taken

    async def _calls(self) -> None:
        while self._waiting:
            async with self._limiter:
                # Its share of what waits: all of it with one token, else split among the drivers not in a call
                # (this one included), so that several threads validate a burst side by side.
                share = -(-len(self._waiting) // max(1, len(self._drivers) - self._calling))
                taken = self._take(share)
                if not taken:  # another driver took them while this one waited for a token
                    return
                self._calling += 1
                try:
                    outcomes = await anyio.to_thread.run_sync(self._run, [job for job, _ in taken])
                    if len(outcomes) != len(taken):
                        raise RuntimeError(f"{len(outcomes)} outcomes for {len(taken)} jobs")
                except Exception as exc:  # noqa: BLE001 - every job taken learns it, none waits forever
                    outcomes = [exc] * len(taken)
                finally:
                    self._calling -= 1
                for (_, future), outcome in zip(taken, outcomes):
                    if future.done():  # its request was cancelled
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
