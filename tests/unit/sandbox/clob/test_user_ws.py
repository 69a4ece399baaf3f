"""The user channel in process: the CLOB's install() on a real aiohttp server on a
free port, a raw `websockets` client, orders posted through the ClobService with
the real client's signer, the chain faked (FakeSettler), time on a TestClock.

A PING is the barrier: the hub handles client frames in order and queues every
event synchronously, so whatever arrives before the PONG was queued before the
PING was read."""

from __future__ import annotations

import asyncio
import json
import random
from contextlib import asynccontextmanager
from decimal import Decimal
from types import SimpleNamespace

import pytest
import websockets
from aiohttp import web
from aiohttp.test_utils import TestServer

import sandbox.venue.clob as clob
from config.schema import VenueFaults
from sandbox.deploy import MarketInfo
from sandbox.venue.book import BUY
from sandbox.venue.clob.service import ClobService
from sandbox.venue.clob.user_ws import AUTH_FAILED, MAX_CLIENT_FRAME, UserHub
from sandbox.venue.faults import FaultInjector
from sandbox.venue.state import VenueState
from tests.helpers import eventually
from tests.unit.sandbox.clob.conftest import (
    CHAIN_ID,
    CID,
    MARKET,
    OTHER,
    TRADER,
    YES,
    M,
    l2_headers,
    limit_order,
    serialize,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

CID2 = "0x" + "c2" * 32
YES2, NO2 = "2001", "2002"
MARKET2 = MarketInfo(slug="m2", question="q2?", condition_id=CID2, question_id="0x" + "0b" * 32,
                     outcomes=["Yes", "No"], token_ids=[YES2, NO2], fee_rate=Decimal("0.02"),
                     tick_size=Decimal("0.01"), min_order_size=Decimal("5"))
ORDER_FIELDS = {"id", "asset_id", "market", "side", "price", "original_size", "size_matched", "outcome", "owner",
                "order_owner", "associate_trades", "order_type", "status", "timestamp", "created_at", "expiration"}
TRADE_FIELDS = {"id", "taker_order_id", "asset_id", "market", "side", "price", "size", "status", "outcome", "owner",
                "trade_owner", "trader_side", "fee_rate_bps", "bucket_index", "match_time", "last_update",
                "timestamp", "maker_orders"}
MAKER_FIELDS = {"order_id", "asset_id", "matched_amount", "price", "outcome", "owner", "maker_address",
                "fee_rate_bps"}


@pytest.fixture
def serve(clock, settler, keys, monkeypatch):
    """`async with serve(**fault_knobs) as v`: the CLOB installed on a served app."""

    @asynccontextmanager
    async def served(**knobs):
        state = VenueState([MARKET, MARKET2], clock)
        for token in (YES, YES2):
            state.replace_book(token, {430_000: 100 * M}, {450_000: 100 * M}, emit=False)
        faults = FaultInjector(VenueFaults(settlement_latency_ms=0, **knobs), random.Random(5), clock)
        service = ClobService(state, keys, settler, clock, chain_id=CHAIN_ID, faults=faults)
        monkeypatch.setattr(clob, "build_service", lambda venue: service)
        app = web.Application()
        clob.install(app, SimpleNamespace(faults=faults, rt=SimpleNamespace(clock=clock)))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            yield SimpleNamespace(service=service, hub=service.user_hub, faults=faults, clock=clock,
                                  settler=settler, url=f"ws://127.0.0.1:{server.port}/ws/user")
        finally:
            await server.close()

    return served


def creds_of(v, account=TRADER):
    return v.service.keys.issue(account.address, 0)


def subscribe_frame(creds, markets=None, **auth) -> str:
    doc = {"type": "user", "auth": {**creds.to_wire(), **auth}}
    if markets is not None:
        doc["markets"] = markets
    return json.dumps(doc)


async def recv(ws, timeout: float = 5.0):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return raw if raw in ("PONG", "INVALID OPERATION") else json.loads(raw)


async def until_pong(ws) -> list:
    await ws.send("PING")
    out = []
    while (msg := await recv(ws)) != "PONG":
        out.append(msg)
    return out


async def until_trade(ws, status: str) -> list:
    """Every event up to the first trade event with `status`."""
    out = []
    while True:
        out.append(msg := await recv(ws))
        if msg["event_type"] == "trade" and msg["status"] == status:
            return out


@asynccontextmanager
async def subscribed(v, account=TRADER, markets=None):
    async with websockets.connect(v.url, compression=None) as ws:
        await ws.send(subscribe_frame(creds_of(v, account), markets))
        assert await until_pong(ws) == []
        yield ws


async def post(v, order, account=TRADER):
    creds = creds_of(v, account)
    _, body = serialize(order, creds)
    headers = l2_headers(creds, "POST", "/order", body, v.clock.time_ns() // 10**9, account=account)
    status, reply = await v.service.post_order(headers, "/order", body.encode())
    assert status == 200, reply
    return reply


def trade_status(v, reply) -> str:
    return v.service.store.trade(reply["tradeIDs"][0]).status


def numbers_are_strings(obj) -> bool:
    if isinstance(obj, dict):
        return all(numbers_are_strings(x) for x in obj.values())
    if isinstance(obj, list):
        return all(numbers_are_strings(x) for x in obj)
    return not isinstance(obj, int | float)


def kinds(events) -> list[tuple[str, str]]:
    return [(e["event_type"], e["type"] if e["event_type"] == "order" else e["status"]) for e in events]


@pytest.mark.parametrize("markets", [None, [], [CID]])
async def test_the_owner_sees_its_order_then_every_status_of_its_trade(serve, markets):
    async with serve() as v, subscribed(v, markets=markets) as ws:
        reply = await post(v, limit_order(BUY, 0.45, 10))

        got = await until_trade(ws, "CONFIRMED")

        assert await until_pong(ws) == []
    assert kinds(got) == [("order", "PLACEMENT"), ("order", "UPDATE"), ("trade", "MATCHED"), ("trade", "MINED"),
                          ("trade", "CONFIRMED")]
    key, (tid,) = creds_of(v).api_key, reply["tradeIDs"]
    placement, update, *trades = got
    assert ORDER_FIELDS <= placement.keys() and ORDER_FIELDS <= update.keys()
    assert (update["id"], update["status"], update["size_matched"], update["associate_trades"]) == (
        reply["orderID"], "MATCHED", "10", [tid])
    assert (update["owner"], update["market"], update["asset_id"], update["price"]) == (key, CID, YES, "0.45")
    for t in trades:
        assert TRADE_FIELDS <= t.keys() and all(MAKER_FIELDS <= m.keys() for m in t["maker_orders"])
        assert (t["id"], t["taker_order_id"], t["trade_owner"], t["type"], t["size"]) == (
            tid, reply["orderID"], key, "TRADE", "10")
    assert all(numbers_are_strings(e) for e in got)
    assert int(trades[-1]["timestamp"]) == v.clock.time_ns() // 10**6
    stats = v.hub.get_stats()
    assert (stats["events_sent"], stats["subscriptions_total"], stats["connections_total"]) == (5, 1, 1)
    assert stats["events"] == {"order_placement": 1, "order_update": 1, "trade_matched": 1, "trade_mined": 1,
                               "trade_confirmed": 1}


async def test_another_account_sees_nothing_of_it(serve):
    async with serve() as v, subscribed(v) as mine, subscribed(v, OTHER) as theirs:
        await post(v, limit_order(BUY, 0.45, 10))
        await until_trade(mine, "CONFIRMED")

        assert await until_pong(theirs) == []

        await post(v, limit_order(BUY, 0.45, 10, account=OTHER), account=OTHER)
        assert (await recv(theirs))["owner"] == creds_of(v, OTHER).api_key
        await until_trade(theirs, "CONFIRMED")
        assert await until_pong(mine) == []
    assert v.hub.get_stats()["events_sent"] == 10


@pytest.mark.parametrize("wrong, reason", [
    ({"apiKey": "00000000-0000-4000-8000-000000000000"}, "unknown_key"),
    ({"secret": "c2VjcmV0"}, "wrong_secret"),
    ({"passphrase": "nope"}, "wrong_passphrase"),
    ({"apiKey": ""}, "missing"),
])
async def test_wrong_credentials_are_refused_and_counted(serve, wrong, reason):
    async with serve() as v, websockets.connect(v.url, compression=None) as ws:
        await ws.send(subscribe_frame(creds_of(v), **wrong))

        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(ws)

        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, AUTH_FAILED)
        await post(v, limit_order(BUY, 0.45, 10))
        stats = v.hub.get_stats()
    assert (stats["auth_failures"], stats["auth_failures_by_reason"], stats["events_sent"]) == (1, {reason: 1}, 0)


async def test_the_markets_filter_passes_only_the_named_markets(serve):
    async with serve() as v, subscribed(v, markets=[CID2]) as ws:
        first = await post(v, limit_order(BUY, 0.45, 10))
        await eventually(lambda: trade_status(v, first) == "CONFIRMED")
        assert await until_pong(ws) == []

        await post(v, limit_order(BUY, 0.45, 10, token=YES2))

        got = await until_trade(ws, "CONFIRMED")
    assert len(got) == 5 and {e["market"] for e in got} == {CID2} and {e["asset_id"] for e in got} == {YES2}


async def test_ping_gets_pong_before_and_after_subscribing(serve):
    async with serve() as v, websockets.connect(v.url, compression=None) as ws:
        assert await until_pong(ws) == []
        await ws.send(subscribe_frame(creds_of(v)))
        assert await until_pong(ws) == []
    assert v.hub.get_stats()["pongs"] == 2


async def test_a_failed_settlement_is_announced_matched_retrying_failed(serve):
    async with serve() as v, subscribed(v) as ws:
        v.settler.fail = "settlement reverted: collateral transfer failed"
        await post(v, limit_order(BUY, 0.45, 10))

        got = await until_trade(ws, "FAILED")

    assert [s for e, s in kinds(got) if e == "trade"] == ["MATCHED", "RETRYING", "FAILED"]


async def test_a_stall_stops_data_but_keeps_pong_and_a_new_connection_is_healthy(serve):
    async with serve() as v, subscribed(v) as old:
        v.hub.set_stall(*v.faults.configure(VenueFaults(settlement_latency_ms=0, stall=True)))
        first = await post(v, limit_order(BUY, 0.45, 10))
        await eventually(lambda: trade_status(v, first) == "CONFIRMED")

        assert await until_pong(old) == []
        async with subscribed(v) as new:
            await post(v, limit_order(BUY, 0.45, 10))
            assert len(await until_trade(new, "CONFIRMED")) == 5
        assert await until_pong(old) == []
        assert v.hub.get_stats()["stalled_connections"] == 1

        v.hub.set_stall(*v.faults.configure(VenueFaults(settlement_latency_ms=0, stall=False)))
        await post(v, limit_order(BUY, 0.45, 10))
        assert len(await until_trade(old, "CONFIRMED")) == 5
    assert v.hub.get_stats()["drops"] == 10 and v.faults.counters["stalls_started"] == 1


async def test_disconnect_every_n_seconds_closes_the_connection(serve):
    async with serve(disconnect_every_seconds=5.0) as v, subscribed(v) as ws:
        v.clock.advance(4.0)
        v.hub.housekeeping(v.clock.monotonic_ns())
        assert await until_pong(ws) == []  # not yet

        v.clock.advance(1.0)
        v.hub.housekeeping(v.clock.monotonic_ns())

        with pytest.raises(websockets.ConnectionClosed):
            await until_pong(ws)
        async with subscribed(v):  # the next connection's clock starts now
            v.hub.housekeeping(v.clock.monotonic_ns())
    assert v.hub.get_stats()["disconnects"] == 1 and v.faults.counters["disconnects"] == 1


async def test_duplicate_rate_sends_every_event_twice(serve):
    async with serve(duplicate_rate=1.0) as v, subscribed(v) as ws:
        await post(v, limit_order(BUY, 0.45, 10))

        got = await until_trade(ws, "CONFIRMED")
        got += await until_pong(ws)

    assert kinds(got) == [k for k in kinds(got[::2]) for _ in range(2)] and len(got) == 10
    assert v.hub.get_stats()["duplicates"] == 5


@pytest.mark.parametrize("bad", [
    "hello", "[1, 2]", '{"type": "market", "assets_ids": []}', '{"operation": "subscribe", "markets": []}',
    "MARKETS_NOT_A_LIST", "SECOND_SUBSCRIBE",
])
async def test_bad_client_frames_get_invalid_operation_and_are_counted(serve, bad):
    async with serve() as v, websockets.connect(v.url, compression=None) as ws:
        if bad == "MARKETS_NOT_A_LIST":
            bad = json.dumps({"type": "user", "auth": creds_of(v).to_wire(), "markets": CID})
        elif bad == "SECOND_SUBSCRIBE":
            await ws.send(subscribe_frame(creds_of(v)))
            bad = subscribe_frame(creds_of(v))
        await ws.send(bad)

        assert await recv(ws) == "INVALID OPERATION"
        await ws.send(b"\x00binary")
        assert await until_pong(ws) == []
    stats = v.hub.get_stats()
    assert (stats["invalid_frames"], stats["binary_frames_ignored"], stats["auth_failures"]) == (1, 1, 0)


async def test_a_client_frame_above_the_limit_closes_only_that_connection(serve):
    async with serve() as v, subscribed(v) as ok:
        async with websockets.connect(v.url, compression=None, max_size=None) as big:
            await big.send("x" * (MAX_CLIENT_FRAME + 1))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(big)
            assert closed.value.rcvd.code == 1009
        await post(v, limit_order(BUY, 0.45, 10))
        assert len(await until_trade(ok, "CONFIRMED")) == 5
        await eventually(lambda: v.hub.counters["client_errors"] == 1, timeout=5)


async def test_a_slow_client_is_disconnected_and_the_order_goes_through(serve):
    async with serve() as v, subscribed(v) as slow:
        v.hub.max_queue_frames = 2  # PLACEMENT, UPDATE and MATCHED are queued in one synchronous step

        reply = await post(v, limit_order(BUY, 0.45, 10))

        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await recv(slow)
        assert closed.value.rcvd.code == 1013
        await eventually(lambda: trade_status(v, reply) == "CONFIRMED")
    assert v.hub.get_stats()["slow_disconnects"] == 1


async def test_install_wires_the_hub_as_the_services_user_hub(serve):
    async with serve() as v:
        async with subscribed(v):
            assert isinstance(v.hub, UserHub)
            stats = v.hub.get_stats()
            assert (stats["connections"], stats["subscribers"], stats["accounts"]) == (1, 1, 1)
        await eventually(lambda: v.hub.get_stats()["connections"] == 0)
        assert v.hub.accounts == {}
