"""A hostile `GET /markets` answer is a clear, counted ListingError, retried with
backoff: it put the feed in a crash loop (exit 1 every ~1.3 s) with a TypeError
or AttributeError out of the listing's parser."""

import asyncio
import json

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from actors.domain.listing import END_CURSOR, ListingError, list_markets
from actors.feed.actor import DISCOVERY_MAX_BACKOFF_S, FeedActor
from actors.runtime.clock import TestClock
from actors.runtime.shell import ActorRuntime
from bus.fakes import FakeContext
from config.runtime import ConfigReloader
from tests.helpers import eventually
from tests.unit.feed.fake_ws import FakeServer

pytestmark = pytest.mark.unit


def market(**over):
    return {"condition_id": "0xc", "question": "q", "active": True, "closed": False, "taker_base_fee": 0,
            "tokens": [{"token_id": "1", "outcome": "Yes"}, {"token_id": "2", "outcome": "No"}], **over}


def page(*markets, cursor=END_CURSOR):
    return json.dumps({"data": list(markets), "next_cursor": cursor}).encode()


HOSTILE = {
    "a list page": json.dumps([market()]).encode(),
    "an empty list page": b"[]",
    "tokens as strings": page(market(tokens=["1", "2"])),
    "tokens as an object": page(market(tokens={"token_id": "1"})),
    "a token without an id": page(market(tokens=[{"outcome": "Yes"}])),
    "taker_base_fee {}": page(market(taker_base_fee={})),
    "taker_base_fee an object": page(market(taker_base_fee={"x": 1})),
    "taker_base_fee text": page(market(taker_base_fee="abc")),
    "taker_base_fee huge": page(market(taker_base_fee=10**30)),
    "taker_base_fee negative": page(market(taker_base_fee=-1)),
    "taker_base_fee a bool": page(market(taker_base_fee=True)),
    "a condition id not a string": page(market(condition_id=7)),
    "a market not an object": page("0xc"),
    "data not a list": json.dumps({"data": "x", "next_cursor": END_CURSOR}).encode(),
    "a cursor not a string": page(market(), cursor={"a": 1}),
    "deep nesting": b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "not JSON": b"<html>502 Bad Gateway</html>",
    "a number out of range": page(market(minimum_tick_size=1e308)).replace(b"1e+308", b"1e999"),
}


@pytest.fixture
async def venue():
    state = {"body": page(market()), "requests": 0}

    async def markets(request):
        state["requests"] += 1
        return web.Response(body=state["body"], content_type="application/json")

    app = web.Application()
    app.router.add_get("/markets", markets)
    server = TestServer(app, host="127.0.0.1")  # port 0: bound by the OS, read back
    await server.start_server()
    yield state, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.mark.parametrize("what", list(HOSTILE))
async def test_a_hostile_listing_is_a_listing_error(venue, what):
    state, url = venue
    state["body"] = HOSTILE[what]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ListingError):
            await list_markets(session, url)


async def test_an_honest_listing_still_parses(venue):
    state, url = venue
    state["body"] = page(market(taker_base_fee="200", minimum_tick_size=0.001), {"no": "condition id"})
    async with aiohttp.ClientSession() as session:
        [m] = await list_markets(session, url)
    assert (m.condition_id, m.token_ids, m.outcomes, m.fee_rate_bps, m.tick_size) == (
        "0xc", ("1", "2"), ("Yes", "No"), 200, 1_000)


async def test_the_feed_survives_a_hostile_listing_counts_it_and_backs_off(venue, sandbox_config):
    state, url = venue
    state["body"] = HOSTILE["a list page"]
    cfg = msgspec.structs.replace(sandbox_config, feed=msgspec.structs.replace(sandbox_config.feed, clob_url=url))
    clock, ws = TestClock(), FakeServer()
    rt = ActorRuntime("feed", ConfigReloader(initial=cfg), FakeContext(), clock)
    actor = FeedActor(rt, connect=ws.connect)
    await actor.start()
    run = asyncio.create_task(actor.run())
    try:
        for n, what in enumerate(["a list page", "tokens as strings", "taker_base_fee {}", "not JSON"], start=1):
            state["body"] = HOSTILE[what]
            await eventually(lambda n=n: actor.discovery_errors == n)
            assert state["requests"] == n and not run.done()  # one request per backoff: no loop
            clock.advance(DISCOVERY_MAX_BACKOFF_S)
        state["body"] = page(market())
        await eventually(lambda: actor.discoveries == 1 and actor.core.tokens.keys() == {"1", "2"})
        assert actor.discovery_errors == 4 and actor.get_stats()["discovery_errors"] == 4
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await actor.stop()
