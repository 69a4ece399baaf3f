"""The actor core interface: what a role implements, free of sockets and signals.

The shell (`actors.runtime.shell`, driven by `actors.runtime.launcher`) owns
the ZMQ context, sockets, config watcher, stats loop and signal handling; an
actor gets them through its `ActorContext` and implements only its behaviour
(circus plug-in / NautilusTrader style).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from actors.runtime.context import ActorContext
    from actors.runtime.metrics import Latency, Series
    from config.schema import Config

RpcMethod = Callable[[dict[str, Any]], Awaitable[Any]]


class Actor:
    name: ClassVar[str]

    def __init__(self, rt: ActorContext) -> None:
        self.rt = rt

    async def start(self) -> None:
        """Acquire resources and recover state; runs before anything is served."""

    async def run(self) -> None:
        """The actor's main loop; returning or raising ends the process."""
        await asyncio.Event().wait()

    async def stop(self) -> None:
        """Stop hook on SIGTERM: finish or abandon work safely."""

    def rpc_methods(self) -> dict[str, RpcMethod]:
        return {}

    def on_config(self, old: Config, new: Config) -> None:
        """Called after a hot reload swapped in a new config."""

    def get_stats(self) -> dict[str, Any]:
        return {}

    def summary(self) -> dict[str, Any]:
        """A few key figures for `polyarb status`."""
        return {}

    def metric_series(self) -> tuple[Series, ...]:
        """The Prometheus series read from `get_stats()` (actors.runtime.metrics)."""
        return ()

    def histograms(self) -> tuple[Latency, ...]:
        """Latency histograms the actor observes itself."""
        return ()

    def breaker_state(self) -> str | None:
        """The breaker state to export, when the actor knows better than its follower."""
        return None

    def health(self) -> dict[str, Any]:
        """`/healthz`: each dependency's check (True = reachable); all True answers 200."""
        return {"running": True}
