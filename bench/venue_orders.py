"""The venue's order round trip with the REAL py-clob-client-v2: FOK orders
authenticated, verified, matched and settled on a test anvil (automine), next
to a raw aiohttp GET /time round trip on the same venue in the same run.

    python -m bench.venue_orders [--n 200]

Measured (each sequential, after a warm-up):
  post_matched   client.post_order of a pre-signed FOK that fills: L2 HMAC, EIP-712
                 recovery, 2 chain reads, matching, Settlement.settle sent and its
                 receipt awaited
  post_killed    the same for a FOK that cannot fill: everything but the settlement
                 (the venue has no switch to skip settlement; this is the split)
  create_and_post  client.create_and_post_order: the client's own signing and its
                 cached tick / neg-risk / version look-ups on top of post_matched
  client_time    client.get_server_time(): the same GET /time through the client's httpx
  raw_time       aiohttp GET /time (same server, same middleware): the HTTP floor
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import OrderArgsV2, OrderType

from actors.domain.wallet import dev_account
from bench.common import percentiles_us, write_result
from config.loader import DEFAULT_PATH, load
from sandbox.chain import start_anvil
from sandbox.deploy import connect, contract, contract_addresses, market_infos

MAX_UINT = 2**256 - 1


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp: Path, rpc_url: str, port: int) -> Path:
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    raw["bus"]["endpoints"] = {k: {"pub": f"tcp://127.0.0.1:{_port()}"} for k in raw["bus"]["endpoints"]}
    raw["chain"]["rpc_url"] = rpc_url
    raw["runtime"]["log_level"] = "WARNING"
    venue = raw["sandbox"]["venue"]
    venue.update(port=port, updates_per_second=0)  # static books: every order meets the same liquidity
    venue["arbitrage"]["rate_per_minute"] = 0
    for m in venue["markets"]:
        m["level_size"] = "1000000"
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def _wait_ready(url: str, venue: subprocess.Popen[bytes], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as session:
        while True:
            if venue.poll() is not None:
                raise RuntimeError(f"the venue exited with {venue.returncode}")
            try:
                status, body = await _get(session, f"{url}/sandbox/clob")
                if status == 200 and body["chain_ready"]:
                    return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the venue did not get ready")
            await asyncio.sleep(0.05)


async def _raw_time(url: str, n: int) -> list[int]:
    samples = []
    async with aiohttp.ClientSession() as session:
        for i in range(n + 20):
            t = time.perf_counter_ns()
            async with session.get(f"{url}/time") as resp:
                await resp.read()
            if i >= 20:
                samples.append(time.perf_counter_ns() - t)
    return samples


def _orders(url: str, token: str, n: int) -> dict[str, list[int]]:
    trader = dev_account(1)
    client = ClobClient(url, chain_id=137, key="0x" + bytes(trader.key).hex())
    client.set_api_creds(client.create_or_derive_api_key())
    book = client.get_order_book(token)
    ask = min(float(a["price"]) for a in book["asks"])
    bid = max(float(b["price"]) for b in book["bids"])
    tick = float(book["tick_size"])

    def signed(price: float, side: str) -> Any:
        return client.create_order(OrderArgsV2(token_id=token, price=price, size=5, side=side))

    out: dict[str, list[int]] = {"post_matched": [], "post_killed": [], "create_and_post": [], "client_time": []}
    for i in range(n + 10):  # the client's own HTTP floor (sync httpx): GET /time
        t = time.perf_counter_ns()
        client.get_server_time()
        if i >= 10:
            out["client_time"].append(time.perf_counter_ns() - t)
    for i in range(n + 10):  # buy then sell back: the trader's inventory stays flat
        order = signed(ask if i % 2 == 0 else bid, "BUY" if i % 2 == 0 else "SELL")
        t = time.perf_counter_ns()
        res = client.post_order(order, OrderType.FOK)
        if i >= 10:
            out["post_matched"].append(time.perf_counter_ns() - t)
        assert res["status"] == "matched", res
    for i in range(n + 10):
        order = signed(round(ask - tick, 4), "BUY")
        t = time.perf_counter_ns()
        try:
            client.post_order(order, OrderType.FOK)
            raise AssertionError("a non-crossing FOK filled")
        except Exception as exc:  # PolyApiException 400: killed
            if getattr(exc, "status_code", None) != 400:
                raise
        if i >= 10:
            out["post_killed"].append(time.perf_counter_ns() - t)
    for i in range(n // 2):
        side, price = ("BUY", ask) if i % 2 == 0 else ("SELL", bid)
        t = time.perf_counter_ns()
        client.create_and_post_order(OrderArgsV2(token_id=token, price=price, size=5, side=side), order_type="FOK")
        out["create_and_post"].append(time.perf_counter_ns() - t)
    return out


def run(n: int = 200) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp())
    anvil, rpc = start_anvil(load().sandbox.chain.__class__(block_time_seconds=0), 137)  # type: ignore[union-attr]
    port = _port()
    path = _config(tmp, rpc, port)
    cfg = load(path)
    polyarb = str(Path(sys.executable).with_name("polyarb"))
    venue = subprocess.Popen([polyarb, "--config", str(path), "actor", "venue"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_ready(url, venue))
        w3, trader = connect(rpc), dev_account(1).address
        collateral, ctf, exchange = contract_addresses(137)
        contract(w3, "Collateral", collateral).functions.approve(exchange, MAX_UINT).transact({"from": trader})
        contract(w3, "ConditionalTokens", ctf).functions.setApprovalForAll(exchange, True).transact({"from": trader})
        token = market_infos(cfg, dev_account(0).address)[0].token_ids[0]
        raw = asyncio.run(_raw_time(url, n))
        orders = _orders(url, token, n)
    finally:
        for p in (venue, anvil):
            p.send_signal(signal.SIGTERM)
        for p in (venue, anvil):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    r = {k: percentiles_us(v) for k, v in orders.items()} | {"raw_time": percentiles_us(raw)}
    return {
        "results": r,
        "ratios": {
            "post_matched_p50_over_raw_time_p50": round(r["post_matched"]["p50_us"] / r["raw_time"]["p50_us"], 1),
            "post_killed_p50_over_raw_time_p50": round(r["post_killed"]["p50_us"] / r["raw_time"]["p50_us"], 1),
            "post_matched_p50_over_client_time_p50": round(
                r["post_matched"]["p50_us"] / r["client_time"]["p50_us"], 1),
            "settlement_share_of_post_matched_p50": round(
                1 - r["post_killed"]["p50_us"] / r["post_matched"]["p50_us"], 2),
        },
        "notes": "anvil automine; sequential; the client is sync httpx (py-clob-client-v2), raw_time is aiohttp",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    result = run(ap.parse_args().n)
    print(write_result("venue_orders", result))
    print(yaml.safe_dump(result["results"] | {"ratios": result["ratios"]}, sort_keys=False))


if __name__ == "__main__":
    main()
