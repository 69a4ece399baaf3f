"""The named values of the pipeline (a leaf module: no project imports).

StrEnums: on the bus and in JSON they are their plain string values, so a
message decoded with msgspec is validated against the member list, and a
value compares equal to its string.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Side(StrEnum):
    """An order's side; on a book, BUY is the bid side and SELL the ask side."""

    BUY = "BUY"
    SELL = "SELL"


class SetKind(StrEnum):
    """A complete-set trade: buy every outcome and merge the set into collateral,
    or split collateral into a set and sell every outcome; or, on a neg-risk
    event of m outcomes, buy one NO of each and convert them through the
    NegRiskAdapter into m - 1 collateral (NO_BASKET); or buy one YES of each and
    hold them until the event resolves, when the winner redeems 1 (YES_BASKET)."""

    BUY_SET = "BUY_SET"
    SELL_SET = "SELL_SET"
    NO_BASKET = "NO_BASKET"
    YES_BASKET = "YES_BASKET"


class TxStatus(StrEnum):
    """The outcome of one signal's execution."""

    SUCCESS = "SUCCESS"
    EXPIRED = "EXPIRED"  # too old when it arrived: nothing done
    REJECTED = "REJECTED"  # the breaker refused it: nothing done
    DUPLICATE = "DUPLICATE"  # already executed (or being executed) under this key
    STALE = "STALE"  # every leg was killed: the book had moved; nothing traded
    PARTIAL_UNWOUND = "PARTIAL_UNWOUND"  # some legs filled alone and were sold back
    FAILED = "FAILED"  # nothing or a recorded loss; see error
    PENDING = "PENDING"  # ambiguous: left IN_PROGRESS for reconciliation
    HELD = "HELD"  # a YES basket bought: its capital is locked until the event resolves
    REDEEMED = "REDEEMED"  # a held basket's winner redeemed after the resolution


class CircuitState(StrEnum):
    """The executor's circuit breaker; FORCED_OPEN is the operator's kill switch."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
    FORCED_OPEN = "FORCED_OPEN"


# A follower's view only (no breaker heartbeat heard for a few intervals),
# treated like OPEN; the breaker itself is never in it.
UNKNOWN: Final = "UNKNOWN"


TRADING_ALLOWED = frozenset({CircuitState.CLOSED, CircuitState.HALF_OPEN})
