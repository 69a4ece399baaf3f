"""The venue as Polymarket really is, end to end: a real anvil, the real venue process and
the REAL py-clob-client-v2. A matched order settles afterwards (MATCHED -> MINED ->
CONFIRMED) and balances move only when it is mined; neg-risk orders are signed for the
neg-risk exchange; batches, heartbeats, MINT/MERGE, live fault knobs, a venue killed
with trades in flight, and a resolution that pays on chain."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import (
    OrderArgsV2,
    OrderType,
    PartialCreateOrderOptions,
    PostOrdersV2Args,
    TradeParams,
)
from py_clob_client_v2.exceptions import PolyApiException

from actors.domain.fees import fee_rate_ppm, notional, taker_fee
from actors.domain.money import MICRO as M
from actors.domain.wallet import dev_account
from config.loader import load
from sandbox.deploy import addresses, connect, contract, event_infos, market_infos
from tests.helpers import eventually
from tests.integration.conftest import free_port, write_config
from tests.integration.test_venue_clob import Market, edit_faults, get_json, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MAX_UINT = 2**256 - 1
TRADER = dev_account(1)
LATENCY_MS = 700  # MATCHED long enough to be seen before MINED


class World:
    def __init__(self, url: str, path: Path, cfg: Any, w3: Any, proc: Any, procs: Any) -> None:
        self.url, self.path, self.cfg, self.w3, self.proc, self.procs = url, path, cfg, w3, proc, procs
        op = dev_account(cfg.sandbox.venue.operator_index).address
        self.addr = addresses(cfg.chain.chain_id)
        self.markets = market_infos(cfg, op)
        self.binary = [m for m in self.markets if not m.neg_risk]
        self.neg = [m for m in self.markets if m.neg_risk]
        self.events = event_infos(cfg, op)
        self.client = ClobClient(url, chain_id=137, key="0x" + bytes(TRADER.key).hex())

    def balances(self) -> dict[str, int]:
        ids = [int(t) for m in self.markets for t in m.token_ids]
        held = contract(self.w3, "ConditionalTokens", self.addr.ctf).functions.balanceOfBatch(
            [TRADER.address] * len(ids), ids).call()
        out = {"collateral": contract(self.w3, "Collateral", self.addr.collateral).functions.balanceOf(
            TRADER.address).call()}
        out.update({str(i): b for i, b in zip(ids, held, strict=True)})
        return out

    def restart_venue(self) -> None:
        self.proc.kill9()
        self.proc = self.procs("--config", str(self.path), "actor", "venue", name="venue")


@pytest.fixture
async def world(anvil, tmp_path, procs):
    port = free_port()
    path = write_config(tmp_path, anvil, int(anvil.rsplit(":", 1)[1]))
    raw = yaml.safe_load(path.read_text())
    venue = raw["sandbox"]["venue"]
    venue.update(port=port, updates_per_second=0)  # static books: the test reads them and trades on them
    venue["arbitrage"]["rate_per_minute"] = 0
    venue["faults"].update(settlement_latency_ms=LATENCY_MS, inject_binary_gap=False)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load(path)
    proc = procs("--config", str(path), "actor", "venue", name="venue")
    w = World(f"http://127.0.0.1:{port}", path, cfg, connect(anvil), proc, procs)
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, w.url, proc)
    approve_all(w)
    w.client.set_api_creds(await asyncio.to_thread(w.client.create_or_derive_api_key))
    return w


def approve_all(w: World) -> None:
    """The trader's approvals of both exchanges and the adapter (the executor's job in production)."""
    pusd = contract(w.w3, "Collateral", w.addr.collateral).functions
    ctf = contract(w.w3, "ConditionalTokens", w.addr.ctf).functions
    for spender in (w.addr.exchange, w.addr.neg_risk_exchange, w.addr.neg_risk_adapter):
        pusd.approve(spender, MAX_UINT).transact({"from": TRADER.address})
        ctf.setApprovalForAll(spender, True).transact({"from": TRADER.address})


async def book(w: World, token: str) -> Market:
    async with aiohttp.ClientSession() as session:
        _, body, _ = await get_json(session, f"{w.url}/book?token_id={token}")
    return Market(body)


async def trade(w: World, trade_id: str) -> dict[str, Any]:
    (t,) = await asyncio.to_thread(w.client.get_trades, TradeParams(id=trade_id))
    return t


async def statuses_until(w: World, trade_id: str, final: str) -> list[str]:
    seen: list[str] = []

    async def done() -> bool:
        status = (await trade(w, trade_id))["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == final

    await eventually(done, timeout=30, interval=0.02, what=f"trade {final}")
    return seen


async def sandbox_stats(w: World) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        _, body, _ = await get_json(session, f"{w.url}/sandbox/clob")
    return body


def fok(w: World, token: str, price: int, size: int, side: str = "BUY", meta: str | None = None,
        neg_risk: bool | None = None) -> Any:
    args = OrderArgsV2(token_id=token, price=price / M, size=size / M, side=side, metadata=meta or "0x" + "00" * 32)
    return w.client.create_order(args, PartialCreateOrderOptions(neg_risk=neg_risk))


async def test_matched_orders_settle_afterwards_and_balances_move_only_when_mined(world):
    w = world
    m, n = w.binary[0], w.neg[0]
    yes, neg_yes = m.token_ids[0], n.token_ids[0]
    # What the client reads: tick, neg-risk flag, the V2 fee schedule (rate and exponent).
    assert await asyncio.to_thread(w.client.get_tick_size, yes) == "0.01"
    assert await asyncio.to_thread(w.client.get_neg_risk, yes) is False
    assert await asyncio.to_thread(w.client.get_neg_risk, neg_yes) is True
    info = await asyncio.to_thread(w.client.get_clob_market_info, m.condition_id)
    assert info["fd"]["r"] == float(m.fee_rate) and info["fd"]["e"] == 1 and info["nr"] is False
    assert await asyncio.to_thread(w.client.get_fee_exponent, neg_yes) == 1

    ask = (await book(w, yes)).asks[0][0]
    before = w.balances()
    order = await asyncio.to_thread(fok, w, yes, ask, 10 * M)
    res = await asyncio.to_thread(w.client.post_order, order, OrderType.FOK, False, True)  # defer_exec

    assert res["status"] == "matched" and res["transactionsHashes"] == [], res
    (tid,) = res["tradeIDs"]
    assert (await trade(w, tid))["status"] == "MATCHED"
    assert w.balances() == before  # matched is not settled: nothing moved
    seen = await statuses_until(w, tid, "CONFIRMED")
    assert seen[0] == "MATCHED" and seen[-1] == "CONFIRMED" and set(seen) <= {"MATCHED", "MINED", "CONFIRMED"}
    cost, fee = notional(10 * M, ask), taker_fee(10 * M, ask, fee_rate_ppm(m.fee_rate))
    after = w.balances()
    assert after["collateral"] == before["collateral"] - cost - fee  # exactly cost + fee
    assert after[yes] == before[yes] + 10 * M
    t = await trade(w, tid)
    assert (t["bucket_index"], t["taker_order_id"], t["match_time"] != "") == (0, res["orderID"], True)
    assert w.w3.eth.get_transaction_receipt(t["transaction_hash"])["status"] == 1

    # A neg-risk order: the client signs it for the neg-risk exchange (it reads the flag) ...
    neg_ask = (await book(w, neg_yes)).asks[0][0]
    res = await asyncio.to_thread(w.client.create_and_post_order, OrderArgsV2(
        token_id=neg_yes, price=neg_ask / M, size=10, side="BUY"), None, OrderType.FOK, False, True)
    assert res["status"] == "matched", res
    await statuses_until(w, res["tradeIDs"][0], "CONFIRMED")
    assert w.balances()[neg_yes] == before[neg_yes] + 10 * M
    # ... and one signed for the standard exchange is refused as the real venue does.
    wrong = await asyncio.to_thread(fok, w, neg_yes, neg_ask, 10 * M, neg_risk=False)
    with pytest.raises(PolyApiException) as refused:
        await asyncio.to_thread(w.client.post_order, wrong, OrderType.FOK, False, True)
    assert refused.value.status_code == 400 and refused.value.error_msg["error"] == "invalid signature"

    # A batch of four legs, each answered on its own (one of them refused).
    legs = [(w.binary[0].token_ids[0], "0x" + "b1" * 32), (w.binary[1].token_ids[0], "0x" + "b2" * 32),
            (w.neg[1].token_ids[0], "0x" + "b3" * 32), (w.neg[2].token_ids[0], "0x" + "b4" * 32)]
    orders = []
    for token, meta in legs:
        orders.append(await asyncio.to_thread(fok, w, token, (await book(w, token)).asks[0][0], 10 * M,
                                              meta=meta))
    orders[3] = await asyncio.to_thread(fok, w, legs[3][0], (await book(w, legs[3][0])).asks[0][0] - 10_000, 10 * M,
                                        meta=legs[3][1])  # below the ask: killed
    answers = await asyncio.to_thread(w.client.post_orders, [PostOrdersV2Args(o, OrderType.FOK) for o in orders],
                                      False, True)
    assert [a["status"] for a in answers[:3]] == ["matched"] * 3 and answers[3]["success"] is False
    for a in answers[:3]:
        await statuses_until(w, a["tradeIDs"][0], "CONFIRMED")

    # The dead-man switch: heartbeats are accepted and counted.
    beat = await asyncio.to_thread(w.client.post_heartbeat, "")
    assert beat["error"] == "" and (await sandbox_stats(w))["clob"]["heartbeats"] == 1


async def test_mint_and_merge_matches_move_the_right_tokens_on_chain(world):
    w = world
    m = w.binary[0]
    yes, no = m.token_ids
    rate = fee_rate_ppm(m.fee_rate)
    before = w.balances()
    no_ask = (await book(w, no)).asks[0][0]  # = 1 - the best YES bid: a BUY of NO mints a set

    res = await asyncio.to_thread(w.client.post_order, await asyncio.to_thread(fok, w, no, no_ask, 20 * M),
                                  OrderType.FOK, False, True)
    t = await trade(w, res["tradeIDs"][0])
    assert t["match_type"] == "MINT"
    await statuses_until(w, t["id"], "CONFIRMED")
    minted = w.balances()
    assert minted[no] == before[no] + 20 * M and minted[yes] == before[yes]
    assert minted["collateral"] == before["collateral"] - notional(20 * M, no_ask) - taker_fee(20 * M, no_ask, rate)

    no_bid = (await book(w, no)).bids[0][0]  # = 1 - the best YES ask: a SELL of NO merges a set
    res = await asyncio.to_thread(w.client.post_order,
                                  await asyncio.to_thread(fok, w, no, no_bid, 20 * M, "SELL"), OrderType.FOK, False,
                                  True)
    t = await trade(w, res["tradeIDs"][0])
    assert t["match_type"] == "MERGE"
    await statuses_until(w, t["id"], "CONFIRMED")
    merged = w.balances()
    assert merged[no] == before[no]
    assert merged["collateral"] == minted["collateral"] + 20 * no_bid - taker_fee(20 * M, no_bid, rate)


async def test_every_settlement_fault_knob_edited_live_produces_its_fault_and_its_counter(world):
    w = world
    token = w.binary[1].token_ids[0]

    async def place(meta: str) -> dict[str, Any]:
        order = await asyncio.to_thread(fok, w, token, (await book(w, token)).asks[0][0], 5 * M, meta=meta)
        return await asyncio.to_thread(w.client.post_order, order, OrderType.FOK, False, True)

    async def knob(**faults: Any) -> None:
        edit_faults(w.path, **faults)

        async def applied() -> bool:
            cfg = (await sandbox_stats(w))["faults"]["config"]
            return all(cfg[k] == v for k, v in faults.items())

        await eventually(applied, timeout=20, what=f"faults {faults} applied")

    before = w.balances()
    await knob(trade_fail_rate=1.0)
    res = await place("0x" + "f1" * 32)
    assert await statuses_until(w, res["tradeIDs"][0], "FAILED") == ["MATCHED", "FAILED"]
    assert w.balances() == before  # FAILED: nothing moved

    await knob(trade_fail_rate=0.0, trade_retry_rate=1.0)
    res = await place("0x" + "f2" * 32)
    seen = await statuses_until(w, res["tradeIDs"][0], "CONFIRMED")
    assert "RETRYING" in seen

    await knob(trade_retry_rate=0.0, delayed_rate=1.0, delayed_unmatched_share=0.0, delay_ms=300)
    res = await place("0x" + "f3" * 32)
    assert res["status"] == "delayed" and res["tradeIDs"] == []
    order = await eventually(lambda: _matched(w, res["orderID"]), timeout=20, what="delayed order matched")
    await statuses_until(w, order["associate_trades"][0], "CONFIRMED")

    await knob(delayed_rate=0.0, engine_restart_every_seconds=1.0, engine_restart_seconds=30.0)
    attempt = 0

    async def refused_425() -> bool:
        nonlocal attempt
        attempt += 1
        try:
            await place("0x" + f"{attempt:064x}")  # the first second after the edit is still running
        except PolyApiException as exc:
            return exc.status_code == 425
        return False

    await eventually(refused_425, timeout=20, interval=0.2, what="orders answered 425 during the restart")
    await knob(engine_restart_every_seconds=None)

    faults = (await sandbox_stats(w))["faults"]
    assert faults["trades_failed"] == 1 and faults["trades_retried"] == 1 and faults["delayed_orders"] == 1
    assert faults["engine_restarts"] >= 1 and faults["engine_restart_refusals"] >= 1


def _matched(w: World, order_id: str) -> dict[str, Any] | None:
    order = w.client.get_order(order_id)
    return order if order["status"] == "MATCHED" else None


async def test_a_venue_killed_with_trades_in_flight_settles_them_once_and_mints_no_money(world):
    w = world
    edit_faults(w.path, settlement_latency_ms=3000)  # a kill lands between the match and the settlement
    await eventually(lambda: _latency(w) == 3000, timeout=20, what="latency applied")
    token = w.binary[0].token_ids[0]
    ask = (await book(w, token)).asks[0][0]
    before = w.balances()
    meta = "0x" + "c4" * 32
    res = await asyncio.to_thread(w.client.post_order, await asyncio.to_thread(fok, w, token, ask, 10 * M,
                                                                             meta=meta), OrderType.FOK, False, True)
    (tid,) = res["tradeIDs"]
    assert (await trade(w, tid))["status"] == "MATCHED"

    w.restart_venue()  # kill -9, then a new venue process on the same state
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, w.url, w.proc)

    seen = await statuses_until(w, tid, "CONFIRMED")
    assert seen[-1] == "CONFIRMED"
    after = w.balances()
    rate = fee_rate_ppm(w.binary[0].fee_rate)
    assert after["collateral"] == before["collateral"] - notional(10 * M, ask) - taker_fee(10 * M, ask, rate)
    assert after[token] == before[token] + 10 * M  # settled exactly once; the restart minted nothing
    dup = await asyncio.to_thread(fok, w, token, ask, 10 * M, meta=meta)
    with pytest.raises(PolyApiException) as refused:
        await asyncio.to_thread(w.client.post_order, dup, OrderType.FOK, False, True)
    assert "Duplicated." in refused.value.error_msg["error"]  # the client id survived the kill


def _latency(w: World) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{w.url}/sandbox/clob", timeout=5) as r:  # noqa: S310 - our local venue
        return json.loads(r.read())["faults"]["config"]["settlement_latency_ms"]


async def test_a_resolved_market_stops_trading_and_its_winners_redeem_on_chain(world):
    w = world
    m = w.binary[1]
    yes, no = m.token_ids
    res = await asyncio.to_thread(w.client.post_order, await asyncio.to_thread(
        fok, w, yes, (await book(w, yes)).asks[0][0], 10 * M), OrderType.FOK, False, True)
    await statuses_until(w, res["tradeIDs"][0], "CONFIRMED")
    frames: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(w.url.replace("http", "ws") + "/ws/market")
        await ws.send_str(json.dumps({"type": "market", "assets_ids": [yes], "custom_feature_enabled": True}))
        await ws.receive()  # the snapshot
        async with session.post(f"{w.url}/sandbox/resolve", json={"market": m.slug, "outcome": "Yes"}) as r:
            assert r.status == 200 and (await r.json())["resolved"][0]["winning_asset_id"] == yes
        while not frames:
            msg = await asyncio.wait_for(ws.receive(), 10)
            data = json.loads(msg.data)
            frames += [f for f in (data if isinstance(data, list) else [data])
                       if f.get("event_type") == "market_resolved"]
        await ws.close()
    assert frames[0]["winning_asset_id"] == yes and frames[0]["winning_outcome"] == "Yes"

    ctf = contract(w.w3, "ConditionalTokens", w.addr.ctf).functions
    cid = bytes.fromhex(m.condition_id[2:])
    await eventually(lambda: ctf.payoutDenominator(cid).call() == 1, timeout=20, what="payout reported on chain")
    before = w.balances()
    ctf.redeemPositions(w.addr.collateral, b"\x00" * 32, cid, [1, 2]).transact({"from": TRADER.address})
    after = w.balances()
    assert after["collateral"] == before["collateral"] + before[yes]  # a winning share pays 1
    assert after[yes] == 0 and after[no] == 0
    with pytest.raises(PolyApiException) as refused:  # a resolved market takes no order
        await asyncio.to_thread(w.client.post_order, await asyncio.to_thread(fok, w, yes, 500_000, 5 * M),
                                OrderType.FOK, False, True)
    assert "closed" in refused.value.error_msg["error"]

