from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.domain.fees import fee_rate_ppm, notional, taker_fee
from actors.domain.money import MICRO, to_micro

pytestmark = pytest.mark.unit


def test_fee_matches_polymarkets_formula():
    # 100 shares at 0.50 with fee rate 0.02: 100 * 0.02 * 0.5 * 0.5 = 0.5 USDC
    assert taker_fee(100 * MICRO, 500_000, fee_rate_ppm("0.02")) == 500_000
    # docs/polymarket.md: at p = 0.5 and rate 0.072 a two-leg set costs about 0.036 in fees
    assert 2 * taker_fee(MICRO, 500_000, fee_rate_ppm(Decimal("0.072"))) == 36_000


@given(size=st.integers(1, 10**12), price=st.integers(1, MICRO - 1), rate=st.integers(0, 100_000))
def test_fee_is_the_exact_value_rounded_up(size, price, rate):
    exact = Decimal(size) * rate * price * (MICRO - price) / Decimal(MICRO) ** 3
    fee = taker_fee(size, price, rate)
    assert fee >= exact and fee - exact < 1


def test_conversions_refuse_to_lose_precision():
    assert to_micro("1.25") == 1_250_000 and notional(3 * MICRO, 333_334) == 1_000_002
    with pytest.raises(ValueError):
        to_micro("0.0000001")
    with pytest.raises(ValueError):
        fee_rate_ppm("0.0000005")


def test_the_fee_exponent_raises_p_times_one_minus_p():
    # 100 shares at 0.50, rate 0.25, exponent 2: 100 * 0.25 * 0.0625 = 1.5625 USDC
    assert taker_fee(100 * MICRO, 500_000, fee_rate_ppm("0.25"), exponent=2) == 1_562_500
    assert taker_fee(7, 300_000, 20_000, exponent=1) == taker_fee(7, 300_000, 20_000)
    assert taker_fee(1, 1, 1, exponent=3) == 1  # rounded up, never 0 for a positive fee
