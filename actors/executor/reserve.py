"""The sell reserve: complete sets split ahead of the SELL_SETs that will sell them.

A SELL_SET must own a complete set before its legs can go: splitting it first
put a transaction and its receipt (30 ms on anvil, ~2 s on Polygon) between the
tick and the first order, while the gap closed. With `trading.sell_reserve` set,
a market that had a SELL_SET keeps that many sets split in the wallet: the next
SELL_SET up to that size draws its set from them (no transaction before its
legs), and a top-up splits the difference in the background afterwards.

Books. The reserve is rows of the journal's `reserve` table keyed by their
cause, and its tokens are holdings (`reserve:<ref>:<i>`), so the reconciler
expects them in the wallet and no clearing sells them. A top-up books its
split (collateral out) and a `reserve` flow of the same value (sets in): its
P&L is its gas. A draw books a `reserve` flow of -size with the sale, so the
SELL_SET's P&L is what it would have been with its own split. Sets count as
locked capital, against `trading.max_locked_capital` with the YES baskets.
Lowering the size (0 turns it off) merges the excess back into collateral.

Crash safety: a top-up or release is an execution of its own (`reserve:<market>:
<n>`), its transaction journaled and sent through the nonce authority like any
other; an unfinished one is finished by `resume()` at start and in every
reconciliation round. A draw is journaled with its execution before any order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from actors.domain.money import to_micro
from actors.executor.errors import AmbiguousOutcome
from actors.executor.journal import Journal
from actors.executor.onchain import OnChainSender, StuckTransaction, TxReverted
from actors.executor.outcomes import GAS, RESERVE, Flow, tx_flows
from actors.executor.ports import ChainPort
from bus.messages import Leg, Signal
from config.schema import Config

log = logging.getLogger(__name__)

PREFIX = "reserve:"
RETRY_AFTER_NS = 60 * 10**9  # a market whose top-up failed is not topped up again before this


def _move_signal(market: str, tokens: list[str], sets: int, now_ns: int) -> Signal:
    """The journal's record of a top-up (sets > 0) or a release (sets < 0): the sets of
    SELL_SETs to come (the kind must decode as a Signal's)."""
    legs = [Leg(token_id=t, side="BUY", limit_price=0, size=abs(sets), cost=0, fee=0) for t in tokens]
    return Signal(signal_id="reserve" if sets > 0 else "release", market=market, kind="SELL_SET", legs=legs,
                  size=sets, expected_profit=0, book_ts_ms={}, created_ns=now_ns, expires_ns=0)


class SellReserve:
    def __init__(self, journal: Journal, onchain: OnChainSender, chain: ChainPort, clock: Any,
                 config: Callable[[], Config], booked: Callable[[int, bool], None]) -> None:
        self.journal, self.onchain, self.chain, self.clock = journal, onchain, chain, clock
        self._config = config
        self._booked = booked  # told the gas (micro-USDC) of every booked move, and whether it failed
        self._tasks: dict[str, asyncio.Task[None]] = {}  # market -> its top-up or release (for close)
        self._failed_ns: dict[str, int] = {}
        self.counts = {"draws": 0, "restocks": 0, "top_ups": 0, "releases": 0, "failures": 0, "capped": 0,
                       "resume_errors": 0}

    def target(self) -> int:
        return to_micro(self._config().trading.sell_reserve)

    def busy(self) -> bool:
        """A top-up or release is under way, or one a crash left unfinished (both are
        unfinished journal records until booked)."""
        return bool(self.journal.unfinished(PREFIX))

    def _moving(self, market: str) -> bool:
        return bool(self.journal.unfinished(f"{PREFIX}{market}:"))

    def _pending_sets(self) -> int:
        """Sets of top-ups not booked yet: locked capital as soon as they are started."""
        return sum(max(0, e[0].size) for k in self.journal.unfinished(PREFIX) if (e := self.journal.get(k)))

    # -- the hot path: draw, or give back
    def draw(self, key: str, signal: Signal) -> bool:
        """Take the set of a SELL_SET from the reserve, journaled with its execution in
        one transaction before any order (a resume reads it): False when the reserve
        cannot cover the whole size. Synchronous: nothing else runs between the check
        and the write."""
        if self.journal.reserved(signal.market) < signal.size:  # read first: no write lock for a "no"
            return False
        tokens = [leg.token_id for leg in signal.legs]
        with self.journal.step():
            if self.journal.reserved(signal.market) < signal.size:
                return False
            self.journal.reserve_move(f"draw:{key}", signal.market, tokens, -signal.size)
            self.journal.update(key, "reserved", reserve=signal.size)
        self.counts["draws"] += 1
        return True

    def restock(self, key: str, signal: Signal) -> None:
        """Nothing sold: the drawn set is still in the wallet, and back in the reserve."""
        if self.journal.reserve_move(f"restock:{key}", signal.market, [leg.token_id for leg in signal.legs],
                                     signal.size):
            self.counts["restocks"] += 1

    @staticmethod
    def drawn_flow(key: str, signal: Signal) -> Flow:
        """What the drawn set cost, in the SELL_SET's P&L (as its own split would have),
        tied to the draw's reserve move."""
        return Flow(RESERVE, -signal.size, f"draw:{key}")

    # -- the background: top-ups and releases
    def refill(self, signal: Signal) -> None:
        """After a SELL_SET on this market: split what the reserve lacks, in the background."""
        market, target = signal.market, self.target()
        if target == 0:
            return
        have = self.journal.reserved(market)
        if target <= have or self._moving(market):
            return
        if self.clock.monotonic_ns() - self._failed_ns.get(market, -RETRY_AFTER_NS) < RETRY_AFTER_NS:
            return
        cap = to_micro(self._config().trading.max_locked_capital)
        if self.journal.locked_capital() + self._pending_sets() + target - have > cap:
            self.counts["capped"] += 1
            return
        self._start(market, [leg.token_id for leg in signal.legs], target - have)

    def release_excess(self) -> None:
        """Merge back what exceeds the configured size (all of it when turned off)."""
        target = self.target()
        for market, sets in self.journal.reserves().items():
            if sets > target and not self._moving(market):
                tokens = self.journal.reserve_tokens(market)
                if tokens:
                    self._start(market, tokens, target - sets)

    def _start(self, market: str, tokens: list[str], sets: int) -> None:
        n = int(self.journal.get_value("reserve_moves") or 0) + 1
        key = f"{PREFIX}{market}:{n}"
        signal = _move_signal(market, tokens, sets, self.clock.time_ns())
        with self.journal.step():
            self.journal.put_value("reserve_moves", n)
            self.journal.begin(key, signal)
            if sets < 0:  # out of the reserve first: no draw may take the sets being merged
                self.journal.reserve_move(key, market, tokens, sets)
        self._tasks[market] = asyncio.create_task(self._run(key), name=f"reserve-{market[:10]}")

    async def _run(self, key: str) -> None:
        try:
            await self.finish(key)
        except Exception as exc:  # the chain is down, a stuck transaction: resumed by reconciliation
            log.warning("sell reserve %s not finished: %s", key[:40], exc)

    async def resume(self) -> None:
        """Finish every top-up or release a crash (or an error) left unfinished; one that
        fails again is counted and left for the next round, never in the others' way."""
        for key in self.journal.unfinished(PREFIX):
            entry = self.journal.get(key)
            running = self._tasks.get(entry[0].market) if entry else None
            if running is not None and not running.done():
                continue
            try:
                await self.finish(key)
            except Exception as exc:
                self.counts["resume_errors"] += 1
                log.warning("sell reserve %s still not finished: %s", key[:40], exc)

    async def finish(self, key: str) -> None:
        entry = self.journal.get(key)
        if entry is None or entry[1] == "done":
            return
        signal, _, done = entry
        market, sets, n = signal.market, signal.size, len(signal.legs)
        tokens = [leg.token_id for leg in signal.legs]
        purpose = "split" if sets > 0 else "merge"
        call = (self.chain.split_call if sets > 0 else self.chain.merge_call)(market, n, abs(sets))
        gas_hint = self._config().executor.gas_limit_per_outcome * n
        try:
            out = await self.onchain.send(key, purpose, call, gas_hint, prior=done.get(purpose))
        except TxReverted as exc:
            self.counts["failures"] += 1
            self._failed_ns[market] = self.clock.monotonic_ns()
            with self.journal.step():
                if sets < 0:  # nothing merged: the sets are back
                    self.journal.reserve_move(f"{key}:back", market, tokens, -sets)
                self.journal.finish(key, "FAILED", -exc.gas_cost, exc.gas_cost,
                                    [Flow(GAS, -exc.gas_cost, exc.receipt.tx_hash)])
            self._booked(exc.gas_cost, True)
            log.warning("sell reserve %s of %s reverted", purpose, market[:12])
            return
        except (StuckTransaction, AmbiguousOutcome):  # maybe in the pool: unfinished, for reconciliation
            self.counts["failures"] += 1
            self._failed_ns[market] = self.clock.monotonic_ns()
            raise
        except Exception as exc:  # refused before anything was broadcast (gas cap, the node said no)
            self.counts["failures"] += 1
            self._failed_ns[market] = self.clock.monotonic_ns()
            with self.journal.step():
                if sets < 0:
                    self.journal.reserve_move(f"{key}:back", market, tokens, -sets)
                self.journal.finish(key, "FAILED", 0, 0, [])
            log.warning("sell reserve %s of %s not sent: %s", purpose, market[:12], exc)
            return
        flows = [*tx_flows(purpose, -sets, out.tx_hash, out.gas_cost), Flow(RESERVE, sets, key)]
        with self.journal.step():
            if sets > 0:  # the split mined: its sets are in the wallet, and in the reserve
                self.journal.reserve_move(key, market, tokens, sets)
            self.journal.finish(key, "RESERVED" if sets > 0 else "RELEASED", -out.gas_cost, out.gas_cost, flows)
        self.counts["top_ups" if sets > 0 else "releases"] += 1
        self._booked(out.gas_cost, False)

    async def close(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def get_stats(self) -> dict[str, Any]:
        reserves = self.journal.reserves()
        return {**self.counts, "markets": len(reserves), "sets_micro": sum(reserves.values()),
                "target_micro": self.target(), "busy": self.busy()}
