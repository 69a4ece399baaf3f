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
class Ended:
    """A decided outcome of the pipeline: everything it moved is known and booked here."""

    status: TxStatus
    verdict: Verdict
    why: str | None = None
    pnl: int = 0  # micro-USDC: every cash flow of the execution, gas included
    gas: int = 0  # micro-USDC
    tx_hash: str | None = None
    nonce: int | None = None
    fills: tuple[Fill, ...] = ()


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

    @property
    def success(self) -> bool:
        return self.status in (TxStatus.SUCCESS, TxStatus.HELD, TxStatus.REDEEMED)

    @classmethod
    def of(cls, signal: Signal, key: str, attempt: int, end: Ended) -> Execution:
        return cls(signal, key, attempt, end.status, end.why, end.tx_hash, end.nonce, end.pnl, end.gas, end.fills)


class Unfinished(Exception):
    """Legs traded and the step after them failed without a known outcome: the
    execution stays IN_PROGRESS (PENDING) and reconciliation finishes it."""


class Skipped(Exception):
    """Dropped before any order: expired, computed from books older than our last
    trade on the market, or over a limit. Nothing traded, nothing counted."""

    def __init__(self, status: TxStatus, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


class VenueFailure(Exception):
    """The venue could not take the legs (errors, not kills): nothing traded."""


class BasketMismatch(Exception):
    """A NO_BASKET whose convert would not pay what the router priced: the adapter's
    market has another number of questions than the basket has legs, or a higher
    convert fee. Refused before any order: nothing traded."""
