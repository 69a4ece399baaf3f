"""A fake chain for the nonce authority: a mempool and a miner that mines
consecutive nonces, with the node's error texts. `drop` evicts a pooled
transaction (the node forgets it); `lose_blocks` is a chain that lost its last
mined transactions of the wallet with the same genesis (a deep reorg, a dev
chain restarted on a state file a second old); `reset` is a restarted dev
chain (new genesis, nothing mined).

Signed transactions: `sign(nonce)` returns (hash, raw) of a fake signed
transaction; `send_raw_transaction(raw)` broadcasts it again (the node's
answers: `already known`, `nonce too low`)."""

from __future__ import annotations

FEE, TIP = 100 * 10**9, 30 * 10**9


class FakeNonceChain:
    def __init__(self, chain_id: int = 137, genesis: str = "0x" + "aa" * 32) -> None:
        self._chain_id = chain_id
        self.genesis = genesis
        self.latest = 0  # mined transaction count
        self.pool: dict[int, str] = {}  # nonce -> tx hash, not yet mined
        self.mined: set[str] = set()
        self.mined_at: dict[int, str] = {}  # nonce -> the hash mined at it
        self.signed: dict[bytes, tuple[int, str]] = {}  # raw -> (nonce, hash) of what `sign` made
        self.self_transfers: list[int] = []
        self.self_transfer_fees: list[tuple[int, int]] = []
        self.rebroadcasts: list[str] = []  # hashes sent again with send_raw_transaction
        self.down = False
        self.reject_sends = 0
        self.reject_raw: str | None = None  # the error every send_raw_transaction raises
        self.calls = 0  # network calls made (to check what runs under the lock)
        self._signatures = 0

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

    def sign(self, nonce: int) -> tuple[str, bytes]:
        """A signed transaction at `nonce` (not sent): its hash and raw bytes."""
        self._signatures += 1
        h = f"0x{'ee' * 24}{nonce:08x}{self._signatures:08x}"
        raw = b"\x02signed:" + h.encode()
        self.signed[raw] = (nonce, h)
        return h, raw

    def broadcast(self, nonce: int, tx_hash: str | None = None) -> str:
        if nonce < self.latest:
            raise ValueError("{'code': -32003, 'message': 'nonce too low'}")
        h = tx_hash or f"0x{nonce:064x}"
        self.pool[nonce] = h
        return h

    async def send_raw_transaction(self, raw: bytes) -> str:
        self._call()
        if self.reject_raw is not None:
            raise ValueError(f"{{'code': -32000, 'message': '{self.reject_raw}'}}")
        if raw not in self.signed:
            raise ValueError("{'code': -32602, 'message': 'failed to decode signed transaction'}")
        nonce, h = self.signed[raw]
        if h in self.pool.values():
            raise ValueError("{'code': -32000, 'message': 'already known'}")
        self.broadcast(nonce, h)
        self.rebroadcasts.append(h)
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
            h = self.pool.pop(self.latest)
            self.mined.add(h)
            self.mined_at[self.latest] = h
            self.latest += 1
            mined += 1
        return mined

    def drop(self, nonce: int) -> str | None:
        """The node evicts the pooled transaction at `nonce` (anvil_dropTransaction)."""
        return self.pool.pop(nonce, None)

    def lose_blocks(self, k: int) -> list[int]:
        """The chain loses its last `k` mined transactions of the wallet, same genesis:
        they are neither mined nor pooled any more. The pool above stays (queued)."""
        lost = list(range(max(0, self.latest - k), self.latest))
        for n in lost:
            self.mined.discard(self.mined_at.pop(n, ""))
        self.latest -= len(lost)
        return lost

    def reset(self, genesis: str) -> None:
        """A restarted dev chain: a new genesis, nothing mined, an empty pool."""
        self.genesis, self.latest, self.pool, self.mined, self.mined_at = genesis, 0, {}, set(), {}
