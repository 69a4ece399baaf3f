"""The feed actor: books from the market channel, published on the bus.

Publishes a `BookUpdate` per changed token on `book.<token_id>` (per-token
sequence numbers from the publisher), a `FeedStatus` on change and every
second, and answers `snapshot` requests with the latest book of every token
(Clone pattern) for late joiners and subscribers that saw a gap. A token
dropped from `feed.markets` is published once more, invalid and empty, with
the reason `unsubscribed`: nobody would otherwise tell its subscribers that
its last book stopped being maintained.

Publishing is coalesced: the reader marks tokens dirty and a flush scheduled
with call_soon publishes each dirty book once, so a burst of frames for one
token costs one bus message and the reader never waits on the bus. A book
that cannot be published (it does not encode) is counted, invalidated and
published invalid and empty instead: the rest of its flush goes out.

Discovery never stops the actor: a listing that fails (the venue is down or
answers garbage) is counted and asked for again with backoff, the previous
one in force.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import msgspec

from actors.domain.listing import list_markets, select
from actors.feed.core import FUTURE_TOLERANCE_MS, FeedCore, TokenState
from actors.feed.metrics import SERIES
from actors.feed.polymarket_ws import PolymarketWSClient, WSOptions
from actors.runtime.actor import Actor, RpcMethod
from actors.runtime.context import ActorContext
from actors.runtime.metrics import Series
from bus import topics
from bus.clone import CloneStore, snapshot_reply
from bus.codec import new_trace_id
from bus.messages import BookUpdate, FeedStatus
from config.schema import Config, Feed

log = logging.getLogger(__name__)

UNSUBSCRIBED = "unsubscribed: not in feed.markets any more"
UNPUBLISHABLE = "publish failed: awaiting snapshot"
DISCOVERY_MIN_BACKOFF_S = 0.2
DISCOVERY_MAX_BACKOFF_S = 5.0


def book_update(asset_id: str, st: TokenState, depth: int, *, more: bool = False,
                flush_more: bool = False) -> BookUpdate:
    """What the feed publishes for a token's book."""
    bids, asks = st.book.depth(depth)
    return BookUpdate(token_id=asset_id, market=st.market, valid=st.valid, bids=bids, asks=asks,
                      venue_ts_ms=st.book.last_ts, recv_ns=st.recv_ns, tick_size=st.book.tick_size,
                      reason=st.reason, more=more, flush_more=flush_more)


def ws_options(f: Feed) -> WSOptions:
    return WSOptions(
        max_assets_per_connection=f.max_assets_per_connection, ping_interval=f.ping_interval_seconds,
        pong_timeout=f.pong_timeout_seconds, data_timeout=f.data_timeout_seconds,
        reconnect_base=f.reconnect_base_seconds, reconnect_max=f.reconnect_max_seconds,
        resubscribe_after=f.resubscribe_after_seconds, max_frame_bytes=f.max_frame_bytes,
    )


class FeedActor(Actor):
    name = "feed"

    def __init__(self, rt: ActorContext, connect: Any = None, lister: Any = None) -> None:
        super().__init__(rt)
        self._list_markets = lister or list_markets  # injected in unit tests
        f = rt.config.feed
        self.core = FeedCore(dedup_size=f.dedup_cache_size, crossed_grace_ms=f.crossed_grace_ms,
                             max_future_ms=FUTURE_TOLERANCE_MS)
        kw = {"connect": connect} if connect is not None else {}
        self.client = PolymarketWSClient(f.ws_url, self.core, rt.clock, on_change=self._mark,
                                         options=ws_options(f), **kw)
        self.clone = CloneStore(self.name, rt.boot_id)
        self._dirty: set[str] = set()
        self._market_of: dict[str, str] = {}  # token -> market, for every token published while subscribed
        self._flush_scheduled = False
        self._pending_marks = 0
        self.published = 0
        self._trace = ""  # the trace id of the flush being published
        self.publish_errors = 0
        self.discoveries = 0
        self.discovery_errors = 0
        self._last_status: tuple[Any, ...] | None = None

    async def start(self) -> None:
        await self.client.start()

    async def run(self) -> None:
        await asyncio.gather(self._discover_forever(), self._status_forever())

    async def stop(self) -> None:
        await self.client.stop()

    # -- discovery: the CLOB's market listing names the token ids
    async def _discover_forever(self) -> None:
        delay = DISCOVERY_MIN_BACKOFF_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                f = self.rt.config.feed
                try:
                    markets = await self._list_markets(session, f.clob_url)
                    self.client.set_assets(select(markets, f.markets))
                    self.discoveries += 1
                    delay = f.discovery_refresh_seconds
                except Exception as exc:  # down, or garbage (a crash loop, live): retry, never die
                    self.discovery_errors += 1
                    log.warning("market discovery from %s failed: %r", f.clob_url, exc)
                    delay = min(max(delay * 2, DISCOVERY_MIN_BACKOFF_S), DISCOVERY_MAX_BACKOFF_S)
                await self.rt.clock.sleep(delay)

    # -- publishing
    # When frames are already buffered, websockets hands them over without
    # yielding to the loop, so a call_soon flush would wait for the whole
    # backlog: publish inline after this many marks instead.
    MAX_PENDING_MARKS = 64

    def _mark(self, changed: set[str]) -> None:
        self._dirty |= changed
        self._pending_marks += 1
        if self._pending_marks >= self.MAX_PENDING_MARKS:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._pending_marks = 0
        dirty, self._dirty = self._dirty, set()
        depth = self.rt.config.feed.depth_levels
        # Market by market, every book but a market's last marked `more`: the router
        # judges a market only once all of its books from these frames are in.
        market = {a: (st.market if (st := self.core.tokens.get(a)) else self._market_of.get(a, "")) for a in dirty}
        ordered = sorted(dirty, key=lambda a: (market[a], a))
        # One trace id per flush: a signal these books reveal, and what is done with it, carry it.
        self._trace = new_trace_id()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("books published: %s", " ".join(a[:12] for a in ordered),
                      extra={"fields": {"trace_id": self._trace}})
        for i, asset_id in enumerate(ordered):
            more = i + 1 < len(ordered) and market[ordered[i + 1]] == market[asset_id]
            flush_more = i + 1 < len(ordered)  # whatever the market: the flush's last book ends it
            st = self.core.tokens.get(asset_id)
            if st is None:
                # Unsubscribed: nobody maintains this book any more. Said once, as an
                # invalid empty book (also what a late joiner's snapshot shows).
                gone = self._market_of.pop(asset_id, None)
                if gone is None:
                    continue
                body = BookUpdate(token_id=asset_id, market=gone, valid=False, bids=[], asks=[], venue_ts_ms=0,
                                  recv_ns=self.rt.clock.time_ns(), tick_size=0, reason=UNSUBSCRIBED, more=more,
                                  flush_more=flush_more)
            else:
                self._market_of[asset_id] = st.market
                body = book_update(asset_id, st, depth, more=more, flush_more=flush_more)
            self._publish_book(body)
        self._publish_status(force=False)

    def _publish_book(self, body: BookUpdate) -> None:
        topic = topics.book(body.token_id)
        try:
            self.clone.record(topic, self.rt.publisher.publish(topic, body, event_ns=body.recv_ns or None,
                                                               trace_id=self._trace))
            self.published += 1
            return
        except Exception:  # e.g. a value msgpack cannot encode: this book only, never the flush
            self.publish_errors += 1
            log.exception("book %s not published: said invalid instead", body.token_id)
        # Its subscribers (and the clone store) still hold the book before it: say it is not to
        # be trusted, and have it re-requested.
        self.core.invalidate(body.token_id, UNPUBLISHABLE, self.rt.clock.time_ns())
        gone = msgspec.structs.replace(body, valid=False, bids=[], asks=[], reason=UNPUBLISHABLE)
        try:
            self.clone.record(topic, self.rt.publisher.publish(topic, gone, event_ns=gone.recv_ns or None))
            self.published += 1
        except Exception:
            self.publish_errors += 1
            self.clone.forget(topic)
            log.exception("book %s not published invalid either", body.token_id)

    def _publish_status(self, force: bool) -> None:
        c = self.client
        body = FeedStatus(connections=len(c.connections), connected=sum(x.connected for x in c.connections),
                          assets=len(self.core.tokens), valid_books=self.core.valid_count(),
                          heartbeat_ok=c.heartbeat_ok)
        key = (body.connections, body.connected, body.assets, body.valid_books, body.heartbeat_ok)
        if force or key != self._last_status:
            self._last_status = key
            self.rt.publisher.publish(topics.feed_status(), body)

    async def _status_forever(self) -> None:
        while True:
            self._publish_status(force=True)
            await self.rt.clock.sleep(1.0)

    # -- the Clone pattern's snapshot service, and hot reload
    def rpc_methods(self) -> dict[str, RpcMethod]:
        async def snapshot(p: dict[str, Any]) -> Any:
            return snapshot_reply(self.clone, {"prefix": p.get("prefix", topics.BOOK)})

        return {"snapshot": snapshot}

    def on_config(self, old: Config, new: Config) -> None:
        self.core.dedup.resize(new.feed.dedup_cache_size)
        self.core.crossed_grace_ns = new.feed.crossed_grace_ms * 1_000_000
        self.client.options = ws_options(new.feed)
        if new.feed.markets != old.feed.markets:
            # Re-select from the last listing without reconnecting; the
            # discovery loop's next pass confirms it.
            asyncio.get_running_loop().create_task(self._rediscover())

    async def _rediscover(self) -> None:
        f = self.rt.config.feed
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                self.client.set_assets(select(await self._list_markets(session, f.clob_url), f.markets))
        except Exception as exc:  # the discovery loop tries again
            self.discovery_errors += 1
            log.warning("re-discovery after a config change failed: %r", exc)

    def get_stats(self) -> dict[str, Any]:
        return {**self.client.get_stats(), "published": self.published, "publish_errors": self.publish_errors,
                "discoveries": self.discoveries,
                "discovery_errors": self.discovery_errors, "ws_url": self.rt.config.feed.ws_url}

    def metric_series(self) -> tuple[Series, ...]:
        return SERIES

    def health(self) -> dict[str, Any]:
        """Running, and every market-channel connection up."""
        return {"running": True, "market_channel": bool(self.client.get_stats()["connected"])}

    def summary(self) -> dict[str, Any]:
        s = self.client.get_stats()
        return {"connected": s["connections_up"], "books": f"{self.core.valid_count()}/{len(self.core.tokens)}",
                "msgs": s["message_count"], "dups": s["duplicate_count"], "gaps": s["sequence_gap_count"],
                "hb": "ok" if s["heartbeat_ok"] else "NO"}
