from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.domain.money import (
    MICRO,
    format_usdc,
    from_micro,
    micro_to_str,
    parse_decimal,
    to_micro,
    to_micro_or,
)

pytestmark = pytest.mark.unit


@given(st.integers(0, 10**15))
def test_every_form_round_trips_exactly(micro):
    text = micro_to_str(micro)
    assert parse_decimal(text) == micro
    assert to_micro(text) == micro
    assert to_micro(from_micro(micro)) == micro
    assert to_micro(format_usdc(micro)) == micro


def test_whole_units_and_signs():
    assert to_micro(3) == 3 * MICRO
    assert to_micro("-0.5") == -500_000
    assert to_micro(Decimal("1e-3")) == 1_000  # a Decimal is a number, not text
    assert format_usdc(-1) == "-0.000001"
    assert micro_to_str(-620_000) == "-0.62"


@pytest.mark.parametrize("bad", ["", ".", "abc", "1e-3", "NaN", "inf", "0.6.2", "1" * 41])
def test_text_that_is_not_a_plain_decimal_is_refused(bad):
    with pytest.raises(ValueError):
        to_micro(bad)


@pytest.mark.parametrize("bad", ["", ".", "-1", "+1", "1e3", "\u00b2", "\u2460.5", "0.1234567", "9" * 41, " 1"])
def test_wire_parser_takes_ascii_digits_only(bad):
    # '²' and '①' pass str.isdigit() but not int(): they must be a clean ValueError.
    with pytest.raises(ValueError):
        parse_decimal(bad)


def test_excess_precision_needs_a_named_rounding():
    with pytest.raises(ValueError, match="more than 6 decimals"):
        to_micro("0.0000019")
    assert to_micro("0.0000019", rounding=ROUND_DOWN) == 1


def test_lenient_reading_falls_back_to_the_default():
    assert to_micro_or(None, 7) == 7
    assert to_micro_or("junk", 7) == 7
    assert to_micro_or("0.001", 7) == 1_000
    assert to_micro_or(Decimal("0.0000015"), 7, rounding=ROUND_DOWN) == 1
