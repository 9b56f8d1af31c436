"""One limit on requests in flight, shared by every client of a run (answer and judge), with priorities.

A run's `--concurrency N` means N requests in flight in all, whatever model they go to. When a slot
frees, the waiting request with the lowest priority number gets it (ties: first come, first served).
Answers go before judge requests: the judge requests then fill the slots at the end of a run, where
answers-last would leave slots idle while the last answers wait for their judge (one round of latency
lost). run_all keeps the number of questions in progress bounded, so rows still finish steadily.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

ANSWER, JUDGE = 0, 1


class Limiter:
    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.in_flight = 0
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()

    @asynccontextmanager
    async def slot(self, priority: int = ANSWER) -> AsyncIterator[None]:
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._order), waiter))
            try:
                await waiter  # the releasing request hands its slot over: in_flight is unchanged
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed a slot, then cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1
