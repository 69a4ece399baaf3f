"""What an execution comes to, as typed values.

Each step of the pipeline returns what it decided (`Ended`: a status, the money
it moved, what the breaker should make of it) instead of raising an exception
with the money patched onto it; only an unknown outcome is raised
(`Unfinished`, and the on-chain sender's `StuckTransaction`/`AmbiguousOutcome`),
because then nothing may be booked yet. `Execution` is the executor's record of
one signal's execution; the bus's `TxResult` is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from actors.domain.enums import TxStatus
from actors.executor.ports import Fill
from bus.messages import Signal


class Verdict(StrEnum):
    """What the circuit breaker makes of an outcome."""

    SUCCESS = "success"
    FAILURE = "failure"  # the system or the venue failed: counts towards a trip
    MARKET = "market"  # the book said no (legs killed, a partial fill on a moved book): ignored
    NONE = "none"  # dropped before any order (expired, stale, over a limit): the permit goes back


@dataclass(frozen=True, slots=True)
class Flow:
    """One movement of money an execution caused, tied to what caused it: the
    client id of a fill or a sale, the hash of a transaction, or (the sell reserve's
    transfers) the reserve move it records. The books are the
    sum of these, so they can be rebuilt from the records and checked against the
    chain."""

    kind: str  # buy, sell, fee, unwind, sale, split, merge, convert, redeem, gas, reserve
    amount: int  # micro-USDC, + into the wallet; "gas" is paid in POL (its USDC value), never in pUSD
    ref: str


GAS = "gas"
# Sets moved into (+, their collateral value) or out of (-) the sell reserve: no collateral moves
# (the split or merge that did is its own flow), so the books leave it out, the P&L does not.
RESERVE = "reserve"


def fill_flows(fills: list[Fill] | tuple[Fill, ...], kind: str | None = None) -> list[Flow]:
    """What filled legs paid (BUY) or received (SELL), and their fees."""
    out = []
    for f in fills:
        if f.filled:
            out.append(Flow(kind or ("buy" if f.side == "BUY" else "sell"), -f.cost if f.side == "BUY" else f.cost,
                            f.client_id))
            if f.fee:
                out.append(Flow("fee", -f.fee, f.client_id))
    return out


def tx_flows(kind: str, amount: int, tx_hash: str | None, gas: int) -> list[Flow]:
    """A transaction's collateral movement (split -, merge/convert/redeem +) and its gas."""
    return [Flow(kind, amount, tx_hash or ""), Flow(GAS, -gas, tx_hash or "")]


@dataclass(frozen=True, slots=True)
class Ended:
    """A decided outcome of the pipeline: everything it moved is known, as flows."""

    status: TxStatus
    verdict: Verdict
    why: str | None = None
    flows: tuple[Flow, ...] = ()
    tx_hash: str | None = None
    nonce: int | None = None
    fills: tuple[Fill, ...] = ()

    @property
    def gas(self) -> int:
        return -sum(f.amount for f in self.flows if f.kind == GAS)

    @property
    def pnl(self) -> int:
        """Every cash flow, gas included (micro-USDC)."""
        return sum(f.amount for f in self.flows)


@dataclass(frozen=True, slots=True)
class Execution:
    """One signal's execution as the executor books and publishes it."""

    signal: Signal
    idempotency_key: str
    attempt: int
    status: TxStatus
    error: str | None = None
    tx_hash: str | None = None
    nonce: int | None = None
    realized_pnl: int = 0  # micro-USDC, after fees and gas
    gas_cost: int = 0
    fills: tuple[Fill, ...] = field(default_factory=tuple)
    flows: tuple[Flow, ...] = ()  # what realized_pnl is the sum of

    @property
    def success(self) -> bool:
        return self.status in (TxStatus.SUCCESS, TxStatus.HELD, TxStatus.REDEEMED)

    @classmethod
    def of(cls, signal: Signal, key: str, attempt: int, end: Ended) -> Execution:
        return cls(signal, key, attempt, end.status, end.why, end.tx_hash, end.nonce, end.pnl, end.gas, end.fills,
                   end.flows)


class Unfinished(Exception):
    """Legs traded and the step after them failed without a known outcome: the
    execution stays IN_PROGRESS (PENDING) and reconciliation finishes it."""


class Skipped(Exception):
    """Dropped before any order: expired, computed from books older than our last
    trade on the market, or over a limit. Nothing traded, nothing counted."""

    def __init__(self, status: TxStatus, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


class BasketMismatch(Exception):
    """A NO_BASKET whose convert would not pay what the router priced: the adapter's
    market has another number of questions than the basket has legs, or a higher
    convert fee. Refused before any order: nothing traded."""
