"""How a FOK / FAK order takes liquidity from a book: one definition for the paper
venue's matching and for the replay that checks it (pure, integers in 1e-6 units).

Levels are (price, size), best first: asks ascending for a BUY, bids descending for a
SELL. An order takes each level at the level's (maker's) price while the price is within
its limit; FOK all or nothing, FAK what is there. The cost rounds against the taker (a
BUY pays rounded up, a SELL receives rounded down) and the fee is the taker fee level by
level, each rounded up, as `actors.domain.fees` (the router's estimate) computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from actors.domain.enums import Side
from actors.domain.fees import taker_fee
from actors.domain.money import MICRO

Level = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Taken:
    fills: tuple[Level, ...]  # (price, size) taken from each level
    filled: int  # shares
    cost: int  # micro-USDC: paid (BUY) or received before the fee (SELL)
    fee: int  # micro-USDC


NOTHING = Taken((), 0, 0, 0)


def within(side: Side | str, price: int, limit: int) -> bool:
    return price <= limit if side == Side.BUY else price >= limit


def take(levels: Sequence[Level], side: Side | str, limit: int, size: int, *, all_or_none: bool,
         fee_rate_ppm: int, fee_exponent: int = 1) -> Taken:
    """What an order of `size` at `limit` takes from `levels` (nothing for a FOK that
    cannot fill whole, or an order that crosses no level)."""
    fills: list[Level] = []
    left = size
    for price, available in levels:
        if left <= 0 or not within(side, price, limit):
            break
        if available <= 0:
            continue
        n = min(left, available)
        fills.append((price, n))
        left -= n
    filled = size - left
    if not filled or (all_or_none and left):
        return NOTHING
    notional = sum(p * s for p, s in fills)
    cost = -(-notional // MICRO) if side == Side.BUY else notional // MICRO
    fee = sum(taker_fee(s, p, fee_rate_ppm, fee_exponent) for p, s in fills)
    return Taken(tuple(fills), filled, cost, fee)
