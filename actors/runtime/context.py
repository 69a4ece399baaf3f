"""What an actor is handed: its typed view of the process shell.

An actor reads its config, time and the breaker view, and publishes, through
this Protocol only; the shell (`actors.runtime.shell.ActorRuntime`) is the
real one, tests may hand in their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actors.runtime.breaker_follower import BreakerFollower
    from actors.runtime.clock import Clock
    from bus.codec import Stamper
    from bus.sockets import Publisher
    from config.schema import Config


class ActorContext(Protocol):
    name: str
    boot_id: str
    clock: Clock
    ctx: Any  # the process's zmq.asyncio.Context, for the actor's own sockets (bus.sockets)
    stamper: Stamper
    publisher: Publisher
    breaker: BreakerFollower

    @property
    def config(self) -> Config:
        """The config in force now (hot reload swaps it; read it, never keep it)."""
        ...
