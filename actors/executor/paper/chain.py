"""The paper chain: the executor's ChainPort and the nonce authority's NonceChain over
the paper ledger. Nothing leaves the machine.

A call is the step it stands for ({"to": "paper", "data": JSON of the step}); signing
it hashes the transaction (no key: the hash names it); sending puts it in the pool, and
the pool mines at once every transaction whose nonce is next, as a node would: a nonce
below the next is "nonce too low", one above waits for the gap to fill, the same nonce
again must outbid the pooled one by 10% ("replacement transaction underpriced"). Mined,
a step moves the paper wallet's balances as the contracts would:
- merge: `amount` of every outcome token of the condition -> `amount` pUSD;
- split: the reverse;
- convert (NegRiskAdapter.convertPositions): `amount` NO of each question in the index
  set -> (k - 1) x (amount - fee) pUSD, and amount - fee YES of each question outside it;
- redeem: a resolved question's tokens -> the winner's payout (the venue says who won);
and reverts (gas spent, nothing moved) when the wallet lacks what it would burn. Gas is
the configured amount per step at the configured fees: the executor books it as live.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from actors.domain.adapter import BIPS, read_convert_fee_bips
from actors.domain.listing import Market
from actors.executor.paper import ledger as L
from actors.executor.paper.markets import PaperMarkets
from actors.executor.ports import Receipt
from config.schema import Config

TO = "paper"
GWEI = 10**9
REPLACE_BUMP_PERCENT = 10


class PaperChainError(Exception):
    """What a node would answer (its message is what the retry policy reads)."""


def _step(call: dict[str, Any]) -> dict[str, Any]:
    try:
        step = json.loads(call["data"])
    except (KeyError, TypeError, ValueError):
        raise PaperChainError(f"not a paper call: {str(call)[:80]}") from None
    if not isinstance(step, dict) or not isinstance(step.get("op"), str):
        raise PaperChainError(f"not a paper call: {str(call)[:80]}")
    return step


def yes_no(m: Market) -> tuple[str, str]:
    """A binary market's (YES, NO) token ids, by their outcome names (the listing's order otherwise)."""
    names = [o.strip().lower() for o in m.outcomes]
    if "yes" in names and "no" in names:
        return m.token_ids[names.index("yes")], m.token_ids[names.index("no")]
    return m.token_ids[0], m.token_ids[1]


def _encode(tx: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in tx.items() if k != "from"}, sort_keys=True, separators=(",", ":")).encode()


class PaperChain:
    def __init__(self, ledger: L.PaperLedger, markets: PaperMarkets, config: Callable[[], Config],
                 settle_due: Callable[[], int] | None = None) -> None:
        self.ledger, self.markets, self._config = ledger, markets, config
        self.address = ledger.address
        self._settle_due = settle_due or (lambda: 0)  # the venue's due trades, before any balance is read
        self._session: aiohttp.ClientSession | None = None
        self.counts = {"sent": 0, "mined": 0, "reverted": 0, "replaced": 0, "refused": 0}

    def _paper(self) -> Any:
        paper = self._config().paper
        assert paper is not None, "the paper chain runs only with a `paper` section"
        return paper

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        return {"from": self.address, "to": TO, "data": json.dumps({"op": op, **args}, sort_keys=True)}

    # -- the executor's calls
    def merge_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        return self._call("merge", condition_id=condition_id, outcomes=outcomes, amount=amount)

    def split_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        return self._call("split", condition_id=condition_id, outcomes=outcomes, amount=amount)

    def convert_call(self, market_id: str, index_set: int, amount: int) -> dict[str, Any]:
        return self._call("convert", market_id=market_id, index_set=index_set, amount=amount)

    def redeem_call(self, condition_id: str, amounts: list[int]) -> dict[str, Any]:
        return self._call("redeem", condition_id=condition_id, amounts=list(amounts))

    def approval_calls(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    async def approvals_missing(self) -> list[str]:
        return []  # a paper wallet needs no allowance

    async def convert_fee_bips(self, market_id: str) -> int:
        configured = self._paper().convert_fee_bips
        if configured is not None:
            return int(configured)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return await read_convert_fee_bips(self._session, self._config(), market_id)  # read-only

    async def convert_terms(self, market_id: str) -> tuple[int, int]:
        return len(self.markets.questions(market_id)), await self.convert_fee_bips(market_id)

    async def question_condition(self, market_id: str, index: int) -> str:
        for m in self.markets.questions(market_id):
            if m.question_index == index:
                return m.condition_id
        raise LookupError(f"event {market_id[:18]} has no question {index}")

    async def payouts(self, condition_id: str) -> tuple[int, int] | None:
        """(YES, NO) of a resolved market, from the venue's listing; None until it resolves."""
        winner = await self.markets.winner(condition_id)
        if winner is None:
            return None
        yes, no = yes_no(self.markets.condition(condition_id))
        return (1, 0) if winner == yes else (0, 1) if winner == no else None

    # -- gas and fees
    def _gas(self, op: str) -> int:
        g = self._paper().gas
        return int(getattr(g, op)) if op in ("merge", "split", "convert", "redeem") else int(g.other)

    async def estimate_gas(self, call: dict[str, Any]) -> int:
        return self._gas(_step(call)["op"])

    async def fees(self) -> tuple[int, int]:
        g = self._paper().gas
        return g.base_fee_gwei * GWEI, g.priority_fee_gwei * GWEI

    async def fee_caps(self) -> tuple[int, int]:
        base, tip = await self.fees()
        return 2 * base + tip, tip

    # -- sending
    def sign(self, tx: dict[str, Any]) -> tuple[str, bytes]:
        raw = _encode(tx)
        return "0x" + hashlib.sha256(raw).hexdigest(), raw

    async def send_raw(self, raw: bytes) -> str:
        try:
            tx = json.loads(raw)
            nonce, max_fee, tip = int(tx["nonce"]), int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"])
            step = _step(tx) if tx.get("to") == TO else {"op": "noop"}
        except (KeyError, TypeError, ValueError) as exc:
            raise PaperChainError(f"invalid transaction: {exc}") from None
        tx_hash = "0x" + hashlib.sha256(raw).hexdigest()
        if self.ledger.tx(tx_hash) is not None:
            raise PaperChainError("already known")
        if nonce < self.ledger.latest_nonce():
            self.counts["refused"] += 1
            raise PaperChainError("nonce too low")
        rival = next((t for t in self.ledger.pooled() if t.nonce == nonce), None)
        if rival is not None:
            if max_fee < rival.max_fee * (100 + REPLACE_BUMP_PERCENT) // 100 or \
                    tip < rival.tip * (100 + REPLACE_BUMP_PERCENT) // 100:
                self.counts["refused"] += 1
                raise PaperChainError("replacement transaction underpriced")
            self.counts["replaced"] += 1
        op = str(step.pop("op"))
        self.ledger.pool(L.Tx(tx_hash, nonce, op, step, max_fee, tip, int(tx.get("gas", 0)), L.POOL, 0, 0, 0, (),
                              "", self.ledger.now_ns(), None), replaces=rival.hash if rival else None)
        self.counts["sent"] += 1
        await self._mine_pool()
        return tx_hash

    async def send_raw_transaction(self, raw: bytes) -> str:
        return await self.send_raw(raw)

    async def send_self_transfer(self, nonce: int, max_fee: int | None = None, tip: int | None = None) -> str:
        if max_fee is None or tip is None:
            max_fee, tip = await self.fee_caps()
        _, raw = self.sign({"nonce": nonce, "to": self.address, "value": 0, "gas": self._gas("other"),
                            "maxFeePerGas": max(max_fee, tip), "maxPriorityFeePerGas": tip, "type": 2})
        return await self.send_raw(raw)

    async def _mine_pool(self) -> None:
        """Mine, in nonce order, every pooled transaction whose nonce is next."""
        while True:
            nxt = self.ledger.latest_nonce()
            t = next((t for t in self.ledger.pooled() if t.nonce == nxt), None)
            if t is None:
                return
            base, _ = await self.fees()
            price = min(t.max_fee, base + t.tip)
            gas = min(self._gas(t.op), t.gas) if t.gas else self._gas(t.op)  # never past the limit sent
            self._settle_due()  # trades due before this block are in it
            args = dict(t.args)  # what the step read (a convert's fee, a redeem's payouts) is kept with it
            try:
                effects, reason = await self._effects(t.op, args), ""
            except (LookupError, ValueError, PaperChainError) as exc:
                effects, reason = [], f"{type(exc).__name__}: {exc}"
            mined = self.ledger.mine(t.hash, effects, gas, price, reason, args=args)
            self.counts["mined" if mined.status == L.MINED else "reverted"] += 1

    async def _effects(self, op: str, a: dict[str, Any]) -> list[tuple[str, int]]:
        """The balance changes a step makes (the ledger applies all or, short of a balance, none)."""
        if op == "merge" or op == "split":
            m = self.markets.condition(str(a["condition_id"]))
            n, amount = int(a["outcomes"]), int(a["amount"])
            if n != len(m.token_ids) or amount <= 0:
                raise ValueError(f"{op} of {n} outcomes, {amount}: the condition has {len(m.token_ids)}")
            sign = -1 if op == "merge" else 1
            return [(L.PUSD, -sign * amount), *((t, sign * amount) for t in m.token_ids)]
        if op == "convert":
            qs = self.markets.questions(str(a["market_id"]))
            index_set, amount = int(a["index_set"]), int(a["amount"])
            chosen = [i for i in range(len(qs)) if index_set >> i & 1]
            if not chosen or index_set >> len(qs) or amount <= 0:
                raise ValueError(f"convert of index set {index_set:#x} over {len(qs)} questions")
            a["fee_bips"] = await self.convert_fee_bips(str(a["market_id"]))
            out = amount - amount * int(a["fee_bips"]) // BIPS
            effects = [(yes_no(qs[i])[1], -amount) for i in chosen]
            effects += [(yes_no(q)[0], out) for i, q in enumerate(qs) if i not in chosen]
            return [*effects, (L.PUSD, (len(chosen) - 1) * out)]
        if op == "redeem":
            cid = str(a["condition_id"])
            yes, no = (int(x) for x in a["amounts"])
            payouts = await self.payouts(cid)
            if payouts is None:
                raise ValueError(f"condition {cid[:18]} is not resolved")
            a["payouts"] = list(payouts)
            y, n = yes_no(self.markets.condition(cid))
            return [(y, -yes), (n, -no), (L.PUSD, yes * payouts[0] + no * payouts[1])]
        return []  # approvals, no-op replacements: gas only

    # -- reads
    async def receipt(self, tx_hash: str) -> Receipt | None:
        t = self.ledger.tx(tx_hash)
        if t is None or t.status == L.POOL:
            return None
        return Receipt(t.hash, 1 if t.status == L.MINED else 0, t.gas_used, t.gas_price, t.block)

    async def nonce_latest(self) -> int:
        return self.ledger.latest_nonce()

    async def transaction_counts(self) -> tuple[int, int]:
        latest, pooled = self.ledger.latest_nonce(), self.ledger.pooled()
        return latest, max([latest, *(t.nonce + 1 for t in pooled)])

    async def transaction_known(self, tx_hash: str) -> bool:
        return self.ledger.tx(tx_hash) is not None

    async def chain_id(self) -> int:
        return self._config().chain.chain_id

    async def genesis_hash(self) -> str:
        return self.ledger.world

    async def collateral_balance(self) -> int:
        self._settle_due()
        return self.ledger.balance(L.PUSD)

    async def token_balances(self, token_ids: list[str]) -> dict[str, int]:
        self._settle_due()
        return {t: self.ledger.balance(t) for t in token_ids}

    def get_stats(self) -> dict[str, Any]:
        return {**self.counts, "nonce": self.ledger.latest_nonce(), "pooled": len(self.ledger.pooled())}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
