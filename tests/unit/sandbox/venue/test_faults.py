"""The fault injector: each knob produces its fault and counts it; seeded."""

import asyncio

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from actors.runtime.clock import TestClock
from config.schema import VenueFaults
from sandbox.venue.events import BOOK, PRICE_CHANGE, Frame
from sandbox.venue.faults import HUGE, MALFORMED
from tests.helpers import eventually
from tests.unit.sandbox.venue.factories import make_faults

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def frame(ts: int, assets=("a",), kind=PRICE_CHANGE) -> Frame:
    data = msgspec.json.encode({"event_type": kind, "market": "0xm", "timestamp": str(ts), "price_changes": []})
    return Frame(kind, frozenset(assets), ts, "0xm", data)


def test_no_knob_means_frames_pass_untouched_and_no_random_draw():
    inj = make_faults()
    state = inj.rng.getstate()
    f = frame(1)

    assert inj.connection().shape(f, 0) == [(PRICE_CHANGE, f.data)]
    assert inj.rng.getstate() == state
    assert not any(v for k, v in inj.get_stats().items() if isinstance(v, int))


def test_duplicates_are_sent_twice_and_counted():
    inj = make_faults(duplicate_rate=1.0)
    f = frame(1)

    assert inj.connection().shape(f, 0) == [(PRICE_CHANGE, f.data)] * 2
    assert inj.counters["duplicates"] == 1


def test_dropped_price_changes_are_not_sent_but_books_are():
    inj = make_faults(drop_price_change_rate=1.0)
    conn = inj.connection()

    assert conn.shape(frame(1), 0) == []
    assert conn.shape(frame(2, kind=BOOK), 0) == [(BOOK, frame(2, kind=BOOK).data)]
    assert inj.counters["dropped_price_changes"] == 1


def test_a_reordered_frame_arrives_after_a_newer_one_of_the_same_token():
    inj = make_faults(reorder_rate=1.0)
    conn = inj.connection()
    old, other, newer = frame(100, ("a", "b")), frame(101, ("c",)), frame(102, ("b",))

    assert conn.shape(old, 0) == []  # held
    assert conn.shape(other, 0) == [(PRICE_CHANGE, other.data)]  # another token: passes
    assert conn.shape(newer, 0) == [(PRICE_CHANGE, newer.data), (PRICE_CHANGE, old.data)]
    assert inj.counters["reordered"] == 1


def test_a_same_millisecond_successor_releases_the_held_frame_in_order():
    # Within one millisecond no client can see an order: swapping them would be
    # an undetectable corruption of the book, not a fault a feed can handle.
    inj = make_faults(reorder_rate=1.0)
    conn = inj.connection()
    old, same_ms = frame(100, ("a", "b")), frame(100, ("a",))

    assert conn.shape(old, 0) == []
    assert conn.shape(same_ms, 0) == [(PRICE_CHANGE, old.data), (PRICE_CHANGE, same_ms.data)]
    assert inj.counters["reordered"] == 0


def test_a_held_frame_with_no_successor_is_released_in_order_after_a_second():
    inj = make_faults(reorder_rate=1.0)
    conn = inj.connection()
    conn.shape(frame(100), 0)

    assert conn.release_held(999_000_000) is None
    assert conn.release_held(1_000_000_000).timestamp_ms == 100
    assert inj.counters["reordered"] == 0


def test_malformed_frames_of_every_kind_are_inserted_and_counted():
    inj = make_faults(malformed_rate=1.0)
    conn = inj.connection()
    bad = []
    for ts in range(60):
        out = conn.shape(frame(ts), 0)
        assert out[-1][0] == PRICE_CHANGE and out[0][0] == MALFORMED
        bad.append(out[0][1])

    c = inj.counters
    assert c["malformed_broken_json"] + c["malformed_unknown_event"] + c["malformed_missing_fields"] == 60
    assert min(c["malformed_broken_json"], c["malformed_unknown_event"], c["malformed_missing_fields"]) > 5
    decoded = []
    for data in bad:
        try:
            decoded.append(msgspec.json.decode(data))
        except msgspec.DecodeError:
            decoded.append("broken")
    assert decoded.count("broken") == c["malformed_broken_json"]
    assert sum(1 for d in decoded if d != "broken" and d["event_type"] == "mystery") == c["malformed_unknown_event"]
    assert sum(1 for d in decoded if d != "broken" and d["event_type"] == "price_change"
               and "price_changes" not in d) == c["malformed_missing_fields"]


def test_huge_frames_have_the_configured_size_and_are_valid_json():
    inj = make_faults(huge_frame_rate=1.0, huge_frame_bytes=100_000)

    out = inj.connection().shape(frame(1), 0)

    kind, data = out[0]
    assert kind == HUGE and len(data) == 100_000
    assert msgspec.json.decode(data)["event_type"] == "padding"
    assert inj.counters["huge_frames"] == 1


def test_stall_silences_a_connection_and_is_counted_once():
    inj = make_faults()
    started, ended = inj.configure(VenueFaults(stall=True))
    conn = inj.connection()
    conn.stall()
    conn.stall()

    assert (started, ended) == (True, False)
    assert conn.shape(frame(1), 0) == []
    assert inj.counters["stalls_started"] == 1
    assert inj.configure(VenueFaults(stall=False)) == (False, True)


def test_disconnect_is_due_after_the_configured_seconds():
    inj = make_faults(disconnect_every_seconds=2.5)

    assert not inj.disconnect_due(0, 2_499_999_999)
    assert inj.disconnect_due(0, 2_500_000_000)
    inj.configure(VenueFaults())
    assert not inj.disconnect_due(0, 10**12)


def test_the_same_seed_injects_the_same_faults():
    knobs = {"duplicate_rate": 0.3, "reorder_rate": 0.2, "drop_price_change_rate": 0.1, "malformed_rate": 0.1}
    runs = []
    for _ in range(2):
        inj = make_faults(seed=5, **knobs)
        conn = inj.connection()
        runs.append([conn.shape(frame(ts, (str(ts % 3),)), 0) for ts in range(300)])
        runs[-1].append(dict(inj.counters))
    assert runs[0] == runs[1]
    assert all(runs[0][-1][k] > 0 for k in ("duplicates", "reordered", "dropped_price_changes"))


# ---------------------------------------------------------------- HTTP


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def http_app(inj) -> web.Application:
    app = web.Application(middlewares=[inj.middleware()])
    app.router.add_get("/markets", ok)
    app.router.add_get("/book", ok)
    app.router.add_get("/sandbox/status", ok)
    return app


async def test_http_429_carries_retry_after_and_book_is_exempt():
    inj = make_faults(http_429_rate=1.0, retry_after_seconds=3)
    async with TestClient(TestServer(http_app(inj))) as client:
        r = await client.get("/markets")
        assert r.status == 429 and r.headers["Retry-After"] == "3"
        assert (await client.get("/book")).status == 200
        assert (await client.get("/sandbox/status")).status == 200
    assert inj.counters["http_429"] == 1


async def test_http_5xx_come_in_bursts_that_run_to_their_end():
    inj = make_faults(http_5xx_rate=1.0, http_5xx_burst=3)
    async with TestClient(TestServer(http_app(inj))) as client:
        first = await client.get("/markets")
        inj.configure(VenueFaults(http_5xx_rate=1e-9, http_5xx_burst=3))  # (almost) no new bursts...
        statuses = [first.status] + [(await client.get("/markets")).status for _ in range(3)]
        assert all(s >= 500 for s in statuses[:3]) and statuses[3] == 200  # ...but this one runs to its end
        assert inj.counters["http_5xx"] == 3

        inj.configure(VenueFaults(http_5xx_rate=1.0, http_5xx_burst=3))
        assert (await client.get("/markets")).status >= 500  # a new burst: 2 more to come...
        inj.configure(VenueFaults())  # ...but 5xx turned off cancels the rest
        assert (await client.get("/markets")).status == 200


async def test_slow_responses_wait_on_the_injected_clock():
    clock = TestClock()
    inj = make_faults(clock=clock, slow_response_rate=1.0, slow_response_ms=300)
    async with TestClient(TestServer(http_app(inj))) as client:
        pending = asyncio.ensure_future(client.get("/markets"))
        await eventually(lambda: clock.sleepers == 1, timeout=5)
        assert not pending.done()
        clock.advance(0.3)
        assert (await asyncio.wait_for(pending, 5)).status == 200
    assert inj.counters["slow_responses"] == 1
