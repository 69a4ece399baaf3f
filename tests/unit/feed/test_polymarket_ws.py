import asyncio
import json
import random

import pytest

from actors.feed.core import FeedCore
from actors.feed.polymarket_ws import PolymarketWSClient, WSOptions
from actors.runtime.clock import TestClock
from tests.helpers import eventually
from tests.unit.feed.fake_ws import FakeServer

pytestmark = pytest.mark.unit

M = "0xmarket"


def book(asset: str, ts: int, bid: str = "0.40", ask: str = "0.45") -> dict:
    return {"event_type": "book", "asset_id": asset, "market": M, "timestamp": str(ts), "hash": f"h{ts}",
            "bids": [{"price": bid, "size": "10"}], "asks": [{"price": ask, "size": "10"}]}


@pytest.fixture
async def world():
    clock, server, core = TestClock(), FakeServer(), FeedCore()
    changes: list[set[str]] = []
    client = PolymarketWSClient(
        "ws://venue/ws/market", core, clock, on_change=changes.append, connect=server.connect,
        options=WSOptions(max_assets_per_connection=3, ping_interval=10, pong_timeout=30, data_timeout=20,
                          reconnect_base=0.5, reconnect_max=4, resubscribe_after=1.0),
        rng=random.Random(1),
    )
    yield client, server, clock, core, changes
    await client.stop()


async def advance(clock: TestClock, seconds: float, step: float = 0.25) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)
        for _ in range(5):
            await asyncio.sleep(0)


async def test_assets_are_spread_over_connections_and_the_initial_frame_is_sent(world):
    client, server, clock, core, _ = world
    client.set_assets({f"a{i}": M for i in range(7)})
    await client.start()
    await eventually(lambda: len(server.connections) == 3 and all(ws.frames() for ws in server.connections))
    initial = [ws.frames()[0] for ws in server.connections]
    assert all(f["type"] == "market" and f["custom_feature_enabled"] is False for f in initial)
    assert sorted(len(f["assets_ids"]) for f in initial) == [1, 3, 3]
    assert sorted(a for f in initial for a in f["assets_ids"]) == [f"a{i}" for i in range(7)]


async def test_runtime_subscribe_and_unsubscribe_use_operations_without_reconnecting(world):
    client, server, clock, core, _ = world
    client.set_assets({"a": M, "b": M})
    await client.start()
    await eventually(lambda: server.connections and server.connections[0].frames())
    client.set_assets({"a": M, "c": M})
    ws = server.connections[0]
    await eventually(lambda: len(ws.frames()) == 3)
    assert ws.frames()[1:] == [
        {"operation": "unsubscribe", "assets_ids": ["b"], "custom_feature_enabled": False},
        {"operation": "subscribe", "assets_ids": ["c"], "custom_feature_enabled": False},
    ]
    assert len(server.connections) == 1 and "b" not in core.tokens


async def test_no_pong_kills_the_connection_and_books_are_rebuilt_after_reconnect(world):
    client, server, clock, core, changes = world
    client.options = WSOptions(ping_interval=10, pong_timeout=30, data_timeout=100, reconnect_base=0.5)
    client.set_assets({"a": M})
    await client.start()
    await eventually(lambda: server.connections)
    first = server.connections[0]
    first.push([book("a", 1)])
    await eventually(lambda: core.tokens["a"].valid)
    server.pong = False

    await advance(clock, 35)

    await eventually(lambda: len(server.connections) == 2)
    assert first.closed and client.heartbeat_timeouts == 1
    assert not core.tokens["a"].valid and "disconnected" in core.tokens["a"].reason
    second = server.connections[1]
    await eventually(lambda: second.frames())
    assert second.frames()[0]["assets_ids"] == ["a"]  # subscription re-sent
    second.push([book("a", 2)])
    await eventually(lambda: core.tokens["a"].valid)
    assert client.get_stats()["disconnect_count"] == 1 and client.get_stats()["connect_count"] == 2


async def test_silent_stall_with_pongs_triggers_a_reconnect(world):
    client, server, clock, core, _ = world
    client.set_assets({"a": M})
    await client.start()
    await eventually(lambda: server.connections)
    server.connections[0].push([book("a", 1)])
    await eventually(lambda: core.tokens["a"].valid)

    await advance(clock, 25)  # PONGs keep coming, data does not

    await eventually(lambda: len(server.connections) == 2)
    assert client.stall_reconnects == 1 and client.heartbeat_timeouts == 0
    assert "silent stall" in client.get_stats()["per_connection"][0]["last_reason"]


async def test_reconnect_backs_off_with_jitter_while_refused(world):
    client, server, clock, core, _ = world
    server.refuse = 3
    client.set_assets({"a": M})
    await client.start()
    await advance(clock, 20)
    await eventually(lambda: len(server.connections) == 1)
    assert client.connections[0].connect_count == 1


async def test_invalid_book_is_re_requested_with_unsubscribe_then_subscribe(world):
    client, server, clock, core, _ = world
    client.set_assets({"a": M})
    await client.start()
    await eventually(lambda: server.connections)
    ws = server.connections[0]
    ws.push([book("a", 1)])
    ws.push({"event_type": "tick_size_change", "asset_id": "a", "market": M, "old_tick_size": "0.01",
             "new_tick_size": "0.001", "timestamp": "2"})
    await eventually(lambda: not core.tokens["a"].valid)
    await advance(clock, 1.5)
    await eventually(lambda: len(ws.frames()) >= 3)
    assert [f.get("operation") for f in ws.frames()[1:3]] == ["unsubscribe", "subscribe"]
    ws.push([book("a", 3)])
    await eventually(lambda: core.tokens["a"].valid)


async def test_text_frames_never_reach_the_json_parser(world):
    client, server, clock, core, _ = world
    client.set_assets({"a": M})
    await client.start()
    await eventually(lambda: server.connections)
    ws = server.connections[0]
    for t in ("INVALID OPERATION", "NO NEW ASSETS", "PONG"):
        ws.push(t)
    ws.push(json.dumps([book("a", 1)]))
    await eventually(lambda: core.tokens["a"].valid)
    s = core.get_stats()
    assert s["malformed"] == 0 and s["text_frames"] == {"INVALID OPERATION": 1, "NO NEW ASSETS": 1}


async def test_a_reloaded_data_timeout_applies_to_the_open_connection(world):
    client, server, clock, core, _ = world  # data_timeout 20 s at connect time
    client.set_assets({"a": M})
    await client.start()
    await eventually(lambda: server.connections)
    server.connections[0].push([book("a", 1)])
    await eventually(lambda: core.tokens["a"].valid)

    client.options = WSOptions(max_assets_per_connection=3, ping_interval=10, pong_timeout=30, data_timeout=2,
                               reconnect_base=0.5, reconnect_max=4, resubscribe_after=1.0)
    await advance(clock, 6)  # 2 s to notice the silence, then the reconnect's backoff

    await eventually(lambda: len(server.connections) == 2)
    assert client.stall_reconnects == 1


async def test_a_new_asset_is_not_re_requested_before_resubscribe_after(world):
    client, server, clock, core, _ = world  # resubscribe_after 1 s
    client.set_assets({"a": M})
    await client.start()
    await eventually(lambda: server.connections and server.connections[0].frames())
    ws = server.connections[0]

    await advance(clock, 0.75)  # the snapshot is late, but not that late
    assert [f.get("operation") for f in ws.frames()] == [None] and client.resubscribes == 0

    await advance(clock, 1.0)
    await eventually(lambda: len(ws.frames()) == 3)
    assert [f.get("operation") for f in ws.frames()[1:]] == ["unsubscribe", "subscribe"]


async def test_unsubscribed_assets_are_reported_as_changed(world):
    client, server, clock, core, changes = world
    client.set_assets({"a": M, "b": M})
    changes.clear()
    client.set_assets({"a": M})
    assert changes == [{"b"}] and "b" not in core.tokens
