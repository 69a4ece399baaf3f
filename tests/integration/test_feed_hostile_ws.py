"""The real FeedActor against a hostile market-channel server (a local websockets
server on a port the OS picks): garbage, a 50 MB frame, binary frames, no PONG,
abrupt closes and a flood. The feed stays up and reconnects, counts what it
drops, and never publishes a wrong book as valid: every valid book it publishes
is a state the server's honest stream had at some point.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import msgspec
import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve

from actors.domain.listing import Market
from actors.domain.money import micro_to_str
from actors.feed.actor import FeedActor
from actors.runtime.clock import SystemClock
from actors.runtime.shell import ActorRuntime
from bus import topics
from bus.context import new_context
from bus.messages import BookUpdate
from bus.sockets import Subscriber
from config.loader import load
from config.runtime import ConfigReloader
from tests.helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

M = "0xhostile"
TOKENS = ("111", "222")
TICK = 10_000
SCENARIOS = ("garbage_then_abort", "huge_frame", "binary", "no_pong", "flood", "steady")


class Venue:
    """An honest book per token; every state it ever sent is remembered."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.rng = random.Random(7)
        self.books = {t: ({p * TICK: 100_000_000 for p in range(40, 36, -1)},
                          {p * TICK: 100_000_000 for p in range(45, 49)}) for t in TOKENS}
        self.states: dict[str, set[tuple]] = {t: set() for t in TOKENS}
        self.ts = 0
        self.connections = 0
        self.lock = asyncio.Lock()  # one message made and sent at a time: sent in timestamp order
        for t in TOKENS:
            self._record(t)

    def _stamp(self) -> str:
        self.ts = max(self.ts + 1, time.time_ns() // 1_000_000)
        return str(self.ts)

    def _state(self, t: str) -> tuple:
        bids, asks = self.books[t]
        return (tuple(sorted(bids.items(), reverse=True)[:self.depth]), tuple(sorted(asks.items())[:self.depth]))

    def _record(self, t: str) -> None:
        self.states[t].add(self._state(t))

    def snapshot(self, t: str) -> dict[str, Any]:
        bids, asks = self.books[t]
        self._record(t)
        return {"event_type": "book", "asset_id": t, "market": M, "timestamp": self._stamp(), "hash": "h",
                "tick_size": "0.01",
                "bids": [{"price": micro_to_str(p), "size": micro_to_str(s)} for p, s in bids.items()],
                "asks": [{"price": micro_to_str(p), "size": micro_to_str(s)} for p, s in asks.items()]}

    def change(self) -> dict[str, Any]:
        t, buy = self.rng.choice(TOKENS), self.rng.random() < 0.5
        price = (self.rng.randint(30, 44) if buy else self.rng.randint(46, 60)) * TICK  # never crossed
        size = self.rng.choice([0, 1_000_000, 5_000_000, 250_000_000])
        side = self.books[t][0 if buy else 1]
        if size:
            side[price] = size
        else:
            side.pop(price, None)
        self._record(t)
        bids, asks = self.books[t]
        return {"event_type": "price_change", "market": M, "timestamp": self._stamp(), "price_changes": [
            {"asset_id": t, "price": micro_to_str(price), "size": micro_to_str(size), "side": "BUY" if buy else "SELL",
             "hash": f"x{self.ts}", "best_bid": micro_to_str(max(bids)) if bids else "",
             "best_ask": micro_to_str(min(asks)) if asks else ""}]}

    def junk(self) -> str | bytes:
        """What the feed must refuse: it never changes the honest books."""
        rng, t, now = self.rng, self.rng.choice(TOKENS), time.time_ns() // 1_000_000
        honest = json.dumps(self.change_like(t, now))
        entry = {"asset_id": t, "price": "0.40", "size": "1", "side": "BUY"}
        bad_entries = [{"price": "1.5"}, {"price": "0"}, {"price": "0.405"}, {"size": "1" + "0" * 20},
                       {"size": "NaN"}, {"size": "1e5"}, {"size": "-5"}, {"size": "²"}, {"hash": ["x"]},
                       {"side": {"BUY": 1}}]
        choices = [
            lambda: honest[:rng.randint(0, len(honest) - 1)],
            lambda: json.dumps({"event_type": "price_change", "market": M, "timestamp": str(now),
                                "price_changes": [{**entry, **rng.choice(bad_entries)}]}),
            lambda: json.dumps({"event_type": "price_change", "market": M, "timestamp": str(now + 10**10),
                                "price_changes": [entry]}),
            lambda: json.dumps({"event_type": "book", "asset_id": t, "market": M, "timestamp": str(now + 10**10),
                                "bids": [{"price": "0.10", "size": "1"}], "asks": []}),
            lambda: json.dumps({"event_type": "book", "asset_id": t, "market": M,
                                "timestamp": "".join("٠١٢٣٤٥٦٧٨٩"[int(c)] for c in str(now)),
                                "bids": [{"price": "0.10", "size": "1"}], "asks": []}),
            lambda: json.dumps({"event_type": "book", "asset_id": t, "market": M, "timestamp": str(now),
                                "bids": [{"price": "1.5", "size": "1"}], "asks": []}),
            lambda: '{"event_type": "price_change", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
            lambda: honest.replace('"5"', "NaN").replace('"1"', "Infinity"),
            lambda: "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 200))),
            lambda: "{" * rng.randint(1, 5000),
            lambda: bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))),
            lambda: json.dumps({"event_type": "surprise", "asset_id": t}),
        ]
        return rng.choice(choices)()

    def change_like(self, t: str, now: int) -> dict[str, Any]:
        return {"event_type": "price_change", "market": M, "timestamp": str(now), "price_changes": [
            {"asset_id": t, "price": "0.41", "size": "5", "side": "BUY", "hash": "j"}]}


async def _send(ws: ServerConnection, venue: Venue, make: Any) -> None:
    async with venue.lock:
        msg = make()
        await ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))


async def _handler(ws: ServerConnection, venue: Venue) -> None:
    venue.connections += 1
    scenario = SCENARIOS[min(venue.connections, len(SCENARIOS)) - 1]
    subscribed = asyncio.Event()

    async def read() -> None:
        async for msg in ws:
            if msg == "PING":
                if scenario != "no_pong":
                    await ws.send("PONG")
                continue
            frame = json.loads(msg)
            if frame.get("type") == "market" or frame.get("operation") == "subscribe":
                for t in frame["assets_ids"]:  # like the venue: a (re)subscription is answered with snapshots
                    await _send(ws, venue, lambda t=t: venue.snapshot(t))
                subscribed.set()

    reader = asyncio.create_task(read())
    try:
        await subscribed.wait()
        if scenario == "garbage_then_abort":
            for i in range(3_000):
                await _send(ws, venue, venue.change if i % 3 == 0 else venue.junk)
            ws.transport.abort()  # no close frame
        elif scenario == "huge_frame":
            await _send(ws, venue, venue.change)
            await ws.send("[" + " " * (50 * 1024 * 1024) + "]")  # 50 MB: beyond feed.max_frame_bytes
        elif scenario == "binary":
            for i in range(300):
                await _send(ws, venue, lambda i=i: json.dumps(venue.change()).encode() if i % 2 else venue.junk())
                await ws.send(bytes(random.Random(i).randrange(256) for _ in range(64)))
            ws.transport.abort()
        elif scenario == "flood":
            for _ in range(5_000):
                await _send(ws, venue, venue.change)
            await ws.close()
        else:  # no_pong (the feed gives up on it), steady: honest and open
            for _ in range(200):
                await _send(ws, venue, venue.change)
        await reader
    except websockets.ConnectionClosed:
        pass
    finally:
        reader.cancel()


async def test_the_feed_survives_a_hostile_server_and_never_publishes_a_wrong_book():
    base = load()
    tag = uuid.uuid4().hex[:8]
    eps = {k: msgspec.structs.replace(v, pub=f"inproc://{tag}-{k}-pub", rpc=f"inproc://{tag}-{k}-rpc" if v.rpc else "")
           for k, v in base.bus.endpoints.items()}
    venue = Venue(depth=base.feed.depth_levels)
    async with serve(lambda ws: _handler(ws, venue), "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]  # bound by the OS, read back
        cfg = msgspec.structs.replace(
            base, bus=msgspec.structs.replace(base.bus, endpoints=eps),
            feed=msgspec.structs.replace(base.feed, ws_url=f"ws://127.0.0.1:{port}", ping_interval_seconds=0.2,
                                         pong_timeout_seconds=1.0, reconnect_base_seconds=0.05,
                                         reconnect_max_seconds=0.2, resubscribe_after_seconds=0.2))

        async def lister(session: Any, url: str) -> list[Market]:
            return [Market(M, "q", TOKENS, ("Yes", "No"), True)]

        ctx = new_context()
        rt = ActorRuntime("feed", ConfigReloader(initial=cfg), ctx, SystemClock())
        actor = FeedActor(rt, lister=lister)
        sub = Subscriber(ctx, [eps["feed"].pub], [topics.prefix(topics.BOOK)])
        published: list[BookUpdate] = []

        async def collect() -> None:
            while True:
                published.extend(r.env.body for r in await sub.recv_batch() if isinstance(r.env.body, BookUpdate))

        await actor.start()
        run = asyncio.create_task(actor.run())
        reading = asyncio.create_task(collect())
        try:
            await eventually(lambda: venue.connections >= len(SCENARIOS), timeout=15, what="every scenario ran")
            core = actor.core

            def converged() -> bool:  # the steady connection's books: exactly the venue's, valid
                return all(core.tokens[t].valid and core.tokens[t].book.depth(venue.depth) == tuple(
                    list(x) for x in venue._state(t)) for t in TOKENS)

            await eventually(converged, timeout=10, what="books equal the venue's on the steady connection")
            await eventually(lambda: any(b.valid for b in published), timeout=5)
            assert not run.done(), "the feed actor stopped"
            stats = actor.get_stats()
            c = stats["core"]
            assert c["malformed"] > 500 and c["future_stamped"] > 0 and c["sequence_gaps"] > 0
            assert c["malformed_kinds"].get("too_deep_or_too_large", 0) > 0
            assert c["text_frames"] and len(c["text_frames"]) <= 65  # garbage text counted, in bounded memory
            assert stats["heartbeat_timeouts"] >= 1  # the server that never answered PING was left
            assert stats["disconnect_count"] >= len(SCENARIOS) - 1 and stats["connect_count"] >= len(SCENARIOS)
            assert stats["publish_errors"] == 0
            wrong = [b for b in published if b.valid and (tuple(map(tuple, b.bids)), tuple(map(tuple, b.asks)))
                     not in venue.states[b.token_id]]
            assert not wrong, wrong[:3]
            assert sum(b.valid for b in published) > 100
        finally:
            reading.cancel()
            run.cancel()
            await asyncio.gather(reading, run, return_exceptions=True)
            await actor.stop()
            sub.close()
            rt.close()
            ctx.destroy(0)
