"""The order flow over a real VenueState, with a fake chain side: orders and
headers made by the real client, exactly as it would post them."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from config.schema import VenueFaults
from sandbox.venue.book import BUY, SELL
from sandbox.venue.clob.orders import FAK_UNMATCHED, FOK_KILLED, NOT_ENOUGH
from sandbox.venue.clob.records import DuplicateOrder, OrderRecord, OrderStore
from sandbox.venue.clob.service import ClobService
from sandbox.venue.clob.settlement import Funds
from sandbox.venue.faults import FaultInjector
from tests.helpers import eventually
from tests.unit.sandbox.clob.conftest import (
    CID,
    NO,
    OTHER,
    TRADER,
    YES,
    FakeSettler,
    M,
    l2_headers,
    limit_order,
    market_order,
    serialize,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

META = "0x" + "5e" * 32


def now_s(clock) -> int:
    return clock.time_ns() // 10**9


async def post(service, clock, order, order_type="FOK", creds=None, account=TRADER):
    creds = creds or service.keys.issue(account.address, 0)
    _, body = serialize(order, creds, order_type)
    headers = l2_headers(creds, "POST", "/order", body, now_s(clock), account=account)
    return await service.post_order(headers, "/order", body.encode())


async def test_a_fok_buy_fills_at_the_books_prices_and_settles_once(service, state, settler, clock):
    events = []
    state.add_listener(events.append)

    status, body = await post(service, clock, limit_order(BUY, 0.46, 150, metadata=META))

    assert status == 200, body
    cost = 100 * 450_000 + 50 * 460_000  # 45 + 23 USDC
    fee = 495_000 + 248_400  # 100 x 0.02 x 0.45 x 0.55 + 50 x 0.02 x 0.46 x 0.54
    assert settler.settled == [(bytes.fromhex(body["orderID"][2:]), TRADER.address, int(YES), True, 150 * M,
                                cost, fee)]
    assert body["status"] == "matched" and body["success"] is True and body["errorMsg"] == ""
    assert (body["makingAmount"], body["takingAmount"]) == ("68.7434", "150")
    assert (body["cost"], body["fee"]) == ("68", "0.7434")
    assert body["transactionsHashes"] == ["0x" + "0" * 63 + "1"] and body["tradeIDs"] == [body["orderID"]]
    assert state.book(YES).levels(SELL) == [(460_000, 50 * M)]
    assert {e.kind for e in events} >= {"price_change", "last_trade_price", "book"}
    record = service.store.get(body["orderID"])
    assert (record.status, record.size_matched, record.metadata, record.avg_price) == ("MATCHED", 150 * M, META,
                                                                                    453_334)


async def test_a_sell_receives_cost_minus_fee(service, state, settler, clock):
    status, body = await post(service, clock, market_order(SELL, 120, 0.42))

    assert status == 200, body
    _, trader, token, buys, shares, cost, fee = settler.settled[0]
    assert (buys, shares, cost, fee) == (False, 120 * M, 43 * M + 8_400_000, 490_200 + 97_440)  # 100 @ .43, 20 @ .42
    assert (body["makingAmount"], body["takingAmount"]) == ("120", "50.81236")
    assert state.book(YES).levels(BUY) == [(420_000, 80 * M)]


async def test_a_fok_that_no_longer_crosses_is_killed_like_the_real_venue(service, state, settler, clock):
    before = state.book(YES).levels(SELL)

    status, body = await post(service, clock, limit_order(BUY, 0.44, 10, metadata=META))

    assert (status, body["error"]) == (400, FOK_KILLED)
    assert settler.settled == [] and state.book(YES).levels(SELL) == before
    assert service.store.get(body["orderID"]).status == "UNMATCHED"
    assert service.counters["orders_killed"] == 1


async def test_a_fok_larger_than_the_liquidity_is_killed_whole_a_fak_fills_what_there_is(service, state, settler,
                                                                                        clock):
    status, body = await post(service, clock, limit_order(BUY, 0.46, 201))
    assert (status, body["error"]) == (400, FOK_KILLED)

    status, body = await post(service, clock, limit_order(BUY, 0.45, 150), order_type="FAK")
    assert status == 200 and body["takingAmount"] == "100"
    assert service.store.get(body["orderID"]).original_size == 150 * M

    status, body = await post(service, clock, limit_order(BUY, 0.45, 10), order_type="FAK")
    assert (status, body["error"]) == (400, FAK_UNMATCHED)


async def test_the_same_metadata_twice_is_a_duplicate_naming_the_first_order(service, state, settler, clock):
    status, first = await post(service, clock, limit_order(BUY, 0.45, 10, metadata=META))
    assert status == 200

    status, body = await post(service, clock, limit_order(BUY, 0.46, 10, metadata=META))  # a new signature

    assert status == 400 and "Duplicated." in body["error"] and body["orderID"] == first["orderID"]
    assert len(settler.settled) == 1 and state.book(YES).levels(SELL)[0] == (450_000, 90 * M)
    # the same order again is a duplicate of itself; zero metadata is never a client id
    same = limit_order(BUY, 0.45, 10)
    assert (await post(service, clock, same))[0] == 200
    status, body = await post(service, clock, same)
    assert status == 400 and body["error"].endswith("is invalid. Duplicated.")
    assert (await post(service, clock, limit_order(BUY, 0.45, 10)))[0] == 200
    # another maker may use the same metadata
    assert (await post(service, clock, limit_order(BUY, 0.45, 10, account=OTHER, metadata=META),
                       account=OTHER))[0] == 200


async def test_a_killed_order_uses_up_its_metadata_a_refused_one_does_not(service, state, settler, clock):
    settler.funds_of = Funds(balance=1 * M, allowance=2**256 - 1)
    status, body = await post(service, clock, limit_order(BUY, 0.45, 10, metadata=META))
    assert (status, body["error"]) == (400, NOT_ENOUGH)

    settler.funds_of = Funds(balance=100 * M, allowance=2**256 - 1)
    status, killed = await post(service, clock, limit_order(BUY, 0.44, 10, metadata=META))
    assert status == 400 and killed["error"] == FOK_KILLED

    status, body = await post(service, clock, limit_order(BUY, 0.45, 10, metadata=META))
    assert status == 400 and body["orderID"] == killed["orderID"]


async def test_allowance_counts_as_well_as_balance(service, settler, clock):
    settler.funds_of = Funds(balance=100 * M, allowance=4 * M)
    status, body = await post(service, clock, limit_order(BUY, 0.45, 10))
    assert (status, body["error"]) == (400, NOT_ENOUGH)


async def test_a_failed_settlement_gives_the_liquidity_back_and_answers_500(service, state, settler, clock):
    settler.fail = "settlement reverted: collateral transfer failed"
    before = state.book(YES).levels(SELL)

    status, body = await post(service, clock, limit_order(BUY, 0.45, 10, metadata=META))

    assert status == 500 and "could not be settled" in body["error"]
    assert state.book(YES).levels(SELL) == before
    record = service.store.by_metadata(TRADER.address, META)
    assert (record.status, record.size_matched) == ("UNMATCHED", 0) and "collateral" in record.error


@pytest.mark.parametrize("mutate, status, text", [
    (lambda d: d["order"].update(makerAmount="4600000"), 400, "invalid signature"),
    (lambda d: d.update(orderType="GTC"), 400, "only FOK and FAK"),
    (lambda d: d.update(owner="someone-else"), 400, "owner of the API KEY"),
    (lambda d: d["order"].update(tokenId="999"), 400, "unknown token id"),
    (lambda d: d.update(postOnly=True), 400, "post_only"),
    (lambda d: d["order"].update(signatureType=2), 400, "EOA"),
])
async def test_bad_orders_are_refused_before_anything_moves(service, state, settler, clock, mutate, status, text):
    creds = service.keys.issue(TRADER.address, 0)
    doc, _ = serialize(limit_order(BUY, 0.45, 10), creds)
    mutate(doc)
    body = json.dumps(doc, separators=(",", ":"))

    got, reply = await service.post_order(l2_headers(creds, "POST", "/order", body, now_s(clock)), "/order",
                                          body.encode())

    assert got == status and text in reply["error"]
    assert settler.settled == [] and len(service.store) == 0


async def test_an_order_of_another_wallet_under_my_key_is_refused(service, settler, clock):
    creds = service.keys.issue(TRADER.address, 0)
    status, body = await post(service, clock, limit_order(BUY, 0.45, 10, account=OTHER), creds=creds)
    assert status == 400 and "owner of the API KEY" in body["error"]


async def test_size_below_the_minimum_and_stale_ticks_are_refused(service, state, clock):
    status, body = await post(service, clock, limit_order(BUY, 0.45, 4))
    assert status == 400 and "lower than the minimum: 5" in body["error"]

    status, body = await post(service, clock, limit_order(BUY, 0.451, 10, tick="0.001"))
    assert status == 400 and "breaks minimum tick size rule: 0.01" in body["error"]


async def test_reject_orders_fault_answers_503_and_is_counted(state, keys, settler, clock):
    faults = FaultInjector(VenueFaults(reject_orders=True), random.Random(1), clock)
    service = ClobService(state, keys, settler, clock, chain_id=137, faults=faults)

    status, body = await post(service, clock, limit_order(BUY, 0.45, 10))

    assert status == 503 and "Trading is currently disabled" in body["error"]
    assert faults.get_stats()["rejected_orders"] == 1 and settler.settled == []


async def test_bad_auth_is_401_and_chain_not_ready_is_503(state, keys, settler, clock, service):
    creds = service.keys.issue(TRADER.address, 0)
    _, body = serialize(limit_order(BUY, 0.45, 10), creds)
    headers = l2_headers(creds, "POST", "/order", body, now_s(clock) - 3600)
    status, reply = await service.post_order(headers, "/order", body.encode())
    assert status == 401 and "POLY_TIMESTAMP" in reply["error"]
    assert service.counters["auth_rejected_expired"] == 1

    service.ready = lambda: False
    status, reply = await post(service, clock, limit_order(BUY, 0.45, 10))
    assert status == 503 and "not yet ready" in reply["error"]


async def test_lookups_by_id_and_metadata_are_the_callers_only(service, clock):
    me = service.keys.issue(TRADER.address, 0)
    other = service.keys.issue(OTHER.address, 0)
    _, body = await post(service, clock, limit_order(BUY, 0.45, 10, metadata=META))
    oid = body["orderID"]

    assert service.get_order(me, oid)[1]["status"] == "MATCHED"
    assert service.get_order(other, oid)[0] == 404
    assert [r.id for r in service.find(me, {"metadata": META})] == [oid]
    assert [r.id for r in service.find(me, {"metadata": META[2:].upper()})] == [oid]
    assert service.find(other, {"metadata": META}) == [] and service.find(me, {}) == []
    assert service.find(me, {"metadata": META, "market": CID})[0].asset_id == YES
    assert service.find(me, {"metadata": META, "asset_id": NO}) == []
    trade = service.trades(me, {"id": oid})[0]
    assert (trade["id"], trade["size"], trade["price"], trade["transaction_hash"]) == (oid, "10", "0.45",
                                                                                       body["transactionsHashes"][0])
    assert service.cancel(me, [oid, "0x12"])[1] == {
        "canceled": [], "not_canceled": {oid: "order can't be canceled: it is matched (FOK orders never rest)",
                                         "0x12": "order not found"}}


class GatedSettler(FakeSettler):
    """Funds and settlements wait for the test to open their gates."""

    def __init__(self) -> None:
        super().__init__()
        self.funds_gate, self.settle_gate = asyncio.Event(), asyncio.Event()
        self.reading = 0

    async def funds(self, trader, token_id, buy):
        self.reading += 1
        await self.funds_gate.wait()
        return await super().funds(trader, token_id, buy)

    async def settle(self, *args):
        await self.settle_gate.wait()
        return await super().settle(*args)


async def test_two_concurrent_orders_with_one_metadata_execute_once(state, keys, clock):
    settler = GatedSettler()
    service = ClobService(state, keys, settler, clock, chain_id=137)
    settler.settle_gate.set()
    a = asyncio.create_task(post(service, clock, limit_order(BUY, 0.45, 10, metadata=META)))
    b = asyncio.create_task(post(service, clock, limit_order(BUY, 0.45, 10, metadata=META)))
    await eventually(lambda: settler.reading == 2)  # both passed validation, both wait on the chain read

    settler.funds_gate.set()
    (sa, ra), (sb, rb) = await asyncio.gather(a, b)

    assert sorted((sa, sb)) == [200, 400] and len(settler.settled) == 1
    assert (ra if sa == 400 else rb)["orderID"] == (rb if sa == 400 else ra)["orderID"]


async def test_a_client_hanging_up_does_not_leave_a_fill_unsettled(state, keys, clock):
    settler = GatedSettler()
    settler.funds_gate.set()
    service = ClobService(state, keys, settler, clock, chain_id=137)
    request = asyncio.create_task(post(service, clock, limit_order(BUY, 0.45, 10, metadata=META)))
    await eventually(lambda: service.get_stats()["settlements_in_flight"] == 1)

    request.cancel()  # aiohttp cancels the handler when the client disconnects
    settler.settle_gate.set()
    await service.close()  # waits for settlements in flight

    assert len(settler.settled) == 1
    assert service.store.by_metadata(TRADER.address, META).status == "MATCHED"


def test_the_store_forgets_the_oldest_orders_and_their_metadata():
    store = OrderStore(max_orders=2)
    records = [OrderRecord(id=f"0x{i}", owner="k", maker=TRADER.address, market=CID, asset_id=YES, outcome="Yes",
                           side=BUY, order_type="FOK", original_size=M, limit_price=450_000,
                           metadata="0x" + f"{i + 1:064x}", created_ms=i) for i in range(3)]
    for r in records:
        store.claim(r)

    assert store.get("0x0") is None and store.by_metadata(TRADER.address, records[0].metadata) is None
    assert store.by_metadata(TRADER.address.lower(), records[2].metadata).id == "0x2"
    store.check_new("0x9", TRADER.address, records[0].metadata)  # free again
    with pytest.raises(DuplicateOrder):
        store.check_new("0x9", TRADER.address, records[1].metadata)
