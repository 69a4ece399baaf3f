"""Book mechanics: levels, best prices, FOK/FAK sweeps, the wire form and its hash."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from py_clob_client_v2.utilities import generate_orderbook_summary_hash, parse_raw_orderbook_summary

from actors.domain.money import ONE, micro_to_str, to_micro
from sandbox.venue.book import BUY, SELL, Book, is_valid_price

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

S = ONE  # one share


def book_with(bids=(), asks=()) -> Book:
    b = Book("tok", "0xm", tick_size=10_000)
    for p, s in bids:
        b.set_level(BUY, p, s)
    for p, s in asks:
        b.set_level(SELL, p, s)
    return b


@pytest.mark.parametrize(("micro", "text"), [
    (620_000, "0.62"), (1_000_000, "1"), (0, "0"), (200 * S, "200"), (12_345_678, "12.345678"),
    (1_000, "0.001"), (5 * S + 500_000, "5.5"),
])
def test_micro_strings_round_trip_without_floats(micro, text):
    assert micro_to_str(micro) == text
    assert to_micro(text) == micro
    assert to_micro(Decimal(text)) == micro


@pytest.mark.parametrize("bad", ["", ".", "abc", "0.1234567", "1e-3", "0.6.2"])
def test_to_micro_refuses_garbage_and_excess_precision(bad):
    with pytest.raises(ValueError):
        to_micro(bad)


def test_to_micro_reads_exponent_decimals_exactly():
    assert to_micro(Decimal("1E-3")) == 1_000
    assert to_micro(Decimal("0.620")) == 620_000


def test_price_validity_follows_the_tick():
    assert is_valid_price(620_000, 10_000)
    assert not is_valid_price(625_000, 10_000)
    assert is_valid_price(625_000, 1_000)
    assert not is_valid_price(0, 10_000) and not is_valid_price(ONE, 10_000)


def test_best_prices_come_from_levels_and_zero_removes():
    b = book_with(bids=[(600_000, S), (610_000, S), (590_000, S)], asks=[(650_000, S), (630_000, S)])
    assert (b.best_bid(), b.best_ask()) == (610_000, 630_000)

    b.set_level(BUY, 610_000, 0)
    b.set_level(SELL, 630_000, 0)

    assert (b.best_bid(), b.best_ask()) == (600_000, 650_000)
    assert b.levels(BUY) == [(600_000, S), (590_000, S)]
    assert b.levels(SELL) == [(650_000, S)]
    assert book_with().best_bid() is None and book_with().best_ask() is None


def test_fok_buy_fills_everything_best_first_or_changes_nothing():
    b = book_with(asks=[(640_000, 100 * S), (630_000, 100 * S), (660_000, 100 * S)])

    assert b.take(BUY, 650_000, 250 * S, all_or_none=True) == []  # only 200 within the limit
    assert b.levels(SELL) == [(630_000, 100 * S), (640_000, 100 * S), (660_000, 100 * S)]

    fills = b.take(BUY, 650_000, 150 * S, all_or_none=True)

    assert fills == [(630_000, 100 * S), (640_000, 50 * S)]
    assert b.levels(SELL) == [(640_000, 50 * S), (660_000, 100 * S)]


def test_fak_fills_what_there_is_within_the_limit():
    b = book_with(asks=[(630_000, 100 * S), (640_000, 100 * S), (700_000, 100 * S)])

    fills = b.take(BUY, 650_000, 500 * S, all_or_none=False)

    assert fills == [(630_000, 100 * S), (640_000, 100 * S)]
    assert b.levels(SELL) == [(700_000, 100 * S)]
    assert b.take(BUY, 650_000, 10 * S, all_or_none=False) == []


def test_a_taker_sell_sweeps_bids_from_the_highest():
    b = book_with(bids=[(600_000, 10 * S), (610_000, 10 * S), (500_000, 10 * S)])

    assert b.take(SELL, 600_000, 15 * S, all_or_none=True) == [(610_000, 10 * S), (600_000, 5 * S)]
    assert b.levels(BUY) == [(600_000, 5 * S), (500_000, 10 * S)]


def test_take_refuses_a_non_positive_size():
    with pytest.raises(ValueError):
        book_with().take(BUY, 500_000, 0, all_or_none=False)


def test_wire_lists_bids_ascending_asks_descending_all_strings():
    b = book_with(bids=[(610_000, 200 * S), (600_000, 150 * S)], asks=[(630_000, 200 * S), (640_000, 5_500_000)])
    b.last_trade_price = 620_000
    b.stamp(1_767_225_600_123)

    wire = b.to_wire()

    assert wire == {
        "event_type": "book", "market": "0xm", "asset_id": "tok", "timestamp": "1767225600123",
        "hash": wire["hash"],
        "bids": [{"price": "0.6", "size": "150"}, {"price": "0.61", "size": "200"}],
        "asks": [{"price": "0.64", "size": "5.5"}, {"price": "0.63", "size": "200"}],
        "min_order_size": "5", "tick_size": "0.01", "neg_risk": False, "last_trade_price": "0.62",
    }
    assert len(wire["hash"]) == 40


def test_hash_is_the_one_the_official_client_computes():
    b = book_with(bids=[(610_000, 200 * S)], asks=[(630_000, 17_250_000)])
    b.stamp(1_767_225_600_000)
    rest = b.to_rest()

    assert generate_orderbook_summary_hash(parse_raw_orderbook_summary(rest)) == rest["hash"]


def test_hash_marks_changes_and_the_encoded_form_follows():
    b = book_with(asks=[(630_000, S)])
    before, encoded = b.hash(), b.encoded()
    assert b.hash() == before and b.encoded() is encoded  # cached while unchanged

    b.set_level(SELL, 640_000, S)

    assert b.hash() != before
    assert b"0.64" in b.encoded()


prices = st.integers(1, 99).map(lambda k: k * 10_000)
levels = st.dictionaries(prices, st.integers(1, 500).map(lambda k: k * S), max_size=8)


@given(asks=levels, limit=prices, size=st.integers(1, 3000).map(lambda k: k * S), fok=st.booleans())
def test_sweeps_conserve_shares_and_respect_the_limit(asks, limit, size, fok):
    b = book_with(asks=list(asks.items()))
    available = sum(s for p, s in asks.items() if p <= limit)

    fills = b.take(BUY, limit, size, all_or_none=fok)

    filled = sum(s for _, s in fills)
    assert all(p <= limit for p, _ in fills)
    assert [p for p, _ in fills] == sorted(p for p, _ in fills)
    assert filled == (0 if fok and available < size else min(size, available))
    assert sum(s for _, s in b.levels(SELL)) == sum(asks.values()) - filled
