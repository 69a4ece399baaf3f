"""VenueState: mirrored binary books, taker executions (COMPLEMENTARY / MINT /
MERGE), reverts, and the exact frames they produce."""

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain.money import ONE
from sandbox.venue.book import BUY, SELL
from sandbox.venue.events import BookSnapshot, LastTradePrice, PriceChange, TickSizeChange, encode
from sandbox.venue.state import COMPLEMENTARY, MERGE, MINT, InvalidOrder, UnknownToken
from tests.unit.sandbox.venue.factories import make_state

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

S = ONE
YES, NO = "btc-0", "btc-1"
CID = f"0x{1:064x}"


def seeded():
    """YES bids 0.61/0.60, asks 0.63/0.64; the NO book is its mirror: bids 0.37/0.36, asks 0.39/0.40."""
    state, events = make_state()
    state.replace_book(YES, {600_000: 100 * S, 610_000: 100 * S}, {630_000: 100 * S, 640_000: 100 * S}, emit=False)
    return state, events


def test_the_no_book_is_the_mirror_of_the_yes_book():
    state, _ = seeded()

    assert state.book(NO).levels(BUY) == [(370_000, 100 * S), (360_000, 100 * S)]
    assert state.book(NO).levels(SELL) == [(390_000, 100 * S), (400_000, 100 * S)]
    state.apply([(NO, BUY, 380_000, 5 * S)])  # a NO bid at 0.38 is a YES ask at 0.62
    assert state.book(YES).best_ask() == 620_000 and state.book(YES).size_at(SELL, 620_000) == 5 * S


def wire(event):
    return msgspec.json.decode(encode(event).data)


def test_a_fill_sends_price_change_last_trade_and_book_in_that_order():
    state, events = seeded()
    state.clock.advance(1.5)
    ts = str(state.clock.time_ns() // 1_000_000)

    ex = state.execute_taker(YES, BUY, 640_000, 150 * S, all_or_none=True)

    assert [type(e) for e in events] == [PriceChange, LastTradePrice, BookSnapshot, BookSnapshot]
    book, no = state.book(YES), state.book(NO)
    assert wire(events[0]) == {
        "market": CID,
        "price_changes": [
            {"asset_id": YES, "price": "0.63", "size": "0", "side": "SELL", "hash": book.hash(),
             "best_bid": "0.61", "best_ask": "0.64"},
            {"asset_id": NO, "price": "0.37", "size": "0", "side": "BUY", "hash": no.hash(),
             "best_bid": "0.36", "best_ask": "0.39"},
            {"asset_id": YES, "price": "0.64", "size": "50", "side": "SELL", "hash": book.hash(),
             "best_bid": "0.61", "best_ask": "0.64"},
            {"asset_id": NO, "price": "0.36", "size": "50", "side": "BUY", "hash": no.hash(),
             "best_bid": "0.36", "best_ask": "0.39"},
        ],
        "timestamp": ts,
        "event_type": "price_change",
    }
    assert wire(events[1]) == {"asset_id": YES, "event_type": "last_trade_price", "fee_rate_bps": "200",
                               "market": CID, "price": "0.64", "side": "BUY", "size": "150", "timestamp": ts}
    snap = wire(events[2])
    assert snap["event_type"] == "book" and snap["asks"] == [{"price": "0.64", "size": "50"}]
    assert snap["last_trade_price"] == "0.64" and snap["timestamp"] == ts and snap["hash"] == book.hash()
    assert ex.fills == ((630_000, 100 * S), (640_000, 50 * S))
    assert ex.changes == ((SELL, 630_000, 0), (SELL, 640_000, 50 * S))
    assert ex.filled == 150 * S and ex.complete and ex.match_type == COMPLEMENTARY
    assert ex.cost == 63_000_000 + 32_000_000  # 95 USDC in 1e-6 units
    assert wire(events[3])["asset_id"] == NO and wire(events[3])["bids"] == [{"price": "0.36", "size": "50"}]


def test_a_buy_of_no_mints_against_a_yes_bid_and_a_sell_of_no_merges_against_a_yes_ask():
    state, _ = seeded()

    mint = state.execute_taker(NO, BUY, 390_000, 10 * S, all_or_none=True)  # NO ask 0.39 = YES bid 0.61
    merge = state.execute_taker(NO, SELL, 370_000, 10 * S, all_or_none=True)  # NO bid 0.37 = YES ask 0.63

    assert (mint.match_type, mint.fills) == (MINT, ((390_000, 10 * S),))
    assert (merge.match_type, merge.fills) == (MERGE, ((370_000, 10 * S),))
    assert state.book(YES).size_at(BUY, 610_000) == 90 * S and state.book(YES).size_at(SELL, 630_000) == 90 * S
    assert state.get_stats()["matches_mint"] == 1 and state.get_stats()["matches_merge"] == 1


def test_an_unfillable_fok_changes_nothing_and_says_nothing():
    state, events = seeded()
    before = state.book(YES).to_rest()

    ex = state.execute_taker(YES, BUY, 630_000, 101 * S, all_or_none=True)

    assert ex.fills == () and ex.filled == 0 and not ex.complete and ex.cost == 0
    assert events == [] and state.book(YES).to_rest() == before


def test_a_fak_sell_fills_part_and_cost_rounds_in_the_venues_favour():
    state, _ = seeded()

    ex = state.execute_taker(YES, SELL, 610_000, 150 * S, all_or_none=False)

    assert ex.fills == ((610_000, 100 * S),) and not ex.complete
    odd = state.execute_taker(YES, SELL, 600_000, 1, all_or_none=False)  # 1e-6 share at 0.60
    assert odd.notional_e12 == 600_000 and odd.cost == 0
    buy = state.execute_taker(YES, BUY, 630_000, 1, all_or_none=False)
    assert buy.cost == 1  # rounded up


@pytest.mark.parametrize(("token", "side", "price", "size", "error"), [
    ("nope", BUY, 500_000, S, UnknownToken),
    (YES, "HOLD", 500_000, S, InvalidOrder),
    (YES, BUY, 505_000, S, InvalidOrder),  # off the 0.01 tick
    (YES, BUY, ONE, S, InvalidOrder),
    (YES, BUY, 500_000, 0, InvalidOrder),
])
def test_bad_orders_are_refused_with_a_reason(token, side, price, size, error):
    state, events = seeded()
    with pytest.raises(error):
        state.execute_taker(token, side, price, size, all_or_none=False)
    assert events == []


def test_revert_restores_liquidity_once():
    state, events = seeded()
    ex = state.execute_taker(YES, BUY, 640_000, 150 * S, all_or_none=True)
    events.clear()

    restored = state.revert(ex)

    assert restored == ((SELL, 630_000, 100 * S), (SELL, 640_000, 100 * S))
    assert state.book(YES).levels(SELL) == [(630_000, 100 * S), (640_000, 100 * S)]
    assert state.book(NO).levels(BUY) == [(370_000, 100 * S), (360_000, 100 * S)]
    assert [type(e) for e in events] == [PriceChange, BookSnapshot, BookSnapshot]
    assert state.revert(ex) == ()  # idempotent
    assert state.book(YES).levels(SELL) == [(630_000, 100 * S), (640_000, 100 * S)]


def test_revert_skips_levels_that_would_now_cross_the_book():
    state, _ = seeded()
    ex = state.execute_taker(YES, BUY, 630_000, 100 * S, all_or_none=True)
    state.apply([(YES, BUY, 640_000, 10 * S)])  # the market moved: a bid at 0.64 now

    assert state.revert(ex) == ()
    assert state.book(YES).best_ask() == 640_000


def test_apply_batches_one_market_event_with_both_tokens_and_skips_no_ops():
    state, events = seeded()

    (event,) = state.apply([(YES, BUY, 600_000, 100 * S), (YES, BUY, 620_000, 7 * S), (NO, SELL, 390_000, 0)])

    assert isinstance(event, PriceChange) and len(event.changes) == 4  # each level and its mirror
    assert [(c.asset_id, c.side, c.price) for c in event.changes] == [
        (YES, BUY, 620_000), (NO, SELL, 380_000), (NO, SELL, 390_000), (YES, BUY, 610_000)]
    assert state.apply([(YES, BUY, 620_000, 7 * S)]) == [] and len(events) == 1
    (emptied,) = state.apply([(YES, BUY, p, 0) for p in (620_000, 600_000)])
    assert emptied.changes[-1].asset_id == NO and emptied.changes[-1].best_ask is None  # no YES bids: no NO asks
    assert wire(emptied)["price_changes"][-1]["best_ask"] == "1"


def test_tick_size_change_frame():
    state, events = seeded()

    state.set_tick(YES, 1_000)

    assert [type(e) for e in events] == [TickSizeChange, TickSizeChange]
    assert wire(events[0]) == {"event_type": "tick_size_change", "asset_id": YES, "market": CID,
                               "old_tick_size": "0.01", "new_tick_size": "0.001",
                               "timestamp": str(state.clock.time_ns() // 1_000_000)}
    assert wire(events[1])["asset_id"] == NO  # one book, one tick
    assert state.book(YES).to_rest()["tick_size"] == "0.001" and state.book(NO).tick_size == 1_000
    assert state.set_tick(NO, 1_000) == []


def test_timestamps_never_go_back_within_a_market():
    state, events = seeded()
    state.apply([(YES, BUY, 550_000, S)])
    state.clock._now -= 5_000_000_000  # the wall clock steps back 5 s (NTP)

    state.apply([(YES, BUY, 540_000, S)])

    assert events[1].timestamp_ms >= events[0].timestamp_ms


def test_trade_listeners_run_before_the_events_and_what_they_change_goes_out_with_the_fill():
    # Issue 17: the simulator closed the gap a fill took in a message of its own, after the
    # fill's; a client holding the book between the two traded on a level already gone.
    state, events = seeded()
    seen = []

    def listener(ex):
        seen.append((ex.id, len(events)))
        state.apply([(YES, SELL, 700_000, 5 * S)])  # what a listener changes because of the fill

    state.add_trade_listener(listener)
    state.execute_taker(NO, BUY, 390_000, S, all_or_none=True)

    assert seen == [(1, 0)]  # nothing sent yet when it ran
    changes = [e for e in events if isinstance(e, PriceChange)]
    assert len(changes) == 1 and (YES, SELL, 700_000, 5 * S) in {
        (c.asset_id, c.side, c.price, c.size) for c in changes[0].changes}
    assert [type(e).__name__ for e in events] == ["PriceChange", "LastTradePrice", "BookSnapshot", "BookSnapshot"]


def test_a_failing_listener_is_counted_and_does_not_break_the_book():
    state, _ = seeded()

    def boom(event):
        raise RuntimeError("subscriber bug")

    state.add_listener(boom)
    ex = state.execute_taker(NO, BUY, 390_000, S, all_or_none=True)

    assert ex.filled == S and state.get_stats()["listener_errors"] == 4


def _complement_gap(state) -> int:
    """1 - (best ask YES + best ask NO), in micro units: > 0 is a binary gap."""
    ya, na = state.book(YES).best_ask(), state.book(NO).best_ask()
    return 0 if ya is None or na is None else ONE - ya - na


order = st.tuples(st.sampled_from([YES, NO]), st.sampled_from([BUY, SELL]),
                  st.integers(1, 99).map(lambda c: c * 10_000), st.integers(1, 300).map(lambda n: n * S),
                  st.booleans())
move = st.tuples(st.sampled_from([YES, NO]), st.sampled_from([BUY, SELL]),
                 st.integers(1, 99).map(lambda c: c * 10_000), st.integers(0, 300).map(lambda n: n * S))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(order.map(lambda o: ("take", o)), move.map(lambda m: ("move", m))), max_size=40))
def test_without_an_injected_gap_a_binary_gap_never_outlives_one_matching_step(flow):
    # Random order flow on the mirrored book: whatever the takers and the (uncrossed)
    # maker moves do, ask YES + ask NO never drops below 1 after a step.
    state, _ = seeded()
    for kind, args in flow:
        if kind == "take":
            token, side, price, size, fok = args
            state.execute_taker(token, side, price, size, all_or_none=fok)
        else:
            token, side, price, size = args
            b = state.book(token)
            # The maker (the venue's simulator) never crosses its own book.
            crosses = (b.best_ask() or ONE) <= price if side == BUY else (b.best_bid() or 0) >= price
            if size and crosses:
                continue
            state.apply([(token, side, price, size)])
        assert _complement_gap(state) <= 0
        assert state.book(NO).levels(BUY) == [(ONE - p, n) for p, n in state.book(YES).levels(SELL)]
