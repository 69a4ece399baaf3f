"""The user channel's frames: trade statuses heard, waiters woken, bad frames counted."""

import asyncio
import json

import pytest

from actors.executor.user_channel import UserChannel
from actors.runtime.clock import TestClock

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]


async def creds():
    return "key", "secret", "pass"


def trade(tid, status):
    return json.dumps({"event_type": "trade", "type": "TRADE", "id": tid, "status": status})


async def test_a_trade_event_sets_its_status_and_wakes_a_waiter():
    ch = UserChannel("ws://unused", creds, TestClock())
    waiter = asyncio.create_task(ch.wait(60))
    await asyncio.sleep(0)
    ch._on_frame(trade("t1", "mined"))
    await asyncio.wait_for(waiter, 1)  # woken at once, not after 60 s of the test clock
    assert ch.status("t1") == "MINED" and ch.status("t2") is None


async def test_bad_frames_are_counted_never_fatal():
    ch = UserChannel("ws://unused", creds, TestClock())
    for frame in ("PONG", "{not json", "[1, 2]", json.dumps({"event_type": "nope"}),
                  json.dumps({"event_type": "trade", "id": 5}), b'{"event_type": "order", "id": "o"}'):
        ch._on_frame(frame)
    stats = ch.get_stats()
    assert (stats["other_frames"], stats["malformed"], stats["order_events"], stats["trade_events"]) == (1, 5, 1, 0)


async def test_a_list_of_events_in_one_frame_is_read_whole():
    ch = UserChannel("ws://unused", creds, TestClock())
    ch._on_frame("[" + trade("a", "MATCHED") + "," + trade("b", "FAILED") + "]")
    assert (ch.status("a"), ch.status("b")) == ("MATCHED", "FAILED")
