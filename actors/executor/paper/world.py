"""The paper world the executor trades in when the config has a `paper` section: the
paper venue, chain and nonce authority over one ledger, fed by the feed's live books.

    world = await PaperWorld.open(rt)        # instead of the wallet, web3 and the CLOB
    executor = ExecutorActor(rt, venue=world.venue, chain=world.chain, nonces=world.nonces)
    ... asyncio.gather(*world.tasks())       # books, listing, settlements, nonce ticks

Its files live in `executor.state_dir`: `paper-ledger.sqlite` (balances, the decision
log, transactions) and `paper-nonces.sqlite`. Deleting them starts a new paper world
(new funding; the executor's journal of the old one is archived, as for a reset chain).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from actors.domain.money import to_micro
from actors.executor.paper.books import LiveBooks
from actors.executor.paper.chain import PaperChain
from actors.executor.paper.ledger import PaperLedger
from actors.executor.paper.markets import PaperMarkets
from actors.executor.paper.nonces import PaperNonces
from actors.executor.paper.venue import PaperVenue
from actors.runtime.context import ActorContext
from actors.runtime.storage import inside
from bus import topics
from bus.clone import fetch_snapshot
from bus.messages import BookUpdate
from bus.sequence import Arrival
from bus.sockets import RpcClient, Subscriber

log = logging.getLogger(__name__)

LEDGER_FILE, NONCES_FILE = "paper-ledger.sqlite", "paper-nonces.sqlite"


def ledger_path(state_dir: str) -> Path:
    return inside(state_dir, LEDGER_FILE)


class PaperWorld:
    def __init__(self, rt: ActorContext) -> None:
        cfg = rt.config
        assert cfg.paper is not None, "a paper world needs the config's `paper` section"
        self.rt = rt
        state = Path(cfg.executor.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self.ledger = PaperLedger(ledger_path(cfg.executor.state_dir), rt.clock, to_micro(cfg.paper.funding))
        self.books = LiveBooks()
        self.markets = PaperMarkets(cfg.executor.clob_url)
        self.venue = PaperVenue(self.books, self.ledger, self.markets.tokens, rt.clock, lambda: self.rt.config)
        self.chain = PaperChain(self.ledger, self.markets, lambda: self.rt.config, self.venue.settle_due)
        self.nonces = PaperNonces(self.chain, inside(state, NONCES_FILE), rt.clock, cfg)
        self.snapshots = self.snapshot_errors = self.dropped = 0

    async def start(self) -> None:
        """The listing first (orders need fee rates), then the nonce ledger against the paper chain."""
        delay = 0.5
        while True:
            try:
                await self.markets.refresh()
                break
            except Exception as exc:  # the venue not up yet: wait, as for a chain that is starting
                log.warning("paper venue: market listing not read yet (%s); retry in %.1fs", exc, delay)
                await self.rt.clock.sleep(delay)
                delay = min(delay * 2, 10.0)
        await self.nonces.initialize()

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._books_forever(), self._listing_forever(), self.venue.run(), self.nonces.run()]

    async def _books_forever(self) -> None:
        """The feed's books, from a snapshot at start (and after a gap) and the stream after."""
        cfg = self.rt.config
        feed = cfg.bus.endpoints["feed"]
        sub = Subscriber(self.rt.ctx, [feed.pub], [topics.prefix(topics.BOOK)],
                         max_message_bytes=cfg.bus.max_message_bytes)
        rpc = RpcClient(self.rt.ctx, feed.rpc, self.rt.stamper, timeout_ms=cfg.bus.rpc_timeout_ms,
                        retries=cfg.bus.rpc_retries) if feed.rpc else None
        want_snapshot = True
        try:
            while True:
                if want_snapshot and rpc is not None:
                    try:
                        snap = await fetch_snapshot(rpc, topics.BOOK, sub)
                        for e in snap.entries:
                            if isinstance(e.body, BookUpdate):
                                self.books.on_book(e.body)
                        self.snapshots += 1
                        want_snapshot = False
                    except Exception as exc:  # the feed not up: the stream serves, ask again at the next gap
                        self.snapshot_errors += 1
                        log.info("paper venue: no book snapshot from the feed yet (%s)", exc)
                for r in await sub.recv_batch():
                    if isinstance(r.env.body, BookUpdate):
                        self.books.on_book(r.env.body)
                        if r.arrival in (Arrival.JOINED, Arrival.GAP):
                            want_snapshot = True
                    else:
                        self.dropped += 1
        finally:
            sub.close()
            if rpc is not None:
                rpc.close()

    async def _listing_forever(self) -> None:
        while True:
            paper = self.rt.config.paper
            await self.rt.clock.sleep(paper.listing_refresh_seconds if paper else 60.0)
            try:
                await self.markets.refresh()
            except Exception as exc:  # counted by the listing; the previous one serves
                log.debug("listing refresh failed: %s", exc)

    def get_stats(self) -> dict[str, Any]:
        return {"world": self.ledger.world, "funding_micro": self.ledger.funding,
                "pusd_micro": self.ledger.balance("pUSD"), "books": len(self.books.books),
                "book_updates": self.books.updates, "snapshots": self.snapshots,
                "snapshot_errors": self.snapshot_errors, **self.markets.get_stats(),
                "chain": self.chain.get_stats()}

    async def close(self) -> None:
        await self.markets.close()
        await self.chain.close()
        self.nonces.close()
        self.ledger.close()
