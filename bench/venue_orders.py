"""The venue's order round trip with the REAL py-clob-client-v2: FOK orders
authenticated, verified and matched (answered), then settled on a test anvil
(automine) in the background, next to a raw aiohttp GET /time round trip on the
same venue in the same run. `settlement_latency_ms` is 0 here: what is measured
is the venue's own settlement path; the configured latency adds on top.

    python -m bench.venue_orders [--n 200]

Measured (each sequential, after a warm-up):
  post_answer    client.post_order(defer_exec=True) of a pre-signed FOK that fills: L2
                 HMAC, EIP-712 recovery, 2 chain reads, matching, the trade stored:
                 the answer ("matched")
  settle_mined   from that answer to the trade's MINED status (GET /data/trades polled
                 back to back): the settlement transaction sent and its receipt awaited
  post_killed    the same POST for a FOK that cannot fill (no trade, no settlement)
  batch4         one POST /orders of 4 pre-signed FOKs (4 markets' tokens), answered
  single4        the same 4 orders as 4 sequential POST /order
  create_and_post  client.create_and_post_order(defer_exec=True): the client's own
                 signing and its cached tick / neg-risk / version look-ups on top
  client_time    client.get_server_time(): the same GET /time through the client's httpx
  raw_time       aiohttp GET /time (same server, same middleware): the HTTP floor
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import OrderArgsV2, OrderType, PostOrdersV2Args, TradeParams

from actors.domain.wallet import dev_account
from bench.common import percentiles_us, write_result
from config.loader import DEFAULT_PATH, load
from sandbox.chain import start_anvil
from sandbox.deploy import connect, contract, contract_addresses, market_infos
from sandbox.testbed import free_port

MAX_UINT = 2**256 - 1


def _config(tmp: Path, rpc_url: str, port: int) -> Path:
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    raw["bus"]["endpoints"] = {k: {"pub": f"tcp://127.0.0.1:{free_port()}"} for k in raw["bus"]["endpoints"]}
    raw["chain"]["rpc_url"] = rpc_url
    raw["runtime"]["log_level"] = "WARNING"
    venue = raw["sandbox"]["venue"]
    venue.update(port=port, updates_per_second=0, state_dir=str(tmp / "state"))  # static books: same liquidity
    venue["arbitrage"]["rate_per_minute"] = 0
    venue["faults"]["settlement_latency_ms"] = 0  # the venue's own settlement path, nothing added
    for m in [*venue["markets"], *venue["events"]]:
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


def _mined(client: ClobClient, trade_id: str, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        (trade,) = client.get_trades(TradeParams(id=trade_id))
        if trade["status"] in ("MINED", "CONFIRMED"):
            return
        if trade["status"] == "FAILED" or time.monotonic() > deadline:
            raise AssertionError(f"trade {trade_id} ended {trade['status']}")


def _orders(url: str, tokens: list[str], n: int) -> dict[str, list[int]]:
    trader = dev_account(1)
    client = ClobClient(url, chain_id=137, key="0x" + bytes(trader.key).hex())
    client.set_api_creds(client.create_or_derive_api_key())
    token = tokens[0]
    book = client.get_order_book(token)
    ask = min(float(a["price"]) for a in book["asks"])
    bid = max(float(b["price"]) for b in book["bids"])
    tick = float(book["tick_size"])
    asks = {t: min(float(a["price"]) for a in client.get_order_book(t)["asks"]) for t in tokens}

    def signed(price: float, side: str, t: str = token) -> Any:
        return client.create_order(OrderArgsV2(token_id=t, price=price, size=5, side=side))

    out: dict[str, list[int]] = {"post_answer": [], "settle_mined": [], "post_killed": [], "batch4": [],
                                 "single4": [], "create_and_post": [], "client_time": []}
    for i in range(n + 10):  # the client's own HTTP floor (sync httpx): GET /time
        t = time.perf_counter_ns()
        client.get_server_time()
        if i >= 10:
            out["client_time"].append(time.perf_counter_ns() - t)
    for i in range(n + 10):  # buy then sell back: the trader's inventory stays flat
        order = signed(ask if i % 2 == 0 else bid, "BUY" if i % 2 == 0 else "SELL")
        t = time.perf_counter_ns()
        res = client.post_order(order, OrderType.FOK, False, True)
        answered = time.perf_counter_ns()
        assert res["status"] == "matched", res
        _mined(client, res["tradeIDs"][0])  # a sell needs the bought shares on chain
        if i >= 10:
            out["post_answer"].append(answered - t)
            out["settle_mined"].append(time.perf_counter_ns() - answered)
    for i in range(n + 10):
        order = signed(round(ask - tick, 4), "BUY")
        t = time.perf_counter_ns()
        try:
            client.post_order(order, OrderType.FOK, False, True)
            raise AssertionError("a non-crossing FOK filled")
        except Exception as exc:  # PolyApiException 400: killed
            if getattr(exc, "status_code", None) != 400:
                raise
        if i >= 10:
            out["post_killed"].append(time.perf_counter_ns() - t)
    for i in range(max(10, n // 4) + 2):  # four legs: one batch, then the same four one by one
        batch = [signed(asks[t], "BUY", t) for t in tokens]
        t0 = time.perf_counter_ns()
        answers = client.post_orders([PostOrdersV2Args(o, OrderType.FOK) for o in batch], False, True)
        t1 = time.perf_counter_ns()
        assert [a["status"] for a in answers] == ["matched"] * len(tokens), answers
        singles = [signed(asks[t], "BUY", t) for t in tokens]
        t2 = time.perf_counter_ns()
        for o in singles:
            assert client.post_order(o, OrderType.FOK, False, True)["status"] == "matched"
        t3 = time.perf_counter_ns()
        if i >= 2:
            out["batch4"].append(t1 - t0)
            out["single4"].append(t3 - t2)
    for i in range(n // 2):
        side, price = ("BUY", ask) if i % 2 == 0 else ("SELL", bid)
        t = time.perf_counter_ns()
        res = client.create_and_post_order(OrderArgsV2(token_id=token, price=price, size=5, side=side), None,
                                           OrderType.FOK, False, True)
        out["create_and_post"].append(time.perf_counter_ns() - t)
        _mined(client, res["tradeIDs"][0])
    return out


def run(n: int = 200) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp())
    anvil, rpc = start_anvil(load().sandbox.chain.__class__(block_time_seconds=0), 137)  # type: ignore[union-attr]
    port = free_port()
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
        binary = [m for m in market_infos(cfg, dev_account(0).address) if not m.neg_risk]
        tokens = [t for m in binary[:2] for t in m.token_ids]  # YES and NO of two markets: 4 legs
        raw = asyncio.run(_raw_time(url, n))
        orders = _orders(url, tokens, n)
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
            "post_answer_p50_over_raw_time_p50": round(r["post_answer"]["p50_us"] / r["raw_time"]["p50_us"], 1),
            "post_killed_p50_over_raw_time_p50": round(r["post_killed"]["p50_us"] / r["raw_time"]["p50_us"], 1),
            "post_answer_p50_over_client_time_p50": round(
                r["post_answer"]["p50_us"] / r["client_time"]["p50_us"], 1),
            "settle_mined_p50_over_post_answer_p50": round(
                r["settle_mined"]["p50_us"] / r["post_answer"]["p50_us"], 2),
            "batch4_p50_over_single4_p50": round(r["batch4"]["p50_us"] / r["single4"]["p50_us"], 2),
        },
        "notes": "anvil automine; settlement_latency_ms 0; sequential; the client is sync httpx "
                 "(py-clob-client-v2), raw_time is aiohttp",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    result = run(ap.parse_args().n)
    print(write_result("venue_orders", result))
    print(yaml.safe_dump(result["results"] | {"ratios": result["ratios"]}, sort_keys=False))


if __name__ == "__main__":
    main()
