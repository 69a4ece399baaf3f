"""Polymarket's fee arithmetic in integer 1e-6 units: one definition for the
router's estimate, the executor's check and the sandbox venue's charge.

Taker fee per fill (docs/polymarket.md): shares * fee_rate * (p * (1 - p)) ^ e,
with the market's exponent e (1 on most markets), rounded UP to the
micro-USDC so an estimate is never below what the venue charges. Prices are
micro-USDC per share (0 < p < MICRO), sizes micro-shares.
"""

from __future__ import annotations

from decimal import Decimal

from actors.domain.money import MICRO, to_micro

_MICRO3 = MICRO**3
WEI_PER_POL = 10**18


def fee_rate_ppm(rate: Decimal | str | int) -> int:
    """A fee rate such as Decimal('0.02') -> 20_000 parts per million."""
    try:
        ppm = to_micro(rate)
    except ValueError:
        raise ValueError(f"fee rate {rate} is not a whole number of ppm") from None
    if ppm < 0:
        raise ValueError(f"fee rate {rate} is negative")
    return ppm


def taker_fee(size: int, price: int, rate_ppm: int, exponent: int = 1) -> int:
    """Fee in micro-USDC for taking `size` micro-shares at `price` (exact, then ceil)."""
    if exponent == 1:  # the hot path: the router prices every level with it
        return -(-(size * rate_ppm * price * (MICRO - price)) // _MICRO3)
    if exponent < 1:
        raise ValueError(f"fee exponent must be >= 1, got {exponent}")
    num = size * rate_ppm * (price * (MICRO - price)) ** exponent
    return -(-num // MICRO ** (1 + 2 * exponent))


def notional(size: int, price: int) -> int:
    """Cost in micro-USDC of `size` micro-shares at `price`, rounded up."""
    return -(-(size * price) // MICRO)


def proceeds(size: int, price: int) -> int:
    """What selling `size` at `price` receives, rounded DOWN (notional rounds
    up): both estimates err against us, as the venue's settlement does."""
    return size * price // MICRO


def gas_fee(gas: int, wei_per_gas: int, pol_price_micro: int) -> int:
    """A transaction's gas in micro-USDC at a POL price in micro-USDC, rounded up."""
    return -(-(gas * wei_per_gas * pol_price_micro) // WEI_PER_POL)
