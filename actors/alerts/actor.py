"""The `alerts` actor: hears every actor's stats and the executor's breaker broadcast,
turns them into alerts (actors.alerts.rules), stores each once in the outbox and
POSTs it to every configured webhook (actors.alerts.delivery).

A separate process: a slow or failing webhook never holds up trading, and a crash
here loses nothing (the outbox is SQLite; a restart sends what was not sent).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.alerts.delivery import Sender
from actors.alerts.outbox import Outbox
from actors.alerts.rules import NS, Alert, Thresholds, Watch
from actors.runtime.actor import Actor
from actors.runtime.context import ActorContext
from actors.runtime.storage import inside
from bus import topics
from bus.messages import BreakerState, Stats
from bus.sockets import Subscriber
from config.schema import Config

log = logging.getLogger(__name__)

TICK_S = 1.0  # silences are judged, and due deliveries sent, this often
BREAKER_SOURCE = "executor"


class AlertsActor(Actor):
    name = "alerts"

    def __init__(self, rt: ActorContext) -> None:
        super().__init__(rt)
        cfg = rt.config
        watched = [a for a in cfg.bus.endpoints if a != self.name]
        self.watch = Watch(watched, rt.clock.time_ns())
        self.outbox = Outbox(inside(cfg.alerts.state_dir, "alerts.sqlite"))
        self.sender = Sender(self.outbox, rt.clock, lambda: self.rt.config.alerts)
        mmb = cfg.bus.max_message_bytes
        pubs = [e.pub for a, e in cfg.bus.endpoints.items() if a != self.name]
        self._sub = Subscriber(rt.ctx, pubs, [topics.prefix(topics.STATS), topics.breaker_state()],
                               max_message_bytes=mmb)
        self.raised: dict[str, int] = {}
        self.handler_errors = 0

    def _limits(self) -> Thresholds:
        a = self.rt.config.alerts
        return Thresholds(int(a.actor_silent_seconds * NS), int(a.position_open_minutes * 60 * NS),
                          int(a.nonce_stuck_seconds * NS))

    def _raise(self, alerts: list[Alert]) -> None:
        urls = list(self.rt.config.alerts.webhooks)
        for alert in alerts:
            if self.outbox.add(alert, urls, self.rt.clock.time_ns()):
                self.raised[alert.kind] = self.raised.get(alert.kind, 0) + 1
                log.warning("alert %s: %s", alert.kind, alert.text, extra={"fields": {"key": alert.key}})

    async def run(self) -> None:
        await asyncio.gather(self._hear_forever(), self._tick_forever())

    async def _hear_forever(self) -> None:
        while True:
            for r in await self._sub.recv_batch():
                try:
                    body = r.env.body
                    if isinstance(body, BreakerState) and r.env.source == BREAKER_SOURCE:
                        self._raise(self.watch.on_breaker(str(body.state), body.reason, body.since_ns))
                    elif isinstance(body, Stats) and body.actor in self.watch.actors:
                        self._raise(self.watch.on_stats(body.actor, body.stats, self.rt.clock.time_ns(),
                                                        r.env.boot_id, self._limits()))
                except Exception:  # one odd message must not stop the watch: counted
                    self.handler_errors += 1
                    log.exception("alerts: a message could not be judged")

    async def _tick_forever(self) -> None:
        while True:
            self._raise(self.watch.tick(self.rt.clock.time_ns(), self._limits()))
            try:
                await self.sender.send_due()
            except Exception:  # the outbox keeps it: tried again next tick
                self.handler_errors += 1
                log.exception("alerts: delivery pass failed")
            await self.rt.clock.sleep(TICK_S)

    async def stop(self) -> None:
        self._sub.close()
        await self.sender.close()
        self.outbox.close()

    def on_config(self, old: Config, new: Config) -> None:
        if new.alerts.webhooks != old.alerts.webhooks:
            log.info("alerts: %d webhook(s) configured", len(new.alerts.webhooks))

    def get_stats(self) -> dict[str, Any]:
        urls = list(self.rt.config.alerts.webhooks)
        return {"webhooks": len(urls), "raised": dict(self.raised), **self.outbox.counts(urls),
                "sender": dict(self.sender.stats), "silent": sorted(self.watch.silent),
                "breaker_heard": self.watch.breaker[0] if self.watch.breaker else None,
                "handler_errors": self.handler_errors, "bus": self._sub.get_stats(),
                "recent": self.outbox.recent(5)}

    def summary(self) -> dict[str, Any]:
        s = self.outbox.counts(list(self.rt.config.alerts.webhooks))
        return {"alerts": s["alerts"], "waiting": s["waiting"], "webhooks": len(self.rt.config.alerts.webhooks)}
