"""The market channel in process: a real aiohttp server on a free port, a raw
`websockets` client, state and faults driven directly, time on a TestClock.

A PING is the barrier: the venue handles client frames in order and queues
every event synchronously, so whatever arrives before the PONG was queued
before the PING was read."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from types import SimpleNamespace

import msgspec
import pytest
import websockets
from aiohttp.test_utils import TestServer

from actors.domain.money import ONE
from actors.runtime.clock import TestClock
from config.schema import VenueFaults
from sandbox.venue import market_ws
from sandbox.venue.actor import build_app
from sandbox.venue.book import BUY
from sandbox.venue.market_ws import MAX_CLIENT_FRAME, MarketHub
from tests.helpers import eventually
from tests.unit.sandbox.venue.factories import BINARY, MULTI, make_faults, make_sim

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

YES, NO = "btc-0", "btc-1"
CUP = [f"cup{i}-0" for i in range(4)]  # the YES tokens of the event's four markets
BTC = f"0x{1:064x}"


@asynccontextmanager
async def served(max_queue_frames: int = 1000, **knobs):
    clock = TestClock()
    sim, state, _, _ = make_sim(BINARY, MULTI, ups=0, clock=clock)
    inj = make_faults(clock=clock, **knobs)
    hub = MarketHub(state, inj, clock, max_queue_frames=max_queue_frames)
    venue = SimpleNamespace(state=state, sim=sim, faults=inj, hub=hub, clock=clock)
    server = TestServer(build_app(venue, extra=[]), host="127.0.0.1")
    await server.start_server()
    venue.url = f"ws://127.0.0.1:{server.port}/ws/market"
    try:
        yield venue
    finally:
        await hub.close_all()
        await server.close()


async def recv(ws, timeout: float = 5.0):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return raw if raw in ("PONG", "INVALID OPERATION", "NO NEW ASSETS") else json.loads(raw)


async def until_pong(ws) -> list:
    await ws.send("PING")
    out = []
    while (msg := await recv(ws)) != "PONG":
        out.append(msg)
    return out


def initial(ids) -> str:
    return json.dumps({"type": "market", "assets_ids": ids, "custom_feature_enabled": False})


async def test_the_initial_frame_gets_one_array_of_snapshots_and_a_second_is_invalid():
    async with served() as v, websockets.connect(v.url, compression=None) as ws:
        await ws.send(initial([NO, "unknown-token", YES]))

        snaps = await recv(ws)

        assert isinstance(snaps, list) and [s["asset_id"] for s in snaps] == [NO, YES]
        assert all(s["event_type"] == "book" and s["market"] == BTC for s in snaps)
        assert snaps[1] == v.state.book(YES).to_wire()
        await ws.send(initial(CUP))
        assert await recv(ws) == "INVALID OPERATION"
        assert await until_pong(ws) == []


async def test_operations_subscribe_new_assets_reject_duplicates_and_unsubscribe():
    async with served() as v, websockets.connect(v.url, compression=None) as ws:
        await ws.send(initial([YES]))
        await recv(ws)

        await ws.send(json.dumps({"operation": "subscribe", "assets_ids": [YES, CUP[0]]}))
        assert [s["asset_id"] for s in await recv(ws)] == [CUP[0]]
        await ws.send(json.dumps({"operation": "subscribe", "assets_ids": [YES, CUP[0]]}))
        assert await recv(ws) == "NO NEW ASSETS"
        await ws.send(json.dumps({"operation": "unsubscribe", "assets_ids": [YES]}))
        await until_pong(ws)

        v.state.apply([(YES, BUY, 100_000, ONE)])
        assert await until_pong(ws) == []
        assert v.hub.get_stats()["subscriptions"] == 1


@pytest.mark.parametrize("bad", ["hello", "[1, 2]", '{"type": "market"}', '{"type": "market", "assets_ids": [1]}',
                                 '{"operation": "explode", "assets_ids": []}', '{"type": "user", "assets_ids": []}'])
async def test_bad_client_frames_get_invalid_operation_and_are_counted(bad):
    async with served() as v, websockets.connect(v.url, compression=None) as ws:
        await ws.send(bad)
        assert await recv(ws) == "INVALID OPERATION"
        await ws.send(b"\x00binary")
        await until_pong(ws)
    assert v.hub.counters["invalid_operations"] == 1 and v.hub.counters["binary_frames_ignored"] == 1


async def test_a_client_frame_above_the_limit_closes_only_that_connection():
    async with served() as v, websockets.connect(v.url, compression=None) as ok:
        await ok.send(initial([YES]))
        await recv(ok)
        async with websockets.connect(v.url, compression=None, max_size=None) as big:
            await big.send("x" * (MAX_CLIENT_FRAME + 1))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(big)
            assert closed.value.rcvd.code == 1009
        assert await until_pong(ok) == []
        await eventually(lambda: v.hub.counters["client_errors"] == 1, timeout=5)


async def test_events_reach_only_subscribers_of_their_assets_encoded_once(monkeypatch):
    encodes = []
    real = market_ws.encode
    monkeypatch.setattr(market_ws, "encode", lambda e: encodes.append(e) or real(e))
    async with served() as v, websockets.connect(v.url, compression=None) as a, \
            websockets.connect(v.url, compression=None) as b, websockets.connect(v.url, compression=None) as c:
        for ws, ids in ((a, [YES]), (b, [NO]), (c, CUP)):
            await ws.send(initial(ids))
            await recv(ws)

        (event,) = v.state.apply([(YES, BUY, 100_000, 3 * ONE), (NO, BUY, 100_000, 2 * ONE)])

        frames = [await until_pong(ws) for ws in (a, b, c)]
    assert frames[0] == frames[1] == [event.to_wire()]  # the whole market event, to each
    assert frames[2] == []
    assert len(encodes) == 1


async def test_a_trade_sends_price_change_last_trade_price_and_book():
    async with served() as v, websockets.connect(v.url, compression=None) as ws:
        await ws.send(initial([YES]))
        await recv(ws)
        ask = v.state.book(YES).best_ask()

        v.state.execute_taker(YES, BUY, ask, 10 * ONE, all_or_none=True)

        got = await until_pong(ws)
        assert [m["event_type"] for m in got] == ["price_change", "last_trade_price", "book"]
        assert got[1]["size"] == "10" and got[2] == v.state.book(YES).to_wire()


async def test_a_slow_client_is_disconnected_without_slowing_the_others():
    async with served(max_queue_frames=5) as v, websockets.connect(v.url, compression=None) as slow, \
            websockets.connect(v.url, compression=None) as fine:
        await slow.send(initial([YES]))
        await recv(slow)
        await fine.send(initial([CUP[0]]))
        await recv(fine)

        for k in range(20):  # no await in between: the writer cannot drain
            v.state.apply([(YES, BUY, 100_000, (k + 1) * ONE)])

        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await recv(slow)
        assert closed.value.rcvd.code == 1013
        assert await until_pong(fine) == []
    assert v.hub.counters["slow_disconnects"] == 1


async def test_a_stall_keeps_pong_but_stops_data_and_a_new_connection_is_healthy():
    async with served() as v, websockets.connect(v.url, compression=None) as old:
        await old.send(initial([YES]))
        await recv(old)

        v.hub.set_stall(*v.faults.configure(VenueFaults(stall=True)))
        v.state.apply([(YES, BUY, 100_000, ONE)])

        assert await until_pong(old) == []
        async with websockets.connect(v.url, compression=None) as new:
            await new.send(initial([YES]))
            assert (await recv(new))[0]["asset_id"] == YES
            v.state.apply([(YES, BUY, 100_000, 2 * ONE)])
            assert len(await until_pong(new)) == 1
        assert await until_pong(old) == []
        assert v.hub.get_stats()["stalled_connections"] == 1

        v.hub.set_stall(*v.faults.configure(VenueFaults(stall=False)))
        v.state.apply([(YES, BUY, 100_000, 3 * ONE)])
        assert len(await until_pong(old)) == 1
    assert v.faults.counters["stalls_started"] == 1


async def test_disconnect_every_n_seconds_closes_the_connection():
    async with served(disconnect_every_seconds=1.0) as v, websockets.connect(v.url, compression=None) as ws:
        await ws.send(initial([YES]))
        await recv(ws)
        v.hub.housekeeping(v.clock.monotonic_ns())
        assert await until_pong(ws) == []  # not yet

        v.clock.advance(1.0)
        v.hub.housekeeping(v.clock.monotonic_ns())

        with pytest.raises(websockets.ConnectionClosed):
            await until_pong(ws)
    assert v.faults.counters["disconnects"] == 1


async def test_faults_apply_per_connection_on_the_wire():
    async with served(duplicate_rate=1.0) as v, websockets.connect(v.url, compression=None) as ws:
        await ws.send(initial([YES]))
        await recv(ws)

        (event,) = v.state.apply([(YES, BUY, 100_000, ONE)])

        assert await until_pong(ws) == [event.to_wire()] * 2


@pytest.mark.parametrize(("offer", "negotiated"), [("deflate", True), (None, False)])
async def test_compression_only_when_the_client_asks(offer, negotiated):
    async with served() as v, websockets.connect(v.url, compression=offer) as ws:
        assert ("permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")) is negotiated
        await ws.send(initial([YES]))
        assert (await recv(ws))[0]["asset_id"] == YES


async def test_rest_book_matches_the_channel_snapshot():
    async with served() as v, websockets.connect(v.url, compression=None) as ws:
        await ws.send(initial([YES]))
        snap = (await recv(ws))[0]
    body = msgspec.json.decode(msgspec.json.encode(v.state.book(YES).to_rest()))
    assert {k: snap[k] for k in body} == body


async def test_market_resolved_reaches_only_custom_feature_subscribers():
    async with served() as v, websockets.connect(v.url, compression=None) as plain, \
            websockets.connect(v.url, compression=None) as custom:
        await plain.send(initial([YES]))
        await custom.send(json.dumps({"type": "market", "assets_ids": [NO], "custom_feature_enabled": True}))
        await recv(plain)
        await recv(custom)

        v.state.resolve(BTC, YES)

        got = await until_pong(custom)
        assert await until_pong(plain) == []
    assert [(f["event_type"], f["winning_asset_id"], f["winning_outcome"]) for f in got] == [
        ("market_resolved", YES, "Yes")]
