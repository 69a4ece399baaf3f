"""Market REST routes in Polymarket's formats, against an in-process server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from config.schema import VenueEvent
from sandbox.venue import rest_market
from sandbox.venue.rest_market import END_CURSOR, decode_cursor, encode_cursor
from tests.unit.sandbox.venue.factories import BINARY, MULTI, make_sim

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

THIRD = VenueEvent(slug="tri", outcomes=["A", "B"], placeholders=1, other=True)


async def client_for(*markets):
    sim, state, _, _ = make_sim(*markets, ups=0)
    app = web.Application()
    rest_market.install(app, SimpleNamespace(state=state, sim=sim))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, state


def test_cursors_are_base64_offsets_and_garbage_is_refused():
    assert encode_cursor(0) == "MA==" and encode_cursor(100) == "MTAw"
    assert decode_cursor("") == 0 and decode_cursor("MTAw") == 100 and decode_cursor(END_CURSOR) == -1
    for bad in ("%%%", "YWJj", "LTI="):  # not base64, "abc", "-2"
        with pytest.raises(ValueError):
            decode_cursor(bad)


async def test_markets_are_paginated_until_the_end_cursor():
    client, state = await client_for(BINARY, MULTI, THIRD)
    try:
        pages, cursor = [], "MA=="
        while cursor != END_CURSOR:
            r = await client.get("/markets", params={"next_cursor": cursor, "limit": "2"})
            assert r.status == 200
            page = await r.json()
            pages.append(page)
            cursor = page["next_cursor"]
        assert [(p["count"], p["limit"]) for p in pages] == [(2, 2)] * 4 + [(1, 2)]  # 1 + 4 + 4 markets
        assert pages[0]["next_cursor"] == "Mg=="
        done = await (await client.get("/markets", params={"next_cursor": END_CURSOR})).json()
        assert done == {"limit": 1000, "count": 0, "next_cursor": END_CURSOR, "data": []}
        assert (await client.get("/markets", params={"next_cursor": "nonsense!"})).status == 400
    finally:
        await client.close()
    data = [m for p in pages for m in p["data"]]
    assert [m["market_slug"] for m in data] == ["btc", "cup0", "cup1", "cup2", "cup3", "tri0", "tri1", "tri2",
                                                "tri3"]
    btc = data[0]
    assert btc["condition_id"] == state.markets[0].condition_id
    assert btc["tokens"] == [{"token_id": "btc-0", "outcome": "Yes", "price": 0.62, "winner": False},
                             {"token_id": "btc-1", "outcome": "No", "price": 0.38, "winner": False}]
    assert (btc["minimum_tick_size"], btc["minimum_order_size"], btc["taker_base_fee"]) == (0.01, 5, 200)
    assert btc["active"] and not btc["closed"] and btc["accepting_orders"] and btc["neg_risk"] is False
    assert btc["enable_order_book"] and btc["neg_risk_market_id"] == "" == btc["neg_risk_request_id"]
    cup = data[1:5]
    assert all(m["neg_risk"] and m["neg_risk_market_id"] == cup[0]["neg_risk_market_id"] != "" for m in cup)
    assert [m["neg_risk_request_id"][-2:] for m in cup] == ["00", "01", "02", "03"]  # question index, last byte
    assert [t["outcome"] for t in cup[0]["tokens"]] == ["Yes", "No"] and cup[0]["question"] == "Who wins?: A?"
    assert [m["tags"] for m in data[5:]] == [[], [], ["Placeholder"], ["Other"]]  # an augmented event


async def test_one_market_by_condition_id():
    client, state = await client_for(BINARY, MULTI)
    try:
        cid = state.markets[1].condition_id
        body = await (await client.get(f"/markets/{cid}")).json()
        assert body["condition_id"] == cid and [t["outcome"] for t in body["tokens"]] == ["Yes", "No"]
        assert body["neg_risk"] is True
        assert (await client.get("/markets/0xdead")).status == 404
    finally:
        await client.close()


async def test_book_and_books():
    client, state = await client_for(BINARY)
    try:
        body = await (await client.get("/book", params={"token_id": "btc-0"})).json()
        assert body == state.book("btc-0").to_rest()
        assert set(body) == {"market", "asset_id", "timestamp", "hash", "bids", "asks", "min_order_size",
                             "tick_size", "neg_risk", "last_trade_price"}
        assert (await client.get("/book")).status == 400
        assert (await client.get("/book", params={"token_id": "nope"})).status == 404
        many = await (await client.post("/books", json=[{"token_id": "btc-1"}, {"token_id": "nope"}])).json()
        assert [b["asset_id"] for b in many] == ["btc-1"]
        assert (await client.post("/books", data=b"{not json")).status == 400
    finally:
        await client.close()
