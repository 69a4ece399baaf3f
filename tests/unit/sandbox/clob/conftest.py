"""CLOB unit fixtures: one real VenueState, orders and headers made by the REAL
py-clob-client-v2 (its order builder and header functions, offline), and a
handwritten fake of the chain side."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address
from py_clob_client_v2.clob_types import ApiCreds as ClientCreds
from py_clob_client_v2.clob_types import (
    CreateOrderOptions,
    MarketOrderArgsV2,
    OrderArgsV2,
    RequestArgs,
)
from py_clob_client_v2.headers.headers import create_level_2_headers
from py_clob_client_v2.order_builder.builder import OrderBuilder
from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2
from py_clob_client_v2.signer import Signer

from actors.domain.wallet import dev_account
from actors.runtime.clock import TestClock
from sandbox.deploy import MarketInfo
from sandbox.venue.clob.auth import ApiKeys, venue_secret
from sandbox.venue.clob.service import ClobService
from sandbox.venue.clob.settlement import (
    PAIR_TYPES,
    SETTLE,
    SETTLE_MINT,
    SETTLE_TYPES,
    Funds,
    SettlementFailed,
)
from sandbox.venue.state import VenueState

CHAIN_ID = 137
TRADER = dev_account(1)
OTHER = dev_account(2)
YES, NO = "1001", "1002"
CID = "0x" + "c1" * 32
MARKET = MarketInfo(slug="m", question="q?", condition_id=CID, question_id="0x" + "0a" * 32, outcomes=["Yes", "No"],
                    token_ids=[YES, NO], fee_rate=Decimal("0.02"), tick_size=Decimal("0.01"),
                    min_order_size=Decimal("5"))
M = 1_000_000  # one unit in micro


def signer(account=TRADER) -> Signer:
    return Signer("0x" + bytes(account.key).hex(), CHAIN_ID)


def limit_order(side: str, price: float, size: float, token: str = YES, account=TRADER, metadata: str | None = None,
                tick: str = "0.01"):
    args = OrderArgsV2(token_id=token, price=price, size=size, side=side, metadata=metadata or "0x" + "00" * 32)
    return OrderBuilder(signer(account)).build_order(args, CreateOrderOptions(tick_size=tick, neg_risk=False))


def market_order(side: str, amount: float, price: float, token: str = YES, account=TRADER):
    args = MarketOrderArgsV2(token_id=token, amount=amount, side=side, price=price)
    return OrderBuilder(signer(account)).build_market_order(args, CreateOrderOptions(tick_size="0.01", neg_risk=False))


def serialize(order, creds, order_type: str = "FOK") -> tuple[dict, str]:
    payload = order_to_json_v2(order, creds.api_key, order_type)
    return payload, json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def l2_headers(creds, method: str, path: str, body: str | None, now_s: int, account=TRADER) -> dict[str, str]:
    client_creds = ClientCreds(api_key=creds.api_key, api_secret=creds.secret, api_passphrase=creds.passphrase)
    return create_level_2_headers(signer(account), client_creds, RequestArgs(method, path, None, body),
                                  timestamp=now_s)


EXCHANGE, NEG_RISK_EXCHANGE = "0x" + "e1" * 20, "0x" + "e2" * 20
OPERATOR = "0x" + "0e" * 20


def decode_call(call) -> tuple[str, tuple]:
    """(function, arguments) of a settlement call."""
    selector, args = bytes.fromhex(call.data[2:10]), bytes.fromhex(call.data[10:])
    if selector == SETTLE:
        name, values = "settle", list(abi_decode(SETTLE_TYPES, args))
    else:
        name = "settleMint" if selector == SETTLE_MINT else "settleMerge"
        values = list(abi_decode(PAIR_TYPES, args))
    values[1] = to_checksum_address(values[1])
    return name, tuple(values)


class FakeSettler:
    """The chain side: funds as configured, settlement calls recorded as mined (or
    failing on demand); `chain` is the set of fill ids the exchanges settled."""

    operator = OPERATOR

    def __init__(self) -> None:
        self.funds_of = Funds(balance=1_000 * M, allowance=2**256 - 1)
        self.settled: list = []  # the Settlement calls that were mined
        self.chain: set[bytes] = set()
        self.fail: str | None = None
        self.funds_asked: list[tuple] = []

    def exchange_for(self, neg_risk: bool) -> str:
        return NEG_RISK_EXCHANGE if neg_risk else EXCHANGE

    async def funds(self, trader: str, token_id: int, buy: bool, neg_risk: bool = False) -> Funds:
        self.funds_asked.append((trader, token_id, buy, neg_risk))
        return self.funds_of

    async def submit(self, call, on_sent=None) -> str:
        if self.fail:
            raise SettlementFailed(self.fail)
        self.settled.append(call)
        self.chain.add(call.fill_id)
        tx = "0x" + f"{len(self.settled):064x}"
        if on_sent is not None:
            on_sent(tx)
        return tx

    async def is_settled(self, fill_id: bytes, exchange: str | None = None) -> bool:
        return fill_id in self.chain

    async def genesis_hash(self) -> str:
        return "0x" + "9e" * 32

    async def close(self) -> None:
        pass

    def get_stats(self) -> dict:
        return {"settled": len(self.settled)}


@pytest.fixture
def clock():
    return TestClock()


@pytest.fixture
def state(clock):
    st = VenueState([MARKET], clock)
    # asks 0.45 x 100, 0.46 x 100; bids 0.43 x 100, 0.42 x 100 on YES
    # (the NO book is its mirror: bids 0.55 / 0.54, asks 0.57 / 0.58)
    st.replace_book(YES, {430_000: 100 * M, 420_000: 100 * M}, {450_000: 100 * M, 460_000: 100 * M}, emit=False)
    return st


@pytest.fixture
def settler():
    return FakeSettler()


@pytest.fixture
def keys():
    return ApiKeys(venue_secret(b"\x01" * 32), CHAIN_ID)


@pytest.fixture
def service(state, keys, settler, clock):
    return ClobService(state, keys, settler, clock, chain_id=CHAIN_ID)
