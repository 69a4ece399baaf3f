"""A matched trade's life after the order was answered, as on Polymarket:

    MATCHED --(settlement_latency_ms)--> MINED --(as long again)--> CONFIRMED
    MATCHED -> RETRYING (a reverted settlement, resubmitted) -> MINED -> CONFIRMED
    MATCHED -> FAILED (terminal: nothing moved on chain; the liquidity goes back to the book)

Tokens and collateral move when the settlement transaction is mined: never
earlier, and never for a FAILED trade. `trade_fail_rate` and `trade_retry_rate`
inject the failures; a real revert (the trader moved the funds away since the
match) is retried once, then FAILED. Every status change is one store write,
then the listeners hear of it (the user channel, the order's record).

Until its settlement is mined a trade reserves what its trader gives, so a
second order cannot spend the same collateral (or shares) twice: `reserved`.

A restart finds the open trades in the store and finishes them (`resume`): a
fill id the exchange already settled is MINED, anything else is resubmitted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from actors.runtime.clock import Clock
from sandbox.venue.book import BUY
from sandbox.venue.clob.records import CONFIRMED, FAILED, MINED, RETRYING, T_MATCHED, TradeRecord
from sandbox.venue.clob.settlement import ChainUnavailable, SettlementFailed, Settler, settlement_call
from sandbox.venue.clob.store import VenueStore

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # a reverted settlement is resubmitted once
# The operator's node down (restarting, frozen): the settlement waits for it, then goes out.
# Failing the trade instead would tell the trader "nothing moved" about a fill that the
# chain could still mine from a pool the node kept.
CHAIN_WAIT_SECONDS = 300.0
TradeListener = Callable[[TradeRecord], None]


class TradeLifecycle:
    def __init__(self, store: VenueStore, settler: Settler, state: Any, clock: Clock, *, faults: Any = None,
                 latency_ms: Callable[[], int] = lambda: 0) -> None:
        self.store, self.settler, self.state, self.clock, self.faults = store, settler, state, clock, faults
        self.latency_ms = latency_ms
        self.counters = Counter[str]()
        self._listeners: list[TradeListener] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._executions: dict[str, Any] = {}  # trade id -> the book execution (in memory: for the revert)

    def add_listener(self, fn: TradeListener) -> None:
        """`fn(trade)` after every status change (and at the match)."""
        self._listeners.append(fn)

    def _notify(self, trade: TradeRecord) -> None:
        for fn in self._listeners:
            try:
                fn(trade)
            except Exception:  # a listener's bug must not stop a settlement
                self.counters["listener_errors"] += 1
                log.exception("trade listener failed on %s", trade.id)

    # ------------------------------------------------------------ entry points

    def matched(self, trade: TradeRecord, execution: Any) -> None:
        """A new trade (already stored MATCHED): announce it and settle it in the background."""
        self.counters["trades_matched"] += 1
        self._executions[trade.id] = execution
        self._notify(trade)
        self._spawn(trade.id, self._settle(trade))

    def resume(self) -> int:
        """Finish every open trade a previous run left (call once the chain is ready)."""
        open_trades = [t for t in self.store.open_trades() if t.id not in self._tasks]
        for t in open_trades:
            self.counters["trades_resumed"] += 1
            self._spawn(t.id, self._resume(t))
        return len(open_trades)

    def _spawn(self, trade_id: str, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks[trade_id] = task
        task.add_done_callback(lambda _t, tid=trade_id: self._tasks.pop(tid, None))

    # ------------------------------------------------------------ reservations

    def reserved(self, maker: str, token_id: str | None = None) -> int:
        """What the maker's unsettled trades hold back: collateral (cost + fee) of buys,
        or shares of `token_id` sold."""
        who = maker.lower()
        total = 0
        for t in self.store.open_trades():
            if t.maker.lower() != who or t.status in (MINED, CONFIRMED):
                continue
            if token_id is None and t.side == BUY:
                total += t.cost + t.fee
            elif token_id is not None and t.side != BUY and t.asset_id == token_id:
                total += t.size
        return total

    # ------------------------------------------------------------ the state machine

    def _set(self, trade: TradeRecord, **changes: Any) -> TradeRecord:
        new = self.store.update_trade(trade, updated_ms=self.clock.time_ns() // 1_000_000, **changes)
        if "status" in changes:
            self.counters[f"trades_{changes['status'].lower()}"] += 1
            self._notify(new)
        return new

    async def _wait(self) -> None:
        ms = self.latency_ms()
        if ms > 0:
            await self.clock.sleep(ms / 1000)

    async def _settle(self, trade: TradeRecord) -> None:
        try:
            await self._wait()
            if self.faults is not None and self.faults.trade_fails():
                self._fail(trade, "settlement failed (injected: trade_fail_rate)")
                return
            if self.faults is not None and self.faults.trade_retries():
                trade = self._set(trade, status=RETRYING, error="settlement reverted (injected); resubmitting")
                await self._wait()
            await self._submit(trade)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the trade open forever
            log.exception("settling trade %s failed unexpectedly", trade.id)
            self._fail(self.store.trade(trade.id) or trade, f"{type(exc).__name__}: {exc}")

    async def _submit(self, trade: TradeRecord) -> None:
        waited, delay = 0.0, 0.5
        while True:
            trade = self._set(trade, attempts=trade.attempts + 1)
            try:
                tx_hash = await self.settler.submit(
                    self._call(trade), on_sent=lambda h, tid=trade.id: self._sent(tid, h))
            except ChainUnavailable as exc:
                trade = self.store.trade(trade.id) or trade
                if waited >= CHAIN_WAIT_SECONDS:
                    self._fail(trade, f"settlement failed: {exc}")
                    return
                if trade.status != RETRYING:
                    trade = self._set(trade, status=RETRYING, error=f"waiting for the chain: {exc}")
                trade = self.store.update_trade(trade, attempts=trade.attempts - 1)  # nothing was sent
                self.counters["settlement_chain_waits"] += 1
                await self.clock.sleep(delay)
                waited, delay = waited + delay, min(delay * 2, 5.0)
                continue
            except SettlementFailed as exc:
                trade = self.store.trade(trade.id) or trade
                if trade.attempts < MAX_ATTEMPTS:
                    trade = self._set(trade, status=RETRYING, error=f"settlement failed: {exc.reason}")
                    await self._wait()
                    continue
                self._fail(trade, f"settlement failed: {exc.reason}", tx_hash=exc.tx_hash)
                return
            trade = self.store.trade(trade.id) or trade
            trade = self._set(trade, status=MINED, transaction_hash=tx_hash or trade.transaction_hash, error="")
            self._executions.pop(trade.id, None)
            await self._wait()
            self._set(trade, status=CONFIRMED)
            return

    def _sent(self, trade_id: str, tx_hash: str) -> None:
        trade = self.store.trade(trade_id)
        if trade is not None:
            self.store.update_trade(trade, transaction_hash=tx_hash)

    def _fail(self, trade: TradeRecord, why: str, tx_hash: str = "") -> None:
        execution = self._executions.pop(trade.id, None)
        if execution is not None:
            self.state.revert(execution)  # nothing moved: the liquidity is the book's again
        self._set(trade, status=FAILED, error=why, transaction_hash=tx_hash or trade.transaction_hash)

    async def _resume(self, trade: TradeRecord) -> None:
        try:
            call = self._call(trade)
            if await self.settler.is_settled(call.fill_id, call.exchange):
                trade = self._set(trade, status=MINED, error="")
                self._set(trade, status=CONFIRMED)
                return
            if trade.status == T_MATCHED:
                trade = self._set(trade, status=RETRYING, error="venue restarted before settlement; resubmitting")
            await self._submit(trade)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("resuming trade %s failed", trade.id)
            self._fail(self.store.trade(trade.id) or trade, f"{type(exc).__name__}: {exc}")

    def _call(self, trade: TradeRecord) -> Any:
        return settlement_call(
            fill_id=bytes.fromhex(trade.id[2:]), exchange=self.settler.exchange_for(trade.neg_risk),
            match_type=trade.match_type, trader=trade.maker, token_id=int(trade.asset_id),
            other_token_id=int(self.state.partner[trade.asset_id]), condition_id=trade.market,
            trader_buys=trade.side == BUY, shares=trade.size, cost=trade.cost, fee=trade.fee)

    async def close(self) -> None:
        """Stop at once: every open trade is in the store, and the next start resumes it
        (a settlement already broadcast is found on chain by its fill id)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def get_stats(self) -> dict[str, Any]:
        return {**dict(self.counters), "in_flight": len(self._tasks)}
