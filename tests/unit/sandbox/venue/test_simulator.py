"""The simulator on a TestClock: seeded determinism, no accidental arbitrage,
gaps that open / expire / get taken (YES and NO baskets on neg-risk events;
crossed binary books only while injected), tick size changes at the edges."""

from decimal import Decimal

import msgspec
import pytest

from actors.domain.money import ONE
from config.schema import VenueEvent, VenueMarket
from sandbox.venue.book import BUY, SELL
from sandbox.venue.events import BookSnapshot, PriceChange, TickSizeChange, encode
from sandbox.venue.simulator import BUY_GAP, SELL_GAP, initial_mids
from tests.unit.sandbox.venue.factories import BINARY, MULTI, make_sim

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

THREE = VenueEvent(slug="tri", outcomes=["A", "B", "C"])


def run(sim, clock, seconds, step=0.05):
    sim.advance(clock.monotonic_ns())
    for _ in range(round(seconds / step)):
        clock.advance(step)
        sim.advance(clock.monotonic_ns())


def best_sums(state, ms):
    """Sums of the best bids and asks over the group's outcomes (a binary market: YES and NO)."""
    books = [state.book(t) for t in ms.tokens]
    return sum(b.best_bid() for b in books), sum(b.best_ask() for b in books)


def no_asks(state, ms):
    return sum(state.book(state.partner[t]).best_ask() for t in ms.tokens)


def test_the_same_seed_gives_the_same_frames():
    runs = []
    for _ in range(2):
        sim, _, events, clock = make_sim(BINARY, MULTI, seed=11, ups=50, rate=30)
        run(sim, clock, 20)
        runs.append([encode(e).data for e in events])
    other, _, events, clock = make_sim(BINARY, MULTI, seed=12, ups=50, rate=30)
    run(other, clock, 20)

    assert runs[0] == runs[1] and len(runs[0]) > 500
    assert [encode(e).data for e in events] != runs[0]


def test_updates_follow_the_configured_rate_and_hot_reload():
    sim, _, _, clock = make_sim(BINARY, MULTI, ups=20)
    run(sim, clock, 10)
    assert sim.counters["updates"] == 200

    sim.configure(5, sim.arbitrage)
    run(sim, clock, 10)

    assert sim.counters["updates"] == 250


def test_a_long_pause_is_not_replayed_as_a_burst():
    sim, _, _, clock = make_sim(BINARY, ups=100)
    sim.advance(clock.monotonic_ns())
    clock.advance(60)

    assert sim.advance(clock.monotonic_ns()) == 25  # MAX_BURST_SECONDS worth, not 6000
    assert sim.counters["updates_skipped"] == 6000 - 25


def test_the_walk_never_makes_arbitrage_or_crossed_books():
    sim, state, events, clock = make_sim(BINARY, MULTI, THREE, ups=200)
    violations = []

    def check(event):
        if isinstance(event, TickSizeChange):
            return  # the book of the new epoch follows at once
        for ms in sim.markets:
            bids, asks = best_sums(state, ms)
            if sum(ms.mids) != ONE or not bids < ONE < asks:
                violations.append((ms.key, bids, asks))
            if not ms.binary and not no_asks(state, ms) > (len(ms.tokens) - 1) * ONE:
                violations.append((ms.key, "NO basket"))
            for t in ms.tokens + [state.partner[t] for t in ms.tokens]:
                if not state.book(t).best_bid() < state.book(t).best_ask():
                    violations.append((t, "crossed"))

    state.add_listener(check)
    run(sim, clock, 60)

    assert sim.counters["updates"] == 12_000 and sim.counters["moves"] > 5_000 and sim.counters["resizes"] > 3_000
    assert violations == []
    sizes = {c.size for e in events if isinstance(e, PriceChange) for c in e.changes}
    assert all(s % ONE == 0 for s in sizes)  # whole shares


def test_initial_mids_sit_on_the_grid_and_sum_to_one():
    assert initial_mids(BINARY) == [620_000, 380_000]
    assert initial_mids(THREE) == [340_000, 330_000, 330_000]  # the remainder to the (first) largest
    odd = VenueMarket(slug="odd", outcomes=["A", "B"], initial_prices=[Decimal("0.333"), Decimal("0.6")])
    assert initial_mids(odd) == [330_000, 670_000]
    with pytest.raises(ValueError, match="initial_prices"):
        initial_mids(VenueMarket(slug="bad", outcomes=["A", "B"], initial_prices=[Decimal("0.5")]))


@pytest.mark.parametrize("event", [MULTI, THREE])
def test_a_buy_gap_on_an_event_is_a_yes_basket_below_one_with_depth(event):
    sim, state, events, clock = make_sim(event, margin="0.04")
    ms = sim.markets[0]

    sim.open_gap(ms, BUY_GAP, clock.monotonic_ns())

    bids, asks = best_sums(state, ms)
    assert asks == ONE - 40_000 and bids < asks
    assert all(len(state.book(t).levels(SELL)) == event.depth_levels for t in ms.tokens)
    assert all(state.book(t).best_bid() < state.book(t).best_ask() for t in ms.tokens)
    touched = {c.asset_id for e in events if isinstance(e, PriceChange) for c in e.changes}
    assert touched >= set(ms.tokens) | {state.partner[t] for t in ms.tokens}  # the NO mirrors moved too


def test_a_sell_gap_on_an_event_is_a_no_basket_below_m_minus_one():
    sim, state, _, clock = make_sim(MULTI, margin="0.04")
    ms = sim.markets[0]

    sim.open_gap(ms, SELL_GAP, clock.monotonic_ns())

    bids, asks = best_sums(state, ms)
    assert bids == ONE + 40_000 and asks > bids
    assert no_asks(state, ms) == 3 * ONE - 40_000  # m = 4 NOs convert into 3 USDC


def test_an_injected_binary_gap_suspends_the_mirror_and_restores_one_book_after():
    sim, state, events, clock = make_sim(BINARY, margin="0.04", ups=0, lifetime=5)
    ms = sim.markets[0]
    yes, no = ms.tokens
    sim.advance(clock.monotonic_ns())

    gap = sim.open_gap(ms, BUY_GAP, clock.monotonic_ns())

    assert state.book(yes).best_ask() + state.book(no).best_ask() == ONE - 40_000
    assert all(state.book(t).best_bid() < state.book(t).best_ask() for t in ms.tokens)  # nothing crossed
    assert ms.conditions[0] in state.unmirrored and gap.prices == [state.book(t).best_ask() for t in ms.tokens]
    taken = state.execute_taker(no, BUY, gap.prices[1], 10 * ONE, all_or_none=True)
    assert taken.match_type == "COMPLEMENTARY"  # the operator's own NO: no set to mint

    seen = len(events)
    run(sim, clock, 5.1)

    assert ms.gap is None and ms.conditions[0] not in state.unmirrored
    assert state.book(no).levels(BUY) == [(ONE - p, n) for p, n in state.book(yes).levels(SELL)]
    assert state.book(no).levels(SELL) == [(ONE - p, n) for p, n in state.book(yes).levels(BUY)]
    # One message moved both books back (two snapshots let a client pair the new
    # YES book with the old NO book: a gap that had just closed).
    [closing] = events[seen:]
    assert isinstance(closing, PriceChange) and {c.asset_id for c in closing.changes} == {yes, no}
    fresh = {c.asset_id: (c.best_bid, c.best_ask) for c in closing.changes}
    assert fresh[yes] == (state.book(yes).best_bid(), state.book(yes).best_ask())
    assert fresh[no] == (state.book(no).best_bid(), state.book(no).best_ask())


def test_a_binary_gap_taken_closes_in_the_fills_own_message_never_after_it():
    # Issue 17: 10 minutes of the default sandbox, no fault: 4 SELL_SETs unwound. A sell gap
    # (YES bid 0.58 + NO bid 0.46) taken by two sets of 100 closed in a message sent after
    # the last fill's: the router read the book between the two (NO bid 0.45, the gap's next
    # level), signalled 0.57 + 0.45, and the NO leg found the normal bid 0.41.
    m = VenueMarket(slug="x", question="x?", outcomes=["Yes", "No"],
                    initial_prices=[Decimal("0.58"), Decimal("0.42")])
    sim, state, events, clock = make_sim(m, margin="0.04", ups=0, lifetime=5)
    ms = sim.markets[0]
    sim.advance(clock.monotonic_ns())
    gap = sim.open_gap(ms, SELL_GAP, clock.monotonic_ns())
    assert gap.prices == [580_000, 460_000]

    for t, p in zip(ms.tokens, gap.prices, strict=True):
        state.execute_taker(t, SELL, p, 100 * ONE, all_or_none=True)
    yes, no = ms.tokens
    state.execute_taker(yes, SELL, 580_000, 100 * ONE, all_or_none=True)
    seen = len(events)
    state.execute_taker(no, SELL, 460_000, 100 * ONE, all_or_none=True)  # takes the gap's last level

    assert ms.gap is None
    changes = [e for e in events[seen:] if isinstance(e, PriceChange)]
    assert len(changes) == 1  # the fill and the close: one message, no book in between
    # A client applying it ends with the venue's books: one mirrored book, the NO bid 0.41.
    final = {(c.asset_id, c.side, c.price): c.size for c in changes[0].changes}
    assert final[(no, BUY, 450_000)] == 0 and state.book(no).best_bid() == 410_000
    assert {c.asset_id: c.best_bid for c in changes[0].changes}[no] == 410_000


def test_binary_markets_get_gaps_only_while_injected():
    sim, _, _, clock = make_sim(BINARY, MULTI, ups=0, rate=120, lifetime=0.2, binary_gaps=False)
    run(sim, clock, 60, step=0.1)
    by_key = {ms.key: ms for ms in sim.markets}
    assert sim.counters["gaps_opened"] > 50 and all(ms.gap is None or not ms.binary for ms in sim.markets)
    binary = next(ms for ms in sim.markets if ms.binary)
    opened_before = sim.counters["gaps_opened"]

    sim.configure(0, sim.arbitrage, binary_gaps=True)
    seen = set()
    for _ in range(600):
        clock.advance(0.1)
        sim.advance(clock.monotonic_ns())
        seen |= {k for k, ms in by_key.items() if ms.gap is not None}

    assert binary.key in seen and sim.counters["gaps_opened"] > opened_before


def test_an_untouched_gap_expires_and_the_books_return_to_normal():
    sim, state, _, clock = make_sim(BINARY, ups=0, lifetime=5)
    ms = sim.markets[0]
    normal = [state.book(t).to_rest()["bids"] for t in ms.tokens]
    sim.advance(clock.monotonic_ns())
    sim.open_gap(ms, BUY_GAP, clock.monotonic_ns())

    run(sim, clock, 4.9)
    assert ms.gap is not None
    run(sim, clock, 0.2)

    assert ms.gap is None
    assert sim.counters["gaps_expired"] == 1 and sim.counters["gaps_taken"] == 0
    assert best_sums(state, ms)[1] > ONE
    assert [state.book(t).to_rest()["bids"] for t in ms.tokens] == normal


def test_a_gap_consumed_on_every_outcome_is_taken_and_closes_at_once():
    sim, state, _, clock = make_sim(MULTI, ups=0, lifetime=5)
    ms = sim.markets[0]
    gap = sim.open_gap(ms, BUY_GAP, clock.monotonic_ns())
    size = 200 * ONE

    for t, price in zip(ms.tokens[:-1], gap.prices, strict=False):
        assert state.execute_taker(t, BUY, price, size, all_or_none=True).complete
    assert ms.gap is not None  # one leg left: the gap stays for it
    assert state.execute_taker(ms.tokens[-1], BUY, gap.prices[-1], size, all_or_none=True).complete

    assert ms.gap is None
    assert sim.counters["gaps_taken"] == 1 and sim.counters["gaps_expired"] == 0
    assert sim.counters["gaps_closed_taken"] == 1
    assert best_sums(state, ms)[1] > ONE


def test_a_no_basket_taken_by_buying_every_no_closes_the_gap():
    sim, state, _, clock = make_sim(MULTI, ups=0, lifetime=5)
    ms = sim.markets[0]
    gap = sim.open_gap(ms, SELL_GAP, clock.monotonic_ns())

    for t, bid in zip(ms.tokens, gap.prices, strict=True):  # a NO ask at 1 - bid is the YES bid: MINT
        ex = state.execute_taker(state.partner[t], BUY, ONE - bid, 200 * ONE, all_or_none=True)
        assert ex.complete and ex.match_type == "MINT"

    assert ms.gap is None and sim.counters["gaps_closed_taken"] == 1


def test_gaps_arrive_at_the_configured_rate():
    sim, state, _, clock = make_sim(BINARY, MULTI, THREE, ups=10, rate=60, lifetime=0.5, sell_share=0.3)
    run(sim, clock, 120, step=0.1)

    c = sim.counters
    assert 80 <= c["gaps_opened"] <= 160  # Poisson, mean 120
    assert c["gaps_opened_sell"] + c["gaps_opened_buy"] == c["gaps_opened"]
    assert 0.1 < c["gaps_opened_sell"] / c["gaps_opened"] < 0.5
    assert c["gaps_expired"] == c["gaps_closed"] >= c["gaps_opened"] - 3


def test_tick_size_changes_above_096_and_back():
    edge = VenueMarket(slug="edge", outcomes=["Yes", "No"], initial_prices=[Decimal("0.95"), Decimal("0.05")])
    sim, state, events, _ = make_sim(edge, ups=0)
    ms = sim.markets[0]
    yes, no = ms.tokens

    assert sim.move(ms, 0, 1)  # 0.96: still the coarse tick
    assert not any(isinstance(e, TickSizeChange) for e in events)
    events.clear()
    assert sim.move(ms, 0, 1)  # 0.97 / 0.03

    changes = [e for e in events if isinstance(e, TickSizeChange)]
    assert [(e.asset_id, e.old_tick, e.new_tick) for e in changes] == [(yes, 10_000, 1_000), (no, 10_000, 1_000)]
    snaps = {e.asset_id: msgspec.json.decode(e.encoded) for e in events if isinstance(e, BookSnapshot)}
    assert snaps[yes]["tick_size"] == "0.001" and snaps[yes]["asks"][-1]["price"] == "0.971"
    assert snaps[no]["bids"][-1]["price"] == "0.029"
    assert events.index(changes[0]) < next(i for i, e in enumerate(events) if isinstance(e, BookSnapshot))
    events.clear()

    assert sim.move(ms, 1, 0)  # back to 0.96 / 0.04

    assert [(e.old_tick, e.new_tick) for e in events if isinstance(e, TickSizeChange)] == [(1_000, 10_000)] * 2
    assert state.book(yes).to_rest()["tick_size"] == "0.01"
    assert state.book(yes).best_ask() == 970_000
