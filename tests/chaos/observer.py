"""Everything the actors say on the bus during a chaos run, with the time it was heard.

A thread with its own event loop subscribes to every publisher's stats, the
executor's breaker state and its results: when each actor (boot) was first
heard, each actor's own view of the breaker as it changed, the executor's
breaker transitions and every TxResult.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bus import topics
from bus.context import destroy
from bus.messages import BreakerState, Stats, TxResult
from bus.sockets import Subscriber
from config.schema import Config
from sandbox.testbed import context_as


@dataclass
class Heard:
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # actor -> its last stats
    latest_at: dict[str, float] = field(default_factory=dict)  # actor -> when they were heard
    boots: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # actor -> (first heard, boot id)
    views: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # actor -> (when, breaker state)
    transitions: list[tuple[float, str, str]] = field(default_factory=list)  # executor: (since, state, reason)
    results: list[TxResult] = field(default_factory=list)
    result_times: list[float] = field(default_factory=list)  # when each of `results` was heard


class Observer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.heard = Heard()
        self.lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="observer", daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        ctx = context_as(self.cfg, "reader")
        pubs = [e.pub for e in self.cfg.bus.endpoints.values()]
        sub = Subscriber(ctx, pubs, [topics.prefix(topics.STATS), topics.prefix(topics.BREAKER),
                                     topics.prefix(topics.TX)])
        try:
            while not self._stop:
                try:
                    batch = await asyncio.wait_for(sub.recv_batch(), 0.2)
                except TimeoutError:
                    continue
                now = time.time()
                with self.lock:
                    for r in batch:
                        self._note(now, r.env.boot_id, r.env.body)
        finally:
            sub.close()
            destroy(ctx, 0)

    def _note(self, now: float, boot_id: str, body: Any) -> None:
        h = self.heard
        if isinstance(body, Stats):
            name = body.actor
            h.latest[name], h.latest_at[name] = body.stats, now
            boots = h.boots.setdefault(name, [])
            if not boots or boots[-1][1] != boot_id:
                boots.append((now, boot_id))
            state = (body.stats.get("breaker") or {}).get("state")
            views = h.views.setdefault(name, [])
            if state and (not views or views[-1][1] != state):
                views.append((now, state))
        elif isinstance(body, BreakerState):
            since = body.since_ns / 1e9
            if not h.transitions or h.transitions[-1][:2] != (since, str(body.state)):
                h.transitions.append((since, str(body.state), body.reason))
        elif isinstance(body, TxResult):
            h.results.append(body)
            h.result_times.append(now)

    # -- reading what was heard
    def stats(self, actor: str, fresh_seconds: float = 2.0) -> dict[str, Any] | None:
        """The actor's latest stats if heard within `fresh_seconds`."""
        with self.lock:
            at = self.heard.latest_at.get(actor)
            if at is None or time.time() - at > fresh_seconds:
                return None
            return self.heard.latest[actor]

    def view(self, actor: str) -> str | None:
        s = self.stats(actor)
        return (s.get("breaker") or {}).get("state") if s else None

    def snapshot(self) -> Heard:
        with self.lock:
            h = self.heard
            return Heard(dict(h.latest), dict(h.latest_at), {k: list(v) for k, v in h.boots.items()},
                         {k: list(v) for k, v in h.views.items()}, list(h.transitions), list(h.results),
                         list(h.result_times))

    def stop(self) -> None:
        self._stop = True
        self._thread.join(5)
