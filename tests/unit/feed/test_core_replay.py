"""Replay hand-written market-channel frames (tests/resources/polymarket) through
the feed core and check the books and counters exactly."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.feed.core import FeedCore

pytestmark = pytest.mark.unit

RES = Path(__file__).resolve().parents[2] / "resources" / "polymarket"
IDS = json.loads((RES / "session_ids.json").read_text())
YES, NO, M = IDS["yes"], IDS["no"], IDS["market"]


def replay(core: FeedCore, lines: list[str]) -> None:
    for i, line in enumerate(lines):
        if line[:1] in "[{":
            core.on_frame(line, recv_ns=i)
        else:
            core.on_text_frame(line)


@pytest.fixture
def core():
    c = FeedCore(dedup_size=100)
    c.track(YES, M)
    c.track(NO, M)
    replay(c, (RES / "session.txt").read_text().splitlines())
    return c


def test_books_are_exact_after_the_session(core):
    yes = core.tokens[YES]
    assert yes.valid
    # 0.52 ask: 7 at ts 300 beats the reordered 99 at ts 200; the older 0.47 bid is new info, applied.
    assert yes.book.depth(10) == (
        [(510000, 5_000000), (500000, 10_500000), (490000, 20_000000), (480000, 30_000000), (470000, 3_000000)],
        [(520000, 7_000000), (530000, 25_000000), (540000, 40_000000)],
    )
    assert (yes.book.best_bid(), yes.book.best_ask()) == (510000, 520000)
    assert yes.book.tick_size == 10_000
    no = core.tokens[NO]
    assert no.valid and no.book.tick_size == 1_000
    assert no.book.depth(10) == ([(471000, 6_000000), (469000, 4_000000)], [(509000, 2_000000)])


def test_counters_are_exact(core):
    s = core.get_stats()
    assert s["frames"] == 12
    assert s["messages"] == 12  # 2 in the array + 10 single; broken JSON is no message
    assert s["duplicates"] == 1
    assert s["out_of_order"] == 1  # the ts-200 message (two entries) arrived after ts 300: one message
    assert s["stale_levels"] == 1
    assert s["unknown_events"] == 1
    assert s["unknown_fields"] == 1
    assert s["malformed"] == 2 and s["malformed_kinds"] == {"broken_json": 1, "missing_field": 1}
    assert s["sequence_gaps"] == 1  # the tick-size change
    assert s["snapshots"] == 3 and s["trades"] == 1 and s["tick_size_changes"] == 1
    assert s["text_frames"] == {"PONG": 1, "NO NEW ASSETS": 1, "INVALID OPERATION": 1}
    assert core.dedup.get_stats() == {"size": 9, "max_size": 100, "hits": 1, "misses": 9, "hit_rate": 0.1}


def test_best_prices_come_from_levels_not_list_position():
    c = FeedCore()
    c.track(YES, M)
    c.on_frame(json.dumps({"event_type": "book", "asset_id": YES, "market": M, "timestamp": "1", "hash": "x",
                           "bids": [{"price": "0.01", "size": "1"}, {"price": "0.40", "size": "1"}],
                           "asks": [{"price": "0.99", "size": "1"}, {"price": "0.45", "size": "1"}]}), 0)
    book = c.tokens[YES].book
    assert (book.best_bid(), book.best_ask()) == (400000, 450000)


def test_a_lost_update_is_detected_from_the_venues_best_prices():
    c = FeedCore()
    c.track(YES, M)
    c.on_frame(json.dumps({"event_type": "book", "asset_id": YES, "market": M, "timestamp": "1", "hash": "x",
                           "bids": [{"price": "0.40", "size": "1"}], "asks": [{"price": "0.45", "size": "1"}]}), 0)
    # The venue moved its best bid to 0.42 in a change we never got; this one says so.
    changed = c.on_frame(json.dumps({"event_type": "price_change", "market": M, "timestamp": "3", "price_changes": [
        {"asset_id": YES, "price": "0.41", "size": "2", "side": "BUY", "hash": "y",
         "best_bid": "0.42", "best_ask": "0.45"}]}), 1)
    assert changed == {YES}
    st = c.tokens[YES]
    assert not st.valid and "lost" in st.reason
    assert c.get_stats()["sequence_gaps"] == 1 and c.get_stats()["best_mismatch"] == 1
    assert c.stale_invalid(now_ns=10**9 + 1, after_ns=10**9) == [YES]


def test_crossed_book_is_invalidated_only_if_it_persists():
    c = FeedCore(crossed_grace_ms=500)
    c.track(YES, M)
    c.on_frame(json.dumps({"event_type": "book", "asset_id": YES, "market": M, "timestamp": "1", "hash": "x",
                           "bids": [{"price": "0.46", "size": "1"}], "asks": [{"price": "0.45", "size": "1"}]}), 0)
    assert c.check(now_ns=400_000_000) == set() and c.tokens[YES].valid
    assert c.check(now_ns=600_000_000) == {YES} and not c.tokens[YES].valid


def test_price_change_before_any_snapshot_is_not_applied():
    c = FeedCore()
    c.track(YES, M)
    c.on_frame(json.dumps({"event_type": "price_change", "market": M, "timestamp": "3", "price_changes": [
        {"asset_id": YES, "price": "0.41", "size": "2", "side": "BUY", "hash": "y"}]}), 1)
    assert not c.tokens[YES].valid and c.tokens[YES].book.bids == {}
    assert c.get_stats()["no_snapshot"] == 1


@pytest.mark.parametrize("text", ["[1, 2]", "\"str\"", "{\"event_type\": \"book\"}", "[{\"no_type\": 1}]",
                                  json.dumps({"event_type": "book", "asset_id": "1", "market": "m", "timestamp": "1",
                                              "bids": [{"price": "0.1234567", "size": "1"}], "asks": []}),
                                  json.dumps({"event_type": "price_change", "market": "m", "timestamp": "x",
                                              "price_changes": []})])
def test_hostile_frames_are_counted_never_raised(text):
    c = FeedCore()
    c.track("1", "m")
    assert c.on_frame(text, 0) == set()
    assert c.get_stats()["malformed"] == 1


def _snapshot(ts: int, bid: str = "0.40", ask: str = "0.45") -> str:
    return json.dumps({"event_type": "book", "asset_id": YES, "market": M, "timestamp": str(ts), "hash": f"h{ts}",
                       "bids": [{"price": bid, "size": "1"}], "asks": [{"price": ask, "size": "1"}]})


def _change(ts: int, price: str, size: str, side: str, best_bid: str, best_ask: str) -> str:
    return json.dumps({"event_type": "price_change", "market": M, "timestamp": str(ts), "price_changes": [
        {"asset_id": YES, "price": price, "size": size, "side": side, "hash": f"p{ts}",
         "best_bid": best_bid, "best_ask": best_ask}]})


def test_a_late_message_is_counted_once_even_after_the_newer_one_invalidated_the_book():
    # The venue added a 0.41 bid (ts 2), then resized the 0.45 ask (ts 3); the network
    # delivered ts 3 first. Its best bid (0.41) disagrees with ours (0.40): the book is
    # invalidated. The late ts-2 message must still be counted out of order, once.
    c = FeedCore()
    c.track(YES, M)
    c.on_frame(_snapshot(1), 0)
    c.on_frame(_change(3, "0.45", "3", "SELL", "0.41", "0.45"), 1)
    assert c.get_stats()["out_of_order"] == 0 and not c.tokens[YES].valid
    c.on_frame(json.dumps({"event_type": "price_change", "market": M, "timestamp": "2", "price_changes": [
        {"asset_id": YES, "price": "0.41", "size": "5", "side": "BUY", "hash": "p2", "best_bid": "0.41",
         "best_ask": "0.45"},
        {"asset_id": YES, "price": "0.39", "size": "2", "side": "BUY", "hash": "p2", "best_bid": "0.41",
         "best_ask": "0.45"}]}), 2)
    s = c.get_stats()
    assert s["out_of_order"] == 1  # one late message, whatever its number of entries
    assert s["best_mismatch"] == 1 and s["sequence_gaps"] == 1


def test_a_message_older_than_a_tick_size_change_is_late():
    c = FeedCore()
    c.track(YES, M)
    c.on_frame(_snapshot(1), 0)
    c.on_frame(json.dumps({"event_type": "tick_size_change", "asset_id": YES, "market": M, "old_tick_size": "0.01",
                           "new_tick_size": "0.001", "timestamp": "5"}), 1)
    c.on_frame(_change(4, "0.39", "2", "BUY", "0.40", "0.45"), 2)  # sent before the tick change, arrived after
    assert c.get_stats()["out_of_order"] == 1
    c.on_frame(_snapshot(6, "0.401", "0.449"), 3)
    c.on_frame(_change(5, "0.39", "2", "BUY", "0.40", "0.45"), 4)  # older than the new epoch's snapshot
    assert c.get_stats()["out_of_order"] == 2 and c.get_stats()["stale_levels"] == 1
    assert c.tokens[YES].valid and c.tokens[YES].book.depth(5) == ([(401000, 1_000000)], [(449000, 1_000000)])


def test_a_level_set_back_within_the_same_millisecond_is_a_repeat_not_a_duplicate():
    # 0.39 bid: 5, then 7, then 5 again, all at ts 5: the third message is byte-identical
    # to the first (same sizes, same book hash), yet it is news.
    c = FeedCore()
    c.track(YES, M)
    c.on_frame(_snapshot(1), 0)
    first = _change(5, "0.39", "5", "BUY", "0.40", "0.45")
    for i, frame in enumerate((first, _change(5, "0.39", "7", "BUY", "0.40", "0.45"), first)):
        c.on_frame(frame, i + 1)
    assert c.tokens[YES].book.bids[390000][0] == 5_000000
    c.on_frame(first, 9)  # delivered twice in a row: that is a duplicate
    s = c.get_stats()
    assert (s["repeats"], s["duplicates"]) == (1, 1) and c.dedup.hits == 2


def test_a_tick_flipping_back_within_the_same_millisecond_is_applied():
    c = FeedCore()
    c.track(YES, M)
    c.on_frame(_snapshot(1), 0)

    def retick(tick: str, bid: str, ask: str) -> None:
        c.on_frame(json.dumps({"event_type": "tick_size_change", "asset_id": YES, "market": M,
                               "old_tick_size": "x", "new_tick_size": tick, "timestamp": "7"}), 1)
        c.on_frame(json.dumps({"event_type": "book", "asset_id": YES, "market": M, "timestamp": "7", "hash": tick,
                               "tick_size": tick, "bids": [{"price": bid, "size": "1"}],
                               "asks": [{"price": ask, "size": "1"}]}), 2)

    retick("0.001", "0.039", "0.041")
    retick("0.01", "0.03", "0.05")
    retick("0.001", "0.039", "0.041")  # identical to the first two frames

    st = c.tokens[YES]
    assert st.valid and st.book.tick_size == 1_000
    assert st.book.depth(5) == ([(39000, 1_000000)], [(41000, 1_000000)])
    # Both repeated frames were applied: the tick change (it changes the tick) and the
    # book (the tick change invalidated the book: a snapshot is always taken then).
    assert c.get_stats()["duplicates"] == 0 and c.get_stats()["repeats"] == 2


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["track", "untrack", "snapshot", "lost", "tick", "cross"]),
                          st.sampled_from(["1", "2", "3"])), max_size=40))
def test_the_valid_book_count_is_kept_exact_without_a_scan(ops):
    # Issue 13: valid_count() scanned every token on each flush (15% of feed CPU at 10,000 tokens).
    c = FeedCore(crossed_grace_ms=0)
    for ts, (op, token) in enumerate(ops, start=1):
        if op == "track":
            c.track(token, M)
        elif op == "untrack":
            c.untrack(token)
        elif op == "snapshot":
            c.on_frame(json.dumps({"event_type": "book", "asset_id": token, "market": M, "timestamp": str(ts),
                                   "hash": f"h{ts}", "bids": [{"price": "0.40", "size": "1"}],
                                   "asks": [{"price": "0.45", "size": "1"}]}), ts)
        elif op == "lost":
            c.invalidate(token, "lost update", ts)
        elif op == "tick":
            c.on_frame(json.dumps({"event_type": "tick_size_change", "asset_id": token, "market": M,
                                   "timestamp": str(ts), "old_tick_size": "0.01", "new_tick_size": "0.001"}), ts)
        else:
            c.on_frame(json.dumps({"event_type": "book", "asset_id": token, "market": M, "timestamp": str(ts),
                                   "hash": f"x{ts}", "bids": [{"price": "0.50", "size": "1"}],
                                   "asks": [{"price": "0.45", "size": "1"}]}), ts)
            c.check(now_ns=ts + 1)
        assert c.valid_count() == sum(s.valid for s in c.tokens.values())


def test_books_and_price_changes_take_the_typed_fast_path_and_anything_else_the_generic_one():
    # Issue 13: the venue's JSON decoded by msgspec straight into typed Structs; a frame
    # the Structs do not describe exactly is read by the generic path, which counts it.
    from actors.feed import wire

    book = _snapshot(1)
    change = _change(2, "0.41", "2", "BUY", "0.41", "0.45")
    assert [type(e).__name__ for e in wire.decode_fast(book)] == ["BookSnapshot"]
    assert [type(e).__name__ for e in wire.decode_fast(f"[{book}, {change}]")] == ["BookSnapshot", "PriceChange"]
    fast, slow = wire.decode_fast(change)[0], wire.parse_event(json.loads(change))[0]
    assert fast == slow and wire.identity(fast) == wire.identity(slow)
    unknown = json.dumps({**json.loads(book), "surprise": 1})
    for frame in (unknown, '{"event_type": "tick_size_change"}', "[1]", "{", change.replace('"BUY"', '"UP"')):
        assert wire.decode_fast(frame) is None
    c = FeedCore()
    c.track(YES, M)
    c.on_frame(unknown, 0)
    assert c.tokens[YES].valid and c.get_stats()["unknown_fields"] == 1  # generic path, counted


def test_every_known_event_takes_the_fast_path_with_the_generic_paths_counts(monkeypatch):
    from actors.feed import wire

    frames = [_snapshot(1), _change(2, "0.41", "2", "BUY", "0.41", "0.45"),
              json.dumps({"event_type": "last_trade_price", "asset_id": YES, "market": M, "price": "0.45",
                          "side": "BUY", "size": "3", "fee_rate_bps": "0", "timestamp": "3"}),
              json.dumps([{"event_type": "best_bid_ask", "asset_id": YES, "market": M, "best_bid": "0.41"},
                          {"event_type": "market_resolved", "market": M, "winning_asset_id": YES}]),
              json.dumps({"event_type": "tick_size_change", "asset_id": YES, "market": M, "old_tick_size": "0.01",
                          "new_tick_size": "0.001", "timestamp": "4"})]
    assert all(wire.decode_fast(f) is not None for f in frames)

    def run():
        c = FeedCore()
        c.track(YES, M)
        for f in frames + frames:  # again: duplicates
            c.on_frame(f, 0)
        return c.get_stats(), c.tokens[YES].book.bids, c.tokens[YES].valid

    fast = run()
    monkeypatch.setattr(wire, "decode_fast", lambda text: None)
    slow = run()
    # Every frame took the fast path; forced off, every one is counted on the generic path.
    assert fast[0].pop("generic_path") == 0 and slow[0].pop("generic_path") == len(frames) * 2
    assert slow == fast
