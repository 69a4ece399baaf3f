"""The order flow over a real VenueState, with a fake chain side: orders and
headers made by the real client, exactly as it would post them. The answer
comes at the match; the trade then settles on its own (MATCHED -> MINED ->
CONFIRMED, or RETRYING / FAILED)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from config.schema import VenueFaults
from sandbox.venue.book import BUY, SELL
from sandbox.venue.clob.orders import FAK_UNMATCHED, FOK_KILLED, NOT_ENOUGH
from sandbox.venue.clob.records import OrderRecord
from sandbox.venue.clob.service import ClobService, trade_id
from sandbox.venue.clob.settlement import Funds
from sandbox.venue.clob.store import DuplicateOrder, VenueStore
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
    decode_call,
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


def trade_of(service, body):
    return service.store.trade(body["tradeIDs"][0])


async def settled(service, body, status="CONFIRMED"):
    await eventually(lambda: trade_of(service, body).status == status)
    return trade_of(service, body)


async def test_a_fok_buy_is_answered_matched_and_settles_once_afterwards(service, state, settler, clock):
    events, seen = [], []
    state.add_listener(events.append)
    service.add_trade_listener(lambda t: seen.append(t.status))

    status, body = await post(service, clock, limit_order(BUY, 0.46, 150, metadata=META))

    assert status == 200, body
    cost = 100 * 450_000 + 50 * 460_000  # 45 + 23 USDC
    fee = 495_000 + 248_400  # 100 x 0.02 x 0.45 x 0.55 + 50 x 0.02 x 0.46 x 0.54
    assert body["status"] == "matched" and body["success"] is True and body["errorMsg"] == ""
    assert (body["makingAmount"], body["takingAmount"]) == ("68.7434", "150")
    assert (body["cost"], body["fee"]) == ("68", "0.7434")
    tid = trade_id(body["orderID"])
    assert body["transactionsHashes"] == [] and body["tradeIDs"] == [tid]  # nothing mined yet
    assert settler.settled == []
    assert state.book(YES).levels(SELL) == [(460_000, 50 * M)]
    assert {e.kind for e in events} >= {"price_change", "last_trade_price", "book"}

    trade = await settled(service, body)

    assert seen == ["MATCHED", "MINED", "CONFIRMED"] and trade.events == ("MATCHED", "MINED", "CONFIRMED")
    (call,) = settler.settled
    assert decode_call(call) == ("settle", (bytes.fromhex(tid[2:]), TRADER.address, int(YES), True, 150 * M, cost,
                                            fee))
    assert trade.transaction_hash == "0x" + "0" * 63 + "1" and trade.match_type == "COMPLEMENTARY"
    record = service.store.get(body["orderID"])
    assert (record.status, record.size_matched, record.metadata, record.avg_price) == ("MATCHED", 150 * M, META,
                                                                                    453_334)
    assert record.trade_ids == (tid,)


async def test_a_sell_receives_cost_minus_fee(service, state, settler, clock):
    status, body = await post(service, clock, market_order(SELL, 120, 0.42))

    assert status == 200, body
    await settled(service, body)
    _, (_, trader, token, buys, shares, cost, fee) = decode_call(settler.settled[0])
    assert (buys, shares, cost, fee) == (False, 120 * M, 43 * M + 8_400_000, 490_200 + 97_440)  # 100 @ .43, 20 @ .42
    assert (body["makingAmount"], body["takingAmount"]) == ("120", "50.81236")
    assert state.book(YES).levels(BUY) == [(420_000, 80 * M)]


async def test_no_orders_mint_against_yes_bids_and_merge_against_yes_asks(service, state, settler, clock):
    # NO asks 0.57 / 0.58 are the YES bids 0.43 / 0.42; NO bids 0.55 / 0.54 the YES asks.
    status, buy = await post(service, clock, limit_order(BUY, 0.57, 10, token=NO))
    assert status == 200, buy
    status, sell = await post(service, clock, limit_order(SELL, 0.55, 10, token=NO))
    assert status == 200, sell
    await settled(service, buy)
    await settled(service, sell)

    (mint, mint_args), (merge, merge_args) = (decode_call(c) for c in settler.settled)
    assert mint == "settleMint" and merge == "settleMerge"
    # (fillId, trader, conditionId, traderToken, operatorToken, shares, trader's collateral, fee)
    assert mint_args[1:] == (TRADER.address, bytes.fromhex(CID[2:]), int(NO), int(YES), 10 * M, 5_700_000, 49_020)
    assert merge_args[1:] == (TRADER.address, bytes.fromhex(CID[2:]), int(NO), int(YES), 10 * M, 5_500_000, 49_500)
    assert state.book(YES).size_at(BUY, 430_000) == 90 * M and state.book(YES).size_at(SELL, 450_000) == 90 * M


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
    await settled(service, first)
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


async def test_a_settlement_that_keeps_reverting_is_retried_once_then_failed_and_the_liquidity_returns(
        service, state, settler, clock):
    settler.fail = "settlement reverted: collateral transfer failed"
    before = state.book(YES).levels(SELL)

    status, body = await post(service, clock, limit_order(BUY, 0.45, 10, metadata=META))

    assert status == 200 and body["status"] == "matched"  # the match stands; its settlement does not
    trade = await settled(service, body, "FAILED")
    assert trade.events == ("MATCHED", "RETRYING", "FAILED") and trade.attempts == 2
    assert "collateral" in trade.error and settler.settled == []
    assert state.book(YES).levels(SELL) == before
    assert service.trades_flow.reserved(TRADER.address) == 0  # a FAILED trade holds nothing back


def faulty(state, keys, settler, clock, **knobs):
    faults = FaultInjector(VenueFaults(settlement_latency_ms=0, **knobs), random.Random(3), clock)
    return ClobService(state, keys, settler, clock, chain_id=137, faults=faults), faults


async def test_trade_fail_rate_fails_matched_trades_with_nothing_sent(state, keys, settler, clock):
    service, faults = faulty(state, keys, settler, clock, trade_fail_rate=1.0)

    _, body = await post(service, clock, limit_order(BUY, 0.45, 10))

    trade = await settled(service, body, "FAILED")
    assert trade.events == ("MATCHED", "FAILED") and settler.settled == []
    assert faults.get_stats()["trades_failed"] == 1 and service.trades_flow.counters["trades_failed"] == 1
    assert state.book(YES).size_at(SELL, 450_000) == 100 * M


async def test_trade_retry_rate_goes_retrying_then_confirmed(state, keys, settler, clock):
    service, faults = faulty(state, keys, settler, clock, trade_retry_rate=1.0)

    _, body = await post(service, clock, limit_order(BUY, 0.45, 10))

    trade = await settled(service, body)
    assert trade.events == ("MATCHED", "RETRYING", "MINED", "CONFIRMED") and len(settler.settled) == 1
    assert faults.get_stats()["trades_retried"] == 1


async def test_settlement_waits_for_the_configured_latency(state, keys, settler, clock):
    faults = FaultInjector(VenueFaults(settlement_latency_ms=2000), random.Random(3), clock)
    service = ClobService(state, keys, settler, clock, chain_id=137, faults=faults)

    _, body = await post(service, clock, limit_order(BUY, 0.45, 10))
    await eventually(lambda: clock.sleepers == 1)
    assert trade_of(service, body).status == "MATCHED" and settler.settled == []

    clock.advance(2.0)
    await eventually(lambda: trade_of(service, body).status == "MINED")
    await eventually(lambda: clock.sleepers == 1)
    clock.advance(2.0)
    await settled(service, body)


async def test_delayed_orders_match_later_or_end_unmatched(state, keys, settler, clock):
    service, faults = faulty(state, keys, settler, clock, delayed_rate=1.0, delayed_unmatched_share=0.0,
                             delay_ms=1000)
    kinds = []
    service.add_order_listener(lambda r, kind: kinds.append((kind, r.status)))

    status, body = await post(service, clock, limit_order(BUY, 0.45, 10))

    assert (status, body["status"], body["tradeIDs"]) == (200, "delayed", [])
    assert service.store.get(body["orderID"]).status == "DELAYED"
    await eventually(lambda: clock.sleepers == 1)
    clock.advance(1.0)
    await eventually(lambda: service.store.get(body["orderID"]).status == "MATCHED")
    (tid,) = service.store.get(body["orderID"]).trade_ids
    await eventually(lambda: service.store.trade(tid).status == "CONFIRMED")
    assert kinds[:2] == [("PLACEMENT", "DELAYED"), ("UPDATE", "MATCHED")]

    faults.configure(VenueFaults(settlement_latency_ms=0, delayed_rate=1.0, delayed_unmatched_share=1.0,
                                 delay_ms=1000))
    _, body = await post(service, clock, limit_order(BUY, 0.45, 10))
    await eventually(lambda: clock.sleepers == 1)
    clock.advance(1.0)
    await eventually(lambda: service.store.get(body["orderID"]).status == "UNMATCHED")
    assert faults.get_stats()["delayed_orders"] == 2 and faults.get_stats()["delayed_unmatched"] == 1


async def test_unsettled_trades_reserve_the_traders_funds(state, keys, clock):
    settler = GatedSettler()
    settler.funds_gate.set()
    settler.funds_of = Funds(balance=10 * M, allowance=2**256 - 1)
    service = ClobService(state, keys, settler, clock, chain_id=137)

    status, first = await post(service, clock, limit_order(BUY, 0.45, 20))  # 9 USDC + fee
    assert status == 200
    status, body = await post(service, clock, limit_order(BUY, 0.45, 5))  # the chain still shows 10

    assert (status, body["error"]) == (400, NOT_ENOUGH)
    assert service.trades_flow.reserved(TRADER.address) == 9 * M + 99_000
    settler.settle_gate.set()
    await settled(service, first)
    assert service.trades_flow.reserved(TRADER.address) == 0


async def test_a_batch_answers_each_order_on_its_own(service, settler, clock):
    creds = service.keys.issue(TRADER.address, 0)
    docs = [serialize(limit_order(BUY, 0.45, n, metadata="0x" + f"{n:064x}"), creds)[0] for n in (10, 11, 12)]
    docs[1]["order"]["makerAmount"] = "1"  # breaks its signature
    body = json.dumps(docs, separators=(",", ":"))

    status, answers = await service.post_orders(l2_headers(creds, "POST", "/orders", body, now_s(clock)), "/orders",
                                                body.encode())

    assert status == 200 and [a["success"] for a in answers] == [True, False, True]
    assert answers[1]["errorMsg"] == "invalid signature" and answers[0]["status"] == "matched"
    too_many = json.dumps(docs * 6, separators=(",", ":"))
    status, body = await service.post_orders(l2_headers(creds, "POST", "/orders", too_many, now_s(clock)),
                                             "/orders", too_many.encode())
    assert status == 400 and "max allowed: 15" in body["error"]


async def test_stopped_heartbeats_cancel_the_accounts_open_orders(state, keys, settler, clock):
    service, _ = faulty(state, keys, settler, clock, delayed_rate=1.0, delayed_unmatched_share=0.0, delay_ms=60_000)
    service.heartbeat_timeout_s = lambda: 10.0
    creds = service.keys.issue(TRADER.address, 0)
    assert service.heartbeat(creds, "")[0] == 200
    _, body = await post(service, clock, limit_order(BUY, 0.45, 10))

    clock.advance(5)
    assert service.expire_heartbeats() == 0
    clock.advance(6)
    assert service.expire_heartbeats() == 1

    assert service.store.get(body["orderID"]).status == "CANCELED"
    assert service.counters["heartbeat_expirations"] == 1


async def test_an_engine_restart_answers_425_then_only_post_only_orders(state, keys, settler, clock):
    service, faults = faulty(state, keys, settler, clock, engine_restart_every_seconds=100,
                             engine_restart_seconds=10, post_only_seconds=20)
    assert (await post(service, clock, limit_order(BUY, 0.45, 5)))[0] == 200

    clock.advance(100)
    status, body = await post(service, clock, limit_order(BUY, 0.45, 6))
    assert status == 425 and "restarting" in body["error"]
    clock.advance(10)
    status, body = await post(service, clock, limit_order(BUY, 0.45, 7))
    assert status == 400 and "post-only" in body["error"]
    clock.advance(20)
    assert (await post(service, clock, limit_order(BUY, 0.45, 8)))[0] == 200

    stats = faults.get_stats()
    assert (stats["engine_restarts"], stats["engine_restart_refusals"], stats["post_only_refusals"]) == (1, 1, 1)


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
    await settled(service, body)
    (trade,) = service.trades(me, {"id": body["tradeIDs"][0]})
    assert (trade["taker_order_id"], trade["size"], trade["price"], trade["status"]) == (oid, "10", "0.45",
                                                                                       "CONFIRMED")
    assert trade["transaction_hash"].startswith("0x") and trade["bucket_index"] == 0 and trade["match_time"]
    assert service.trades(me, {"metadata": META}) == [trade] and service.trades(other, {}) == []
    assert service.cancel(me, [oid, "0x12"])[1] == {
        "canceled": [], "not_canceled": {oid: "order can't be canceled: it is matched", "0x12": "order not found"}}


class GatedSettler(FakeSettler):
    """Funds and settlements wait for the test to open their gates."""

    def __init__(self) -> None:
        super().__init__()
        self.funds_gate, self.settle_gate = asyncio.Event(), asyncio.Event()
        self.reading = 0

    async def funds(self, trader, token_id, buy, neg_risk=False):
        self.reading += 1
        await self.funds_gate.wait()
        return await super().funds(trader, token_id, buy, neg_risk)

    async def submit(self, call, on_sent=None):
        await self.settle_gate.wait()
        return await super().submit(call, on_sent)


async def test_two_concurrent_orders_with_one_metadata_execute_once(state, keys, clock):
    settler = GatedSettler()
    service = ClobService(state, keys, settler, clock, chain_id=137)
    settler.settle_gate.set()
    a = asyncio.create_task(post(service, clock, limit_order(BUY, 0.45, 10, metadata=META)))
    b = asyncio.create_task(post(service, clock, limit_order(BUY, 0.45, 10, metadata=META)))
    await eventually(lambda: settler.reading == 2)  # both passed validation, both wait on the chain read

    settler.funds_gate.set()
    (sa, ra), (sb, rb) = await asyncio.gather(a, b)

    assert sorted((sa, sb)) == [200, 400]
    assert (ra if sa == 400 else rb)["orderID"] == (rb if sa == 400 else ra)["orderID"]
    await settled(service, ra if sa == 200 else rb)
    assert len(settler.settled) == 1


async def test_orders_trades_and_client_ids_survive_a_restart_and_open_trades_are_finished(state, keys, clock,
                                                                                          tmp_path):
    path = str(tmp_path / "venue.sqlite")
    settler = GatedSettler()
    settler.funds_gate.set()
    first = ClobService(state, keys, settler, clock, chain_id=137, store=VenueStore(path))
    await first.on_chain_ready()
    _, a = await post(first, clock, limit_order(BUY, 0.45, 10, metadata=META))
    _, b = await post(first, clock, limit_order(BUY, 0.45, 11, metadata="0x" + "77" * 32))
    settler.chain.add(bytes.fromhex(a["tradeIDs"][0][2:]))  # a's settlement got mined just before the crash
    await first.trades_flow.close()  # the crash: nothing more happens in this run
    first.store.close()

    again = FakeSettler()
    again.chain = settler.chain
    second = ClobService(state, keys, again, clock, chain_id=137, store=VenueStore(path))
    status, dup = await post(second, clock, limit_order(BUY, 0.46, 10, metadata=META))
    assert status == 400 and "Duplicated." in dup["error"] and dup["orderID"] == a["orderID"]
    await second.on_chain_ready()

    assert (await settled(second, a)).events[-2:] == ("MINED", "CONFIRMED")  # found on chain: not sent again
    assert (await settled(second, b)).events == ("MATCHED", "RETRYING", "MINED", "CONFIRMED")  # resubmitted once
    assert [c.fill_id.hex() for c in again.settled] == [b["tradeIDs"][0][2:]]
    assert second.trades_flow.counters["trades_resumed"] == 2


async def test_a_store_from_another_world_is_cleared(tmp_path):
    store = VenueStore(str(tmp_path / "v.sqlite"))
    assert store.adopt_world("0xaaa") is False
    store.claim(OrderRecord(id="0x1", owner="k", maker=TRADER.address, market=CID, asset_id=YES, outcome="Yes",
                            side=BUY, order_type="FOK", original_size=M, limit_price=450_000, metadata=META,
                            created_ms=1))
    assert store.adopt_world("0xaaa") is False and len(store) == 1
    assert store.adopt_world("0xbbb") is True and len(store) == 0 and store.by_metadata(TRADER.address, META) is None


def test_the_store_forgets_the_oldest_orders_and_their_metadata():
    store = VenueStore(max_orders=2)
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


async def test_a_settlement_waits_for_an_unreachable_chain_instead_of_failing_the_trade(
        service, state, settler, clock):
    # A chaos run: anvil SIGKILLed, the venue failed every trade it was settling, with a
    # Traceback, although the fill could still be mined once the node came back.
    from sandbox.venue.clob.settlement import ChainUnavailable

    down = {"calls": 0}
    real_submit = settler.submit

    async def submit(call, on_sent=None):
        if down["calls"] < 4:
            down["calls"] += 1
            raise ChainUnavailable("the node is unreachable: connection refused")
        return await real_submit(call, on_sent)

    settler.submit = submit
    status, body = await post(service, clock, limit_order(BUY, 0.45, 10, metadata=META))
    assert status == 200 and body["status"] == "matched"

    async def confirmed():
        clock.advance(1)
        return trade_of(service, body).status == "CONFIRMED"

    await eventually(confirmed, what="the settlement after the chain came back")
    trade = trade_of(service, body)
    assert trade.events == ("MATCHED", "RETRYING", "MINED", "CONFIRMED") and trade.attempts == 1
    assert len(settler.settled) == 1 and down["calls"] == 4
    assert service.trades_flow.counters["settlement_chain_waits"] == 4


async def test_a_chain_unreachable_for_too_long_fails_the_trade_and_returns_the_liquidity(
        service, state, settler, clock):
    from sandbox.venue.clob import lifecycle
    from sandbox.venue.clob.settlement import ChainUnavailable

    async def submit(call, on_sent=None):
        raise ChainUnavailable("the node is unreachable: connection refused")

    settler.submit = submit
    before = state.book(YES).levels(SELL)
    status, body = await post(service, clock, limit_order(BUY, 0.45, 10, metadata=META))

    async def failed():
        clock.advance(lifecycle.CHAIN_WAIT_SECONDS / 20)
        return trade_of(service, body).status == "FAILED"

    await eventually(failed, what="the trade failed after the wait")
    assert "unreachable" in trade_of(service, body).error and state.book(YES).levels(SELL) == before
