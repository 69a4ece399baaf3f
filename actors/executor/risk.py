"""Portfolio risk limits (config `risk`, hot-reloadable), checked before every
execution, after every booked outcome and each second.

    refusal = guard.before(signal)   # None, or why this signal is refused
    guard.started(key, signal) ... guard.booked(execution)

Two kinds of breach force the executor's breaker open, the limit's name and the
figures in the reason (so every actor, `status`, the dashboard and the alerts
show them):

- A standing limit, on the account as it is now: `daily_loss_limit` (realized
  P&L since 00:00 UTC, gas included), `max_unwind_loss.day` (what unwinds cost
  today), `max_exposure` (capital in open positions and in the legs of running
  executions), `min_collateral_balance` (the wallet's pUSD) and
  `max_executions_per_minute`. When the account is back within (a new UTC day,
  positions sold, a deposit, a quiet minute, a hot edit of the limit) the guard
  closes the breaker it opened itself; never one another cause forced open (an
  operator halt, the reconciler), which it leaves alone.
- One execution's: `max_unwind_loss.execution`. An unwind that cost more than
  that is something nobody expected: the breaker stays open until an operator
  `resume`.

A signal whose own cost would take the exposure past `max_exposure` is refused
before any order (REJECTED, nothing traded) without halting: the next, smaller
one may fit.

The halt the guard made is kept in the journal (`risk_halt`), so a restarted
executor still knows the open breaker is its own to close.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.domain.enums import CircuitState, SetKind, TxStatus
from actors.domain.fees import notional
from actors.domain.money import format_usdc, to_micro
from actors.executor.circuit_breaker import CircuitBreaker
from actors.executor.journal import Journal
from actors.executor.outcomes import GAS, RESERVE, Execution
from bus.messages import Signal
from config.schema import Config, Risk

log = logging.getLogger(__name__)

HALT_KEY = "risk_halt"  # journal key: {"reason": the breaker's reason it set, "sticky": bool}
REASON_PREFIX = "risk limit"
RESTORED = "restored: "  # the breaker's prefix of a state restored at start
DAY_NS = 86_400 * 10**9
MINUTE_NS = 60 * 10**9


@dataclass(frozen=True, slots=True)
class Breach:
    limit: str  # the config key, e.g. "risk.daily_loss_limit"
    figures: str  # what was measured against what

    def __str__(self) -> str:
        return f"{REASON_PREFIX} {self.limit}: {self.figures}"


def signal_exposure(signal: Signal) -> int:
    """What a signal puts at risk while it runs (micro-USDC): the legs a BUY pays for,
    the collateral a SELL_SET splits."""
    if signal.kind is SetKind.SELL_SET:
        return signal.size
    return sum(leg.cost + leg.fee for leg in signal.legs)


class RiskGuard:
    def __init__(self, journal: Journal, breaker: CircuitBreaker, clock: Any, config: Callable[[], Config]) -> None:
        self.journal, self.breaker, self.clock, self._config = journal, breaker, clock, config
        self._running: dict[str, int] = {}  # key -> exposure of executions started and not booked
        self._starts: deque[int] = deque()  # start times of the executions of the last minute
        self._day = -1  # the UTC day the figures below are of
        self.pnl_today = 0  # micro-USDC, every finished execution's P&L since 00:00 UTC
        self.unwind_today = 0  # micro-USDC lost by today's unwinds (PARTIAL_UNWOUND executions)
        self.positions_value = 0  # micro-USDC: open positions at their reference price
        self.collateral: int | None = None  # the wallet's pUSD: the last chain read plus what was booked since
        self.breaches: list[Breach] = []  # the standing breaches of the last evaluation
        self.trips = self.refused = self.releases = 0
        self.by_limit: dict[str, int] = {}
        # The guard's own halt: read from the journal once, then written through (it is
        # consulted before every signal: no database read on that path).
        stored = journal.get_value(HALT_KEY)
        self._halt: dict[str, Any] | None = stored if isinstance(stored, dict) and stored.get("reason") else None

    @property
    def limits(self) -> Risk:
        return self._config().risk

    # -- figures
    def refresh(self) -> None:
        """Today's figures and the open positions from the journal (the durable books: every
        sale and booking-keeping step, not only what passed through `booked`)."""
        now = self.clock.time_ns()
        self._day = now // DAY_NS
        self.pnl_today, self.unwind_today = self.journal.day_figures(self._day * DAY_NS)
        self.positions_value = sum(notional(size, price) for _, size, price, _ in self.journal.positions())

    def chain_collateral(self, micro: int) -> None:
        """The wallet's pUSD as just read from the chain (the reconciler's round, or ours)."""
        self.collateral = micro

    def exposure(self) -> int:
        return self.positions_value + sum(self._running.values())

    def executions_last_minute(self) -> int:
        horizon = self.clock.time_ns() - MINUTE_NS
        while self._starts and self._starts[0] <= horizon:
            self._starts.popleft()
        return len(self._starts)

    # -- the checks
    def standing(self) -> list[Breach]:
        r = self.limits
        if self.clock.time_ns() // DAY_NS != self._day:
            self.refresh()  # a new day starts from the books, not from yesterday's sums
        out = []
        if r.daily_loss_limit is not None and self.pnl_today < -to_micro(r.daily_loss_limit):
            out.append(Breach("risk.daily_loss_limit", f"realized P&L today {format_usdc(self.pnl_today)} USDC, "
                                                       f"limit -{r.daily_loss_limit} USDC"))
        day_cap = r.max_unwind_loss.day
        if day_cap is not None and self.unwind_today > to_micro(day_cap):
            out.append(Breach("risk.max_unwind_loss.day", f"unwinds lost {format_usdc(self.unwind_today)} USDC "
                                                          f"today, limit {day_cap} USDC"))
        if r.max_exposure is not None and self.exposure() > to_micro(r.max_exposure):
            out.append(Breach("risk.max_exposure", self._exposure_text(0)))
        if (r.min_collateral_balance is not None and self.collateral is not None
                and self.collateral < to_micro(r.min_collateral_balance)):
            out.append(Breach("risk.min_collateral_balance", f"pUSD balance {format_usdc(self.collateral)}, "
                                                             f"floor {r.min_collateral_balance}"))
        if r.max_executions_per_minute is not None:
            n = self.executions_last_minute()
            if n >= r.max_executions_per_minute:
                out.append(Breach("risk.max_executions_per_minute",
                                  f"{n} executions in the last 60 s, limit {r.max_executions_per_minute}"))
        return out

    def _exposure_text(self, extra: int) -> str:
        running = sum(self._running.values())
        what = f"open positions {format_usdc(self.positions_value)} + running legs {format_usdc(running)}"
        if extra:
            what += f" + this signal {format_usdc(extra)}"
        return f"exposure {what} = {format_usdc(self.positions_value + running + extra)} USDC, " \
               f"limit {self.limits.max_exposure} USDC"

    def evaluate(self) -> list[Breach]:
        """Halt on a standing breach; close the breaker the guard opened once none is left."""
        self.breaches = self.standing()
        halt = self._halt
        if halt is not None and not self._ours(halt):
            # An operator resumed it, or another cause forced it since: no longer ours to close.
            self._keep(None)
            halt = None
        if halt is not None:
            if not self.breaches and not halt.get("sticky"):
                self.releases += 1
                self._keep(None)
                self.breaker.reset(f"risk limits back within: {halt['limit']} ({self._figures_line()})")
                log.warning("risk limits back within (%s): trading resumes", halt["limit"])
        elif self.breaches and self.breaker.state is not CircuitState.FORCED_OPEN:
            self._trip(self.breaches[0], sticky=False)
        return self.breaches

    def before(self, signal: Signal) -> str | None:
        """Before a new execution: the standing limits (a breach halts, and the breaker then
        refuses the signal), then whether this signal's cost fits under `max_exposure`."""
        self.evaluate()
        cap = self.limits.max_exposure
        if cap is not None and self.breaker.state is not CircuitState.FORCED_OPEN:
            cost = signal_exposure(signal)
            if self.exposure() + cost > to_micro(cap):
                self.refused += 1
                return f"{REASON_PREFIX} risk.max_exposure: {self._exposure_text(cost)}"
        return None

    def started(self, key: str, signal: Signal) -> None:
        self._running[key] = signal_exposure(signal)
        self._starts.append(self.clock.time_ns())

    def booked(self, r: Execution) -> None:
        """An outcome is in the books: today's figures move now, not at the next refresh, so
        the very next signal is judged on them."""
        self._running.pop(r.idempotency_key, None)
        if r.status in (TxStatus.PENDING, TxStatus.DUPLICATE, TxStatus.REJECTED, TxStatus.EXPIRED):
            return
        self.pnl_today += r.realized_pnl
        if self.collateral is not None:
            self.collateral += sum(f.amount for f in r.flows if f.kind not in (GAS, RESERVE))
        if r.status is TxStatus.PARTIAL_UNWOUND and r.realized_pnl < 0:
            self.unwind_today += -r.realized_pnl
            cap = self.limits.max_unwind_loss.execution
            if cap is not None and -r.realized_pnl > to_micro(cap) and self.breaker.state is not \
                    CircuitState.FORCED_OPEN:
                self._trip(Breach("risk.max_unwind_loss.execution",
                                  f"execution {r.idempotency_key[:12]} unwound at {format_usdc(r.realized_pnl)} USDC, "
                                  f"limit -{cap} USDC; resume after a look"), sticky=True)
                return
        self.evaluate()

    # -- the halt
    def _trip(self, breach: Breach, *, sticky: bool) -> None:
        self.trips += 1
        self.by_limit[breach.limit] = self.by_limit.get(breach.limit, 0) + 1
        log.error("%s: trading halted", breach, extra={"fields": {"limit": breach.limit, "figures": breach.figures}})
        self.breaker.force_open(str(breach))
        self._keep({"reason": self.breaker.reason, "limit": breach.limit, "sticky": sticky})

    def _keep(self, halt: dict[str, Any] | None) -> None:
        self._halt = halt
        self.journal.put_value(HALT_KEY, halt)

    def _ours(self, halt: dict[str, Any]) -> bool:
        """The breaker is still forced open by the guard's halt (a restart restores it as
        "restored: <reason>", once per restart)."""
        reason = self.breaker.reason
        while reason.startswith(RESTORED):
            reason = reason[len(RESTORED):]
        return self.breaker.state is CircuitState.FORCED_OPEN and reason == halt["reason"]

    def _figures_line(self) -> str:
        return (f"P&L today {format_usdc(self.pnl_today)}, unwinds today {format_usdc(self.unwind_today)}, exposure "
                f"{format_usdc(self.exposure())}"
                + (f", pUSD {format_usdc(self.collateral)}" if self.collateral is not None else "")
                + f", {self.executions_last_minute()} executions in the last minute")

    def get_stats(self) -> dict[str, Any]:
        r, halt = self.limits, self._halt
        limits = {"daily_loss_limit": r.daily_loss_limit, "max_exposure": r.max_exposure,
                  "max_unwind_loss_execution": r.max_unwind_loss.execution,
                  "max_unwind_loss_day": r.max_unwind_loss.day, "min_collateral_balance": r.min_collateral_balance,
                  "max_executions_per_minute": r.max_executions_per_minute}
        return {"pnl_today_micro": self.pnl_today, "unwind_loss_today_micro": self.unwind_today,
                "exposure_micro": self.exposure(), "open_positions_value_micro": self.positions_value,
                "running_micro": sum(self._running.values()),
                **({"collateral_micro": self.collateral} if self.collateral is not None else {}),
                "executions_last_minute": self.executions_last_minute(),
                "limits": {k: (str(v) if v is not None else None) for k, v in limits.items()},
                "breaches": [str(b) for b in self.breaches], "halted": halt["limit"] if halt else None,
                "trips": self.trips, "trips_by_limit": dict(self.by_limit), "refused": self.refused,
                "releases": self.releases}
