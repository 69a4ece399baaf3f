"""Tokens held outside a complete set, and their sale.

A leg that filled alone is sold back at once (`unwind`, FAK, bounded
slippage); what does not sell is recorded as held (journal `holdings`, keyed
by what caused it, so a replay after a crash adds nothing twice) and `clear`
sells it later, widening the limit by `executor.unwind_max_price_move` per
attempt down to 0.01. Every sale that errors is looked up at the venue by its
client id, so a sale that went through is never taken for "not sold".
Each clearing attempt has its own key (the token's attempt number, never
reused) and its outcome is booked in one transaction with the tokens it sold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from actors.domain.enums import Side
from actors.domain.money import to_micro
from actors.executor.journal import Journal
from actors.executor.legs import client_id
from actors.executor.outcomes import Flow, fill_flows
from actors.executor.ports import Fill, OrderRejected, VenuePort
from actors.executor.retry_policy import RetryPolicy
from bus.messages import Leg, Signal
from config.schema import Config

log = logging.getLogger(__name__)

TICK_GRID = 10_000  # 0.01 in micro-USDC: on every Polymarket tick (0.01 and 0.001)


class Positions:
    def __init__(self, venue: VenuePort, retry: RetryPolicy, journal: Journal, clock: Any,
                 config: Callable[[], Config], touched: Callable[[list[str], int], None]) -> None:
        self.venue, self.retry, self.journal, self.clock = venue, retry, journal, clock
        self._config = config
        self._touched = touched  # our orders traded on these books at this time (the stale rule)
        self.unhedged_legs = 0  # legs whose unwind did not complete (recorded in the journal)
        self.cleared = 0  # shares of such legs sold later by `clear`

    async def sell(self, token_id: str, limit: int, size: int, cid: str, settle: bool = True) -> Fill:
        """A FAK sale under the retry policy; after an error the venue is asked by
        client id, so a sale that went through is never taken for "not sold".
        `settle=False`: the match only (provisional), for `venue.settle` later."""
        try:
            return await self.retry.run(lambda: self.venue.place(token_id, Side.SELL, limit, size, cid,
                                                                 fill_and_kill=True, settle=settle),
                                        dependency="clob")
        except OrderRejected:
            raise
        except Exception as exc:
            found = await self.retry.run(lambda: self.venue.find(cid), dependency="clob")
            if found is None:
                raise
            log.info("sale %s errored (%s) but the venue has it: %s filled", cid[:12], exc, found.filled)
            return found

    async def _settled(self, fill: Fill, cid: str) -> Fill:
        """A matched sale followed until its trade settles; after an error the venue is
        asked by client id (as `sell` does): what it knows is what happened."""
        try:
            return await self.venue.settle(fill)  # type: ignore[attr-defined]
        except Exception as exc:
            found = await self.retry.run(lambda: self.venue.find(cid), dependency="clob")
            if found is None:
                raise
            log.info("sale %s did not settle in time (%s); the venue says %s filled", cid[:12], exc, found.filled)
            return found

    async def unwind(self, key: str, legs: list[Leg],
                     lock: Callable[[], AbstractAsyncContextManager[Any]] = nullcontext) -> list[Flow]:
        """Sell back what filled alone; returns the sales' cash flows. What does not
        sell is recorded as held, once per leg whatever a replay does. `lock` (the
        market's) covers the sales' placement, not their settlement."""
        move = to_micro(self._config().executor.unwind_max_price_move)
        follow = getattr(self.venue, "settle", None)
        placed: list[Fill | BaseException] = []
        async with lock():
            for i, leg in enumerate(legs):
                # From the leg's own (on-tick) limit, down to the 0.01 grid: an off-tick price is refused.
                limit = max(TICK_GRID, (leg.limit_price - move) // TICK_GRID * TICK_GRID)
                cid = client_id(key, i, "unwind")
                placed_ms = self.clock.time_ns() // 1_000_000
                try:
                    f = await self.sell(leg.token_id, limit, leg.size, cid, settle=follow is None)
                    self._touched([leg.token_id] if f.filled else [], placed_ms)
                    placed.append(f)
                except Exception as exc:
                    placed.append(exc)
        proceeds, flows = 0, []
        for i, (leg, got) in enumerate(zip(legs, placed, strict=True)):
            try:
                if isinstance(got, BaseException):
                    raise got
                f = await self._settled(got, client_id(key, i, "unwind")) if follow is not None else got
            except Exception as exc:  # an unhedged leg stays recorded, and is retried
                self.unhedged_legs += 1
                log.error("unwind of %s failed, position left open: %s", leg.token_id[:12], exc)
                self.journal.hold(f"{key}:unwind:{i}", leg.token_id, leg.size, leg.limit_price)
                self.journal.update(key, "unwind_failed", unhedged=[leg.token_id, leg.size])
                continue
            proceeds += f.cost - f.fee
            flows += fill_flows([f], "unwind")
            if f.filled < leg.size:
                self.unhedged_legs += 1
                self.journal.hold(f"{key}:unwind:{i}", leg.token_id, leg.size - f.filled, leg.limit_price)
                self.journal.update(key, "unwind_partial", unhedged=[leg.token_id, leg.size - f.filled])
        self.journal.update(key, "unwound", proceeds=proceeds)
        return flows

    async def clear(self) -> int:
        """One round over every open position for sale; returns the proceeds."""
        move = to_micro(self._config().executor.unwind_max_price_move)
        total = 0
        for token_id, size, ref, attempts in self.journal.positions():
            limit = max(TICK_GRID, (ref - move * (attempts + 2)) // TICK_GRID * TICK_GRID)
            key = f"position:{token_id}:{self.journal.sale_attempt(token_id)}"
            cid = client_id(key, 0, "clear")
            placed_ms = self.clock.time_ns() // 1_000_000
            try:
                f = await self.sell(token_id, limit, size, cid)
                self._touched([token_id] if f.filled else [], placed_ms)
            except Exception as exc:  # still unsellable, or the outcome is unknown: asked again next round
                log.warning("open position %s not sold yet: %s", token_id[:12], exc)
                continue
            proceeds = f.cost - f.fee if f.filled else 0
            self.journal.record_sale(key, POSITION_SIGNAL, token_id, f.filled, proceeds, fill_flows([f], "sale"))
            if f.filled:
                total += proceeds
                self.cleared += f.filled
        return total


# The journal keys a later position sale like an execution; this is its "signal".
POSITION_SIGNAL = Signal(signal_id="position", market="", kind="POSITION", legs=[], size=0, expected_profit=0,
                         book_ts_ms={}, created_ns=0, expires_ns=0)
