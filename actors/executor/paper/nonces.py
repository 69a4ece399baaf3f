"""The nonce authority of the paper world: the real `NonceManager` (leases, gap fills,
stuck-nonce recovery) over the paper chain, in the executor's process, with the method
names of the authority's bus client. Its ledger is a file of the paper state folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from actors.nonce.nonce_manager import NonceManager
from actors.nonce.store import NonceStore
from config.schema import Config

log = logging.getLogger(__name__)


class PaperNonces:
    def __init__(self, chain: Any, path: Path, clock: Any, cfg: Config) -> None:
        n = cfg.nonce
        self.manager = NonceManager(chain, NonceStore(path), clock, lease_seconds=n.lease_seconds,
                                    gap_fill_after_seconds=n.gap_fill_after_seconds,
                                    resend_after_seconds=n.resend_after_seconds,
                                    noop_after_seconds=n.noop_after_seconds)
        self._clock, self._poll_s = clock, n.chain_poll_seconds
        self.tick_errors = 0

    async def initialize(self) -> None:
        await self.manager.initialize()

    async def run(self) -> None:
        """The authority's tick: resync, reclaim leases, fill gaps, recover stuck nonces."""
        while True:
            await self._clock.sleep(self._poll_s)
            try:
                await self.manager.tick()
            except Exception as exc:  # one failed tick: the next one tries again
                self.tick_errors += 1
                log.warning("paper nonce tick failed: %s", exc)

    async def allocate_nonce(self, request_id: str | None = None) -> int:
        return await self.manager.allocate_nonce(request_id)

    get_nonce = allocate_nonce

    async def mark_sent(self, nonce: int, tx_hash: str, max_fee: int | None = None, tip: int | None = None,
                        raw: bytes | None = None) -> None:
        await self.manager.mark_sent(nonce, tx_hash, max_fee, tip, raw)

    async def mark_confirmed(self, nonce: int, tx_hash: str | None = None) -> bool:
        return await self.manager.mark_confirmed(nonce, tx_hash)

    async def mark_failed(self, nonce: int) -> None:
        await self.manager.mark_failed(nonce)

    async def is_pending(self, nonce: int) -> bool:
        return self.manager.is_pending(nonce)

    async def get_stats(self) -> dict[str, Any]:
        return {**self.manager.get_stats(), "tick_errors": self.tick_errors}

    async def resync(self) -> dict[str, Any]:
        return await self.manager.resync()

    def close(self) -> None:
        self.manager.store.close()
