"""A leg's life at the venue, as a state machine the journal persists.

    placed -> matched -> mined -> confirmed
    placed -> delayed -> matched | unmatched
    matched | retrying -> retrying | mined | confirmed | failed
    placed -> killed | rejected

MATCHED is provisional on Polymarket: the trade still has to be mined by the
operator, and can FAIL (then nothing traded). A leg's tokens exist once its
trades are MINED; CONFIRMED is final. Events arrive from two sources (the user
channel and REST), late and out of order, so a transition that goes backwards
(REST's MATCHED after the channel's MINED) is ignored, never applied.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


def client_id(key: str, leg: int, purpose: str = "leg") -> str:
    """A leg's bytes32 hex order metadata, derived from its execution's key: the venue
    refuses a second order with it, and finds the first by it after a crash."""
    return "0x" + hashlib.sha256(f"{key}:{purpose}:{leg}".encode()).hexdigest()


class LegState(StrEnum):
    PLACED = "placed"  # sent; no answer yet
    DELAYED = "delayed"  # accepted, matching delayed by the venue: neither a fill nor a kill
    MATCHED = "matched"  # matched; the trade is not on chain yet and can still fail
    RETRYING = "retrying"  # the operator's settlement transaction failed and is being retried
    MINED = "mined"  # the trade's transaction is mined: the tokens are in the wallet
    CONFIRMED = "confirmed"  # final
    FAILED = "failed"  # a matched trade that never settled: nothing traded
    UNMATCHED = "unmatched"  # a delayed order that did not match: nothing traded
    KILLED = "killed"  # FOK/FAK with nothing to match
    REJECTED = "rejected"  # refused by the venue (balance, market closed, ...)


S = LegState
NEXT: dict[LegState, frozenset[LegState]] = {
    S.PLACED: frozenset({S.DELAYED, S.MATCHED, S.RETRYING, S.MINED, S.CONFIRMED, S.FAILED, S.UNMATCHED, S.KILLED,
                         S.REJECTED}),
    S.DELAYED: frozenset({S.MATCHED, S.RETRYING, S.MINED, S.CONFIRMED, S.FAILED, S.UNMATCHED}),
    S.MATCHED: frozenset({S.RETRYING, S.MINED, S.CONFIRMED, S.FAILED}),
    S.RETRYING: frozenset({S.MINED, S.CONFIRMED, S.FAILED}),
    S.MINED: frozenset({S.CONFIRMED, S.FAILED}),  # FAILED: the block was reorganised away
}
FINAL = frozenset({S.CONFIRMED, S.FAILED, S.UNMATCHED, S.KILLED, S.REJECTED})
SETTLED = frozenset({S.MINED, S.CONFIRMED})  # the leg's tokens are on chain
TRADE_STATES = {"MATCHED": S.MATCHED, "RETRYING": S.RETRYING, "MINED": S.MINED, "CONFIRMED": S.CONFIRMED,
                "FAILED": S.FAILED}


def may_move(current: LegState, new: LegState) -> bool:
    """Whether `new` follows `current` (anything else is late news, ignored)."""
    return new in NEXT.get(current, frozenset())


def order_state(trade_states: list[LegState]) -> LegState:
    """An order's state from its trades': failed if one failed, else the least advanced."""
    if not trade_states:
        return S.MATCHED
    if S.FAILED in trade_states:
        return S.FAILED
    for state in (S.MATCHED, S.RETRYING, S.MINED):
        if state in trade_states:
            return state
    return S.CONFIRMED


@dataclass(frozen=True, slots=True)
class LegEvent:
    """What the venue said about one order (by our client id)."""

    client_id: str
    state: LegState
    order_id: str = ""
    filled: int = 0  # shares (micro)
    cost: int = 0  # micro-USDC
    fee: int = 0
    trades: tuple[str, ...] = ()
    detail: str = ""
