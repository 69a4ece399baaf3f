"""The sandbox contracts on a real anvil: bootstrap, id derivation, complete sets and
resolution, driven through web3 exactly as the venue and the executor will.
(Settlement: test_contracts_settlement.py; the neg-risk adapter: test_contracts_neg_risk.py.
Both import their helpers from here.)"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import msgspec
import pytest
from eth_utils import keccak
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from actors.domain.money import to_micro
from actors.domain.wallet import dev_account, load_wallet
from config.loader import load
from sandbox.chain import start_anvil
from sandbox.deploy import (
    MAX_UINT,
    NO_TOKEN_BURN_ADDRESS,
    ZERO32,
    BootstrapError,
    Deployment,
    MarketInfo,
    balances,
    bootstrap,
    collection_id,
    condition_id,
    connect,
    contract,
    position_id,
    question_id,
)
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TEN = 10 * 10**6  # 10 pUSD in 1e-6 units
BYSTANDER = dev_account(7).address  # holds nothing; receives what a test moves out of the world


# ---------------------------------------------------------------- helpers (shared with test_contracts_*.py)


@pytest.fixture
def cfg():
    return load()


def make_world(anvil: str, cfg):
    """(w3, deployment, operator account, trader account) on a freshly bootstrapped anvil."""
    deployment = bootstrap(cfg, anvil)
    return connect(anvil), deployment, dev_account(cfg.sandbox.venue.operator_index), load_wallet(cfg).account


@pytest.fixture
def world(anvil, cfg):
    return make_world(anvil, cfg)


def send(w3, account, fn, *, gas: int | None = None):
    """Sign and send `fn` from `account`; returns the receipt. An explicit gas limit skips
    estimation, so a reverting call is mined (status 0) instead of failing to estimate."""
    params = {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending")}
    if gas is not None:
        params["gas"] = gas
    signed = account.sign_transaction(fn.build_transaction(params))
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30)


def ok(w3, account, fn):
    receipt = send(w3, account, fn)
    assert receipt["status"] == 1
    return receipt


def reverts_with_error(fn, sender: str, error: str) -> None:
    """`fn` reverts with the custom error `error` ("OnlyOracle()") when called from `sender`."""
    with pytest.raises(ContractCustomError) as info:
        fn.call({"from": sender})
    assert info.value.data == "0x" + keccak(text=error)[:4].hex()


def cid(m) -> bytes:
    return bytes.fromhex(m.condition_id[2:])


def binary(d: Deployment) -> MarketInfo:
    return next(m for m in d.markets if not m.neg_risk)


def neg_risk(d: Deployment, event: str = "world-cup-2026") -> list[MarketInfo]:
    return [m for m in d.markets if m.event_slug == event]


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_funds_the_world(world, cfg):
    w3, d, op, trader = world
    venue = cfg.sandbox.venue
    inventory = to_micro(venue.operator_inventory)
    coll = contract(w3, "Collateral", d.collateral).functions
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter).functions
    wcol = contract(w3, "WrappedCollateral", d.wcol).functions

    assert (coll.name().call(), coll.symbol().call(), coll.decimals().call()) == ("Polymarket USD", "pUSD", 6)
    assert (wcol.symbol().call(), wcol.decimals().call(), wcol.owner().call()) == ("WCOL", 6, d.neg_risk_adapter)
    assert balances(w3, d, d.trader) == {"collateral": to_micro(venue.trader_funding),
                                         **{t: 0 for m in d.markets for t in m.token_ids}}
    op_balances = balances(w3, d, d.operator)
    assert op_balances["collateral"] == inventory
    assert all(op_balances[t] == inventory for m in d.markets for t in m.token_ids)
    for ex in (d.exchange, d.neg_risk_exchange):
        assert contract(w3, "Settlement", ex).functions.isOperator(op.address).call()
    for spender in (d.exchange, d.neg_risk_exchange, d.neg_risk_adapter):
        assert ctf.isApprovedForAll(op.address, spender).call()
        assert coll.allowance(op.address, spender).call() == MAX_UINT
    assert [m.slug for m in d.markets] == [m.slug for m in venue.markets] + [
        f"{e.slug}-{i}" for e in d.events for i in range(len(e.outcomes))]
    for e in d.events:
        market_id = bytes.fromhex(e.market_id[2:])
        assert adapter.getQuestionCount(market_id).call() == len(e.outcomes) == len(e.condition_ids)
        assert (adapter.getOracle(market_id).call(), adapter.getFeeBips(market_id).call()) == (op.address, e.fee_bips)
    # Every neg-risk set the operator split is one WCOL in the CTF, backed by one pUSD.
    wrapped = inventory * sum(m.neg_risk for m in d.markets)
    assert wcol.totalSupply().call() == wcol.balanceOf(d.ctf).call() == wrapped
    assert coll.balanceOf(d.wcol).call() == wrapped
    assert coll.balanceOf(d.ctf).call() == inventory * sum(not m.neg_risk for m in d.markets)


def test_a_second_bootstrap_with_events_sends_nothing(world, cfg, anvil):
    w3, d, op, _ = world
    assert d.events and any(m.neg_risk for m in d.markets)
    nonce, before = w3.eth.get_transaction_count(op.address), balances(w3, d, d.operator)

    assert bootstrap(cfg, anvil) == d
    assert w3.eth.get_transaction_count(op.address) == nonce  # no mint, no split, no approval, no question
    assert balances(w3, d, d.operator) == before


def test_the_trader_is_funded_once_per_world(world, cfg, anvil):
    """A venue restart re-runs bootstrap mid-run: it must never mint the trader money."""
    w3, d, op, trader = world
    coll = contract(w3, "Collateral", d.collateral).functions
    ok(w3, trader, coll.transfer(BYSTANDER, 3 * 10**6))
    supply = coll.totalSupply().call()

    bootstrap(cfg, anvil)
    assert balances(w3, d, d.trader)["collateral"] == to_micro(cfg.sandbox.venue.trader_funding) - 3 * 10**6
    assert coll.totalSupply().call() == supply


def test_the_operator_inventory_is_topped_up(world, cfg, anvil):
    w3, d, op, _ = world
    m = neg_risk(d)[0]
    ok(w3, op, contract(w3, "Collateral", d.collateral).functions.transfer(BYSTANDER, TEN))
    ok(w3, op, contract(w3, "ConditionalTokens", d.ctf).functions.safeTransferFrom(
        op.address, BYSTANDER, int(m.token_ids[1]), TEN, b""))
    nonce = w3.eth.get_transaction_count(op.address)

    bootstrap(cfg, anvil)
    after = balances(w3, d, d.operator)
    inventory = to_micro(cfg.sandbox.venue.operator_inventory)
    # The split back to inventory makes TEN extra YES: the fewest-shares outcome decides.
    assert (after["collateral"], after[m.token_ids[0]], after[m.token_ids[1]]) == (inventory, inventory + TEN,
                                                                                  inventory)
    assert w3.eth.get_transaction_count(op.address) == nonce + 2  # one mint, one split


def test_bootstrap_on_a_chain_mining_every_two_seconds(cfg):
    """make run's anvil mines on a timer: the whole bootstrap lands as one batch of nonces."""
    proc, url = start_anvil(msgspec.structs.replace(cfg.sandbox.chain, block_time_seconds=2), 137)
    try:
        d = bootstrap(cfg, url)
        w3 = connect(url)
        assert balances(w3, d, d.trader)["collateral"] == to_micro(cfg.sandbox.venue.trader_funding)
        assert min(balances(w3, d, d.operator).values()) == to_micro(cfg.sandbox.venue.operator_inventory)
    finally:
        proc.terminate()
        proc.wait(15)


def test_bootstrap_refuses_another_chain_id(anvil, cfg):
    other = msgspec.structs.replace(cfg, chain=msgspec.structs.replace(cfg.chain, chain_id=80002))
    with pytest.raises(BootstrapError, match="chain id"):
        bootstrap(other, anvil)


def test_python_ids_equal_the_contracts(world):
    w3, d, op, _ = world
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    adapter = contract(w3, "NegRiskAdapter", d.neg_risk_adapter).functions
    for m in d.markets:
        qid = bytes.fromhex(m.question_id[2:])
        oracle, collateral = (d.neg_risk_adapter, d.wcol) if m.neg_risk else (op.address, d.collateral)
        assert ctf.getConditionId(oracle, qid, 2).call() == cid(m)
        assert ctf.getOutcomeSlotCount(cid(m)).call() == 2
        for i, token in enumerate(m.token_ids):
            coll_id = ctf.getCollectionId(ZERO32, cid(m), 1 << i).call()
            assert coll_id == collection_id(ZERO32, cid(m), 1 << i)
            assert ctf.getPositionId(collateral, coll_id).call() == int(token) == position_id(collateral, coll_id)
        if m.neg_risk:
            assert adapter.getConditionId(qid).call() == cid(m)
            assert [adapter.getPositionId(qid, o).call() for o in (True, False)] == [int(t) for t in m.token_ids]
    assert (adapter.ctf().call(), adapter.col().call(), adapter.wcol().call()) == (d.ctf, d.collateral, d.wcol)
    assert adapter.NO_TOKEN_BURN_ADDRESS().call() == NO_TOKEN_BURN_ADDRESS
    for e in d.events:
        assert [m.condition_id for m in neg_risk(d, e.slug)] == e.condition_ids


def test_cli_prints_the_deployment(anvil, world):
    out = subprocess.run([sys.executable, "-m", "sandbox.deploy", "--rpc", anvil], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == world[1].to_json()
    assert Deployment.from_json(json.loads(out.stdout)) == world[1]


# ---------------------------------------------------------------- complete sets (CTF, any slot count)


@pytest.fixture
def four_way(world):
    """A 4-outcome condition prepared by the trader as its own oracle (the CTF supports any
    slot count; the venue's multi-outcome markets are neg-risk events instead), and the
    deployment restricted to it, so `balances` reads its four tokens."""
    w3, d, _, trader = world
    qid = question_id("four-way")
    ok(w3, trader, contract(w3, "ConditionalTokens", d.ctf).functions.prepareCondition(trader.address, qid, 4))
    c = condition_id(trader.address, qid, 4)
    tokens = [str(position_id(d.collateral, collection_id(ZERO32, c, 1 << i))) for i in range(4)]
    m = dataclasses.replace(binary(d), slug="four-way", condition_id="0x" + c.hex(), question_id="0x" + qid.hex(),
                            outcomes=["A", "B", "C", "D"], token_ids=tokens)
    return m, dataclasses.replace(d, markets=[m])


@pytest.mark.parametrize("n_outcomes", [2, 4])
def test_complete_set_split_then_merged_back_into_collateral(world, four_way, n_outcomes):
    w3, d, _, trader = world
    m, d = four_way if n_outcomes == 4 else (binary(d), d)
    ctf = contract(w3, "ConditionalTokens", d.ctf)
    start = balances(w3, d, trader.address)
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.ctf, TEN))

    receipt = ok(w3, trader, ctf.functions.splitPosition(d.collateral, ZERO32, cid(m), m.partition, TEN))
    after_split = balances(w3, d, trader.address)
    assert after_split["collateral"] == start["collateral"] - TEN
    assert [after_split[t] for t in m.token_ids] == [TEN] * n_outcomes
    (event,) = ctf.events.PositionSplit().process_receipt(receipt, errors=DISCARD)
    assert (event.args.stakeholder, event.args.partition, event.args.amount) == (trader.address, m.partition, TEN)

    ok(w3, trader, ctf.functions.mergePositions(d.collateral, ZERO32, cid(m), m.partition, TEN))
    assert balances(w3, d, trader.address) == start


def test_any_disjoint_partition_splits_and_merges(world, four_way):
    """{1, 14} then 14 -> {2, 4, 8}: the union position is burnt, the set stays complete."""
    w3, _, _, trader = world
    m, d = four_way
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    start = balances(w3, d, trader.address)
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.ctf, TEN))
    ok(w3, trader, ctf.splitPosition(d.collateral, ZERO32, cid(m), [1, 14], TEN))
    union = position_id(d.collateral, collection_id(ZERO32, cid(m), 14))
    assert ctf.balanceOf(trader.address, union).call() == TEN

    ok(w3, trader, ctf.splitPosition(d.collateral, ZERO32, cid(m), [2, 4, 8], TEN))
    assert ctf.balanceOf(trader.address, union).call() == 0
    assert [balances(w3, d, trader.address)[t] for t in m.token_ids] == [TEN] * 4

    ok(w3, trader, ctf.mergePositions(d.collateral, ZERO32, cid(m), m.partition, TEN))
    assert balances(w3, d, trader.address) == start


def test_split_rejects_overlapping_or_incomplete_input(world, four_way):
    w3, _, _, trader = world
    m, d = four_way
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.ctf, TEN))
    with pytest.raises(ContractLogicError, match="partition not disjoint"):
        ctf.splitPosition(d.collateral, ZERO32, cid(m), [1, 3], TEN).call({"from": trader.address})
    with pytest.raises(ContractLogicError, match="burn amount exceeds balance"):  # {1,2} needs position 3
        ctf.splitPosition(d.collateral, ZERO32, cid(m), [1, 2], TEN).call({"from": trader.address})
    with pytest.raises(ContractLogicError, match="condition not prepared"):
        ctf.splitPosition(d.collateral, ZERO32, b"\x01" * 32, [1, 2], TEN).call({"from": trader.address})


def test_tokens_sent_to_the_exchanges_or_the_adapter_are_rejected(world):
    """They hold tokens only inside their own calls: a stray transfer would be lost, so it reverts."""
    w3, d, op, _ = world
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    for to, token in ((d.exchange, binary(d).token_ids[0]), (d.neg_risk_exchange, neg_risk(d)[0].token_ids[0]),
                      (d.neg_risk_adapter, neg_risk(d)[0].token_ids[1])):
        with pytest.raises(ContractLogicError, match="takes no deposits"):
            ctf.safeTransferFrom(op.address, to, int(token), 1, b"").call({"from": op.address})


def test_contracts_initialize_once_and_only_the_admin_mints(world):
    w3, d, op, trader = world
    coll = contract(w3, "Collateral", d.collateral).functions
    t = trader.address
    for fn in (coll.initialize(t),
               contract(w3, "Settlement", d.exchange).functions.initialize(t, d.collateral, d.ctf, t),
               contract(w3, "Settlement", d.neg_risk_exchange).functions.initialize(t, d.collateral, d.ctf, t),
               contract(w3, "NegRiskAdapter", d.neg_risk_adapter).functions.initialize(t, t, t, t, t),
               contract(w3, "WrappedCollateral", d.wcol).functions.initialize(t)):
        with pytest.raises(ContractLogicError, match="already initialized"):
            fn.call({"from": t})
    with pytest.raises(ContractLogicError, match="not admin"):
        coll.mint(t, 1).call({"from": t})
    wcol = contract(w3, "WrappedCollateral", d.wcol).functions
    for fn in (wcol.mint(1), wcol.wrap(t, 1), wcol.release(t, 1), wcol.burn(0)):
        reverts_with_error(fn, op.address, "OnlyOwner()")  # the adapter owns WCOL, not even the operator


# ---------------------------------------------------------------- resolution (binary)


def test_report_payouts_then_redeem_pays_the_winner(world):
    w3, d, op, trader = world
    m = binary(d)
    yes, no = (int(t) for t in m.token_ids)
    ctf = contract(w3, "ConditionalTokens", d.ctf)
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.ctf, TEN))
    ok(w3, trader, ctf.functions.splitPosition(d.collateral, ZERO32, cid(m), m.partition, TEN))
    ok(w3, trader, ctf.functions.safeTransferFrom(trader.address, op.address, no, TEN, b""))  # keep YES only
    start = balances(w3, d, trader.address)

    qid = bytes.fromhex(m.question_id[2:])
    with pytest.raises(ContractLogicError, match="condition not prepared or found"):  # not the oracle
        ctf.functions.reportPayouts(qid, [1, 0]).call({"from": trader.address})
    receipt = ok(w3, op, ctf.functions.reportPayouts(qid, [1, 0]))
    (event,) = ctf.events.ConditionResolution().process_receipt(receipt, errors=DISCARD)
    assert event.args.payoutNumerators == [1, 0]
    assert ctf.functions.payoutDenominator(cid(m)).call() == 1

    receipt = ok(w3, trader, ctf.functions.redeemPositions(d.collateral, ZERO32, cid(m), m.partition))
    end = balances(w3, d, trader.address)
    assert end["collateral"] == start["collateral"] + TEN
    assert (end[str(yes)], end[str(no)]) == (0, 0)
    (event,) = ctf.events.PayoutRedemption().process_receipt(receipt, errors=DISCARD)
    assert event.args.payout == TEN

    # The loser's side: the operator's NO shares redeem for nothing (and are burnt).
    op_before = balances(w3, d, op.address)["collateral"]
    ok(w3, op, ctf.functions.redeemPositions(d.collateral, ZERO32, cid(m), [2]))
    assert balances(w3, d, op.address)["collateral"] == op_before
    assert ctf.functions.balanceOf(op.address, no).call() == 0
