"""The REST routes in process (aiohttp test server, fake chain side), driven by
the REAL py-clob-client-v2 in a thread: every call it makes parses our answers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import OpenOrderParams, OrderArgsV2, OrderPayload, OrderType, TradeParams
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.order_utils import ExchangeOrderBuilderV2, OrderDataV2, Side, SignatureTypeV2

from actors.runtime.clock import SystemClock
from sandbox.venue.clob.auth import ApiKeys, venue_secret
from sandbox.venue.clob.routes import add_routes
from sandbox.venue.clob.service import ClobService
from sandbox.venue.state import VenueState
from tests.unit.sandbox.clob.conftest import CID, MARKET, NO, TRADER, YES, FakeSettler, M, decode_call

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@pytest.fixture
async def server():
    clock = SystemClock()  # the client stamps its headers with the wall clock
    state = VenueState([MARKET], clock)
    state.replace_book(YES, {430_000: 100 * M}, {450_000: 100 * M}, emit=False)  # NO: its mirror
    settler = FakeSettler()
    service = ClobService(state, ApiKeys(venue_secret(b"\x05" * 32), 137), settler, clock, chain_id=137)
    app = web.Application()
    add_routes(app, service, SimpleNamespace(chain_ready=True))
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield f"http://127.0.0.1:{srv.port}", service, settler
    await srv.close()


def client(url: str) -> ClobClient:
    return ClobClient(url, chain_id=137, key="0x" + bytes(TRADER.key).hex())


async def test_the_client_reads_every_public_route(server):
    url, _, _ = server
    c = client(url)

    assert await asyncio.to_thread(c.get_ok) == "OK"
    assert isinstance(await asyncio.to_thread(c.get_server_time), int)
    assert await asyncio.to_thread(c.get_version) == 2
    assert await asyncio.to_thread(c.get_tick_size, YES) == "0.01"
    assert await asyncio.to_thread(c.get_neg_risk, YES) is False
    assert await asyncio.to_thread(c.get_fee_rate_bps, YES) == 200
    info = await asyncio.to_thread(c.get_clob_market_info, CID)
    assert [t["t"] for t in info["t"]] == [YES, NO] and info["fd"] == {"r": 0.02, "e": 1, "to": True}
    assert await asyncio.to_thread(c.get_fee_exponent, NO) == 1


async def test_the_client_trades_and_queries_through_the_routes(server):
    url, service, settler = server
    c = client(url)
    c.set_api_creds(await asyncio.to_thread(c.create_or_derive_api_key))
    meta = "0x" + "77" * 32

    res = await asyncio.to_thread(c.create_and_post_order, OrderArgsV2(
        token_id=YES, price=0.45, size=10, side="BUY", metadata=meta), None, OrderType.FOK)

    # The client waits (inside post_order) until the trade has its settlement hash.
    assert res["status"] == "matched" and len(settler.settled) == 1
    (tid,) = res["tradeIDs"]
    assert res["transactionsHashes"] == [(await asyncio.to_thread(c.get_trades, TradeParams(id=tid)))[0][
        "transaction_hash"]]
    oid = res["orderID"]
    assert (await asyncio.to_thread(c.get_order, oid))["metadata"] == meta
    assert await asyncio.to_thread(c.get_open_orders) == []
    assert [o["id"] for o in await asyncio.to_thread(c.get_open_orders, OpenOrderParams(id=oid))] == [oid]
    trades = await asyncio.to_thread(c.get_trades, TradeParams(id=tid))
    assert [(t["taker_order_id"], t["status"] in ("MINED", "CONFIRMED")) for t in trades] == [(oid, True)]
    beat = await asyncio.to_thread(c.post_heartbeat, "")
    assert beat["error"] == "" and beat["heartbeat_id"].startswith("0x") and service.counters["heartbeats"] == 1
    cancel = await asyncio.to_thread(c.cancel_order, OrderPayload(orderID=oid))
    assert cancel["canceled"] == [] and oid in cancel["not_canceled"]
    assert await asyncio.to_thread(c.cancel_all) == {"canceled": [], "not_canceled": {}}
    assert (await asyncio.to_thread(c.get_api_keys))["apiKeys"] == [c.creds.api_key]


@pytest.mark.parametrize("method, path, status, text", [
    ("GET", "/tick-size", 400, "Invalid token id"),
    ("GET", "/tick-size?token_id=abc", 400, "Invalid token id"),
    ("GET", "/neg-risk?token_id=42", 404, "market not found"),
    ("GET", "/clob-markets/0x12", 404, "market not found"),
    ("GET", "/markets-by-token/42", 404, "market not found"),
    ("POST", "/auth/api-key", 401, "Invalid L1 Request headers"),
    ("GET", "/auth/derive-api-key", 401, "Invalid L1 Request headers"),
    ("POST", "/order", 401, "Unauthorized/Invalid api key"),
    ("GET", "/data/orders", 401, "Unauthorized/Invalid api key"),
    ("GET", "/data/order/0x12", 401, "Unauthorized/Invalid api key"),
    ("DELETE", "/order", 401, "Unauthorized/Invalid api key"),
])
async def test_hostile_requests_get_json_errors_and_are_counted(server, method, path, status, text):
    url, service, _ = server
    async with aiohttp.ClientSession() as session, session.request(method, url + path, data=b"{junk") as resp:
        body = await resp.json()

    assert resp.status == status and text in body["error"]
    assert sum(v for k, v in service.get_stats().items() if "rejected" in k and isinstance(v, int)) >= 1


async def test_an_order_signed_from_exact_integer_amounts_is_posted_by_the_client(server):
    """The executor's path: amounts in 1e-6 units, no float rounding (OrderArgsV2 takes floats and
    floors sizes like 0.29 to 0.28), signed by the client's ExchangeOrderBuilderV2, posted by the client."""
    url, _, settler = server
    c = client(url)
    c.set_api_creds(await asyncio.to_thread(c.create_or_derive_api_key))
    builder = ExchangeOrderBuilderV2(get_contract_config(137).exchange_v2, 137, c.signer)
    size, price = 10_290_000, 450_000  # 10.29 shares at 0.45
    order = builder.build_signed_order(OrderDataV2(
        maker=TRADER.address, tokenId=YES, makerAmount=str(size * price // M), takerAmount=str(size), side=Side.BUY,
        signer=TRADER.address, signatureType=SignatureTypeV2.EOA, metadata="0x" + "99" * 32))
    order_id = builder.build_order_hash(builder.build_order_typed_data(order))  # known before posting

    res = await asyncio.to_thread(c.post_order, order, OrderType.FOK)

    assert (res["orderID"], res["takingAmount"], res["makingAmount"]) == (order_id, "10.29", "4.681436")  # + fee
    assert decode_call(settler.settled[0])[1][4:6] == (size, size * price // M)
