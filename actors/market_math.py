"""Polymarket's money arithmetic in integer 1e-6 units: one definition for the
router's estimate, the executor's check and the sandbox venue's charge.

Taker fee per fill (polymarket.md): shares * fee_rate * p * (1 - p), rounded
UP to the micro-USDC so an estimate is never below what the venue charges.
Prices are micro-USDC per share (0 < p < 1_000_000), sizes micro-shares.
"""

from __future__ import annotations

from decimal import Decimal

MICRO = 1_000_000
_MICRO3 = MICRO**3


def fee_rate_ppm(rate: Decimal | str | int) -> int:
    """A fee rate such as Decimal('0.02') -> 20_000 parts per million."""
    value = Decimal(rate) * MICRO
    if value != value.to_integral_value() or value < 0:
        raise ValueError(f"fee rate {rate} is not a whole number of ppm")
    return int(value)


def taker_fee(size: int, price: int, rate_ppm: int) -> int:
    """Fee in micro-USDC for taking `size` micro-shares at `price`."""
    num = size * rate_ppm * price * (MICRO - price)
    return -(-num // _MICRO3)  # ceil


def notional(size: int, price: int) -> int:
    """Cost in micro-USDC of `size` micro-shares at `price`, rounded up."""
    return -(-(size * price) // MICRO)


def to_micro(amount: Decimal | str | int) -> int:
    value = Decimal(amount) * MICRO
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than 6 decimals")
    return int(value)


def from_micro(value: int) -> Decimal:
    return Decimal(value) / MICRO
