"""One limit on requests in flight, shared by every client of a run (answer and judge), with priorities.

A run's `--concurrency N` means N requests in flight in all, whatever model they go to. When a slot
frees, the waiting request with the lowest priority number gets it (ties: first come, first served).
Answers go before judge requests: the judge requests then fill the slots at the end of a run, where
answers-last would leave slots idle while the last answers wait for their judge (one round of latency
lost). run_all keeps the number of questions in progress bounded, so rows still finish steadily.

Runs of a suite share a second limit per endpoint (EndpointGate): each run has its own thread and event loop,
and cells on one base URL together keep at most that endpoint's limit in flight.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

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


class EndpointGate:
    """One limit on requests in flight to one endpoint, shared by runs that each have their own thread and event
    loop (the cells of a suite). A request waits here after its run's own Limiter gave it a slot.

    Waiters are woken, not handed a slot: a woken request takes a free slot or waits again (first in line), so a
    wake-up that never arrives (its loop closed) loses no slot, and a waiter cancelled after being woken wakes
    the next one in its place."""

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.in_flight = 0
        self._lock = threading.Lock()
        self._waiting: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = collections.deque()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
            self._wake_one()

    async def _acquire(self) -> None:
        loop = asyncio.get_running_loop()
        again = False
        while True:
            with self._lock:
                if self.in_flight < self.limit and (again or not self._waiting):
                    self.in_flight += 1
                    return
                entry = (loop, loop.create_future())
                if again:
                    self._waiting.appendleft(entry)  # woken but beaten to the slot: still first in line
                else:
                    self._waiting.append(entry)
            try:
                await entry[1]
            except BaseException:
                with self._lock:
                    woken = entry not in self._waiting
                    if not woken:
                        self._waiting.remove(entry)
                if woken:  # a wake-up meant for this request goes to the next one
                    self._wake_one()
                raise
            again = True

    def _wake_one(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    return
                loop, waiter = self._waiting.popleft()
            try:
                loop.call_soon_threadsafe(_wake, waiter)
                return
            except RuntimeError:  # its loop is closed: its request is gone
                continue


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


_GATES: dict[str, EndpointGate] = {}


@contextmanager
def endpoint_limits(limits: dict[str, int]) -> Iterator[dict[str, EndpointGate]]:
    """Within the block, every client of an endpoint named here (by base URL) waits for that endpoint's gate,
    whichever run and thread it belongs to."""
    gates = {url.rstrip("/"): EndpointGate(n) for url, n in limits.items()}
    _GATES.update(gates)
    try:
        yield gates
    finally:
        for url in gates:
            _GATES.pop(url, None)


def endpoint_gate(base_url: str | None) -> EndpointGate | None:
    """The shared limit of this endpoint, when a suite set one (endpoint_limits); None otherwise."""
    return _GATES.get(base_url.rstrip("/")) if base_url and _GATES else None
