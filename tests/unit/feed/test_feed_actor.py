import asyncio

import pytest

from actors.domain.listing import Market
from actors.feed.actor import FeedActor
from actors.runtime.clock import TestClock
from actors.runtime.launcher import rpc_handler
from actors.runtime.shell import ActorRuntime
from bus import topics
from bus.clone import fetch_snapshot
from bus.codec import Stamper
from bus.fakes import FakeContext
from bus.messages import BookUpdate
from bus.sequence import Arrival
from bus.sockets import RpcClient, RpcServer, Subscriber
from config.runtime import ConfigReloader
from tests.helpers import eventually
from tests.unit.feed.fake_ws import FakeServer

pytestmark = pytest.mark.unit

M = "0xcond"
MARKETS = [Market(M, "q", ("yes-token", "no-token"), ("Yes", "No"), True),
           Market("0xother", "q2", ("x1", "x2"), ("Yes", "No"), True)]


async def lister(session, url):
    return MARKETS


def book(asset, ts, bid="0.40"):
    return {"event_type": "book", "asset_id": asset, "market": M, "timestamp": str(ts), "hash": f"h{ts}",
            "bids": [{"price": bid, "size": "10"}], "asks": [{"price": "0.45", "size": "12.5"}]}


@pytest.fixture
async def feed(sandbox_config):
    import msgspec

    cfg = msgspec.structs.replace(sandbox_config, feed=msgspec.structs.replace(sandbox_config.feed, markets=[M]))
    ctx, clock, server = FakeContext(), TestClock(), FakeServer()
    rt = ActorRuntime("feed", ConfigReloader(initial=cfg), ctx, clock)
    actor = FeedActor(rt, connect=server.connect, lister=lister)
    sub = Subscriber(ctx, [cfg.bus.endpoints["feed"].pub], [topics.prefix(topics.BOOK)])
    await actor.start()
    run = asyncio.create_task(actor.run())
    rpc = RpcServer(ctx, cfg.bus.endpoints["feed"].rpc, rpc_handler(actor.rpc_methods()), rt.stamper)
    serve = asyncio.create_task(rpc.serve())
    yield actor, server, sub, ctx, cfg
    run.cancel()
    serve.cancel()
    await actor.stop()


async def test_only_configured_markets_are_subscribed_and_books_published(feed):
    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections and server.connections[0].frames())
    assert sorted(server.connections[0].frames()[0]["assets_ids"]) == ["no-token", "yes-token"]

    server.connections[0].push([book("yes-token", 1), book("no-token", 1)])
    batch = await sub.recv_batch()
    while len(batch) < 2:
        batch += await sub.recv_batch()

    by_token = {r.env.body.token_id: r for r in batch}
    yes = by_token["yes-token"].env.body
    assert isinstance(yes, BookUpdate) and yes.valid
    assert (yes.bids, yes.asks, yes.market, yes.venue_ts_ms) == ([(400000, 10_000000)], [(450000, 12_500000)], M, 1)
    assert by_token["yes-token"].topic == topics.book("yes-token")
    assert by_token["yes-token"].arrival is Arrival.JOINED


async def test_a_burst_is_coalesced_into_one_message_per_token(feed):
    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections)
    ws = server.connections[0]
    ws.push([book("yes-token", 1), book("yes-token", 2, "0.41"), book("yes-token", 3, "0.42")])
    batch = await sub.recv_batch()
    assert len(batch) == 1 and batch[0].env.body.bids == [(420000, 10_000000)]


async def test_books_moved_together_go_out_together_the_last_one_unmarked(feed):
    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections)
    server.connections[0].push([book("no-token", 1), book("yes-token", 1)])
    batch = await sub.recv_batch()
    while len(batch) < 2:
        batch += await sub.recv_batch()
    assert [(r.env.body.token_id, r.env.body.more) for r in batch] == [("no-token", True), ("yes-token", False)]

    server.connections[0].push([book("yes-token", 2, "0.41")])  # one book moved: nothing follows it
    [one] = await sub.recv_batch()
    assert (one.env.body.token_id, one.env.body.more) == ("yes-token", False)


async def test_every_book_of_a_flush_but_its_last_says_more_of_the_flush_follows(feed):
    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections)
    server.connections[0].push([book("no-token", 1), book("yes-token", 1)])
    batch = await sub.recv_batch()
    while len(batch) < 2:
        batch += await sub.recv_batch()
    assert [r.env.body.flush_more for r in batch] == [True, False]


async def test_late_joiner_gets_a_snapshot_and_then_only_newer_updates(feed):
    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections)
    ws = server.connections[0]
    ws.push([book("yes-token", 1), book("no-token", 1)])
    await eventually(lambda: actor.published >= 2)

    late = Subscriber(ctx, [cfg.bus.endpoints["feed"].pub], [topics.prefix(topics.BOOK)])
    client = RpcClient(ctx, cfg.bus.endpoints["feed"].rpc, Stamper("router", TestClock()), timeout_ms=500, retries=1)
    snap = await fetch_snapshot(client, topics.BOOK, late)
    ws.push([book("yes-token", 2, "0.43")])
    batch = await late.recv_batch()

    assert sorted(e.body.token_id for e in snap.entries) == ["no-token", "yes-token"]
    assert [(r.env.body.token_id, r.env.body.bids[0][0], r.arrival) for r in batch] == [
        ("yes-token", 430000, Arrival.IN_ORDER)]


async def test_disconnect_publishes_invalid_books_with_the_reason(feed):
    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections)
    server.connections[0].push([book("yes-token", 1)])
    await sub.recv_batch()
    await server.connections[0].close()
    batch = await sub.recv_batch()
    assert batch[0].env.body.valid is False and "disconnected" in batch[0].env.body.reason


async def test_unsubscribed_tokens_are_published_invalid_once(feed):
    import msgspec

    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections)
    server.connections[0].push([book("yes-token", 1), book("no-token", 1)])
    seen = {}
    while len(seen) < 2:
        seen.update({r.env.body.token_id: r.env.body for r in await sub.recv_batch()})

    new = msgspec.structs.replace(cfg, feed=msgspec.structs.replace(cfg.feed, markets=["0xother"]))
    actor.rt.watcher.config = new  # what the reloader holds after a reload
    actor.on_config(cfg, new)
    gone = {}
    while len(gone) < 2:
        gone.update({r.env.body.token_id: r.env.body for r in await sub.recv_batch()
                     if r.env.body.token_id in ("yes-token", "no-token")})

    assert all(not b.valid and "unsubscribed" in b.reason and b.bids == b.asks == [] for b in gone.values())
    client = RpcClient(ctx, cfg.bus.endpoints["feed"].rpc, Stamper("router", TestClock()), timeout_ms=500, retries=1)
    snap = {e.body.token_id: e.body for e in (await fetch_snapshot(client, topics.BOOK)).entries}
    assert not snap["yes-token"].valid and not snap["no-token"].valid
    assert len(server.connections) == 1  # no reconnect
