"""TxSender: one signal -> orders on the CLOB -> one on-chain transaction.

    result = await sender.execute(signal)

The pipeline (docs/architecture.md): expiry -> breaker gate -> idempotency claim
-> legs as FOK orders (client ids derived from the key) -> a partial fill is
unwound and recorded -> the transaction (merge after a BUY_SET, split before
a SELL_SET, convertPositions on the NegRiskAdapter after a NO_BASKET's NO
legs) -> outcome recorded, breaker fed, Execution returned.

Every step is idempotent (client ids at the venue, journaled hashes and a
nonce request id per transaction), so `resume(key)` after a crash runs the
same pipeline again and only does what is still missing: nothing is ever
executed twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from actors.domain.enums import SetKind, Side, TxStatus
from actors.domain.money import format_usdc, from_micro, to_micro
from actors.executor.circuit_breaker import CircuitBreaker, CircuitOpenError
from actors.executor.errors import AmbiguousOutcome
from actors.executor.idempotency import IdempotencyStore, content_hash
from actors.executor.journal import Journal
from actors.executor.legs import FINAL, SETTLED, LegEvent, LegState, client_id
from actors.executor.metrics import latencies
from actors.executor.onchain import GasTooExpensive, OnChainSender, StuckTransaction, TxReverted
from actors.executor.outcomes import (
    GAS,
    BasketMismatch,
    Ended,
    Execution,
    Flow,
    Skipped,
    Unfinished,
    Verdict,
    fill_flows,
    tx_flows,
)
from actors.executor.ports import ChainPort, Fill, OrderRejected, VenuePort
from actors.executor.positions import Positions
from actors.executor.reserve import SellReserve
from actors.executor.retry_policy import RetryPolicy
from actors.executor.risk import RiskGuard
from actors.runtime.clock import doubling
from bus.messages import Leg, Signal
from bus.trace import tracing
from config.schema import Config

log = logging.getLogger(__name__)

BATCH_MAX = 15  # POST /orders takes at most 15 orders
# A leg's journal states in which the venue told us it matched (or may match: DELAYED): on a resume
# such a leg is looked up, never placed again; and states in which it told us nothing traded.
MAY_HAVE_TRADED = frozenset({LegState.DELAYED, LegState.MATCHED, LegState.RETRYING, LegState.MINED,
                             LegState.CONFIRMED})
NOTHING_TRADED = frozenset({LegState.KILLED, LegState.UNMATCHED, LegState.FAILED})
BIPS = 10_000  # the NegRiskAdapter's fee denominator
BASKET_TERMS_TTL_NS = 60 * 10**9  # an adapter market's question count and fee, read again after this
# Fields that change when the same opportunity is signalled again: not part of the key.
VOLATILE = ["created_ns", "expires_ns", "signal_id"]


def convert_payout(outcomes: int, size: int, fee_bips: int) -> int:
    """What convertPositions of `size` NO of every one of `outcomes` questions pays, as
    the adapter computes it: (m - 1) x (size - floor(size x feeBips / 10_000))."""
    return (outcomes - 1) * (size - size * fee_bips // BIPS)


def _percentiles_us(samples: deque[int]) -> dict[str, float | int]:
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    p99 = s[min(len(s) - 1, len(s) * 99 // 100)]
    return {"n": len(s), "p50": round(s[len(s) // 2] / 1000, 1), "p99": round(p99 / 1000, 1)}


@dataclass(frozen=True, slots=True)
class _Placed:
    """Every leg's order decided at the venue: a provisional Fill or the error of each,
    the venue's refusals, and whether they were read from the journal instead."""

    outcomes: list[Any]
    rejected: list[BaseException]
    journaled: bool = False


class TradeFailed(Exception):
    """A leg's trade matched and then FAILED on chain: nothing traded, the venue's fault."""


class TxSender:
    def __init__(self, *, venue: VenuePort, chain: ChainPort, onchain: OnChainSender, breaker: CircuitBreaker,
                 retry: RetryPolicy, idempotency: IdempotencyStore, journal: Journal, clock: Any,
                 config: Callable[[], Config], nonce_stats: Callable[[], dict[str, Any]] | None = None) -> None:
        self.venue, self.chain, self.onchain, self.breaker = venue, chain, onchain, breaker
        self.retry, self.idem, self.journal, self.clock = retry, idempotency, journal, clock
        self._config = config
        self._nonce_stats = nonce_stats or dict
        self.queue_size = 0
        self.in_flight = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._placed_ms: dict[str, int] = {}  # token -> when we last placed an order that traded on it (epoch ms)
        self._active: set[str] = set()  # keys being executed or resumed now
        self.activity = 0  # bumped whenever an execution or a sale starts or is booked (the reconciler's check)
        self._clearing = False
        self.batches = self.batch_fallbacks = 0
        self.counts: dict[str, int] = {s.value: 0 for s in TxStatus}
        self.by_kind: dict[str, dict[str, int]] = {}  # strategy -> executions, successes, pnl, gas
        self._basket_terms: dict[str, tuple[int, tuple[int, int]]] = {}  # market id -> (read at, terms)
        self._reserved = 0  # cost of YES baskets being bought now (not locked in the journal yet)
        self.total = 0
        self.realized_pnl = 0
        self.gas_spent = 0
        self.unwind_loss = 0
        self.risk = RiskGuard(journal, breaker, clock, config)  # the portfolio limits (config `risk`)
        self.risk.refresh()
        self.positions = Positions(venue, retry, journal, clock, config, self._touched)
        self.reserve = SellReserve(journal, onchain, chain, clock, config, self._reserve_gas)
        self._event_ns: dict[str, tuple[int, int]] = {}  # key -> (the venue frame's receive, execute() start)
        self.tick_to_trade_ns: deque[int] = deque(maxlen=10_000)
        # The same by strategy, and cut where the time goes: feed + router (to the signal), the second hop
        # and the executor's queue (to execute()), the executor (to the order request).
        self.tick_to_trade_by_kind: dict[str, deque[int]] = {}
        self.tick_to_trade_parts: dict[str, deque[int]] = {
            p: deque(maxlen=10_000) for p in ("to_signal", "to_execute", "to_order")}
        # From the router's signal to its merge/convert mined (a SELL_SET: its last leg settled).
        self.signal_to_settled_ns: deque[int] = deque(maxlen=10_000)
        self.tick_to_trade_latency, self.signal_to_settled_latency = latencies()  # the same, for /metrics
        self.leg_events = self.leg_events_ignored = 0
        self.balance_waits = 0  # merges/converts that waited for the node to show a leg's tokens
        self.balance_read_errors = 0
        if hasattr(venue, "observer"):  # the venue tells each leg's state; the journal keeps it
            venue.observer = self._leg_event

    def _leg_event(self, ev: LegEvent) -> None:
        if self.journal.leg_event(ev):
            self.leg_events += 1
        else:
            self.leg_events_ignored += 1

    # -- the pipeline
    async def execute(self, signal: Signal, attempt: int = 1, event_ns: int | None = None) -> Execution:
        """`event_ns`: when the feed received the venue frame behind this signal
        (the envelope's event time); the first order request closes tick-to-trade."""
        self.in_flight += 1
        try:
            return await self._execute(signal, attempt, event_ns)
        finally:
            self.in_flight -= 1

    async def _execute(self, signal: Signal, attempt: int, event_ns: int | None) -> Execution:
        key = self.idem.generate(signal, exclude=VOLATILE)
        if event_ns:
            self._event_ns[key] = (event_ns, self.clock.time_ns())
        if self.clock.time_ns() > signal.expires_ns:
            return self.book(Execution(signal, key, attempt, TxStatus.EXPIRED, "signal expired before execution"))
        refusal = self.risk.before(signal)  # a standing breach forces the breaker open: acquire() refuses
        if refusal is not None:
            return self.book(Execution(signal, key, attempt, TxStatus.REJECTED, refusal))
        try:
            permit = self.breaker.acquire("trade")
        except CircuitOpenError as exc:
            return self.book(Execution(signal, key, attempt, TxStatus.REJECTED, str(exc)))
        try:
            with self.journal.step():  # the claim and its journal entry: both or neither
                claim = self.idem.claim(key, content_hash(signal, exclude=VOLATILE))
                if claim.owned:
                    self.journal.begin(key, signal)
        except BaseException:  # a locked or full database: the permit must not leak (HALF_OPEN would starve)
            self.breaker.release(permit)
            raise
        if not claim.owned:
            self.breaker.release(permit)
            why = f"already {claim.record.status.value.lower()}"
            return self.book(Execution(signal, key, attempt, TxStatus.DUPLICATE, why))
        self._active.add(key)
        self.activity += 1
        self.risk.started(key, signal)
        try:
            return await self._run(signal, key, attempt, permit)
        finally:
            self._active.discard(key)

    @asynccontextmanager
    async def _market(self, signal: Signal, fresh: bool) -> AsyncIterator[None]:
        """One placement per market at a time: two would compete for the same
        liquidity and turn each other into partial fills. The lock covers the legs
        and their unwind, not the on-chain steps (a merge touches no liquidity).
        A fresh execution that waited for it is dropped when its signal expired or
        was computed from books older than our last placement on the market (that
        liquidity may be ours already): nothing traded, nothing counted."""
        async with self._locks.setdefault(self._lock_key(signal), asyncio.Lock()):
            if fresh:
                self._judge(signal)
            yield

    @staticmethod
    def _lock_key(signal: Signal) -> str:
        """A binary set's condition id; a basket's event and side (its legs are m markets:
        a NO basket takes the NO asks, a YES basket the YES asks, never the same orders)."""
        if signal.kind in (SetKind.NO_BASKET, SetKind.YES_BASKET):
            return f"event:{signal.kind}:{signal.neg_risk_market_id or signal.market}"
        return signal.market

    def _judge(self, signal: Signal) -> None:
        if self.clock.time_ns() > signal.expires_ns:
            raise Skipped(TxStatus.EXPIRED, "signal expired while queued behind its market")
        # Per token: a book our fills did not touch (a leg the book killed) is as good as it was.
        if any(signal.book_ts_ms.get(leg.token_id, 0) < self._placed_ms.get(leg.token_id, 0) for leg in signal.legs):
            raise Skipped(TxStatus.STALE, "signal computed from books older than our last trade on its market")

    async def resume(self, key: str) -> Execution | None:
        """Finish an unfinished execution: one a previous process started (start-up),
        or one left PENDING (reconciliation while running). None if it is running."""
        if key in self._active:
            return None
        claim = self.idem.get(key)
        if claim is not None and claim.status.value != "IN_PROGRESS":
            # It ended after the round listed it (it was running then): never run it again.
            return None
        entry = self.journal.get(key)
        if entry is None:
            self.idem.fail(key, "no journal entry: nothing was done")
            return None
        signal, state, _ = entry
        if state == "started":
            # It was still queued behind its market: no order, no transaction. Running
            # it now would trade an old signal, whatever the breaker says: dropped.
            return self.book(Execution(signal, key, 1, TxStatus.EXPIRED, "not started before the restart: dropped"),
                              lambda: self.idem.fail(key, "not started before the restart"))
        if state == "reserved":
            # Its set drawn from the sell reserve, no order sent: the set goes back, nothing traded.
            self.reserve.restock(key, signal)
            return self.book(Execution(signal, key, 1, TxStatus.EXPIRED, "not started before the restart: its set "
                                       "is back in the sell reserve"),
                             lambda: self.idem.fail(key, "not started before the restart"))
        # No breaker permit: what was started must be finished whatever the breaker says.
        self._active.add(key)
        try:
            return await self._run(signal, key, 1, None)
        finally:
            self._active.discard(key)

    async def reconcile(self) -> list[Execution]:
        """Finish every unfinished execution that is not running now."""
        out = []
        for rec in self.idem.in_progress():
            with tracing(self.journal.trace_of(rec.key)):  # its log lines carry the trace it began under
                result = await self.resume(rec.key)
            if result is not None:
                out.append(result)
        await self.reserve.resume()
        self.reserve.release_excess()
        if self.journal.sales_in_doubt() and not self._clearing:  # before the books are compared
            self._clearing = True
            self.activity += 1
            try:
                self.realized_pnl += await self.positions.resolve()
            finally:
                self._clearing = False
                self.activity += 1
        return out

    async def _run(self, signal: Signal, key: str, attempt: int, permit: Any) -> Execution:
        try:
            end = await self._pipeline(signal, key, fresh=permit is not None)
        except (StuckTransaction, AmbiguousOutcome, Unfinished) as exc:
            # Unknown outcome: keep the claim IN_PROGRESS; reconciliation finishes it.
            if permit is not None:
                self.breaker.on_failure(permit, exc)
            return self.book(Execution(signal, key, attempt, TxStatus.PENDING, str(exc)))
        except Skipped as exc:
            end = Ended(exc.status, Verdict.NONE, exc.why)
        except Exception as exc:  # refused before anything traded (or a split that reverted): nothing unbooked
            log.warning("execution %s failed: %s", key[:12], exc, exc_info=not isinstance(
                exc, (OrderRejected, GasTooExpensive, TxReverted, BasketMismatch)))
            flows = (Flow(GAS, -exc.gas_cost, exc.receipt.tx_hash),) if isinstance(exc, TxReverted) else ()
            end = Ended(TxStatus.FAILED, Verdict.FAILURE, f"{type(exc).__name__}: {exc}", flows)
        if end.verdict is not Verdict.SUCCESS and end.why:
            log.info("execution %s: %s: %s", key[:12], end.status, end.why)
        elif end.verdict is Verdict.SUCCESS:  # one line per execution: `polyarb trace` finds its end
            log.info("execution %s: %s %s, pnl %s USDC, gas %s", key[:12], end.status, signal.kind,
                     format_usdc(end.pnl), format_usdc(end.gas))
        if permit is not None:
            if end.verdict is Verdict.SUCCESS:
                self.breaker.on_success(permit)
            elif end.verdict is Verdict.FAILURE:
                self.breaker.on_failure(permit, end.why)
            else:  # the market's doing, or dropped unexecuted: not counted either way
                self.breaker.release(permit)
        if end.gas:
            self.breaker.record_gas_cost(end.gas, failed=end.verdict is Verdict.FAILURE)
        r = Execution.of(signal, key, attempt, end)
        if permit is not None and r.status is TxStatus.SUCCESS:
            settled_ns = self.clock.time_ns() - signal.created_ns
            self.signal_to_settled_ns.append(settled_ns)
            self.signal_to_settled_latency.observe_ns(settled_ns)
        if r.success or self._traded(r):
            # Its claim ends for good. An execution that reached the venue or the chain is
            # never run again under its key: a second run would reuse its journal row, its
            # cash flows' keys and its legs' client ids (a chaos run found keys run twice).
            return self.book(r, lambda: self.idem.complete(key, {
                "status": r.status.value, "tx_hash": r.tx_hash, "pnl": r.realized_pnl, "gas": r.gas_cost}))
        why = end.why or r.status.value
        return self.book(r, lambda: self.idem.fail(key, why))  # nothing happened: the key may be claimed again

    def _traded(self, r: Execution) -> bool:
        """Whether an execution moved money or sent an order (its legs are journaled before they go)."""
        return bool(r.flows) or bool(self.journal.legs(r.idempotency_key))

    async def _pipeline(self, signal: Signal, key: str, fresh: bool) -> Ended:
        n = len(signal.legs)
        cfg = self._config()
        gas_hint = cfg.executor.gas_limit_per_outcome * n
        prior = None if fresh else self.journal.get(key)  # a fresh execution has journaled nothing yet
        done = prior[2] if prior else {}
        if signal.kind == SetKind.NO_BASKET:
            return await self._basket(signal, key, fresh, done, gas_hint)
        if signal.kind == SetKind.YES_BASKET:
            return await self._yes_basket(signal, key, fresh, done)
        if signal.kind == SetKind.SELL_SET:
            return await self._sell_set(signal, key, fresh, done, gas_hint)
        # BUY_SET: the legs, then merge the complete set into collateral.
        gas_budget = await self.onchain.quote(self.chain.merge_call(signal.market, n, signal.size), gas_hint,
                                              cached=True)
        if gas_budget[3] > to_micro(cfg.trading.max_gas_cost):
            raise GasTooExpensive(f"merge would cost up to {from_micro(gas_budget[3])} USDC")
        fills = await self._buy_all(signal, key, fresh, done)
        if isinstance(fills, Ended):
            return fills
        # The market is free again: the merge touches no liquidity.
        merge = await self._after_legs(key, signal, fills, lambda: self.onchain.send(
            key, "merge", self.chain.merge_call(signal.market, n, signal.size), gas_hint, prior=done.get("merge")),
            sent=bool(done.get("merge")))
        if isinstance(merge, Ended):
            return merge
        flows = fill_flows(fills) + tx_flows("merge", signal.size, merge.tx_hash, merge.gas_cost)
        return Ended(TxStatus.SUCCESS, Verdict.SUCCESS, None, tuple(flows), merge.tx_hash, merge.nonce, tuple(fills))

    async def _sell_set(self, signal: Signal, key: str, fresh: bool, done: dict[str, Any], gas_hint: int) -> Ended:
        """SELL_SET: a complete set, from the sell reserve or split now, then sell every
        outcome. Nothing sold: the set goes back (into the reserve, or merged); some
        sold: the rest is sold back (unwound)."""
        try:
            return await self._sell_set_legs(signal, key, fresh, done, gas_hint)
        finally:
            self.reserve.refill(signal)  # top the market's reserve up, in the background

    async def _sell_set_legs(self, signal: Signal, key: str, fresh: bool, done: dict[str, Any],
                             gas_hint: int) -> Ended:
        n = len(signal.legs)
        if fresh:  # judged before the set costs anything; once drawn or split, the legs' FOK limits guard
            self._judge(signal)
        drawn = bool(done.get("reserve")) or (fresh and self.reserve.draw(key, signal))
        split = None
        if drawn:
            set_flows = [self.reserve.drawn_flow(key, signal)]
        else:
            split = await self.onchain.send(key, "split", self.chain.split_call(signal.market, n, signal.size),
                                            gas_hint, prior=done.get("split"))
            set_flows = tx_flows("split", -signal.size, split.tx_hash, split.gas_cost)
        skipped: Skipped | None = None
        unwound: list[Flow] = []
        try:
            # A drawn set goes back for free: a signal that waited behind the market is judged
            # again. A split one cost gas already: its legs' FOK limits are the guard.
            async with self._market(signal, fresh=fresh and drawn):
                placed = await self._place(signal, key, done.get("fills"), fresh)
            fills, errors = await self._settle(signal, key, placed)  # the market is free meanwhile
            sold = [f.filled == leg.size for f, leg in zip(fills, signal.legs, strict=True)]
            if any(sold) and not all(sold):
                # The unwind sells into the book again: under the lock until its sales are placed.
                unwound = await self.positions.unwind(key, [leg for leg, ok in zip(signal.legs, sold, strict=True)
                                                            if not ok], lambda: self._market(signal, fresh=False))
        except Skipped as exc:  # the set is ours already: it goes back
            skipped, fills, errors = exc, [], []
            sold = [False] * n
        except (Unfinished, StuckTransaction, AmbiguousOutcome):
            raise
        except Exception as exc:  # the set is ours (drawn or split): never FAILED with it unbooked
            raise Unfinished(f"set {'drawn' if drawn else 'split'}, then {type(exc).__name__}: {exc}") from exc
        tx_hash, nonce = (split.tx_hash, split.nonce) if split else (None, None)
        if all(sold):
            return Ended(TxStatus.SUCCESS, Verdict.SUCCESS, None, tuple(set_flows + fill_flows(fills)),
                         tx_hash, nonce, tuple(fills))
        if not any(sold):
            end = self._nothing_traded("sell", errors)
            why = skipped.why if skipped else end.why
            if drawn:  # the set is still in the wallet: back into the reserve, no transaction
                self.reserve.restock(key, signal)
                if skipped:
                    return Ended(skipped.status, Verdict.NONE, skipped.why)
                return Ended(end.status, end.verdict, why)
            # Split for it: the set goes back into collateral, whatever killed the legs.
            whole = [Fill("", "", leg.token_id, Side.BUY, signal.size, 0, 0, "SPLIT") for leg in signal.legs]
            merge = await self._after_legs(key, signal, whole, lambda: self.onchain.send(
                key, "merge", self.chain.merge_call(signal.market, n, signal.size), gas_hint,
                prior=done.get("merge")), sent=bool(done.get("merge")))
            if isinstance(merge, Ended):  # reverted: the set is held, and the split paid for it
                return replace(merge, flows=tuple(set_flows) + merge.flows)
            flows = set_flows + tx_flows("merge", signal.size, merge.tx_hash, merge.gas_cost)
            return Ended(end.status, end.verdict, why, tuple(flows))
        return self._partial(fills, set_flows + fill_flows(fills) + unwound, errors)

    async def _buy_all(self, signal: Signal, key: str, fresh: bool, done: dict[str, Any]) -> list[Fill] | Ended:
        """Every BUY leg placed under the market lock and settled outside it: the fills
        when all filled, else the outcome (nothing traded, or the partial unwound,
        under the lock again: the unwind sells into the book)."""
        async with self._market(signal, fresh):
            placed = await self._place(signal, key, done.get("fills"), fresh)
        fills, errors = await self._settle(signal, key, placed)
        bought = [f.filled == leg.size for f, leg in zip(fills, signal.legs, strict=True)]
        if not any(bought):
            return self._nothing_traded("buy", errors)
        if not all(bought):
            held = [leg for leg, ok in zip(signal.legs, bought, strict=True) if ok]
            held_fills = [f for f, ok in zip(fills, bought, strict=True) if ok]
            unwound = await self.positions.unwind(key, held, lambda: self._market(signal, fresh=False))
            return self._partial(fills, fill_flows(held_fills) + unwound, errors)
        return fills

    async def _basket(self, signal: Signal, key: str, fresh: bool, done: dict[str, Any], gas_hint: int) -> Ended:
        """NO_BASKET: one NO of every outcome of a neg-risk event (the legs, in question
        order), then convertPositions of all m questions on the NegRiskAdapter, which
        pays (m - 1) x (size - convert fee) collateral and no YES. The adapter's terms
        are checked before any order; a partial fill is unwound like a BUY_SET's; the
        convert runs outside the lock, through `_after_legs`."""
        n = len(signal.legs)
        market_id = signal.neg_risk_market_id
        cfg = self._config()
        if fresh:  # nothing placed yet: the adapter's terms first
            if not market_id:
                raise BasketMismatch("NO_BASKET signal without a neg_risk_market_id")
            questions, fee_bips = await self._convert_terms(market_id)
            if questions != n:
                raise BasketMismatch(f"adapter market {market_id[:18]} has {questions} questions, "
                                     f"the basket {n} legs: not a complete set")
            if fee_bips > signal.convert_fee_bips:
                raise BasketMismatch(f"adapter convert fee {fee_bips} bips > {signal.convert_fee_bips} priced in")
            call = self.chain.convert_call(market_id, (1 << n) - 1, signal.size)
            gas_budget = await self.onchain.quote(call, gas_hint, cached=True)
            if gas_budget[3] > to_micro(cfg.trading.max_gas_cost):
                raise GasTooExpensive(f"convert would cost up to {from_micro(gas_budget[3])} USDC")
            # Kept with the execution (its state stays "started": nothing placed yet), so a
            # resume books the convert with the fee the adapter charged.
            self.journal.update(key, "started", convert_fee_bips=fee_bips)
        else:
            fee_bips = done.get("convert_fee_bips")
            if fee_bips is None:  # journaled by an older process, or lost: the adapter's fee is fixed per market
                try:
                    fee_bips = (await self._convert_terms(market_id))[1]
                except Exception as exc:  # the legs may have traded: never FAILED with them unbooked
                    raise Unfinished(f"convert fee not readable: {type(exc).__name__}: {exc}") from exc
        fills = await self._buy_all(signal, key, fresh, done)
        if isinstance(fills, Ended):
            return fills
        # The event is free again: the convert touches no liquidity.
        convert = await self._after_legs(key, signal, fills, lambda: self.onchain.send(
            key, "convert", self.chain.convert_call(market_id, (1 << n) - 1, signal.size), gas_hint,
            prior=done.get("convert")), sent=bool(done.get("convert")), purpose="convert")
        if isinstance(convert, Ended):
            return convert
        flows = fill_flows(fills) + tx_flows("convert", convert_payout(n, signal.size, fee_bips), convert.tx_hash,
                                             convert.gas_cost)
        return Ended(TxStatus.SUCCESS, Verdict.SUCCESS, None, tuple(flows), convert.tx_hash, convert.nonce,
                     tuple(fills))

    async def _yes_basket(self, signal: Signal, key: str, fresh: bool, done: dict[str, Any]) -> Ended:
        """YES_BASKET: one YES of every outcome of a neg-risk event, held until it
        resolves (the winner then redeems `size`: `redemption.Redeemer`). Refused before
        any order when its cost would lock more than `trading.max_locked_capital`; the
        cost is booked now (a cash flow), the tokens are held, not sold."""
        cost = sum(leg.cost + leg.fee for leg in signal.legs)
        if fresh:
            if not signal.neg_risk_market_id:
                raise BasketMismatch("YES_BASKET signal without a neg_risk_market_id")
            cap = to_micro(self._config().trading.max_locked_capital)
            locked = self.journal.locked_capital() + self._reserved
            if locked + cost > cap:
                raise Skipped(TxStatus.REJECTED, f"a YES basket of {from_micro(cost)} USDC would lock "
                              f"{from_micro(locked + cost)} > trading.max_locked_capital {from_micro(cap)}")
        self._reserved += cost
        try:
            fills = await self._buy_all(signal, key, fresh, done)
        finally:
            self._reserved -= cost
        if isinstance(fills, Ended):
            return fills
        paid = sum(f.cost + f.fee for f in fills)
        self.journal.lock_basket(key, signal.neg_risk_market_id, [leg.token_id for leg in signal.legs],
                                 signal.size, paid)
        return Ended(TxStatus.HELD, Verdict.SUCCESS, None, tuple(fill_flows(fills)), fills=tuple(fills))

    async def _convert_terms(self, market_id: str) -> tuple[int, int]:
        """(question count, fee bips) of an adapter market, read at most once a minute."""
        now = self.clock.monotonic_ns()
        cached = self._basket_terms.get(market_id)
        if cached is not None and now - cached[0] < BASKET_TERMS_TTL_NS:
            return cached[1]
        terms = await self.retry.run(lambda: self.chain.convert_terms(market_id), dependency="chain")
        self._basket_terms[market_id] = (now, terms)
        return terms

    async def _after_legs(self, key: str, signal: Signal, held: list[Fill], step: Callable[[], Any],
                          sent: bool, purpose: str = "merge") -> Any:
        """The on-chain step that follows traded legs (the merge, or a basket's convert):
        its result, or the outcome when it reverted. The legs are paid whatever it does:
        a reverted step leaves their tokens in the wallet, recorded as held (the books
        keep the cost, `clear_positions` sells them); any other error leaves the
        execution unfinished (PENDING), for reconciliation to finish it, never FAILED
        with its side effects unbooked. `sent`: the journal holds an earlier attempt of it
        (a resume): its tokens may be burnt already, so the balance check is skipped."""
        if not sent:
            await self._tokens_on_chain(signal, held)
        try:
            return await step()
        except (StuckTransaction, AmbiguousOutcome):
            raise
        except TxReverted as exc:
            with self.journal.step():
                for i, (leg, f) in enumerate(zip(signal.legs, held, strict=True)):
                    if f.filled:
                        self.journal.hold(f"{key}:{purpose}_reverted:{i}", leg.token_id, f.filled, leg.limit_price)
            flows = [*fill_flows(held), Flow(GAS, -exc.gas_cost, exc.receipt.tx_hash)]
            return Ended(TxStatus.FAILED, Verdict.FAILURE, f"TxReverted: {exc}", tuple(flows))
        except Exception as exc:
            raise Unfinished(f"legs traded, then {type(exc).__name__}: {exc}") from exc

    async def _tokens_on_chain(self, signal: Signal, held: list[Fill]) -> None:
        """The venue said every leg's trade is mined; the step after the legs burns their
        tokens, so they must show in the wallet as our node sees it (it may lag the
        venue's). Waited for up to `executor.balance_wait_seconds`, then the execution
        stays unfinished (PENDING) for reconciliation: never a merge that must revert."""
        need = {f.token_id: signal.size for f in held if f.token_id and f.status != "SPLIT"}  # ours: mined
        if not need:
            return
        cfg = self._config().executor
        deadline = self.clock.monotonic_ns() + int(cfg.balance_wait_seconds * 1e9)
        waits = doubling(cfg.receipt_poll_first_seconds, cfg.receipt_poll_seconds)  # chain reads, like receipts
        short, waited, failed = need, False, False
        while True:
            try:
                have = await self.chain.token_balances(sorted(need))
                short = {t: n - have.get(t, 0) for t, n in need.items() if have.get(t, 0) < n}
            except Exception as exc:  # the node is down: the same as not there yet (counted, logged once)
                self.balance_read_errors += 1
                if not failed:
                    log.warning("token balances not readable, still waiting: %s", exc)
                failed = True
            if not short:
                self.balance_waits += waited
                return
            if self.clock.monotonic_ns() > deadline:
                raise Unfinished("legs matched and settled at the venue, but the wallet lacks "
                                 + ", ".join(f"{from_micro(n)} of {t[:12]}" for t, n in short.items()))
            waited = True
            await self.clock.sleep(next(waits))

    async def clear_positions(self) -> int:
        """Sell what earlier unwinds could not (`positions.Positions.clear`); returns the proceeds."""
        self._clearing = True
        self.activity += 1
        try:
            proceeds = await self.positions.clear()
            self.realized_pnl += proceeds
            return proceeds
        finally:
            self._clearing = False
            self.activity += 1

    def quiet(self) -> bool:
        """Nothing under way that moves money: the books can be compared with the chain."""
        pending = self._nonce_stats().get("pending_count", 0)
        return (self.in_flight == 0 and not self._active and not self._clearing and not pending
                and not self.idem.in_progress() and not self.reserve.busy() and not self.journal.sales_in_doubt())

    @staticmethod
    def _nothing_traded(side: str, errors: list[BaseException]) -> Ended:
        """Every leg killed by the book = stale (the market's doing); killed by venue
        errors = a failure the breaker must see."""
        if errors:
            return Ended(TxStatus.FAILED, Verdict.FAILURE, f"VenueFailure: every {side} leg failed: {errors[0]}")
        return Ended(TxStatus.STALE, Verdict.MARKET, f"every {side} leg was killed: the books had moved")

    def _partial(self, fills: list[Fill], flows: list[Flow], errors: list[BaseException]) -> Ended:
        """Some legs filled and were unwound. Others failed at the venue (an error, a
        refusal): a failure. Others were killed by the book: a market outcome the
        breaker ignores, so a healthy system can pass its HALF_OPEN probes."""
        filled = sum(f.filled > 0 for f in fills)
        why = f"; a leg failed: {errors[0]}" if errors else "; the others were killed by the book"
        pnl = sum(f.amount for f in flows)
        self.unwind_loss += -pnl if pnl < 0 else 0
        return Ended(TxStatus.PARTIAL_UNWOUND, Verdict.FAILURE if errors else Verdict.MARKET,
                     f"{filled}/{len(fills)} legs filled{why}; unwound, pnl {from_micro(pnl)} USDC", tuple(flows),
                     fills=tuple(fills))

    async def _place(self, signal: Signal, key: str, journaled: list[list[Any]] | None = None,
                     fresh: bool = False) -> _Placed:
        """Every leg at once, each FOK, each under the retry policy (safe: client ids),
        until the venue decided each order: what competes for the market's liquidity,
        and all the market lock must cover. A match is provisional until `_settle`.
        A resumed execution whose fills are journaled reads them instead."""
        told: dict[str, LegState] = {}  # a resume: what the venue told of each leg before the crash
        if journaled is None and not fresh:  # a resume: the legs' own records, when every one is decided
            rows = self.journal.legs(key)
            if len(rows) == len(signal.legs) and all(st in FINAL or st in SETTLED for _, st, *_ in rows):
                journaled = [[o, f if st in SETTLED else 0, c if st in SETTLED else 0, fe if st in SETTLED else 0]
                             for _, st, o, f, c, fe in rows]
            told = {cid: st for cid, st, *_ in rows if st in MAY_HAVE_TRADED or st in NOTHING_TRADED}
        if journaled is not None and len(journaled) == len(signal.legs):
            return _Placed([Fill(client_id(key, i), str(order_id), leg.token_id, leg.side, int(filled), int(cost),
                                 int(fee), "JOURNALED") for i, (leg, (order_id, filled, cost, fee))
                            in enumerate(zip(signal.legs, journaled, strict=True))], [], journaled=True)
        rejected: list[BaseException] = []

        async def one(i: int, leg: Leg) -> Fill:
            cid = client_id(key, i)
            if told.get(cid) in NOTHING_TRADED:  # killed or failed before the crash: decided, nothing to ask
                return Fill(cid, "", leg.token_id, leg.side, 0, 0, 0, str(told[cid]).upper())
            if cid in told:
                # Matched (or decided) before the crash: looked up, never placed again. A placement
                # relies on the venue's client-id check, and a venue restarting its engine refuses
                # before it (chaos seed 46: a sold set booked unsold and merged back).
                found = await self.retry.run(lambda: self.venue.find(cid, settle=False), dependency="clob")
                if found is None:
                    raise ConnectionError(f"leg {i} was answered before the crash; the venue does not find it now")
                return found
            try:
                return await self.retry.run(
                    lambda: self.venue.place(leg.token_id, leg.side, leg.limit_price, leg.size, cid,
                                             settle=False), dependency="clob")
            except OrderRejected as exc:  # no balance, market closed: the venue said no, not the book
                if not fresh:  # a resume: an earlier placement may have traded; only "no such order" proves not
                    found = await self.retry.run(lambda: self.venue.find(cid, settle=False), dependency="clob")
                    if found is not None:
                        return found
                log.info("leg %d rejected: %s", i, exc)
                rejected.append(exc)
                return Fill(cid, "", leg.token_id, leg.side, 0, 0, 0, f"REJECTED: {exc}")

        cids = [client_id(key, i) for i in range(len(signal.legs))]
        with self.journal.step():  # the legs PLACED, before their request goes out
            self.journal.update(key, "legs", legs=cids)
            self.journal.place_legs(key, [(cid, leg.token_id, str(leg.side)) for cid, leg in zip(
                cids, signal.legs, strict=True)])
        placed_ms = self.clock.time_ns() // 1_000_000  # books older than this cannot show our fills
        started = self._event_ns.pop(key, None)
        if started:
            self._tick_to_trade(signal, *started)
        first = await self._batch(signal, key) if fresh else None  # a resume: each leg on its own (above)
        if first is not None:
            for i, got in enumerate(first):
                if isinstance(got, OrderRejected):
                    log.info("leg %d rejected: %s", i, got)
                    rejected.append(got)
                    leg = signal.legs[i]
                    first[i] = Fill(client_id(key, i), "", leg.token_id, leg.side, 0, 0, 0, f"REJECTED: {got}")

        async def decide(i: int, leg: Leg) -> Fill:
            got = first[i] if first is not None else None
            if isinstance(got, Fill):
                return got
            return await one(i, leg)  # not in the batch's answer: on its own, under the retry policy

        # return_exceptions: one leg's error must not hide another leg's fill.
        outcomes = list(await asyncio.gather(*(decide(i, leg) for i, leg in enumerate(signal.legs)),
                                             return_exceptions=True))
        self._touched([o.token_id for o in outcomes if isinstance(o, Fill) and o.filled], placed_ms)
        return _Placed(outcomes, rejected)

    async def _settle(self, signal: Signal, key: str, placed: _Placed) -> tuple[list[Fill], list[BaseException]]:
        """Each matched leg followed until its trades are on chain (outside the market
        lock: settlement takes the venue seconds and competes for nothing). Returns the
        fills and the errors of legs that never reached the book, or whose trade FAILED."""
        if placed.journaled:
            return list(placed.outcomes), []
        follow = getattr(self.venue, "settle", None)

        async def settled(out: Any) -> Any:
            if isinstance(out, Fill) and follow is not None:
                return await follow(out)
            return out

        outcomes = await asyncio.gather(*(settled(o) for o in placed.outcomes), return_exceptions=True)
        fills: list[Fill] = []
        errors: list[BaseException] = []
        for i, (leg, out) in enumerate(zip(signal.legs, outcomes, strict=True)):
            if isinstance(out, Fill):
                fills.append(out)
                continue
            # The order may or may not have reached the venue: ask it by client id.
            cid = client_id(key, i)
            try:
                found = await self.retry.run(lambda cid=cid: self.venue.find(cid), dependency="clob")
            except Exception as exc:
                raise AmbiguousOutcome(self.retry.classify(exc), 1, "clob") from out
            unanswered = getattr(self.venue, "unanswered", None)
            if found is None and self._answered(key, cid):
                # The venue told us this leg matched (or was decided): "not found" now is not "unfilled".
                raise AmbiguousOutcome(self.retry.classify(out), 1, "clob") from out
            if found is None and unanswered is not None and unanswered(cid):
                # A request of this leg timed out: the venue may take it later (a chaos run: a
                # batch held up by a frozen chain matched after its retries were refused and
                # the leg was booked unfilled). "Not found" now proves nothing: pending, asked again.
                raise AmbiguousOutcome(self.retry.classify(out), 1, "clob") from out
            fills.append(found or Fill(cid, "", leg.token_id, leg.side, 0, 0, 0, f"ERROR: {out}"))
            if found is None:
                errors.append(out)
        self.journal.update(key, "filled", fills=[[f.order_id, f.filled, f.cost, f.fee] for f in fills])
        # A trade that matched and then FAILED to settle is the venue failing, not the book.
        failed = [TradeFailed(f"leg {i}'s trade failed after it matched") for i, f in enumerate(fills)
                  if f.status == "FAILED"]
        return fills, placed.rejected + errors + failed

    def _answered(self, key: str, cid: str) -> bool:
        """Whether the venue told us this leg matched (or may match), as the journal has it."""
        return any(c == cid and st in MAY_HAVE_TRADED for c, st, *_ in self.journal.legs(key))

    async def _batch(self, signal: Signal, key: str) -> list[Any] | None:
        """Every leg in one `POST /orders` when the venue can (at most BATCH_MAX): per leg
        a Fill, an OrderRejected, or another error to retry on its own. None when the
        request as a whole failed: each leg is then placed on its own (client ids make
        a second placement of an order that did arrive a "Duplicated" lookup)."""
        place_batch = getattr(self.venue, "place_batch", None)
        if place_batch is None or len(signal.legs) > BATCH_MAX:
            return None
        orders = [(leg.token_id, leg.side, leg.limit_price, leg.size, client_id(key, i))
                  for i, leg in enumerate(signal.legs)]
        try:
            out: list[Any] = await place_batch(orders, settle=False)
        except Exception as exc:  # 429/5xx/transport: the legs go one by one
            self.batch_fallbacks += 1
            log.info("batch of %d legs failed (%s): placing them one by one", len(orders), exc)
            return None
        self.batches += 1
        return out

    def _reserve_gas(self, gas: int, failed: bool) -> None:
        """A sell-reserve top-up or release was booked: its gas is this process's too, and
        the breaker's gas budget's."""
        self.gas_spent += gas
        self.realized_pnl -= gas
        self.activity += 1
        if gas:
            self.breaker.record_gas_cost(gas, failed=failed)

    def _tick_to_trade(self, signal: Signal, event_ns: int, execute_ns: int) -> None:
        now = self.clock.time_ns()
        self.tick_to_trade_ns.append(now - event_ns)
        self.tick_to_trade_latency.observe_ns(now - event_ns)
        by_kind = self.tick_to_trade_by_kind.get(signal.kind)
        if by_kind is None:
            by_kind = self.tick_to_trade_by_kind[str(signal.kind)] = deque(maxlen=10_000)
        by_kind.append(now - event_ns)
        parts = self.tick_to_trade_parts
        parts["to_signal"].append(signal.created_ns - event_ns)
        parts["to_execute"].append(execute_ns - signal.created_ns)
        parts["to_order"].append(now - execute_ns)

    def _touched(self, tokens: list[str], placed_ms: int) -> None:
        """Our orders on these books were placed at `placed_ms` and traded: a book
        older than that cannot show what they took."""
        for token in tokens:
            self._placed_ms[token] = max(self._placed_ms.get(token, 0), placed_ms)

    # -- bookkeeping
    def book(self, r: Execution, settle: Callable[[], Any] | None = None) -> Execution:
        """Book an outcome: the claim's end (`settle`) and the journal's final record
        in ONE transaction (a crash between them left an outcome unbooked for ever),
        then this process's counters."""
        self._event_ns.pop(r.idempotency_key, None)  # never reached the legs
        self.activity += 1
        with self.journal.step():
            if settle is not None:
                settle()
            if r.status not in (TxStatus.PENDING, TxStatus.DUPLICATE):
                self.journal.finish(r.idempotency_key, r.status.value, r.realized_pnl, r.gas_cost, r.flows)
        self.total += 1
        self.counts[r.status.value] += 1
        self.realized_pnl += r.realized_pnl
        self.gas_spent += r.gas_cost
        # A redemption is no execution of its strategy: apart, so "YES_BASKET 2/2" means two baskets.
        strategy = "REDEMPTION" if r.status is TxStatus.REDEEMED else str(r.signal.kind)
        kind = self.by_kind.setdefault(strategy, {"executions": 0, "successful": 0, "failed": 0,
                                                             "realized_pnl_micro": 0, "gas_spent_micro": 0})
        kind["executions"] += 1
        kind["successful"] += r.success
        kind["failed"] += r.status in (TxStatus.FAILED, TxStatus.PARTIAL_UNWOUND)
        kind["realized_pnl_micro"] += r.realized_pnl
        kind["gas_spent_micro"] += r.gas_cost
        self.risk.booked(r)  # after the commit: a breach it finds halts before the next signal
        return r

    def get_stats(self) -> dict[str, Any]:
        ok = self.counts[TxStatus.SUCCESS] + self.counts[TxStatus.HELD]  # a redemption is not an execution
        attempted = ok + self.counts[TxStatus.FAILED] + self.counts[TxStatus.PARTIAL_UNWOUND]
        bstats = self.breaker.get_stats()
        locked = self.journal.locked_capital()
        open_positions = self.journal.positions()
        return {
            "total_executions": self.total,
            "successful_executions": ok,
            "failed_executions": self.counts[TxStatus.FAILED] + self.counts[TxStatus.PARTIAL_UNWOUND],
            "success_rate": round(ok / attempted, 4) if attempted else None,
            "retry_count": self.retry.get_stats().get("retries", 0),
            "circuit_breaker_trips": bstats.get("trips", 0),
            "queue_size": self.queue_size,
            "in_flight": self.in_flight,
            "circuit_breaker_state": bstats.get("state"),
            "circuit_breaker_stats": bstats,
            "nonce_manager_stats": self._nonce_stats(),
            "by_status": dict(self.counts),
            "by_strategy": {k: {**v, "realized_pnl_usdc": str(from_micro(v["realized_pnl_micro"]))}
                            for k, v in sorted(self.by_kind.items())},
            "realized_pnl_usdc": str(from_micro(self.realized_pnl)),
            "realized_pnl_micro": self.realized_pnl,
            "gas_spent_micro": self.gas_spent,
            "unwind_loss_micro": self.unwind_loss,
            "unhedged_legs": self.positions.unhedged_legs,
            "open_positions": [{"token_id": t, "size": s, "attempts": a} for t, s, _, a in open_positions],
            "open_positions_count": len(open_positions),
            "open_position_micro_shares": sum(s for _, s, _, _ in open_positions),
            "locked_capital_micro": locked,
            "locked_capital_usdc": str(from_micro(locked)),
            "baskets_held": len(self.journal.baskets_held()),
            "sell_reserve": self.reserve.get_stats(),
            "positions_cleared": self.positions.cleared,
            "sales_in_doubt": len(self.journal.sales_in_doubt()),
            "sale_lookup_errors": self.positions.resolve_errors,
            "batches": self.batches, "batch_fallbacks": self.batch_fallbacks,
            "legs_in_flight": self.journal.legs_in_flight(), "leg_events": self.leg_events,
            "leg_events_ignored": self.leg_events_ignored, "balance_waits": self.balance_waits,
            "balance_read_errors": self.balance_read_errors,
            "tick_to_trade_us": _percentiles_us(self.tick_to_trade_ns),
            "tick_to_trade_by_strategy_us": {k: _percentiles_us(v)
                                             for k, v in sorted(self.tick_to_trade_by_kind.items())},
            "tick_to_trade_parts_us": {k: _percentiles_us(v) for k, v in self.tick_to_trade_parts.items()},
            "signal_to_settled_us": _percentiles_us(self.signal_to_settled_ns),
            "onchain": self.onchain.get_stats(),
            "retry_policy": self.retry.get_stats(),
            "risk": self.risk.get_stats(),
        }
