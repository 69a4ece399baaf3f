"""Tokens held outside a complete set, and their sale.

A leg that filled alone is sold back at once (`unwind`, FAK, bounded
slippage); what does not sell is recorded as held (journal `holdings`, keyed
by what caused it, so a replay after a crash adds nothing twice) and `clear`
sells it later, widening the limit by `executor.unwind_max_price_move` per
attempt down to 0.01. Every sale that errors is looked up at the venue by its
client id, so a sale that went through is never taken for "not sold".
Each clearing attempt has its own key (the token's attempt number, never
reused) and its outcome is booked in one transaction with the tokens it sold.

A sale whose outcome the venue could not tell (it errored, and so did the
lookup; or the process died before its answer was booked) stays "in doubt"
in the journal: `clearing` is journaled before its order goes, an unwind's
when it errors. While a sale is in doubt the books may be behind the chain by
exactly that sale, so the reconciler does not compare and no other sale of
the token goes; `resolve` asks the venue again (at start, before every
clearing round, in every reconciliation round) and books what it says.
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


class SaleInDoubt(Exception):
    """A sale errored and the venue could not say whether it has it."""


class Positions:
    def __init__(self, venue: VenuePort, retry: RetryPolicy, journal: Journal, clock: Any,
                 config: Callable[[], Config], touched: Callable[[list[str], int], None]) -> None:
        self.venue, self.retry, self.journal, self.clock = venue, retry, journal, clock
        self._config = config
        self._touched = touched  # our orders traded on these books at this time (the stale rule)
        self.unhedged_legs = 0  # legs whose unwind did not complete (recorded in the journal)
        self.cleared = 0  # shares of such legs sold later by `clear`
        self.resolve_errors = 0  # lookups of sales in doubt the venue did not answer

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
            found = await self._lookup(cid, exc)
            if found is None:
                raise
            log.info("sale %s errored (%s) but the venue has it: %s filled", cid[:12], exc, found.filled)
            return found

    async def _lookup(self, cid: str, cause: BaseException) -> Fill | None:
        """The venue's record of this client id; SaleInDoubt when it cannot say."""
        try:
            return await self.retry.run(lambda: self.venue.find(cid), dependency="clob")
        except Exception as exc:
            raise SaleInDoubt(f"{cause}; and the venue could not say whether it has the sale: {exc}") from exc

    async def _settled(self, fill: Fill, cid: str) -> Fill:
        """A matched sale followed until its trade settles; after an error the venue is
        asked by client id (as `sell` does): what it knows is what happened."""
        try:
            return await self.venue.settle(fill)  # type: ignore[attr-defined]
        except Exception as exc:
            found = await self._lookup(cid, exc)
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
                with self.journal.step():
                    self.journal.hold(f"{key}:unwind:{i}", leg.token_id, leg.size, leg.limit_price)
                    if isinstance(exc, SaleInDoubt):  # it may have sold: booked against the position if so
                        self.journal.doubt_sale(client_id(key, i, "unwind"), f"{key}:unwind:{i}:late",
                                                leg.token_id, leg.size)
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
        total = await self.resolve()
        move = to_micro(self._config().executor.unwind_max_price_move)
        doubtful = {token for _, _, token, _ in self.journal.sales_in_doubt()}
        for token_id, size, ref, attempts in self.journal.positions():
            if token_id in doubtful:  # a sale of it may have gone: never a second one on top
                continue
            limit = max(TICK_GRID, (ref - move * (attempts + 2)) // TICK_GRID * TICK_GRID)
            key = f"position:{token_id}:{self.journal.sale_attempt(token_id)}"
            cid = client_id(key, 0, "clear")
            self.journal.doubt_sale(cid, key, token_id, size)  # before the order: a crash leaves it asked
            placed_ms = self.clock.time_ns() // 1_000_000
            try:
                f = await self.sell(token_id, limit, size, cid)
                self._touched([token_id] if f.filled else [], placed_ms)
            except SaleInDoubt as exc:  # asked again by `resolve`, before anything else
                log.warning("open position %s: sale %s in doubt: %s", token_id[:12], cid[:12], exc)
                continue
            except Exception as exc:  # the venue does not have it: still unsellable, tried again next round
                self.journal.drop_doubt(cid)
                log.warning("open position %s not sold yet: %s", token_id[:12], exc)
                continue
            total += self._book(key, token_id, f, cid)
        return total

    async def resolve(self) -> int:
        """Ask the venue about every sale in doubt and book what it says; returns the
        proceeds. A sale the venue still cannot tell about stays in doubt."""
        total = 0
        for cid, key, token_id, _size in self.journal.sales_in_doubt():
            try:
                f = await self.retry.run(lambda c=cid: self.venue.find(c), dependency="clob")
            except Exception as exc:
                self.resolve_errors += 1
                log.warning("sale %s of %s still in doubt: %s", cid[:12], token_id[:12], exc)
                continue
            if f is None:
                self.journal.drop_doubt(cid)
                log.info("sale %s of %s in doubt: the venue does not have it, nothing sold", cid[:12], token_id[:12])
                continue
            log.info("sale %s of %s in doubt: the venue has it, %s sold", cid[:12], token_id[:12], f.filled)
            total += self._book(key, token_id, f, cid)
        return total

    def _book(self, key: str, token_id: str, f: Fill, cid: str) -> int:
        proceeds = f.cost - f.fee if f.filled else 0
        self.journal.record_sale(key, POSITION_SIGNAL, token_id, f.filled, proceeds, fill_flows([f], "sale"), cid=cid)
        if f.filled:
            self.cleared += f.filled
        return proceeds


# The journal keys a later position sale like an execution; this is its "signal".
POSITION_SIGNAL = Signal(signal_id="position", market="", kind="POSITION", legs=[], size=0, expected_profit=0,
                         book_ts_ms={}, created_ns=0, expires_ns=0)
