"""The books against the chain: the wallet's pUSD and its ERC-1155 balances.

    differences = await reconciler.check()   # None: not quiet, try later

At a quiet moment (nothing executing, no claim IN_PROGRESS, no position
being sold, no nonce of ours pending), the wallet's pUSD must equal the
baseline plus every cash flow booked since (realised P&L plus gas), and each
traded token's balance must equal the position the books hold (zero once a
set is merged or a position sold). The baseline (pUSD and booked total) is
taken at the first check on a new journal: the books start equal to the chain.

Balances are read, then the activity counter is compared: an execution that
started or ended meanwhile voids the round. A difference must be seen by two
rounds in a row (`suspect` after the first: the actor checks again a few
seconds later), since a reorg sets a settlement back for seconds. Then it
forces the breaker
open with `books differ from the chain: <what, by how much>`, counted and in
the stats, and only an operator `resume` clears it: `accept()` then takes the
chain as it is (a deposit, a withdrawal, a fix by hand), re-bases the pUSD
and records each token's difference as a holding of its own, logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from actors.domain.money import ONE, format_usdc
from actors.executor.circuit_breaker import CircuitBreaker
from actors.executor.journal import Journal
from actors.executor.positions import TICK_GRID

log = logging.getLogger(__name__)

BASELINE = "books_baseline"
REASON_PREFIX = "books differ from the chain"


@dataclass(frozen=True, slots=True)
class Difference:
    what: str  # "pUSD" or "token <id>"
    chain: int
    books: int

    def __str__(self) -> str:
        if self.what == "pUSD":
            return (f"pUSD on chain {format_usdc(self.chain)}, books {format_usdc(self.books)} "
                    f"({format_usdc(self.chain - self.books)})")
        return f"{self.what} on chain {self.chain}, books {self.books} ({self.chain - self.books:+d} micro-shares)"


class Reconciler:
    def __init__(self, chain: Any, journal: Journal, breaker: CircuitBreaker, sender: Any) -> None:
        self.chain, self.journal, self.breaker, self.sender = chain, journal, breaker, sender
        self.checks = self.skipped = self.trips = 0
        self.last: list[Difference] = []
        self.suspect: list[Difference] = []  # differences seen once, not confirmed yet
        self._pending: tuple[int, dict[str, int]] | None = None  # what a trip saw, for accept()

    async def check(self) -> list[Difference] | None:
        if not self.sender.quiet():
            self.skipped += 1
            return None
        mark = self.sender.activity
        tokens = self.journal.traded_tokens()
        collateral = await self.chain.collateral_balance()
        balances = await self.chain.token_balances(tokens)
        if self.sender.activity != mark or not self.sender.quiet():
            self.skipped += 1  # something moved while we read: the next round decides
            return None
        self.checks += 1
        self.sender.risk.chain_collateral(collateral)  # risk.min_collateral_balance reads it
        booked = self.journal.booked()
        base = self.journal.get_value(BASELINE)
        if base is None:
            self.journal.put_value(BASELINE, {"collateral": collateral, "booked": booked})
            log.info("books baseline: pUSD %s with %s booked", format_usdc(collateral), format_usdc(booked))
            base = {"collateral": collateral, "booked": booked}
        diffs = []
        expected = int(base["collateral"]) + booked - int(base["booked"])
        if collateral != expected:
            diffs.append(Difference("pUSD", collateral, expected))
        held = self.journal.held_tokens()
        diffs += [Difference(f"token {t}", balances.get(t, 0), held.get(t, 0)) for t in tokens
                  if balances.get(t, 0) != held.get(t, 0)]
        self.last = diffs
        if diffs and diffs != self.suspect:
            # Seen once: a settlement a reorg (or a restarted sandbox chain) set back
            # comes again within seconds. Confirmed by the next round, it trips.
            self.suspect = diffs
            log.warning("books and chain differ, confirming: %s", "; ".join(str(d) for d in diffs[:5]))
            return diffs
        self.suspect = []
        if diffs:
            self.trips += 1
            self._pending = (collateral, balances)
            reason = f"{REASON_PREFIX}: " + "; ".join(str(d) for d in diffs[:5])
            log.error("%s", reason, extra={"fields": {"differences": [str(d) for d in diffs]}})
            self.breaker.force_open(reason)
        return diffs

    def accept(self, why: str) -> list[str]:
        """The operator resumed after a trip: the chain, as last read, is the truth."""
        if self._pending is None:
            return []
        collateral, balances = self._pending
        self._pending = None
        self.journal.put_value(BASELINE, {"collateral": collateral, "booked": self.journal.booked()})
        held = self.journal.held_tokens()
        done = [f"pUSD re-based to {format_usdc(collateral)}"]
        for token, n in balances.items():
            if n != held.get(token, 0):
                # Sold like any open position, from a high limit down (never dumped at once).
                self.journal.hold(f"reconciled:{self.checks}:{token}", token, n - held.get(token, 0), ONE - TICK_GRID)
                done.append(f"token {token} {n - held.get(token, 0):+d}")
        log.warning("books re-based on the chain by an operator resume (%s): %s", why, "; ".join(done))
        self.last = []
        return done

    def get_stats(self) -> dict[str, Any]:
        return {"checks": self.checks, "skipped": self.skipped, "trips": self.trips,
                "differences": [str(d) for d in self.last], "suspect": bool(self.suspect)}
