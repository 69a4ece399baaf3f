"""NonceManager: the seed's API over the persistent ledger and the chain.

    manager = NonceManager(chain, store, clock, lease_seconds=30, gap_fill_after_seconds=10)
    await manager.initialize()            # recover from the store and the chain
    nonce = await manager.allocate_nonce("exec-42")   # idempotent per request id
    await manager.mark_sent(nonce, tx_hash)           # before or right after broadcasting
    await manager.mark_confirmed(nonce)   # or mark_failed(nonce): back to the pool

Allocation is serialised with an asyncio.Lock. `tick()` (run periodically by
the actor) reconciles with the chain, reclaims expired leases and fills gaps
that nobody reused with zero-value self-transfers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from actors.nonce.chain import NonceChain
from actors.nonce.ledger import GAP_FILL_PREFIX, NonceError, NonceLedger
from actors.nonce.store import NonceStore

log = logging.getLogger(__name__)

_ALREADY_MINED = ("nonce too low",)
_ALREADY_IN_POOL = ("already known", "transaction already imported")


class NonceManager:
    def __init__(
        self,
        chain: NonceChain,
        store: NonceStore,
        clock: Any,
        *,
        lease_seconds: float = 30.0,
        gap_fill_after_seconds: float = 10.0,
    ) -> None:
        self._chain = chain
        self._clock = clock
        self.ledger = NonceLedger(
            store, clock, lease_seconds=lease_seconds, gap_fill_after_seconds=gap_fill_after_seconds
        )
        self._lock = asyncio.Lock()
        self.initialized = False
        self.chain_pending = 0
        self.chain_errors = 0
        self.gap_fill_errors = 0
        self.last_reconcile: dict[str, Any] = {}

    def configure(self, lease_seconds: float, gap_fill_after_seconds: float) -> None:
        self.ledger.configure(lease_seconds, gap_fill_after_seconds)

    async def initialize(self) -> dict[str, Any]:
        """Recover: the persisted ledger, aligned with the chain's counts."""
        report = await self.resync()
        self.initialized = True
        log.info("nonce authority recovered: next nonce %d", self.ledger.next_nonce,
                 extra={"fields": {"reconcile": report}})
        return report

    async def resync(self) -> dict[str, Any]:
        latest, pending = await self._chain.transaction_counts()
        async with self._lock:
            self.chain_pending = pending
            self.last_reconcile = self.ledger.reconcile(latest, pending)
        return {"chain_latest": latest, "chain_pending": pending, **self.last_reconcile}

    async def allocate_nonce(self, request_id: str | None = None) -> int:
        async with self._lock:
            nonce, _ = self.ledger.allocate(request_id or os.urandom(12).hex())
            return nonce

    get_nonce = allocate_nonce

    async def mark_sent(self, nonce: int, tx_hash: str) -> None:
        async with self._lock:
            self.ledger.mark_sent(nonce, tx_hash)

    async def mark_confirmed(self, nonce: int) -> bool:
        async with self._lock:
            return self.ledger.mark_confirmed(nonce)

    async def mark_failed(self, nonce: int) -> None:
        async with self._lock:
            self.ledger.mark_failed(nonce)

    def is_pending(self, nonce: int) -> bool:
        return self.ledger.is_pending(nonce)

    async def tick(self) -> dict[str, Any]:
        """Reconcile with the chain, reclaim expired leases, fill stale gaps."""
        try:
            await self.resync()
        except Exception as exc:  # the node is down: keep serving from the ledger
            self.chain_errors += 1
            log.warning("chain unreachable during nonce resync: %s", exc)
            return {"error": str(exc)}
        async with self._lock:
            reclaimed = self.ledger.reclaim_expired()
            gaps = self.ledger.gaps_to_fill()
            for nonce in gaps:
                await self._fill_gap(nonce)
        return {"reclaimed": reclaimed, "gaps_filled": gaps}

    async def _fill_gap(self, nonce: int) -> None:
        self.ledger.take(nonce, f"{GAP_FILL_PREFIX}{nonce}")
        try:
            tx_hash = await self._chain.send_self_transfer(nonce)
        except Exception as exc:
            text = str(exc).lower()
            if any(t in text for t in _ALREADY_MINED):
                self.ledger.mark_confirmed(nonce)
                return
            if any(t in text for t in _ALREADY_IN_POOL):
                self.ledger.mark_sent(nonce, "")
                return
            self.gap_fill_errors += 1
            log.warning("gap fill at nonce %d failed: %s", nonce, exc)
            self.ledger.mark_failed(nonce)
            return
        self.ledger.mark_sent(nonce, tx_hash)
        self.ledger.gap_fills += 1
        log.info("filled nonce gap %d with a self-transfer %s", nonce, tx_hash)

    def get_stats(self) -> dict[str, Any]:
        return {
            **self.ledger.get_stats(),
            "chain_pending": self.chain_pending,
            "initialized": self.initialized,
            "chain_errors": self.chain_errors,
            "gap_fill_errors": self.gap_fill_errors,
        }


__all__ = ["NonceError", "NonceManager"]
