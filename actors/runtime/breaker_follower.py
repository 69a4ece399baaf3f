"""Every actor's view of the executor's circuit breaker.

Pure logic: fed decoded `BreakerState` messages and read with the injected
clock. No heartbeat for `missed` intervals (or none yet) means UNKNOWN.
"""

from __future__ import annotations

from typing import Any

from actors.domain.enums import TRADING_ALLOWED, UNKNOWN, CircuitState
from actors.runtime.clock import Clock
from bus.messages import BreakerState, Envelope


class BreakerFollower:
    def __init__(self, clock: Clock, heartbeat_interval_seconds: float = 1.0, missed_heartbeats: int = 3) -> None:
        self._clock = clock
        self.configure(heartbeat_interval_seconds, missed_heartbeats)
        self._last: BreakerState | None = None
        self._last_heard_mono: int | None = None
        self._source: tuple[str, str] | None = None
        self._seq = 0
        self.messages = 0
        self.transitions = 0

    def configure(self, heartbeat_interval_seconds: float, missed_heartbeats: int) -> None:
        self._silence_ns = int(heartbeat_interval_seconds * missed_heartbeats * 1e9)

    def on_message(self, env: Envelope) -> None:
        body = env.body
        if not isinstance(body, BreakerState):
            return
        self.messages += 1
        if self._last is None or self._last.state != body.state:
            self.transitions += 1
        self._last = body
        self._source = (env.source, env.boot_id)
        self._seq = env.seq
        self._last_heard_mono = self._clock.monotonic_ns()

    @property
    def state(self) -> CircuitState | str:
        if self._last is None or self._last_heard_mono is None:
            return UNKNOWN
        if self._clock.monotonic_ns() - self._last_heard_mono > self._silence_ns:
            return UNKNOWN
        return self._last.state

    @property
    def trading_allowed(self) -> bool:
        return self.state in TRADING_ALLOWED

    @property
    def reason(self) -> str:
        if self._last is None:
            return "no breaker heartbeat received yet"
        if self.state == UNKNOWN:
            return f"breaker heartbeat silent (last state {self._last.state})"
        return self._last.reason

    def get_stats(self) -> dict[str, Any]:
        age = None
        if self._last_heard_mono is not None:
            age = round((self._clock.monotonic_ns() - self._last_heard_mono) / 1e9, 3)
        return {
            "state": self.state,
            "reason": self.reason,
            "since_ns": self._last.since_ns if self._last else None,
            "until_ns": self._last.until_ns if self._last else None,
            "heard_seconds_ago": age,
            "seq": self._seq,
            "boot_id": self._source[1] if self._source else None,
            "messages": self.messages,
            "transitions": self.transitions,
        }
