"""The venue's CLOB end to end: a real anvil, the real venue process, and the
REAL py-clob-client-v2 deriving credentials and placing FOK orders that settle
on chain; the market channel sees the trades; faults edited live in the YAML."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import MarketOrderArgsV2, OrderArgsV2, OrderType
from py_clob_client_v2.exceptions import PolyApiException

from actors.domain.fees import fee_rate_ppm, notional, taker_fee
from actors.domain.money import to_micro
from actors.domain.wallet import dev_account
from actors.runtime.clock import SystemClock
from config.loader import load
from sandbox.deploy import Deployment, balances, bootstrap, connect, contract, contract_addresses, market_infos
from sandbox.venue.clob.orders import FOK_KILLED
from sandbox.venue.clob.settlement import ChainUnavailable, SettlementFailed, Settler
from tests.helpers import eventually
from tests.integration.conftest import free_port, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MAX_UINT = 2**256 - 1
M = 1_000_000


def edit_faults(path: Path, **faults: Any) -> None:
    """Change sandbox.venue.faults in the YAML, atomically (as an editor saves)."""
    raw = yaml.safe_load(path.read_text())
    raw["sandbox"]["venue"]["faults"].update(faults)
    tmp = path.with_suffix(".edit")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.replace(tmp, path)


@pytest.fixture
def world(anvil, tmp_path, procs):
    """(venue url, config path, config, deployment, web3) with the venue up and its chain bootstrapped."""
    port = free_port()
    path = write_config(tmp_path, anvil, int(anvil.rsplit(":", 1)[1]))
    raw = yaml.safe_load(path.read_text())
    venue = raw["sandbox"]["venue"]
    venue.update(port=port, updates_per_second=0)  # static books: the test reads them and trades on them
    venue["arbitrage"]["rate_per_minute"] = 0
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load(path)
    proc = procs("--config", str(path), "actor", "venue", name="venue")
    url = f"http://127.0.0.1:{port}"
    collateral, ctf, exchange = contract_addresses(cfg.chain.chain_id)
    operator = dev_account(cfg.sandbox.venue.operator_index)
    deployment = Deployment(collateral=collateral, ctf=ctf, exchange=exchange, operator=operator.address,
                            trader=dev_account(1).address, markets=market_infos(cfg, operator.address))
    return url, path, cfg, deployment, connect(anvil), proc


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        return resp.status, await resp.json(), resp.headers


async def wait_ready(session: aiohttp.ClientSession, url: str, proc: Any) -> None:
    async def ready() -> bool:
        assert proc.p.poll() is None, proc.output()
        try:
            status, body, _ = await get_json(session, f"{url}/sandbox/clob")
        except aiohttp.ClientError:
            return False
        return status == 200 and body["chain_ready"]

    await eventually(ready, timeout=60, interval=0.05, what="venue up with its chain bootstrapped")


def approve(w3: Any, deployment: Deployment, trader: str) -> None:
    """The trader's one-time approvals of the exchange (the executor's job in production)."""
    contract(w3, "Collateral", deployment.collateral).functions.approve(deployment.exchange, MAX_UINT).transact(
        {"from": trader})
    contract(w3, "ConditionalTokens", deployment.ctf).functions.setApprovalForAll(deployment.exchange, True).transact(
        {"from": trader})


class Market:
    """One token's book as the venue shows it, in micro units."""

    def __init__(self, book: dict[str, Any]) -> None:
        self.asks = sorted((round(float(a["price"]) * M), round(float(a["size"]) * M)) for a in book["asks"])
        self.bids = sorted(((round(float(b["price"]) * M), round(float(b["size"]) * M)) for b in book["bids"]),
                           reverse=True)
        self.tick = round(float(book["tick_size"]) * M)


async def test_real_client_trades_settle_on_chain_and_reach_the_market_channel(world):
    url, _, cfg, deployment, w3, proc = world
    market = deployment.markets[0]
    token, rate = market.token_ids[0], fee_rate_ppm(market.fee_rate)
    trader = dev_account(1)
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, url, proc)
        approve(w3, deployment, trader.address)
        client = ClobClient(url, chain_id=137, key="0x" + bytes(trader.key).hex())
        creds = await asyncio.to_thread(client.create_or_derive_api_key)
        assert await asyncio.to_thread(client.derive_api_key) == creds  # deterministic
        client.set_api_creds(creds)

        frames: list[dict[str, Any]] = []
        ws = await session.ws_connect(url.replace("http", "ws") + "/ws/market")
        await ws.send_str(json.dumps({"type": "market", "assets_ids": [token]}))

        async def read_ws() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith(("{", "[")):
                    data = json.loads(msg.data)
                    frames.extend(data if isinstance(data, list) else [data])

        reader = asyncio.create_task(read_ws())
        await eventually(lambda: any(f.get("event_type") == "book" for f in frames), what="initial snapshot")
        _, book, _ = await get_json(session, f"{url}/book?token_id={token}")
        before_book, before = Market(book), balances(w3, deployment, trader.address)
        ask, ask_size = before_book.asks[0]

        def place(price: int, size: int, side: str = "BUY", metadata: str = "0x" + "00" * 32) -> dict[str, Any]:
            args = OrderArgsV2(token_id=token, price=price / M, size=size / M, side=side, metadata=metadata)
            return client.create_and_post_order(args, order_type=OrderType.FOK)

        # 1. a FOK BUY at the best ask: filled, settled, the book and the chain agree
        meta = "0x" + "a1" * 32
        res = await asyncio.to_thread(place, ask, 10 * M, metadata=meta)
        assert res["success"] and res["status"] == "matched" and res["takingAmount"] == "10", res
        assert len(res["transactionsHashes"]) == 1 and w3.eth.get_transaction_receipt(
            res["transactionsHashes"][0])["status"] == 1
        cost, fee = notional(10 * M, ask), taker_fee(10 * M, ask, rate)
        after = balances(w3, deployment, trader.address)
        assert after["collateral"] == before["collateral"] - cost - fee
        assert after[token] == before[token] + 10 * M
        _, book, _ = await get_json(session, f"{url}/book?token_id={token}")
        assert Market(book).asks[0] == (ask, ask_size - 10 * M)
        kinds = {f.get("event_type") for f in await eventually(
            lambda: frames if {"price_change", "last_trade_price"} <= {f.get("event_type") for f in frames} else None,
            what="trade frames")}
        assert {"price_change", "last_trade_price"} <= kinds
        trade = next(f for f in frames if f.get("event_type") == "last_trade_price")
        assert (trade["asset_id"], trade["side"], trade["size"]) == (token, "BUY", "10")
        order = await asyncio.to_thread(client.get_order, res["orderID"])
        assert (order["status"], order["size_matched"], order["metadata"]) == ("MATCHED", "10", meta)

        # 2. the same metadata again (a new signature): a duplicate naming the first order, no second fill
        with pytest.raises(PolyApiException) as info:
            await asyncio.to_thread(place, ask, 10 * M, metadata=meta)
        assert info.value.status_code == 400 and "Duplicated." in info.value.error_msg["error"]
        assert info.value.error_msg["orderID"] == res["orderID"]
        assert balances(w3, deployment, trader.address) == after

        # 3. looking the order up by metadata (reconciliation), with the client's own L2 headers
        headers = client._l2_headers("GET", "/data/orders")
        found = await asyncio.to_thread(client._get, f"{url}/data/orders", headers, {"metadata": meta})
        assert [o["id"] for o in found["data"]] == [res["orderID"]]

        # 4. a stale signal: a FOK that no longer crosses is killed, nothing moves
        with pytest.raises(PolyApiException) as info:
            await asyncio.to_thread(place, ask - before_book.tick, 10 * M)
        assert (info.value.status_code, info.value.error_msg["error"]) == (400, FOK_KILLED)
        assert balances(w3, deployment, trader.address) == after

        # 5. a FOK SELL of what was bought, at the best bid
        bid = before_book.bids[0][0]
        res = await asyncio.to_thread(place, bid, 10 * M, "SELL")
        assert res["status"] == "matched", res
        final = balances(w3, deployment, trader.address)
        assert final[token] == before[token]
        assert final["collateral"] == after["collateral"] + 10 * bid - taker_fee(10 * M, bid, rate)

        # 6. a market order ($5), priced by the client from GET /book: /markets-by-token and /clob-markets
        res = await asyncio.to_thread(client.create_and_post_market_order,
                                      MarketOrderArgsV2(token_id=token, amount=5, side="BUY"), None, OrderType.FOK)
        shares = to_micro(res["takingAmount"])
        assert res["status"] == "matched" and shares == 5 * M * M // ask // 100 * 100, res  # 4 decimals, floored
        assert to_micro(res["makingAmount"]) == notional(shares, ask) + taker_fee(shares, ask, rate)
        assert balances(w3, deployment, trader.address)["collateral"] == final["collateral"] - to_micro(
            res["makingAmount"])
        reader.cancel()
        await ws.close()


async def test_faults_edited_live_reach_the_order_route(world):
    url, path, _, deployment, w3, proc = world
    token = deployment.markets[0].token_ids[0]
    trader = dev_account(1)
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, url, proc)
        client = ClobClient(url, chain_id=137, key="0x" + bytes(trader.key).hex())
        client.set_api_creds(await asyncio.to_thread(client.create_or_derive_api_key))
        _, book, _ = await get_json(session, f"{url}/book?token_id={token}")
        below = Market(book).asks[0][0] - Market(book).tick  # killed while the venue trades: nothing can fill

        def post_order() -> int:
            args = OrderArgsV2(token_id=token, price=below / M, size=10, side="BUY")
            try:
                client.create_and_post_order(args, order_type=OrderType.FOK)
            except PolyApiException as exc:
                return exc.status_code
            raise AssertionError("a non-crossing FOK was filled")

        assert await asyncio.to_thread(post_order) == 400
        edit_faults(path, reject_orders=True)

        async def rejected() -> bool:
            return await asyncio.to_thread(post_order) == 503

        await eventually(rejected, timeout=20, what="orders rejected with 503")

        edit_faults(path, reject_orders=False, http_429_rate=1.0, retry_after_seconds=3)

        async def throttled() -> bool:
            status, _, headers = await get_json(session, f"{url}/time")
            return status == 429 and headers.get("Retry-After") == "3"

        await eventually(throttled, timeout=20, what="429 with Retry-After")
        edit_faults(path, http_429_rate=0.0)

        async def counted() -> dict[str, Any] | None:
            status, body, _ = await get_json(session, f"{url}/sandbox/clob")
            return body if status == 200 else None

        stats = await eventually(counted, timeout=20, what="faults off again")
        assert stats["faults"]["rejected_orders"] >= 1 and stats["faults"]["http_429"] >= 1
        assert stats["clob"]["orders_rejected_fault"] >= 1 and stats["clob"]["orders_killed"] >= 1


async def test_settler_resyncs_its_nonce_and_never_settles_a_fill_twice(anvil):
    deployment = await asyncio.to_thread(bootstrap, load(), anvil)
    w3, trader, operator = connect(anvil), dev_account(1), dev_account(0)
    approve(w3, deployment, trader.address)
    settler = Settler(anvil, operator, chain_id=137, exchange=deployment.exchange, collateral=deployment.collateral,
                      ctf=deployment.ctf, clock=SystemClock())
    token = deployment.markets[0].token_ids[0]
    start = balances(w3, deployment, trader.address)
    try:
        funds = await settler.funds(trader.address, int(token), True)
        assert (funds.balance, funds.allowance) == (start["collateral"], MAX_UINT)

        tx = await settler.settle(b"\x01" * 32, trader.address, int(token), True, 10 * M, 5 * M, 50_000)

        assert w3.eth.get_transaction_receipt(tx)["status"] == 1
        once = balances(w3, deployment, trader.address)
        assert (once["collateral"], once[token]) == (start["collateral"] - 5_050_000, start[token] + 10 * M)
        # the operator key used behind the settler's back: its nonce is stale, resynced, retried
        w3.eth.send_transaction({"from": operator.address, "to": operator.address, "value": 0})
        await settler.settle(b"\x02" * 32, trader.address, int(token), False, 10 * M, 5 * M, 50_000)
        assert (settler.stats["send_errors"], settler.stats["nonce_resyncs"]) == (1, 2)
        assert balances(w3, deployment, trader.address)[token] == start[token]
        # a fill id settles once: the retry reverts and nothing moves
        before = balances(w3, deployment, trader.address)
        with pytest.raises(SettlementFailed, match="fill already settled"):
            await settler.settle(b"\x01" * 32, trader.address, int(token), True, 10 * M, 5 * M, 50_000)
        assert balances(w3, deployment, trader.address) == before
    finally:
        await settler.close()


async def test_settlements_the_chain_lost_are_broadcast_again_and_mine_with_the_same_hashes(anvil):
    """The chain forgets its last blocks (anvil restarted on a state file a second
    old; a reorg): the settlements the venue reported mined come back."""
    deployment = await asyncio.to_thread(bootstrap, load(), anvil)
    w3, trader, operator = connect(anvil), dev_account(1), dev_account(0)
    approve(w3, deployment, trader.address)
    settler = Settler(anvil, operator, chain_id=137, exchange=deployment.exchange, collateral=deployment.collateral,
                      ctf=deployment.ctf, clock=SystemClock())
    token = deployment.markets[0].token_ids[0]
    try:
        await settler.settle(b"\x10" * 32, trader.address, int(token), True, 10 * M, 5 * M, 0)
        assert await settler.heal() == []  # nothing lost: nothing sent
        snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
        lost = [await settler.settle(bytes([0x11 + i]) * 32, trader.address, int(token), True, M, M // 2, 0)
                for i in range(3)]
        after = balances(w3, deployment, trader.address)
        w3.provider.make_request("evm_revert", [snapshot])  # the last three blocks are gone
        assert balances(w3, deployment, trader.address) != after

        sent = await settler.heal()

        assert len(sent) == 3 and settler.stats["rebroadcasts"] == 3
        assert all(w3.eth.get_transaction_receipt(h)["status"] == 1 for h in lost)
        assert balances(w3, deployment, trader.address) == after
        await settler.settle(b"\x20" * 32, trader.address, int(token), True, M, M // 2, 0)  # the counter is right
    finally:
        await settler.close()


async def test_settlements_the_chain_lost_while_the_node_was_unreachable_are_not_overwritten(anvil):
    """Chaos seed 41: the chain was killed with settlements the venue had reported MINED;
    a settlement tried while it was down forgot the operator's counter, the resync took the
    node's count, the next settlement reused a lost one's nonce, and the lost BUY (reported
    CONFIRMED) never delivered its shares: books 105.26 shares and 48.94 pUSD from the chain."""
    deployment = await asyncio.to_thread(bootstrap, load(), anvil)
    w3, trader, operator = connect(anvil), dev_account(1), dev_account(0)
    approve(w3, deployment, trader.address)
    settler = Settler(anvil, operator, chain_id=137, exchange=deployment.exchange, collateral=deployment.collateral,
                      ctf=deployment.ctf, clock=SystemClock(), timeout_s=2)
    token = deployment.markets[0].token_ids[0]
    try:
        await settler.settle(b"\x30" * 32, trader.address, int(token), True, 10 * M, 5 * M, 0)
        snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
        lost = [await settler.settle(bytes([0x31 + i]) * 32, trader.address, int(token), True, M, M // 2, 0)
                for i in range(2)]
        after = balances(w3, deployment, trader.address)
        w3.provider.make_request("evm_revert", [snapshot])  # the chain lost their blocks

        settler.rpc_url = "http://127.0.0.1:9"  # ...and was unreachable when a settlement was tried
        await settler.close()
        with pytest.raises(ChainUnavailable):
            await settler.settle(b"\x40" * 32, trader.address, int(token), True, M, M // 2, 0)
        assert settler.get_stats()["nonce"] is None  # the counter is forgotten
        settler.rpc_url = anvil
        await settler.close()

        new = await settler.settle(b"\x41" * 32, trader.address, int(token), True, M, M // 2, 0)

        assert all(w3.eth.get_transaction_receipt(h)["status"] == 1 for h in [*lost, new])
        assert balances(w3, deployment, trader.address)[token] == after[token] + M
        assert settler.stats["rebroadcasts"] == 2
    finally:
        await settler.close()


async def test_the_executors_venue_follows_a_delayed_order_until_the_venue_decides(world):
    # Issue 12, sequence 2: a `delayed` answer (or a DELAYED record found by client
    # id) was taken for a killed leg: the other legs were unwound, then this one
    # matched and its tokens were never recorded.
    from actors.domain.enums import Side
    from actors.domain.wallet import Wallet
    from actors.executor.clob_venue import ClobVenue

    url, path, _, deployment, w3, proc = world
    token = deployment.markets[0].token_ids[0]
    trader = dev_account(1)
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, url, proc)
        approve(w3, deployment, trader.address)
        _, book, _ = await get_json(session, f"{url}/book?token_id={token}")
        ask = Market(book).asks[0][0]
        venue = ClobVenue(url, Wallet(trader), 137, settle_timeout_s=30)

        edit_faults(path, delayed_rate=1.0, delayed_unmatched_share=0.0, delay_ms=400)

        async def one_delayed() -> bool:
            before = balances(w3, deployment, trader.address)[token]
            fill = await venue.place(token, Side.BUY, ask, 5 * M, "0x" + f"{venue.counts['placed'] + 1:064x}")
            if venue.counts["delayed"] == 0:  # the edit had not reached the venue yet: plain fill
                return False
            assert fill.filled == 5 * M and balances(w3, deployment, trader.address)[token] == before + 5 * M
            return True

        await eventually(one_delayed, timeout=30, interval=0.5, what="a delayed order followed to its fill")
        edit_faults(path, delayed_rate=1.0, delayed_unmatched_share=1.0, delay_ms=200)

        async def unmatched() -> bool:
            n = venue.counts["delayed"]
            fill = await venue.place(token, Side.BUY, ask, 5 * M, "0x" + f"{venue.counts['placed'] + 1:064x}")
            return venue.counts["delayed"] > n and fill.filled == 0 and fill.status == "UNMATCHED"

        await eventually(unmatched, timeout=30, interval=0.5, what="a delayed order that did not match")


async def test_the_executors_venue_hears_settlement_on_the_user_channel_and_falls_back_to_rest(world):
    # Issue 12: the user channel is the first word on a trade's status; REST is the
    # fallback when it is down (here: a port nobody serves).
    from actors.domain.enums import Side
    from actors.domain.wallet import Wallet
    from actors.executor.clob_venue import ClobVenue

    url, path, _, deployment, w3, proc = world
    token = deployment.markets[0].token_ids[0]
    trader = dev_account(1)
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, url, proc)
        approve(w3, deployment, trader.address)
        edit_faults(path, settlement_latency_ms=1500)
        _, book, _ = await get_json(session, f"{url}/book?token_id={token}")
        ask = Market(book).asks[0][0]
        heard = ClobVenue(url, Wallet(trader), 137, user_ws_url=url.replace("http", "ws") + "/ws/user")
        deaf = ClobVenue(url, Wallet(trader), 137, user_ws_url=f"ws://127.0.0.1:{free_port()}/ws/user")
        try:
            await heard._ensure_creds()
            await eventually(lambda: heard.channel.connected, timeout=20, what="user channel up")

            async def settled_slowly(venue: ClobVenue, n: int) -> bool:
                fill = await venue.place(token, Side.BUY, ask, 5 * M, "0x" + f"{n:064x}")
                return fill.filled == 5 * M and venue.counts["trades_failed"] == 0

            await eventually(lambda: settled_slowly(heard, 0xe1), timeout=30, what="a fill heard")
            assert heard.channel.get_stats()["trade_events"] >= 2  # MATCHED and MINED pushed
            assert heard.counts["trade_polls"] <= 2  # REST asked once, not every few ms for 1.5 s

            await eventually(lambda: settled_slowly(deaf, 0xe2), timeout=30, what="a fill over REST")
            assert not deaf.channel.connected and deaf.counts["trade_polls"] >= 3
        finally:
            await heard.close()
            await deaf.close()
