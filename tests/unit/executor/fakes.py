"""Fakes for the executor: a venue with scripted legs and a chain with a mempool."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from actors.executor.legs import LegEvent, LegState
from actors.executor.ports import Fill, OrderRejected, Receipt


class FakeVenue:
    """Each token's next orders follow a script: "fill", "kill", "trade_failed" (matched,
    then its trade FAILED on chain: nothing traded), "reject", "error",
    "lost_reply" (filled at the venue, but the caller sees a connection error).

    Orders are deduplicated by client id like the sandbox venue: the same id
    again returns the first order's fill.
    """

    def __init__(self, fee: int = 1_000) -> None:
        self.script: dict[str, list[str]] = defaultdict(list)
        self.orders: dict[str, Fill] = {}
        self.calls: list[tuple[str, str, int, int, str, bool]] = []
        self.fee = fee
        self.batch_calls: list[list[str]] = []
        self.batch_errors: list[BaseException] = []
        self.wallet: dict[str, int] | None = None  # a FakeChain's token balances: fills move them
        self.observer: Any = None  # told each leg's states, as ClobVenue tells them
        self.settled: list[str] = []  # client ids followed to settlement after the market was freed
        self.find_errors = 0  # lookups by client id that fail (the venue unreachable) before one answers

    def place_sync(self, token_id: str, side: str, price: int, size: int, cid: str, fak: bool) -> Fill:
        self.calls.append((token_id, side, price, size, cid, fak))
        if cid in self.orders:
            return self.orders[cid]
        action = self.script[token_id].pop(0) if self.script[token_id] else "fill"
        if action == "error":
            raise ConnectionError("venue unreachable")
        if action == "lost_reply":  # the order traded; its answer never came back
            self.script[token_id].insert(0, "fill")
            self.place_sync(token_id, side, price, size, cid, fak)
            raise ConnectionError("connection reset after the request was sent")
        if action == "http500":
            raise _Http(503)
        if action == "reject":
            raise OrderRejected("not enough balance / allowance", 400)
        filled = size if action == "fill" else 0
        cost = price * filled // 1_000_000
        status = "MATCHED" if filled else ("FAILED" if action == "trade_failed" else "KILLED")  # FAILED: after MATCHED
        fill = Fill(cid, f"0xorder{len(self.orders)}", token_id, side, filled, cost, self.fee if filled else 0, status)
        self.orders[cid] = fill
        if self.observer is not None:
            for state in ((LegState.MATCHED, LegState.MINED) if filled else (LegState.KILLED,)):
                self.observer(LegEvent(cid, state, fill.order_id, filled, cost, fill.fee))
        if self.wallet is not None and filled:
            self.wallet[token_id] = self.wallet.get(token_id, 0) + (filled if side == "BUY" else -filled)
        return fill

    async def place(self, token_id: str, side: str, price: int, size: int, client_id: str, *,
                    fill_and_kill: bool = False, settle: bool = True) -> Fill:
        return self.place_sync(token_id, side, price, size, client_id, fill_and_kill)

    async def settle(self, fill: Fill) -> Fill:
        self.settled.append(fill.client_id)
        return fill  # the fake's fills are final when placed

    async def find(self, client_id: str, settle: bool = True) -> Fill | None:
        if self.find_errors:
            self.find_errors -= 1
            raise ConnectionError("venue unreachable")
        return self.orders.get(client_id)

    async def place_batch(self, orders: list[tuple[str, str, int, int, str]], settle: bool = True) -> list[Any]:
        """POST /orders: the whole request fails on `batch_errors`, else each order on its own."""
        self.batch_calls.append([o[4] for o in orders])
        if self.batch_errors:
            raise self.batch_errors.pop(0)
        out: list[Any] = []
        for token_id, side, price, size, cid in orders:
            try:
                out.append(self.place_sync(token_id, side, price, size, cid, False))
            except Exception as exc:  # refused, or this order's answer lost: the caller retries it alone
                out.append(exc)
        return out


class _Http(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


class FakeChain:
    """Signs deterministically, keeps a mempool, mines on demand (automine by default)."""

    address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

    def __init__(self, nonce_chain: Any) -> None:
        self.nonce_chain = nonce_chain  # the FakeNonceChain the nonce manager reads
        self.automine = True
        self.revert = False
        self.send_errors: list[Any] = []
        self.sent: list[dict[str, Any]] = []
        self.txs: dict[str, dict[str, Any]] = {}
        self.receipts: dict[str, Receipt] = {}
        self.base_fee = 30 * 10**9
        self.gas_estimate = 150_000
        self.collateral = 1_000_000_000  # the wallet's pUSD and ERC-1155 balances (the reconciler reads them)
        self.tokens: dict[str, int] = {}
        # NegRiskAdapter markets: id -> (question count, feeBips); unknown ids have 4 questions and no fee
        self.adapters: dict[str, tuple[int, int]] = {}
        self.terms_reads = 0
        self.terms_error: BaseException | None = None
        self.reported: dict[str, tuple[int, int]] = {}  # condition -> (YES, NO) payouts, once resolved

    genesis = "0x" + "9e" * 32

    async def genesis_hash(self) -> str:
        return self.genesis

    def merge_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        return {"to": "0xCTF", "data": f"merge:{condition_id}:{outcomes}:{amount}"}

    def split_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        return {"to": "0xCTF", "data": f"split:{condition_id}:{outcomes}:{amount}"}

    def convert_call(self, market_id: str, index_set: int, amount: int) -> dict[str, Any]:
        return {"to": "0xADAPTER", "data": f"convert:{market_id}:{index_set}:{amount}"}

    async def convert_terms(self, market_id: str) -> tuple[int, int]:
        self.terms_reads += 1
        if self.terms_error is not None:
            raise self.terms_error
        return self.adapters.get(market_id, (4, 0))

    def redeem_call(self, condition_id: str, amounts: list[int]) -> dict[str, Any]:
        return {"to": "0xADAPTER", "data": f"redeem:{condition_id}:{amounts}"}

    async def question_condition(self, market_id: str, index: int) -> str:
        return f"{market_id}:q{index}"

    async def payouts(self, condition_id: str) -> tuple[int, int] | None:
        return self.reported.get(condition_id)

    async def estimate_gas(self, call: dict[str, Any]) -> int:
        return self.gas_estimate

    async def fees(self) -> tuple[int, int]:
        return self.base_fee, 30 * 10**9

    def sign(self, tx: dict[str, Any]) -> tuple[str, bytes]:
        raw = repr(sorted(tx.items())).encode()
        h = "0x" + hashlib.sha256(raw).hexdigest()
        self.txs[h] = tx
        return h, raw

    async def send_raw(self, raw: bytes) -> str:
        if self.send_errors:  # a node text (ValueError), an exception to raise, or None: this send works
            error = self.send_errors.pop(0)
            if isinstance(error, BaseException):
                raise error
            if error is not None:
                raise ValueError(error)
        h = "0x" + hashlib.sha256(raw).hexdigest()
        tx = self.txs[h]
        if tx["nonce"] < self.nonce_chain.latest:
            raise ValueError("{'code': -32003, 'message': 'nonce too low'}")
        self.sent.append(tx)
        self.nonce_chain.pool[tx["nonce"]] = h
        if self.automine:
            self.mine()
        return h

    def mine(self) -> None:
        pool = dict(self.nonce_chain.pool)  # the latest replacement per nonce wins
        before = self.nonce_chain.latest
        self.nonce_chain.mine()
        for n in range(before, self.nonce_chain.latest):
            h = pool[n]
            self.receipts[h] = Receipt(h, 0 if self.revert else 1, 120_000, self.base_fee + 30 * 10**9, n + 1)

    async def collateral_balance(self) -> int:
        return self.collateral

    async def token_balances(self, token_ids: list[str]) -> dict[str, int]:
        return {t: self.tokens.get(t, 0) for t in token_ids}

    async def receipt(self, tx_hash: str) -> Receipt | None:
        return self.receipts.get(tx_hash)

    async def nonce_latest(self) -> int:
        return self.nonce_chain.latest
