"""A fake chain for the nonce authority: a mempool and a miner that mines
consecutive nonces, with the node's error texts. `drop` evicts a pooled
transaction (the node forgets it); `reset` is a restarted dev chain (new
genesis, nothing mined)."""

from __future__ import annotations

FEE, TIP = 100 * 10**9, 30 * 10**9


class FakeNonceChain:
    def __init__(self, chain_id: int = 137, genesis: str = "0x" + "aa" * 32) -> None:
        self._chain_id = chain_id
        self.genesis = genesis
        self.latest = 0  # mined transaction count
        self.pool: dict[int, str] = {}  # nonce -> tx hash, not yet mined
        self.mined: set[str] = set()
        self.self_transfers: list[int] = []
        self.self_transfer_fees: list[tuple[int, int]] = []
        self.down = False
        self.reject_sends = 0
        self.calls = 0  # network calls made (to check what runs under the lock)

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")

    async def chain_id(self) -> int:
        self._call()
        return self._chain_id

    async def genesis_hash(self) -> str:
        self._call()
        return self.genesis

    @property
    def pending(self) -> int:
        n = self.latest
        while n in self.pool:
            n += 1
        return n

    async def transaction_counts(self) -> tuple[int, int]:
        self._call()
        return self.latest, self.pending

    async def transaction_known(self, tx_hash: str) -> bool:
        self._call()
        return tx_hash in self.mined or tx_hash in self.pool.values()

    async def fee_caps(self) -> tuple[int, int]:
        self._call()
        return FEE, TIP

    def broadcast(self, nonce: int, tx_hash: str | None = None) -> str:
        if nonce < self.latest:
            raise ValueError("{'code': -32003, 'message': 'nonce too low'}")
        h = tx_hash or f"0x{nonce:064x}"
        self.pool[nonce] = h
        return h

    async def send_self_transfer(self, nonce: int, max_fee: int | None = None, tip: int | None = None) -> str:
        self._call()
        if self.reject_sends:
            self.reject_sends -= 1
            raise ValueError("{'code': -32000, 'message': 'max fee per gas less than block base fee'}")
        self.self_transfers.append(nonce)
        self.self_transfer_fees.append((FEE, TIP) if max_fee is None or tip is None else (max_fee, tip))
        return self.broadcast(nonce, f"0x{'ff' * 28}{nonce:04x}{len(self.self_transfers):04x}")

    def mine(self) -> int:
        """Mine every consecutive pooled nonce; returns how many."""
        mined = 0
        while self.latest in self.pool:
            self.mined.add(self.pool.pop(self.latest))
            self.latest += 1
            mined += 1
        return mined

    def drop(self, nonce: int) -> str | None:
        """The node evicts the pooled transaction at `nonce` (anvil_dropTransaction)."""
        return self.pool.pop(nonce, None)

    def reset(self, genesis: str) -> None:
        """A restarted dev chain: a new genesis, nothing mined, an empty pool."""
        self.genesis, self.latest, self.pool, self.mined = genesis, 0, {}, set()
