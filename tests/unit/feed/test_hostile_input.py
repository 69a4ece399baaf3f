"""Findings of an attacker run against the feed, one test each: every hostile
message is applied or counted, nothing escapes `FeedCore.on_frame`, and no
wrong book is published as valid."""

import json
import subprocess
import sys

import pytest

from actors.domain.money import MICRO
from actors.feed import wire
from actors.feed.core import FUTURE_TOLERANCE_MS, FeedCore
from bus.messages import BookUpdate
from tests.helpers import eventually
from tests.unit.feed.test_feed_actor import M, book, feed, lister  # noqa: F401 - fixtures

pytestmark = pytest.mark.unit

A, B = "yes-token", "no-token"
NOW_MS = 1_700_000_000_000
NOW_NS = NOW_MS * 1_000_000


def snapshot(ts: object = str(NOW_MS), *, asset: str = A, bid: str = "0.40", ask: str = "0.45", size: str = "10",
             **extra: object) -> str:
    return json.dumps({"event_type": "book", "asset_id": asset, "market": M, "timestamp": ts, "hash": f"h{ts}",
                       "bids": [{"price": bid, "size": size}], "asks": [{"price": ask, "size": "10"}], **extra})


def change(ts: object = str(NOW_MS + 1), *, asset: str = A, price: str = "0.39", size: str = "5", side: object = "BUY",
           hash_: object = "p", best_bid: str = "0.40", best_ask: str = "0.45") -> str:
    return json.dumps({"event_type": "price_change", "market": M, "timestamp": ts, "price_changes": [
        {"asset_id": asset, "price": price, "size": size, "side": side, "hash": hash_,
         "best_bid": best_bid, "best_ask": best_ask}]})


def ready(*assets: str, bound_time: bool = False) -> FeedCore:
    """A core with books valid at NOW (bounding venue times like the actor's, if asked)."""
    c = FeedCore(max_future_ms=FUTURE_TOLERANCE_MS) if bound_time else FeedCore()
    for a in assets or (A,):
        c.track(a, M)
        c.on_frame(snapshot(asset=a, tick_size="0.01"), NOW_NS)
        assert c.tokens[a].valid
    return c


def refused(c: FeedCore, frame: str, *, asset: str = A, recv_ns: int = NOW_NS + 1_000_000) -> dict:
    """Feed a hostile frame: it must not raise, and the book must not be valid with it."""
    c.on_frame(frame, recv_ns)
    assert not c.tokens[asset].valid, "a refused message leaves its book invalid until a snapshot"
    return c.get_stats()


# -- finding 1: numbers int() refuses, and unhashable fields, escaped on_frame


@pytest.mark.parametrize("ts", ["²", "①", "1" * 5000, "\u0661\u0667" + "\u0660" * 11, "-1", 10**30, -5, True])
def test_a_timestamp_of_anything_but_ascii_digits_is_malformed(ts):
    # '²' and '①' pass str.isdigit() but not int(); 5,000 digits pass neither Python's
    # int string limit; int() reads the Arabic-Indic digits as a number: all were trusted.
    c = ready()
    s = refused(c, change(ts))
    assert s["malformed"] == 1 and s["malformed_kinds"] == {"bad_value": 1}
    c2 = FeedCore()
    c2.track(A, M)
    c2.on_frame(snapshot(ts), NOW_NS)
    assert not c2.tokens[A].valid and c2.get_stats()["malformed"] == 1


@pytest.mark.parametrize("field,value", [("hash_", ["x"]), ("hash_", {"a": 1}), ("side", ["BUY"]),
                                         ("side", {"BUY": 1}), ("hash_", 7)])
def test_a_list_or_dict_in_side_or_hash_is_malformed(field, value):
    # A list in `hash` reached the dedup cache's identity key: TypeError (unhashable).
    c = ready()
    s = refused(c, change(**{field: value}))
    assert s["malformed"] == 1


# -- finding 2: deep nesting raised RecursionError (or overflowed the C stack)

DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize("frame", [
    DEEP,
    f'{{"event_type": "surprise", "x": {DEEP}}}',  # the generic path: untyped, as deep as the input
    f'{{"x": {DEEP}, "event_type": "book"}}',  # the fast path skips what precedes the tag
    f'{{"event_type": "best_bid_ask", "x": {DEEP}}}',  # and the fields of events it ignores
    "[" * 100_000,
])
def test_deep_nesting_is_the_decoders_own_error_counted_as_malformed(frame):
    c = ready()
    assert c.on_frame(frame, NOW_NS) == set()
    s = c.get_stats()
    assert s["malformed"] == 1 and c.tokens[A].valid


def test_deep_nesting_cannot_overflow_the_c_stack_with_a_raised_recursion_limit():
    # web3's py_ecc raises the limit to 100,000; at 10**6 a 900,000-deep frame killed
    # the interpreter (SIGSEGV) in msgspec's skip of what precedes a message's tag.
    code = ("import sys; sys.setrecursionlimit(10**6)\n"
            "from actors.feed.core import FeedCore\n"
            "c = FeedCore()\n"
            "n = 900_000\n"
            "for f in ('{\"x\": ' + '[' * n + ']' * n + ', \"event_type\": \"book\"}', '[' * n + ']' * n):\n"
            "    c.on_frame(f, 0)\n"
            "print(c.get_stats()['malformed'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "2"), out.stderr[-2000:]


# -- finding 3: a snapshot stamped in the future pinned its book


def test_a_snapshot_stamped_in_the_future_is_refused_and_cannot_pin_the_book():
    c = ready(bound_time=True)
    s = refused(c, snapshot(str(NOW_MS + 10**10), bid="0.10", ask="0.90"))
    assert s["future_stamped"] == 1
    # The honest snapshot that follows is taken (it was dropped as out of order, and the
    # future levels stayed valid until a reconnect), and so are the changes after it.
    c.on_frame(snapshot(str(NOW_MS + 5), bid="0.41"), NOW_NS + 5_000_000)
    c.on_frame(change(str(NOW_MS + 6), best_bid="0.41"), NOW_NS + 6_000_000)
    st = c.tokens[A]
    assert st.valid and st.book.depth(5) == ([(410000, 10 * MICRO), (390000, 5 * MICRO)], [(450000, 10 * MICRO)])
    assert c.get_stats()["out_of_order"] == 0


@pytest.mark.parametrize("frame", [
    change(str(NOW_MS + 10**10)),
    json.dumps({"event_type": "tick_size_change", "asset_id": A, "market": M, "old_tick_size": "0.01",
                "new_tick_size": "0.001", "timestamp": str(NOW_MS + 10**10)}),
])
def test_every_book_message_stamped_too_far_ahead_of_the_receive_clock_is_refused(frame):
    c = ready(bound_time=True)
    assert refused(c, frame)["future_stamped"] == 1
    assert c.tokens[A].seen_ts == NOW_MS  # it judges the order of nothing
    # Within the tolerance (clocks differ a little) it is applied.
    c.on_frame(snapshot(str(NOW_MS + FUTURE_TOLERANCE_MS), bid="0.41"), NOW_NS)
    assert c.tokens[A].valid


async def test_the_feed_actor_refuses_a_snapshot_from_the_future_and_takes_the_honest_one_after_it(feed):  # noqa: F811
    actor, server, sub, ctx, cfg = feed
    now_ms = actor.rt.clock.time_ns() // 1_000_000
    await eventually(lambda: server.connections)
    server.connections[0].push(book(A, now_ms))
    await eventually(lambda: actor.core.tokens[A].valid)
    server.connections[0].push(book(A, now_ms + 10**10, bid="0.10"))
    server.connections[0].push(book(A, now_ms + 5, bid="0.41"))
    await eventually(lambda: actor.core.get_stats()["snapshots"] + actor.core.counts.get("future_stamped", 0) >= 3)
    st = actor.core.tokens[A]
    assert st.valid and st.book.best_bid() == 410000 and st.book.last_ts == now_ms + 5


# -- finding 4: sizes beyond msgpack, prices outside (0, 1) and off the tick reached the bus


@pytest.mark.parametrize("frame", [
    snapshot(size="1" + "0" * 20),  # 10**26 micro-shares: msgpack cannot encode it
    snapshot(size=str(wire.MAX_SIZE // MICRO)),
    snapshot(bid="1.5"), snapshot(ask="1"), snapshot(bid="0"), snapshot(ask="0.000000"),
    snapshot(bid="0.405"),  # off the 0.01 tick
    snapshot(bid="0.405", tick_size="0.01"),
    snapshot(bid="0.\u0664\u0660"),
    change(size="1" + "0" * 20), change(price="1.5"), change(price="0"), change(price="1"),
    change(price="0.395"),  # off the book's tick
    json.dumps({"event_type": "tick_size_change", "asset_id": A, "market": M, "old_tick_size": "0.01",
                "new_tick_size": "0", "timestamp": str(NOW_MS + 1)}),
])
def test_sizes_beyond_the_bound_and_prices_outside_the_range_or_off_the_tick_never_make_a_valid_book(frame):
    c = ready()
    s = refused(c, frame)
    assert s["malformed"] + s["off_tick"] == 1
    book = c.tokens[A].book
    assert all(0 < p < MICRO and p % 10_000 == 0 and s < wire.MAX_SIZE
               for side in (book.bids, book.asks) for p, (s, _) in side.items())


def test_a_refused_message_only_invalidates_the_books_it_names():
    c = ready(A, B)
    c.on_frame(change(price="0.395", asset=B), NOW_NS + 1)
    assert c.tokens[A].valid and not c.tokens[B].valid
    assert c.get_stats()["off_tick"] == 1


async def _books(sub, n: int) -> dict[str, BookUpdate]:
    got: dict[str, BookUpdate] = {}
    while len(got) < n:
        got.update({r.env.body.token_id: r.env.body for r in await sub.recv_batch()})
    return got


async def test_one_book_that_cannot_be_published_never_loses_the_others_of_its_flush(feed):  # noqa: F811
    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections)
    server.connections[0].push([book(A, 1), book(B, 1)])
    await _books(sub, 2)
    # A size no bus message can carry (msgpack stops at 2**64): whatever put it in the
    # book, the flush goes on with the other books and says this one is not to be trusted.
    actor.core.tokens[A].book.bids[400000] = (2**70, 1)
    actor._mark({A, B})
    actor._flush()
    got = await _books(sub, 2)
    assert actor.publish_errors == 1
    assert got[B].valid and not got[A].valid and got[A].bids == [] and "publish" in got[A].reason
    assert not actor.core.tokens[A].valid  # re-requested like any invalid book


async def test_a_published_book_names_the_listings_market_not_the_wires(feed):  # noqa: F811
    actor, server, sub, ctx, cfg = feed
    await eventually(lambda: server.connections)
    server.connections[0].push({**book(A, 1), "market": "x" * 2_000_000})  # beyond the bus's message limit
    got = await _books(sub, 1)
    assert got[A].valid and got[A].market == M


def test_the_dedup_cache_does_not_keep_hostile_strings_alive():
    # An identity holds its message's strings: 10,000 remembered identities of
    # megabyte markets and hashes held gigabytes.
    import tracemalloc

    c = ready()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            c.on_frame(json.dumps({"event_type": "price_change", "market": f"{i}" + "m" * 500_000,
                                   "timestamp": str(NOW_MS + i), "price_changes": [
                                       {"asset_id": A, "price": "0.39", "size": str(i + 1), "side": "BUY",
                                        "hash": f"{i}" + "h" * 500_000}]}), NOW_NS)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert c.get_stats()["price_changes"] == 20 and held < 3_000_000, held
