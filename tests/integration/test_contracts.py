"""The sandbox contracts on a real anvil: bootstrap, id derivation, complete sets,
settlement and resolution, driven through web3 exactly as the venue and the executor will."""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec
import pytest
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from actors.domain.money import to_micro
from actors.domain.wallet import dev_account, load_wallet
from config.loader import load
from sandbox.chain import start_anvil
from sandbox.deploy import (
    ZERO32,
    BootstrapError,
    balances,
    bootstrap,
    collection_id,
    connect,
    contract,
    position_id,
)
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MAX_UINT = 2**256 - 1
TEN = 10 * 10**6  # 10 pUSD in 1e-6 units


@pytest.fixture
def cfg():
    return load()


@pytest.fixture
def world(anvil, cfg):
    """(w3, deployment, operator account, trader account) on a freshly bootstrapped anvil."""
    deployment = bootstrap(cfg, anvil)
    op = dev_account(cfg.sandbox.venue.operator_index)
    return connect(anvil), deployment, op, load_wallet(cfg).account


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


def market(deployment, n_outcomes: int):
    return next(m for m in deployment.markets if len(m.outcomes) == n_outcomes)


def cid(m) -> bytes:
    return bytes.fromhex(m.condition_id[2:])


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_funds_the_world(world, cfg):
    w3, d, op, trader = world
    venue = cfg.sandbox.venue
    inventory = to_micro(venue.operator_inventory)
    coll = contract(w3, "Collateral", d.collateral).functions
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    ex = contract(w3, "Settlement", d.exchange).functions

    assert (coll.name().call(), coll.symbol().call(), coll.decimals().call()) == ("Polymarket USD", "pUSD", 6)
    assert balances(w3, d, d.trader) == {"collateral": to_micro(venue.trader_funding),
                                         **{t: 0 for m in d.markets for t in m.token_ids}}
    op_balances = balances(w3, d, d.operator)
    assert op_balances["collateral"] == inventory
    assert all(op_balances[t] == inventory for m in d.markets for t in m.token_ids)
    assert ex.isOperator(op.address).call()
    assert ctf.isApprovedForAll(op.address, d.exchange).call()
    assert coll.allowance(op.address, d.exchange).call() == MAX_UINT
    assert [m.slug for m in d.markets] == [m.slug for m in venue.markets]


def test_second_bootstrap_sends_nothing_and_tops_up_only_what_is_missing(world, cfg, anvil):
    w3, d, op, trader = world
    nonce, before = w3.eth.get_transaction_count(op.address), balances(w3, d, d.operator)

    assert bootstrap(cfg, anvil) == d
    assert w3.eth.get_transaction_count(op.address) == nonce  # no mint, no split, no approval
    assert balances(w3, d, d.operator) == before

    # The trader spends 3 pUSD: the next bootstrap mints exactly those back, and nothing else.
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.transfer(op.address, 3 * 10**6))
    bootstrap(cfg, anvil)
    assert balances(w3, d, d.trader)["collateral"] == to_micro(cfg.sandbox.venue.trader_funding)
    assert w3.eth.get_transaction_count(op.address) == nonce + 1


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
    for m in d.markets:
        assert ctf.getConditionId(op.address, bytes.fromhex(m.question_id[2:]), len(m.outcomes)).call() == cid(m)
        assert ctf.getOutcomeSlotCount(cid(m)).call() == len(m.outcomes)
        for i, token in enumerate(m.token_ids):
            coll_id = ctf.getCollectionId(ZERO32, cid(m), 1 << i).call()
            assert coll_id == collection_id(ZERO32, cid(m), 1 << i)
            assert ctf.getPositionId(d.collateral, coll_id).call() == int(token) == position_id(d.collateral, coll_id)


def test_cli_prints_the_deployment(anvil, world):
    out = subprocess.run([sys.executable, "-m", "sandbox.deploy", "--rpc", anvil], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == world[1].to_json()


# ---------------------------------------------------------------- complete sets


@pytest.mark.parametrize("n_outcomes", [2, 4])
def test_complete_set_split_then_merged_back_into_collateral(world, n_outcomes):
    w3, d, _, trader = world
    m = market(d, n_outcomes)
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


def test_any_disjoint_partition_splits_and_merges(world):
    """{1, 14} then 14 -> {2, 4, 8}: the union position is burnt, the set stays complete."""
    w3, d, _, trader = world
    m = market(d, 4)
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


def test_split_rejects_overlapping_or_incomplete_input(world):
    w3, d, _, trader = world
    m = market(d, 4)
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.ctf, TEN))
    with pytest.raises(ContractLogicError, match="partition not disjoint"):
        ctf.splitPosition(d.collateral, ZERO32, cid(m), [1, 3], TEN).call({"from": trader.address})
    with pytest.raises(ContractLogicError, match="burn amount exceeds balance"):  # {1,2} needs position 3
        ctf.splitPosition(d.collateral, ZERO32, cid(m), [1, 2], TEN).call({"from": trader.address})
    with pytest.raises(ContractLogicError, match="condition not prepared"):
        ctf.splitPosition(d.collateral, ZERO32, b"\x01" * 32, [1, 2], TEN).call({"from": trader.address})


def test_tokens_to_a_contract_without_receiver_hook_are_rejected(world):
    w3, d, op, _ = world
    token = int(d.markets[0].token_ids[0])
    with pytest.raises(ContractLogicError):
        contract(w3, "ConditionalTokens", d.ctf).functions.safeTransferFrom(
            op.address, d.exchange, token, 1, b"").call({"from": op.address})


# ---------------------------------------------------------------- settlement


def test_settle_moves_tokens_and_collateral_both_ways(world):
    w3, d, op, trader = world
    token = d.markets[0].token_ids[0]
    ex = contract(w3, "Settlement", d.exchange)
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.exchange, MAX_UINT))
    ok(w3, trader, contract(w3, "ConditionalTokens", d.ctf).functions.setApprovalForAll(d.exchange, True))
    t0, o0 = balances(w3, d, trader.address), balances(w3, d, op.address)

    # Buy 10 shares at 0.62 with a 0.0942 fee: the trader pays cost + fee.
    receipt = ok(w3, op, ex.functions.settle(b"\x01" * 32, trader.address, int(token), True, TEN, 6_200_000, 94_200))
    t1, o1 = balances(w3, d, trader.address), balances(w3, d, op.address)
    assert (t1["collateral"], t1[token]) == (t0["collateral"] - 6_294_200, TEN)
    assert (o1["collateral"], o1[token]) == (o0["collateral"] + 6_294_200, o0[token] - TEN)
    (event,) = ex.events.Settled().process_receipt(receipt, errors=DISCARD)
    assert dict(event.args) == {"fillId": b"\x01" * 32, "trader": trader.address, "tokenId": int(token),
                                "traderBuys": True, "shares": TEN, "cost": 6_200_000, "fee": 94_200}

    # Sell 4 back at 0.60 with a 0.048 fee: the trader receives cost - fee.
    ok(w3, op, ex.functions.settle(b"\x02" * 32, trader.address, int(token), False, 4 * 10**6, 2_400_000, 48_000))
    t2, o2 = balances(w3, d, trader.address), balances(w3, d, op.address)
    assert (t2["collateral"], t2[token]) == (t1["collateral"] + 2_352_000, TEN - 4 * 10**6)
    assert (o2["collateral"], o2[token]) == (o1["collateral"] - 2_352_000, o1[token] + 4 * 10**6)
    assert ex.functions.settled(b"\x01" * 32).call() and ex.functions.settled(b"\x02" * 32).call()
    assert not ex.functions.settled(b"\x03" * 32).call()


def test_a_fill_settles_once(world):
    w3, d, op, trader = world
    token = int(d.markets[0].token_ids[0])
    ex = contract(w3, "Settlement", d.exchange).functions
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.exchange, MAX_UINT))
    ok(w3, op, ex.settle(b"\x07" * 32, trader.address, token, True, TEN, 5_000_000, 0))
    after_first = balances(w3, d, trader.address)

    with pytest.raises(ContractLogicError, match="fill already settled"):
        ex.settle(b"\x07" * 32, trader.address, token, True, TEN, 5_000_000, 0).call({"from": op.address})
    receipt = send(w3, op, ex.settle(b"\x07" * 32, trader.address, token, True, TEN, 5_000_000, 0), gas=300_000)
    assert receipt["status"] == 0
    assert balances(w3, d, trader.address) == after_first


def test_only_an_operator_settles(world):
    w3, d, _, trader = world
    ex = contract(w3, "Settlement", d.exchange).functions
    ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(d.exchange, MAX_UINT))
    with pytest.raises(ContractLogicError, match="not operator"):
        ex.settle(b"\x01" * 32, trader.address, int(d.markets[0].token_ids[0]), True, TEN, 1, 0).call(
            {"from": trader.address})
    with pytest.raises(ContractLogicError, match="not admin"):
        ex.addOperator(trader.address).call({"from": trader.address})


def test_settle_reverts_without_the_traders_approval(world):
    w3, d, op, trader = world
    token = int(d.markets[0].token_ids[0])
    ex = contract(w3, "Settlement", d.exchange).functions
    with pytest.raises(ContractLogicError, match="insufficient allowance"):
        ex.settle(b"\x01" * 32, trader.address, token, True, TEN, 5_000_000, 0).call({"from": op.address})
    # The trader holds shares but never called setApprovalForAll for the exchange.
    ok(w3, op, contract(w3, "ConditionalTokens", d.ctf).functions.safeTransferFrom(
        op.address, trader.address, token, TEN, b""))
    with pytest.raises(ContractLogicError, match="not owner nor approved"):
        ex.settle(b"\x02" * 32, trader.address, token, False, TEN, 5_000_000, 0).call({"from": op.address})
    assert not ex.settled(b"\x01" * 32).call()


def test_contracts_initialize_once_and_only_the_admin_mints(world):
    w3, d, op, trader = world
    coll = contract(w3, "Collateral", d.collateral).functions
    with pytest.raises(ContractLogicError, match="already initialized"):
        coll.initialize(trader.address).call({"from": trader.address})
    with pytest.raises(ContractLogicError, match="already initialized"):
        contract(w3, "Settlement", d.exchange).functions.initialize(
            trader.address, d.collateral, d.ctf).call({"from": trader.address})
    with pytest.raises(ContractLogicError, match="not admin"):
        coll.mint(trader.address, 1).call({"from": trader.address})


# ---------------------------------------------------------------- resolution


def test_report_payouts_then_redeem_pays_the_winner(world):
    w3, d, op, trader = world
    m = market(d, 2)
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
