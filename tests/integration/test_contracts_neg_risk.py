"""The NegRiskAdapter and WCOL on a real anvil: markets and questions, split / merge,
convertPositions (exact collateral, YES out, NO gone, the fee), outcome reports and
redemption, and the system's books: every pUSD accounted for, WCOL's reserve equal to
the WCOL that can still be claimed."""

from __future__ import annotations

import pytest
from web3.logs import DISCARD

from config.loader import load
from sandbox.deploy import (
    MAX_UINT,
    NO_TOKEN_BURN_ADDRESS,
    ZERO32,
    binary_position_ids,
    condition_id,
    contract,
    neg_risk_market_id,
    neg_risk_question_id,
)
from tests.integration.test_contracts import TEN, cid, make_world, neg_risk, ok, reverts_with_error

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SPLIT = "splitPosition(bytes32,uint256)"
MERGE = "mergePositions(bytes32,uint256)"


@pytest.fixture
def world(anvil):
    """make_world's tuple, with the trader's approvals of the adapter (pUSD in, tokens pulled)."""
    w3, d, op, trader = make_world(anvil, load())
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.neg_risk_adapter, MAX_UINT))
    ok(w3, trader, contract(w3, "ConditionalTokens", d.ctf).functions.setApprovalForAll(d.neg_risk_adapter, True))
    return w3, d, op, trader


class Books:
    """Balances of the neg-risk world: pUSD and the positions of a list of conditions."""

    def __init__(self, w3, d, conditions: list[bytes]) -> None:
        self.coll = contract(w3, "Collateral", d.collateral).functions
        self.ctf = contract(w3, "ConditionalTokens", d.ctf).functions
        self.wcol = contract(w3, "WrappedCollateral", d.wcol).functions
        self.d = d
        self.ids = [binary_position_ids(d.wcol, c) for c in conditions]  # [[yes, no], ...]

    def pusd(self, who: str) -> int:
        return self.coll.balanceOf(who).call()

    def yes(self, who: str) -> list[int]:
        return self.ctf.balanceOfBatch([who] * len(self.ids), [y for y, _ in self.ids]).call()

    def no(self, who: str) -> list[int]:
        return self.ctf.balanceOfBatch([who] * len(self.ids), [n for _, n in self.ids]).call()

    def reserve(self) -> int:
        """pUSD behind WCOL."""
        return self.pusd(self.d.wcol)

    def supply(self) -> int:
        return self.wcol.totalSupply().call()

    def assert_adapter_empty(self) -> None:
        a = self.d.neg_risk_adapter
        assert (self.pusd(a), self.wcol.balanceOf(a).call(), self.yes(a), self.no(a)) == (
            0, 0, [0] * len(self.ids), [0] * len(self.ids))


def prepare_market(w3, d, op, fee_bips: int, questions: int, data: bytes) -> tuple[bytes, list[bytes]]:
    """A market of the operator's through the adapter: (market id, condition ids)."""
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter).functions
    market_id = neg_risk_market_id(op.address, fee_bips, data)
    assert adapter.prepareMarket(fee_bips, data).call({"from": op.address}) == market_id
    ok(w3, op, adapter.prepareMarket(fee_bips, data))
    for i in range(questions):
        ok(w3, op, adapter.prepareQuestion(market_id, f"q{i}".encode()))
    return market_id, [condition_id(d.neg_risk_adapter, neg_risk_question_id(market_id, i), 2)
                       for i in range(questions)]


def split_each(w3, d, who, conditions: list[bytes], amount: int) -> None:
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter)
    for c in conditions:
        ok(w3, who, adapter.get_function_by_signature(SPLIT)(c, amount))


# ---------------------------------------------------------------- split / merge


def test_split_and_merge_through_the_adapter_in_both_signatures(world):
    w3, d, _, trader = world
    m = neg_risk(d)[0]
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter)
    books = Books(w3, d, [cid(m)])
    start = (books.pusd(trader.address), books.reserve(), books.supply(), books.wcol.balanceOf(d.ctf).call())

    receipt = ok(w3, trader, adapter.get_function_by_signature(SPLIT)(cid(m), TEN))
    ok(w3, trader, adapter.get_function_by_signature(
        "splitPosition(address,bytes32,bytes32,uint256[],uint256)")(d.collateral, ZERO32, cid(m), [1, 2], TEN))
    assert (books.yes(trader.address), books.no(trader.address)) == ([2 * TEN], [2 * TEN])
    assert (books.pusd(trader.address), books.reserve(), books.supply(), books.wcol.balanceOf(d.ctf).call()) == (
        start[0] - 2 * TEN, start[1] + 2 * TEN, start[2] + 2 * TEN, start[3] + 2 * TEN)
    (event,) = adapter.events.PositionSplit().process_receipt(receipt, errors=DISCARD)
    assert (event.args.stakeholder, event.args.conditionId, event.args.amount) == (trader.address, cid(m), TEN)
    books.assert_adapter_empty()

    ok(w3, trader, adapter.get_function_by_signature(MERGE)(cid(m), TEN))
    ok(w3, trader, adapter.get_function_by_signature(
        "mergePositions(address,bytes32,bytes32,uint256[],uint256)")(d.collateral, ZERO32, cid(m), [1, 2], TEN))
    assert (books.pusd(trader.address), books.reserve(), books.supply(), books.wcol.balanceOf(d.ctf).call()) == start
    assert (books.yes(trader.address), books.no(trader.address)) == ([0], [0])
    books.assert_adapter_empty()
    reverts_with_error(adapter.get_function_by_signature("splitPosition(address,bytes32,bytes32,uint256[],uint256)")(
        d.wcol, ZERO32, cid(m), [1, 2], TEN), trader.address, "UnexpectedCollateralToken()")


# ---------------------------------------------------------------- convert


@pytest.mark.parametrize("index_set", [0b0111, 0b1011, 0b1111])
def test_convert_no_positions_into_collateral_and_the_other_yes(world, index_set):
    """World Cup (4 outcomes, no fee): m NO -> (m - 1) pUSD and one YES of each other outcome."""
    w3, d, op, trader = world
    markets = neg_risk(d)
    conditions = [cid(m) for m in markets]
    inside = [i for i in range(4) if index_set >> i & 1]
    m_count, amount = len(inside), 7_123_457
    split_each(w3, d, trader, [conditions[i] for i in inside], amount)
    books = Books(w3, d, conditions)
    t = trader.address
    pusd, yes, supply, reserve = books.pusd(t), books.yes(t), books.supply(), books.reserve()
    assert books.no(t) == [amount if i in inside else 0 for i in range(4)]

    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter)
    market_id = bytes.fromhex(d.events[0].market_id[2:])
    receipt = ok(w3, trader, adapter.functions.convertPositions(market_id, index_set, amount))

    assert books.pusd(t) == pusd + (m_count - 1) * amount
    assert books.no(t) == [0] * 4
    assert books.yes(t) == [yes[i] + (0 if i in inside else amount) for i in range(4)]
    assert books.no(NO_TOKEN_BURN_ADDRESS) == [amount] * 4  # the NO given up and the complements' NO
    # WCOL minted for the complements' splits; pUSD released for the collateral out.
    assert books.supply() == supply + (4 - m_count) * amount
    assert books.reserve() == reserve - (m_count - 1) * amount
    books.assert_adapter_empty()
    (event,) = adapter.events.PositionsConverted().process_receipt(receipt, errors=DISCARD)
    assert dict(event.args) == {"stakeholder": t, "marketId": market_id, "indexSet": index_set, "amount": amount}


def test_convert_with_a_fee_then_resolution_keeps_every_book_exact(world):
    """A 4-question market with a 2.5% convert fee, isolated from the bootstrap's inventory.
    The trader converts NO of questions 0-2 and keeps a YES/NO pair of question 3; question 1
    wins. At the end every pUSD is accounted for, and WCOL's reserve equals the WCOL that can
    still be claimed: none, since what stays in the CTF belongs to the burnt NO."""
    w3, d, op, trader = world
    t, vault = trader.address, op.address  # the operator collects the adapter's fees
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter)
    market_id, conditions = prepare_market(w3, d, op, 250, 4, b"convert-fee-test")
    assert adapter.functions.getFeeBips(market_id).call() == 250
    books = Books(w3, d, conditions)
    a, b = 10_000_003, 4_000_000
    fee, out = 250_000, 9_750_003  # a * 250 // 10_000 (rounded down), a - fee
    pusd0 = {"trader": books.pusd(t), "vault": books.pusd(vault), "reserve": books.reserve()}
    supply0, total0 = books.supply(), books.coll.totalSupply().call()

    split_each(w3, d, trader, conditions[:3], a)
    split_each(w3, d, trader, conditions[3:], b)
    ok(w3, trader, adapter.functions.convertPositions(market_id, 0b0111, a))
    assert books.pusd(t) == pusd0["trader"] - 3 * a - b + 2 * out
    assert books.pusd(vault) == pusd0["vault"] + 2 * fee
    assert (books.yes(t), books.no(t)) == ([a, a, a, b + out], [0, 0, 0, b])
    assert (books.yes(vault), books.no(vault)) == ([0, 0, 0, fee], [0] * 4)
    assert books.no(NO_TOKEN_BURN_ADDRESS) == [a] * 4
    books.assert_adapter_empty()

    # Question 1 wins: YES of 1 and NO of the others pay 1 per share.
    for i in (0, 1, 2, 3):
        ok(w3, op, adapter.functions.reportOutcome(neg_risk_question_id(market_id, i), i == 1))
    assert (adapter.functions.getDetermined(market_id).call(), adapter.functions.getResult(market_id).call()) == (
        True, 1)
    before = books.pusd(t)
    payouts = []
    for c, yes, no in zip(conditions, books.yes(t), books.no(t), strict=True):
        receipt = ok(w3, trader, adapter.functions.redeemPositions(c, [yes, no]))
        (event,) = adapter.events.PayoutRedemption().process_receipt(receipt, errors=DISCARD)
        payouts.append(event.args.payout)
    assert payouts == [0, a, 0, b]  # the winner's YES; question 3's NO (a loser)
    assert books.pusd(t) == before + a + b
    ok(w3, op, adapter.functions.redeemPositions(conditions[3], [fee, 0]))  # the vault's YES of a loser
    assert books.pusd(vault) == pusd0["vault"] + 2 * fee
    assert (books.yes(t), books.no(t), books.yes(vault)) == ([0] * 4, [0] * 4, [0] * 4)
    books.assert_adapter_empty()

    # The books: the trader paid exactly the fee, nothing was created or lost.
    assert books.pusd(t) == pusd0["trader"] - 2 * fee
    assert books.coll.totalSupply().call() == total0
    assert books.reserve() == pusd0["reserve"]
    burnt_claims = 3 * a  # the burnt NO of the losers 0, 2 and 3: WCOL locked in the CTF for ever
    assert books.supply() == supply0 + burnt_claims


def test_convert_refuses_bad_input(world):
    w3, d, op, trader = world
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter).functions
    market_id = bytes.fromhex(d.events[0].market_id[2:])
    single, _ = prepare_market(w3, d, op, 0, 1, b"one-question")
    t = trader.address
    reverts_with_error(adapter.convertPositions(market_id, 0, TEN), t, "InvalidIndexSet()")
    reverts_with_error(adapter.convertPositions(market_id, 0b10000, TEN), t, "InvalidIndexSet()")
    reverts_with_error(adapter.convertPositions(b"\x05" * 32, 1, TEN), t, "MarketNotPrepared()")
    reverts_with_error(adapter.convertPositions(single, 1, TEN), t, "NoConvertiblePositions()")
    adapter.convertPositions(market_id, 0b0011, 0).call({"from": t})  # zero: a no-op, as the real adapter


# ---------------------------------------------------------------- markets, questions, outcomes


def test_markets_and_questions_are_the_admins(world):
    w3, d, op, trader = world
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter).functions
    market_id, conditions = prepare_market(w3, d, op, 0, 2, b"rules")
    t = trader.address
    reverts_with_error(adapter.prepareMarket(0, b"mine"), t, "NotAdmin()")
    reverts_with_error(adapter.prepareMarket(0, b"rules"), op.address, "MarketAlreadyPrepared()")
    reverts_with_error(adapter.prepareMarket(10_001, b"too dear"), op.address, "FeeBipsOutOfBounds()")
    reverts_with_error(adapter.prepareQuestion(market_id, b""), t, "OnlyOracle()")
    reverts_with_error(adapter.prepareQuestion(b"\x05" * 32, b""), op.address, "MarketNotPrepared()")
    assert adapter.getQuestionCount(market_id).call() == 2
    assert [adapter.getConditionId(neg_risk_question_id(market_id, i)).call() for i in range(2)] == conditions
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    assert [ctf.getOutcomeSlotCount(c).call() for c in conditions] == [2, 2]


def test_outcomes_at_most_one_yes_and_only_from_the_oracle(world):
    w3, d, op, trader = world
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter)
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    market_id, conditions = prepare_market(w3, d, op, 0, 3, b"outcomes")
    q = [neg_risk_question_id(market_id, i) for i in range(3)]
    reverts_with_error(adapter.functions.reportOutcome(q[0], True), trader.address, "OnlyOracle()")
    reverts_with_error(adapter.functions.reportOutcome(neg_risk_question_id(market_id, 3), False), op.address,
                       "IndexOutOfBounds()")

    ok(w3, op, adapter.functions.reportOutcome(q[0], False))
    receipt = ok(w3, op, adapter.functions.reportOutcome(q[2], True))
    (event,) = adapter.events.OutcomeReported().process_receipt(receipt, errors=DISCARD)
    assert dict(event.args) == {"marketId": market_id, "questionId": q[2], "outcome": True}
    reverts_with_error(adapter.functions.reportOutcome(q[1], True), op.address, "MarketAlreadyDetermined()")
    assert [ctf.payoutNumerators(conditions[0], i).call() for i in (0, 1)] == [0, 1]
    assert [ctf.payoutNumerators(conditions[2], i).call() for i in (0, 1)] == [1, 0]
    assert adapter.functions.getResult(market_id).call() == 2
