"""Time, injected.

The only module that reads the wall clock. Components take a `Clock` so that
tests drive time with `TestClock.advance()` and never sleep.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Iterator
from typing import Protocol


class Clock(Protocol):
    def time_ns(self) -> int:
        """Wall-clock time (epoch ns): for timestamps that are persisted or shown."""

    def monotonic_ns(self) -> int:
        """Monotonic time (ns): for durations and deadlines."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TestClock:
    """A clock that moves only when told to.

    `sleep()` suspends until `advance()` moves time past the sleeper's
    deadline, so code that sleeps can be driven step by step in tests.
    """

    __test__ = False  # not a pytest class

    def __init__(self, start_ns: int = 1_700_000_000 * 10**9) -> None:
        self._now = start_ns
        self._mono = 0
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._counter = 0

    def time_ns(self) -> int:
        return self._now

    def monotonic_ns(self) -> int:
        return self._mono

    def time(self) -> float:
        return self._now / 1e9

    def monotonic(self) -> float:
        return self._mono / 1e9

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._counter += 1
        heapq.heappush(self._sleepers, (self._mono + int(seconds * 1e9), self._counter, fut))
        await fut

    def advance(self, seconds: float) -> None:
        step = int(seconds * 1e9)
        self._now += step
        self._mono += step
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


def doubling(first: float, ceiling: float) -> Iterator[float]:
    """The waits of a poll that backs off: `first`, then twice as long each time, never
    more than `ceiling` (a fast answer is seen within milliseconds, a slow one costs few polls)."""
    delay = min(first, ceiling)
    while True:
        yield delay
        delay = min(ceiling, delay * 2)
