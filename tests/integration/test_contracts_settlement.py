"""Settlement's three match types (COMPLEMENTARY settle, MINT, MERGE) on a real anvil, on
the standard exchange (a binary market, pUSD positions split on the CTF) and on the
neg-risk exchange (an event's outcome, WCOL positions split through the adapter): exact
balance changes of trader, operator and the contracts holding the collateral, fill ids
settled once across all types, nothing left in the Settlement contract."""

from __future__ import annotations

import pytest
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from config.loader import load
from sandbox.deploy import MAX_UINT, Deployment, MarketInfo, contract
from tests.integration.test_contracts import BYSTANDER, TEN, binary, make_world, neg_risk, ok, send

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# The venue's settler sends every settlement with this gas limit (sandbox/venue/clob/settlement.py).
VENUE_GAS_LIMIT = 300_000
KINDS = ["binary", "neg_risk"]


@pytest.fixture
def world(anvil):
    """make_world's tuple, with the trader's approvals of both exchanges (the executor's job)."""
    w3, d, op, trader = make_world(anvil, load())
    for ex in (d.exchange, d.neg_risk_exchange):
        ok(w3, trader, contract(w3, "Collateral", d.collateral).functions.approve(ex, MAX_UINT))
        ok(w3, trader, contract(w3, "ConditionalTokens", d.ctf).functions.setApprovalForAll(ex, True))
    return w3, d, op, trader


def market_of(d: Deployment, kind: str) -> tuple[MarketInfo, str]:
    """(a market of `kind`, the exchange that settles it)."""
    return (binary(d), d.exchange) if kind == "binary" else (neg_risk(d)[0], d.neg_risk_exchange)


class Ledger:
    """Collateral and both tokens of a market for the parties of a settlement, and where the
    sets' collateral sits: the CTF (pUSD) for binary markets, WCOL's reserve for neg risk."""

    def __init__(self, w3, d: Deployment, m: MarketInfo, exchange: str, *parties: str) -> None:
        self.coll = contract(w3, "Collateral", d.collateral).functions
        self.ctf = contract(w3, "ConditionalTokens", d.ctf).functions
        self.wcol = contract(w3, "WrappedCollateral", d.wcol).functions
        self.tokens = [int(t) for t in m.token_ids]
        self.parties, self.exchange = parties, exchange
        self.vault = d.wcol if m.neg_risk else d.ctf

    def of(self, who: str) -> tuple[int, int, int]:
        """(collateral, YES, NO) of `who`."""
        yes, no = self.ctf.balanceOfBatch([who, who], self.tokens).call()
        return self.coll.balanceOf(who).call(), yes, no

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        return {p: self.of(p) for p in self.parties} | {"sets": (self.coll.balanceOf(self.vault).call(), 0, 0)}

    def delta(self, before: dict) -> dict[str, tuple[int, int, int]]:
        now = self.snapshot()
        return {k: tuple(a - b for a, b in zip(now[k], before[k], strict=True)) for k in now}

    def assert_exchange_empty(self) -> None:
        assert self.of(self.exchange) == (0, 0, 0)
        assert self.wcol.balanceOf(self.exchange).call() == 0


def settle_fn(w3, exchange: str):
    return contract(w3, "Settlement", exchange)


@pytest.mark.parametrize("kind", KINDS)
def test_complementary_settle_moves_tokens_and_collateral_both_ways(world, kind):
    w3, d, op, trader = world
    m, exchange = market_of(d, kind)
    ex = settle_fn(w3, exchange)
    book = Ledger(w3, d, m, exchange, trader.address, op.address)
    yes = int(m.token_ids[0])
    t0 = book.snapshot()

    # Buy 10 YES at 0.62 with a 0.0942 fee: the trader pays cost + fee.
    receipt = ok(w3, op, ex.functions.settle(b"\x01" * 32, trader.address, yes, True, TEN, 6_200_000, 94_200))
    assert receipt["gasUsed"] < VENUE_GAS_LIMIT
    assert book.delta(t0) == {trader.address: (-6_294_200, TEN, 0), op.address: (6_294_200, -TEN, 0),
                              "sets": (0, 0, 0)}
    (event,) = ex.events.Settled().process_receipt(receipt, errors=DISCARD)
    assert dict(event.args) == {"fillId": b"\x01" * 32, "trader": trader.address, "tokenId": yes,
                                "traderBuys": True, "shares": TEN, "cost": 6_200_000, "fee": 94_200}

    # Sell 4 back at 0.60 with a 0.048 fee: the trader receives cost - fee.
    t1 = book.snapshot()
    ok(w3, op, ex.functions.settle(b"\x02" * 32, trader.address, yes, False, 4 * 10**6, 2_400_000, 48_000))
    assert book.delta(t1) == {trader.address: (2_352_000, -4 * 10**6, 0), op.address: (-2_352_000, 4 * 10**6, 0),
                              "sets": (0, 0, 0)}
    assert ex.functions.settled(b"\x01" * 32).call() and ex.functions.settled(b"\x02" * 32).call()
    assert not ex.functions.settled(b"\x03" * 32).call()
    book.assert_exchange_empty()


# (traderCost, fee): the operator's side of the sets (TEN - traderCost) above, equal to, below the fee.
@pytest.mark.parametrize("cost_fee", [(3_800_000, 50_000), (9_900_000, 100_000), (9_950_000, 100_000)])
@pytest.mark.parametrize("kind", KINDS)
def test_mint_splits_new_sets_from_both_bids(world, kind, cost_fee):
    """The trader buys NO at 0.38 against the operator's YES bid at 0.62: 10 new sets."""
    w3, d, op, trader = world
    cost, fee = cost_fee
    m, exchange = market_of(d, kind)
    ex = settle_fn(w3, exchange)
    yes, no = (int(t) for t in m.token_ids)
    book = Ledger(w3, d, m, exchange, trader.address, op.address)
    t0 = book.snapshot()

    receipt = ok(w3, op, ex.functions.settleMint(b"\x11" * 32, trader.address, bytes.fromhex(m.condition_id[2:]),
                                                  no, yes, TEN, cost, fee))
    assert receipt["gasUsed"] < VENUE_GAS_LIMIT
    assert book.delta(t0) == {trader.address: (-(cost + fee), 0, TEN),
                              op.address: (-(TEN - cost) + fee, TEN, 0),
                              "sets": (TEN, 0, 0)}  # the sets' collateral: exactly what both paid, less the fee
    book.assert_exchange_empty()
    (event,) = ex.events.SettledMint().process_receipt(receipt, errors=DISCARD)
    assert dict(event.args) == {"fillId": b"\x11" * 32, "trader": trader.address,
                                "conditionId": bytes.fromhex(m.condition_id[2:]), "traderToken": no,
                                "operatorToken": yes, "shares": TEN, "traderCost": cost, "fee": fee}


@pytest.mark.parametrize("kind", KINDS)
def test_merge_turns_both_asks_into_collateral(world, kind):
    """The trader, holding 10 NO, sells them at 0.40 to the operator's YES ask at 0.60."""
    w3, d, op, trader = world
    m, exchange = market_of(d, kind)
    ex = settle_fn(w3, exchange).functions
    yes, no = (int(t) for t in m.token_ids)
    condition = bytes.fromhex(m.condition_id[2:])
    ok(w3, op, ex.settleMint(b"\x21" * 32, trader.address, condition, no, yes, TEN, 3_800_000, 0))
    book = Ledger(w3, d, m, exchange, trader.address, op.address)
    t0 = book.snapshot()

    receipt = ok(w3, op, ex.settleMerge(b"\x22" * 32, trader.address, condition, no, yes, TEN, 4_000_000, 60_000))
    assert receipt["gasUsed"] < VENUE_GAS_LIMIT
    assert book.delta(t0) == {trader.address: (3_940_000, 0, -TEN), op.address: (6_060_000, -TEN, 0),
                              "sets": (-TEN, 0, 0)}
    book.assert_exchange_empty()
    (event,) = settle_fn(w3, exchange).events.SettledMerge().process_receipt(receipt, errors=DISCARD)
    assert dict(event.args) == {"fillId": b"\x22" * 32, "trader": trader.address, "conditionId": condition,
                                "traderToken": no, "operatorToken": yes, "shares": TEN, "traderProceeds": 4_000_000,
                                "fee": 60_000}


@pytest.mark.parametrize("kind", KINDS)
def test_a_fill_settles_once_whatever_its_match_type(world, kind):
    w3, d, op, trader = world
    m, exchange = market_of(d, kind)
    ex = settle_fn(w3, exchange).functions
    yes, no = (int(t) for t in m.token_ids)
    condition = bytes.fromhex(m.condition_id[2:])
    ok(w3, op, ex.settle(b"\x07" * 32, trader.address, yes, True, TEN, 5_000_000, 0))
    ok(w3, op, ex.settleMint(b"\x08" * 32, trader.address, condition, yes, no, TEN, 5_000_000, 0))
    ok(w3, op, ex.settleMerge(b"\x09" * 32, trader.address, condition, yes, no, TEN, 5_000_000, 0))
    book = Ledger(w3, d, m, exchange, trader.address, op.address)
    settled = book.snapshot()

    again = [ex.settle(fill, trader.address, yes, True, TEN, 5_000_000, 0) for fill in (b"\x07" * 32, b"\x08" * 32)]
    again += [ex.settleMint(fill, trader.address, condition, yes, no, TEN, 5_000_000, 0)
              for fill in (b"\x07" * 32, b"\x08" * 32, b"\x09" * 32)]
    again += [ex.settleMerge(fill, trader.address, condition, yes, no, TEN, 5_000_000, 0)
              for fill in (b"\x08" * 32, b"\x09" * 32)]
    for fn in again:
        with pytest.raises(ContractLogicError, match="fill already settled"):
            fn.call({"from": op.address})
    assert send(w3, op, again[-1], gas=VENUE_GAS_LIMIT)["status"] == 0  # mined, reverted, nothing moved
    assert book.snapshot() == settled


@pytest.mark.parametrize("kind", KINDS)
def test_mint_and_merge_refuse_bad_fills(world, kind):
    w3, d, op, trader = world
    m, exchange = market_of(d, kind)
    other, _ = market_of(d, "neg_risk" if kind == "binary" else "binary")
    ex = settle_fn(w3, exchange).functions
    yes, no = (int(t) for t in m.token_ids)
    condition = bytes.fromhex(m.condition_id[2:])
    fill, t = b"\x31" * 32, trader.address
    other_condition, other_tokens = bytes.fromhex(other.condition_id[2:]), [int(x) for x in other.token_ids]
    cases = [
        ("not operator", ex.settleMint(fill, t, condition, no, yes, TEN, 1, 0), t),
        ("zero shares", ex.settleMint(fill, t, condition, no, yes, 0, 0, 0), op.address),
        ("cost exceeds shares", ex.settleMint(fill, t, condition, no, yes, TEN, TEN + 1, 0), op.address),
        ("proceeds exceed shares", ex.settleMerge(fill, t, condition, no, yes, TEN, TEN + 1, 0), op.address),
        ("fee exceeds proceeds", ex.settleMerge(fill, t, condition, no, yes, TEN, 10, 11), op.address),
        # the same token twice; the other exchange's market (positions of another collateral)
        ("not the condition's complements", ex.settleMint(fill, t, condition, no, no, TEN, 1, 0), op.address),
        ("not the condition's complements",
         ex.settleMerge(fill, t, other_condition, *other_tokens, TEN, 1, 0), op.address),
    ]
    for reason, fn, sender in cases:
        with pytest.raises(ContractLogicError, match=reason):
            fn.call({"from": sender})
    # The trader holds no NO to sell: the merge reverts as a whole.
    with pytest.raises(ContractLogicError, match="insufficient balance"):
        ex.settleMerge(fill, t, condition, no, yes, TEN, 5_000_000, 0).call({"from": op.address})
    assert not ex.settled(fill).call()


def test_the_two_exchanges_know_their_collateral(world):
    w3, d, _, _ = world
    std, nr = (settle_fn(w3, a).functions for a in (d.exchange, d.neg_risk_exchange))
    assert (std.negRiskAdapter().call(), std.positionCollateral().call()) == (
        "0x0000000000000000000000000000000000000000", d.collateral)
    assert (nr.negRiskAdapter().call(), nr.positionCollateral().call()) == (d.neg_risk_adapter, d.wcol)


@pytest.mark.parametrize("kind", KINDS)
def test_every_match_type_fits_the_venues_gas_limit_at_its_worst(world, kind):
    """The dearest case: both parties receive a token they hold none of (fresh storage), and
    the fill id is new. The neg-risk MINT is the largest (split through the adapter)."""
    w3, d, op, trader = world
    m, exchange = market_of(d, kind)
    ex = settle_fn(w3, exchange).functions
    ctf = contract(w3, "ConditionalTokens", d.ctf).functions
    yes, no = (int(t) for t in m.token_ids)
    condition = bytes.fromhex(m.condition_id[2:])
    ok(w3, op, ctf.safeTransferFrom(op.address, BYSTANDER, yes, ctf.balanceOf(op.address, yes).call(), b""))

    gas = {"mint": ok(w3, op, ex.settleMint(b"\x41" * 32, trader.address, condition, no, yes, TEN, 3_800_000,
                                             50_000))["gasUsed"]}
    gas["merge"] = ok(w3, op, ex.settleMerge(b"\x42" * 32, trader.address, condition, no, yes, TEN, 4_000_000,
                                              50_000))["gasUsed"]
    gas["buy"] = ok(w3, op, ex.settle(b"\x43" * 32, trader.address, no, True, TEN, 3_800_000, 50_000))["gasUsed"]
    gas["sell"] = ok(w3, op, ex.settle(b"\x44" * 32, trader.address, no, False, TEN, 3_800_000, 50_000))["gasUsed"]
    assert max(gas.values()) < VENUE_GAS_LIMIT, gas
