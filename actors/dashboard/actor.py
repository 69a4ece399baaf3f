"""The `dashboard` actor: hears every actor's stats, the executor's breaker broadcast
and its results, and serves the live page (actors.dashboard.server) on
`dashboard.listen`, loopback by default.

A separate process that only listens: a slow browser never holds up trading, and
a restart loses nothing (the P&L history is read back from the executor's books
when they are on this host).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import closing
from typing import Any

from actors.dashboard.board import NS, Board, Limits
from actors.dashboard.server import Page
from actors.executor.history import find_journal, open_read_only, trades
from actors.runtime.actor import Actor
from actors.runtime.context import ActorContext
from actors.runtime.http import HttpServer
from bus import topics
from bus.sockets import Subscriber

log = logging.getLogger(__name__)

class DashboardActor(Actor):
    name = "dashboard"

    def __init__(self, rt: ActorContext) -> None:
        super().__init__(rt)
        cfg = rt.config
        d = cfg.dashboard
        self.board = Board([a for a in cfg.bus.endpoints if a != self.name], rt.clock.time_ns(),
                           Limits(int(d.silent_seconds * NS), d.pnl_points, d.executions_shown, d.transitions_shown))
        pubs = [e.pub for a, e in cfg.bus.endpoints.items() if a != self.name]
        self._sub = Subscriber(rt.ctx, pubs, [topics.prefix(topics.STATS), topics.breaker_state(),
                                              topics.tx_result()], max_message_bytes=cfg.bus.max_message_bytes)
        self.page = Page(self.state, lambda: self.rt.config.dashboard.push_interval_seconds, rt.clock.sleep)
        self.http = HttpServer(d.listen, self.page.app, "the dashboard")
        self.handler_errors = 0
        self.seeded = 0

    async def start(self) -> None:
        self._seed()

    def _seed(self) -> None:
        """The P&L so far, from the executor's books, when they are on this host."""
        cfg = self.rt.config
        path = find_journal(cfg.executor.state_dir, cfg.chain.chain_id)
        if path is None:
            log.info("no executor books in %s: the P&L chart starts now", cfg.executor.state_dir)
            return
        try:
            with closing(open_read_only(path)) as db:
                history = trades(db, bookkeeping=True)
        except Exception as exc:  # unreadable: the live results still feed the page
            log.warning("executor books at %s not readable, the P&L chart starts now: %s", path, exc)
            return
        self.board.seed(history)
        self.seeded = len(history)

    def state(self) -> dict[str, Any]:
        cfg = self.rt.config
        world = {"profile": "sandbox" if cfg.sandbox is not None else "live", "chain_id": cfg.chain.chain_id,
                 "venue": cfg.executor.clob_url}
        return {"world": world, **self.board.snapshot(self.rt.clock.time_ns())}

    async def run(self) -> None:
        await asyncio.gather(self._hear_forever(), self.http.serve(self.rt.clock.sleep))

    async def _hear_forever(self) -> None:
        while True:
            for r in await self._sub.recv_batch():
                try:
                    self.board.on_envelope(r.env, self.rt.clock.time_ns())
                except Exception:  # one odd message must not stop the page: counted
                    self.handler_errors += 1
                    log.exception("dashboard: a message could not be shown")

    async def stop(self) -> None:
        self.page.close()
        self._sub.close()
        await self.http.close()

    def get_stats(self) -> dict[str, Any]:
        return {"listen": self.rt.config.dashboard.listen, "http": dict(self.http.stats), "page": dict(self.page.stats),
                "results_heard": self.board.results_heard, "seeded": self.seeded,
                "actors_up": sorted(a["name"] for a in self.board.snapshot(self.rt.clock.time_ns())["actors"]
                                    if a["up"]),
                "handler_errors": self.handler_errors, "bus": self._sub.get_stats()}

    def health(self) -> dict[str, Any]:
        return {"running": True, "page_served": bool(self.http.stats["bound"])}

    def summary(self) -> dict[str, Any]:
        return {"url": f"http://{self.rt.config.dashboard.listen}/", "streams": self.page.stats["streams_open"],
                "results": self.board.results_heard}
