"""Held YES baskets, redeemed once their event resolves.

A YES basket holds one YES of every question of a neg-risk event; exactly one
resolves YES and pays 1 per share. The chain says when: each question's CTF
condition gets its payouts reported (the NegRiskAdapter is the oracle). Once
every question of a basket is reported, the winners are redeemed through the
adapter's `redeemPositions` and the payout booked. The chain, not the feed's
`market_resolved`, decides: it is what pays, and it is read again after any
restart. Each redemption is keyed (`redeem:<basket key>`), its transactions
journaled by the on-chain sender, and its outcome booked in one step with the
tokens it burnt, so a crash at any point neither redeems twice nor loses the
payout.
"""

from __future__ import annotations

import logging
from typing import Any

from actors.domain.enums import SetKind, TxStatus
from actors.domain.money import from_micro
from actors.executor.onchain import TxReverted
from actors.executor.outcomes import GAS, Ended, Execution, Flow, Verdict, tx_flows
from bus.messages import Signal

log = logging.getLogger(__name__)

REDEEM_GAS_HINT = 200_000


class Redeemer:
    def __init__(self, sender: Any) -> None:
        self.sender = sender  # the TxSender: its chain, on-chain sender, journal and books
        self._conditions: dict[tuple[str, int], str] = {}
        self.redeemed = self.failed = self.errors = 0

    async def redeem_resolved(self) -> list[Execution]:
        """Redeem every held basket whose event is fully reported; the outcomes booked."""
        out = []
        for key, market_id, tokens, size, cost in self.sender.journal.baskets_held():
            try:
                done = await self._redeem(key, market_id, tokens, size, cost)
            except Exception as exc:  # the node, a stuck transaction: asked again next round
                self.errors += 1
                log.warning("basket %s not redeemed yet: %s: %s", key[:12], type(exc).__name__, exc)
                continue
            if done is not None:
                out.append(done)
        return out

    async def _condition(self, market_id: str, index: int) -> str:
        if (market_id, index) not in self._conditions:
            self._conditions[market_id, index] = await self.sender.chain.question_condition(market_id, index)
        return self._conditions[market_id, index]

    async def _redeem(self, key: str, market_id: str, tokens: list[str], size: int, cost: int) -> Execution | None:
        s, chain = self.sender, self.sender.chain
        conditions = [await self._condition(market_id, i) for i in range(len(tokens))]
        payouts = [await chain.payouts(c) for c in conditions]
        if any(p is None for p in payouts):
            return None  # not resolved yet (or only partly reported)
        rkey = f"redeem:{key}"
        signal = _redemption_signal(market_id, key)
        with s.journal.step():
            s.journal.begin(rkey, signal)
        prior = s.journal.get(rkey)[2]
        winners = [i for i, p in enumerate(payouts) if p and p[0]]
        s.activity += 1
        payout, burnt, tx_hash, status, why = 0, [], None, TxStatus.REDEEMED, None
        flows: list[Flow] = []
        for i in winners:
            yes, no = payouts[i]  # type: ignore[misc]
            try:
                sent = await s.onchain.send(rkey, f"redeem{i}", chain.redeem_call(conditions[i], [size, 0]),
                                            REDEEM_GAS_HINT, prior=prior.get(f"redeem{i}"))
            except TxReverted as exc:  # left for the operator: the tokens stay held, the gas is booked
                flows.append(Flow(GAS, -exc.gas_cost, exc.receipt.tx_hash))
                status, why = TxStatus.FAILED, f"redeem of question {i} reverted: {exc}"
                break
            tx_hash = sent.tx_hash
            paid = size * yes // (yes + no)
            flows += tx_flows("redeem", paid, sent.tx_hash, sent.gas_cost)
            payout += paid
            burnt.append((tokens[i], size))
        end = Ended(status, Verdict.SUCCESS if status is TxStatus.REDEEMED else Verdict.FAILURE, why, tuple(flows),
                    tx_hash)
        r = Execution.of(signal, rkey, 1, end)
        state = "redeemed" if status is TxStatus.REDEEMED else "redeem_failed"
        s.book(r, lambda: s.journal.basket_ended(key, state, payout, burnt))
        if status is TxStatus.REDEEMED:
            self.redeemed += 1
            log.info("basket %s redeemed: paid %s USDC for a cost of %s", key[:12], from_micro(payout),
                     from_micro(cost))
        else:
            self.failed += 1
            log.error("basket %s: %s", key[:12], why)
        return r

    def get_stats(self) -> dict[str, int]:
        return {"redeemed": self.redeemed, "failed": self.failed, "errors": self.errors}


def _redemption_signal(market_id: str, key: str) -> Signal:
    """The journal keys a redemption like an execution; this is its "signal"."""
    return Signal(signal_id=f"redeem:{key[:16]}", market=market_id, kind=SetKind.YES_BASKET, legs=[], size=0,
                  expected_profit=0, book_ts_ms={}, created_ns=0, expires_ns=0, neg_risk_market_id=market_id)
