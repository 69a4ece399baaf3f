"""Orders: payload parsing, EIP-712 hash and signer (orders from the real client
builder), amounts -> limit price and size, fills, cost and fee."""

from __future__ import annotations

import dataclasses
import json

import pytest
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.order_utils import ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2

from actors.domain.fees import taker_fee
from sandbox.venue.book import BUY, SELL, Book
from sandbox.venue.clob.orders import (
    ZERO32,
    OrderHasher,
    OrderRejected,
    fills_cost,
    fills_fee,
    order_terms,
    parse_order_request,
    preview_fills,
    recover_signer,
)
from tests.unit.sandbox.clob.conftest import CHAIN_ID, OTHER, TRADER, YES, M, limit_order, market_order

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

TICK = 10_000  # 0.01


def parsed(order, order_type="FOK", owner="key"):
    return parse_order_request(json.dumps(order_to_json_v2(order, owner, order_type)).encode())


# ---------------------------------------------------------------- parsing


def test_parse_reads_the_clients_payload_exactly():
    order = limit_order(BUY, 0.45, 10, metadata="0x" + "ab" * 32)

    req = parsed(order)

    o = req.order
    assert (req.owner, req.order_type, req.post_only, req.defer_exec) == ("key", "FOK", False, False)
    assert (o.maker, o.signer, o.token_id, o.side) == (TRADER.address, TRADER.address, YES, BUY)
    assert (o.maker_amount, o.taker_amount) == (4_500_000, 10_000_000)
    assert (o.salt, o.timestamp, o.signature_type) == (int(order.salt), int(order.timestamp), 0)
    assert (o.metadata, o.builder) == ("0x" + "ab" * 32, ZERO32)


@pytest.mark.parametrize("mutate, text", [
    (lambda d: d.pop("order"), "expected"),
    (lambda d: d["order"].pop("makerAmount"), "missing order fields makerAmount"),
    (lambda d: d["order"].update(makerAmount="-5"), "makerAmount"),
    (lambda d: d["order"].update(makerAmount="0"), "positive"),
    (lambda d: d["order"].update(makerAmount=4.5), "makerAmount"),
    (lambda d: d["order"].update(takerAmount="1" * 90), "takerAmount"),
    (lambda d: d["order"].update(tokenId=str(2**256)), "uint256"),
    (lambda d: d["order"].update(side="HOLD"), "side"),
    (lambda d: d["order"].update(maker="0x1234"), "maker"),
    (lambda d: d["order"].update(signature="0xzz"), "signature"),
    (lambda d: d["order"].update(signatureType=True), "signatureType"),
    (lambda d: d["order"].update(metadata="0x" + "1" * 65), "metadata"),
    (lambda d: d.update(orderType="IOC"), "orderType"),
    (lambda d: d.update(owner=""), "owner"),
    (lambda d: d.update(postOnly="yes"), "postOnly"),
])
def test_hostile_payloads_are_clear_400s(mutate, text):
    doc = order_to_json_v2(limit_order(BUY, 0.45, 10), "key", "FOK")
    mutate(doc)

    with pytest.raises(OrderRejected) as info:
        parse_order_request(json.dumps(doc).encode())

    assert info.value.status == 400 and info.value.reason == "invalid_payload"
    assert info.value.message.startswith("Invalid order payload") and text in info.value.message


@pytest.mark.parametrize("body", [b"", b"not json", b"[1,2]", b'{"order": 5}', b"\xff\xfe"])
def test_garbage_bodies_are_invalid_payloads(body):
    with pytest.raises(OrderRejected, match="Invalid order payload"):
        parse_order_request(body)


def test_side_as_integer_and_short_metadata_are_accepted_as_the_contract_reads_them():
    doc = order_to_json_v2(limit_order(SELL, 0.45, 10), "key", "FAK")
    doc["order"]["side"] = 1
    doc["order"]["metadata"] = "0x01"

    o = parse_order_request(json.dumps(doc).encode()).order

    assert o.side == SELL and o.metadata == "0x" + "00" * 31 + "01"


# ---------------------------------------------------------------- hash and signature


def test_order_hash_is_the_clients_and_recovers_the_signer():
    order = limit_order(BUY, 0.45, 10, metadata="0x" + "cd" * 32)
    builder = ExchangeOrderBuilderV2(get_contract_config(CHAIN_ID).exchange_v2, CHAIN_ID, None)

    order_hash = OrderHasher(CHAIN_ID).order_hash(parsed(order).order)

    assert order_hash == builder.build_order_hash(builder.build_order_typed_data(order))
    assert recover_signer(order_hash, order.signature) == TRADER.address


@pytest.mark.parametrize("field, value", [("makerAmount", "4600000"), ("takerAmount", "20000000"),
                                          ("tokenId", "1002"), ("metadata", "0x" + "11" * 32), ("side", 1)])
def test_a_tampered_order_no_longer_recovers_its_signer(field, value):
    order = limit_order(BUY, 0.45, 10)
    tampered = dataclasses.replace(order, **{field: value})

    order_hash = OrderHasher(CHAIN_ID).order_hash(parsed(tampered).order)

    assert recover_signer(order_hash, order.signature) != TRADER.address


def test_an_order_signed_by_someone_else_recovers_them():
    order = limit_order(BUY, 0.45, 10, account=OTHER)
    assert recover_signer(OrderHasher(CHAIN_ID).order_hash(parsed(order).order), order.signature) == OTHER.address


def test_a_junk_signature_recovers_nobody():
    assert recover_signer("0x" + "00" * 32, "0x" + "ff" * 65) is None


# ---------------------------------------------------------------- terms


@pytest.mark.parametrize("side, price, size, limit", [
    (BUY, 0.45, 10, 450_000), (SELL, 0.45, 10, 450_000), (BUY, 0.01, 5, 10_000), (SELL, 0.99, 12.37, 990_000),
    (BUY, 0.57, 33.33, 570_000),
])
def test_limit_orders_give_back_their_price_and_size(side, price, size, limit):
    terms = order_terms(parsed(limit_order(side, price, size)).order, TICK)

    assert (terms.side, terms.limit_price, terms.size) == (side, limit, round(size * M))


@pytest.mark.parametrize("side, amount, price", [(BUY, 5, 0.45), (BUY, 2.03, 0.52), (BUY, 9.98, 0.37),
                                                 (SELL, 12.5, 0.45), (SELL, 7.77, 0.61)])
def test_market_orders_map_onto_their_tick_despite_amount_rounding(side, amount, price):
    o = parsed(market_order(side, amount, price)).order

    terms = order_terms(o, TICK)

    assert terms.limit_price == round(price * M)
    # never beyond what was signed: a BUY pays at most makerAmount, a SELL gets at least takerAmount
    if side == BUY:
        assert terms.limit_price * terms.size <= o.maker_amount * M
    else:
        assert terms.limit_price * terms.size >= o.taker_amount * M


def test_a_price_off_the_tick_grid_is_refused():
    o = parsed(limit_order(BUY, 0.455, 10, tick="0.001")).order  # a stale 0.001 grid; the market's tick is 0.01

    with pytest.raises(OrderRejected, match=r"order 0xabc is invalid. Price \(0.455\) breaks minimum tick size"):
        order_terms(o, TICK, "0xabc")
    assert order_terms(o, 1_000).limit_price == 455_000


def test_prices_outside_the_range_are_refused():
    o = dataclasses.replace(parsed(limit_order(BUY, 0.45, 10)).order, maker_amount=10_000_000)  # price 1.0
    with pytest.raises(OrderRejected, match="invalid price"):
        order_terms(o, TICK)


# ---------------------------------------------------------------- fills, cost, fee


def _book() -> Book:
    b = Book(YES, "m", tick_size=TICK)
    for p, s in ((450_000, 10 * M), (460_000, 5 * M), (480_000, 50 * M)):
        b.set_level(SELL, p, s)
    for p, s in ((430_000, 10 * M), (420_000, 5 * M)):
        b.set_level(BUY, p, s)
    return b


@pytest.mark.parametrize("side, limit, size, fok", [
    (BUY, 460_000, 12 * M, True), (BUY, 460_000, 20 * M, True), (BUY, 460_000, 20 * M, False),
    (BUY, 440_000, 5 * M, False), (SELL, 420_000, 15 * M, True), (SELL, 425_000, 15 * M, False),
    (SELL, 430_000, 16 * M, True),
])
def test_preview_is_exactly_what_the_book_then_takes(side, limit, size, fok):
    book = _book()

    preview = preview_fills(book, side, limit, size, fok)

    assert preview == book.take(side, limit, size, fok)


def test_cost_rounds_against_the_taker_and_fee_is_market_math_per_level():
    fills = [(450_000, 10 * M), (460_000, 1_230_000)]

    assert fills_cost(BUY, fills) == 4_500_000 + 565_800
    assert fills_cost(SELL, [(333_333, 3)]) == 0 and fills_cost(BUY, [(333_333, 3)]) == 1
    assert fills_fee(fills, 20_000) == taker_fee(10 * M, 450_000, 20_000) + taker_fee(1_230_000, 460_000, 20_000)
    assert fills_fee(fills, 20_000) == 49_500 + 6_111  # 10 x 0.02 x 0.45 x 0.55, then 6110.64 rounded up
