"""A fake chain for the nonce authority: a mempool and a miner that mines
consecutive nonces, with the node's error texts."""

from __future__ import annotations


class FakeNonceChain:
    def __init__(self, chain_id: int = 137) -> None:
        self._chain_id = chain_id
        self.latest = 0  # mined transaction count
        self.pool: dict[int, str] = {}  # nonce -> tx hash, not yet mined
        self.self_transfers: list[int] = []
        self.down = False
        self.reject_sends = 0

    async def chain_id(self) -> int:
        if self.down:
            raise ConnectionError("connection refused")
        return self._chain_id

    @property
    def pending(self) -> int:
        n = self.latest
        while n in self.pool:
            n += 1
        return n

    async def transaction_counts(self) -> tuple[int, int]:
        if self.down:
            raise ConnectionError("connection refused")
        return self.latest, self.pending

    def broadcast(self, nonce: int, tx_hash: str | None = None) -> str:
        if nonce < self.latest:
            raise ValueError("{'code': -32003, 'message': 'nonce too low'}")
        h = tx_hash or f"0x{nonce:064x}"
        self.pool[nonce] = h
        return h

    async def send_self_transfer(self, nonce: int) -> str:
        if self.down:
            raise ConnectionError("connection refused")
        if self.reject_sends:
            self.reject_sends -= 1
            raise ValueError("{'code': -32000, 'message': 'max fee per gas less than block base fee'}")
        self.self_transfers.append(nonce)
        return self.broadcast(nonce, f"0x{'ff' * 30}{nonce:04x}")

    def mine(self) -> int:
        """Mine every consecutive pooled nonce; returns how many."""
        mined = 0
        while self.latest in self.pool:
            del self.pool[self.latest]
            self.latest += 1
            mined += 1
        return mined
