"""The executor at saturation: signals fed straight to it, next to raw pipelined anvil sends.

The real executor, nonce authority and venue processes on anvil; no feed and no
router: the bench binds the router's PUB endpoint and publishes BUY_SETs of 5
sets at each market's asks plus slack (FOK fills them against the venue's
maker), round-robin over 40 binary markets, far more than the executor can
take at once. Each execution is a batch order, the venue's on-chain settlement
of both legs and our merge. The venue settles at once (`settlement_latency_ms:
0`: the pipeline is measured, not the venue's block wait).

Baseline, same run, on a fresh anvil: 2,000 pre-signed transfers sent as JSON-RPC
batches of 100 `eth_sendRawTransaction`, until the last is mined (tx/s).

    python -m bench.executor_saturation [--signals 1500] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import zmq

from actors.cli import status
from actors.domain.money import to_micro
from actors.domain.wallet import dev_account
from actors.runtime.clock import SystemClock
from bench.common import actor_world, write_result
from bench.tick_to_trade import bench_markets
from bus import codec, topics
from bus.codec import Stamper
from bus.curve import for_config
from bus.messages import Leg, Signal
from config.loader import load
from sandbox.chain import start_anvil

SIZE = 5_000_000  # 5 sets: the venue's minimum order size
SLACK = 30_000  # 0.03 over the ask: the book may have moved a tick since it was read


async def _raw_sends(url: str, n: int) -> dict[str, float]:
    acct = dev_account(9)  # an account the system never uses
    async with aiohttp.ClientSession() as http:
        async def rpc(method: str, params: list[Any]) -> Any:
            async with http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) as r:
                return (await r.json())["result"]

        nonce = int(await rpc("eth_getTransactionCount", [acct.address, "pending"]), 16)
        fee = int(await rpc("eth_gasPrice", []), 16) * 2
        raws = ["0x" + bytes(acct.sign_transaction({
            "to": "0x000000000000000000000000000000000000dEaD", "value": 1, "gas": 21_000, "maxFeePerGas": fee,
            "maxPriorityFeePerGas": 10**9, "nonce": nonce + i, "chainId": 137, "type": 2}).raw_transaction).hex()
            for i in range(n)]
        t0 = time.perf_counter()
        for i in range(0, n, 100):  # JSON-RPC batches of 100, in nonce order: pipelined, never out of order
            batch = [{"jsonrpc": "2.0", "id": k, "method": "eth_sendRawTransaction", "params": [raw]}
                     for k, raw in enumerate(raws[i:i + 100])]
            async with http.post(url, json=batch) as r:
                errors = [a["error"] for a in await r.json() if "error" in a]
            if errors:
                raise RuntimeError(f"raw sends refused: {errors[:3]}")
        deadline = time.monotonic() + 60
        while int(await rpc("eth_getTransactionCount", [acct.address, "latest"]), 16) < nonce + n:
            if time.monotonic() > deadline:
                raise RuntimeError("the raw transfers were not all mined within 60 s")
            await asyncio.sleep(0.005)
        secs = time.perf_counter() - t0
    return {"transactions": n, "seconds": round(secs, 3), "tx_per_second": round(n / secs, 1)}


def raw_baseline(n: int = 2000) -> dict[str, float]:
    anvil, url = start_anvil(load().sandbox.chain.__class__(block_time_seconds=0), 137)  # type: ignore[union-attr]
    try:
        return asyncio.run(_raw_sends(url, n))
    finally:
        anvil.terminate()
        anvil.wait(10)


async def _markets(clob_url: str) -> list[tuple[str, list[str]]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{clob_url}/markets") as r:
            data = (await r.json())["data"]
    return [(m["condition_id"], [t["token_id"] for t in m["tokens"]]) for m in data
            if not m["neg_risk"] and len(m["tokens"]) == 2]


async def _signals(clob_url: str, markets: list[tuple[str, list[str]]], n: int) -> list[Signal]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{clob_url}/books", json=[{"token_id": t} for _, ts in markets for t in ts]) as r:
            books = {b["asset_id"]: b for b in await r.json()}
    now, out = time.time_ns(), []
    for i in range(n):
        market, tokens = markets[i % len(markets)]
        legs = []
        for t in tokens:
            ask = min(to_micro(a["price"]) for a in books[t]["asks"])
            limit = min(990_000, ask + SLACK)
            legs.append(Leg(token_id=t, side="BUY", limit_price=limit, size=SIZE, cost=limit * SIZE // 10**6, fee=0))
        # Distinct book times make distinct opportunities (the idempotency key); far ahead, so no
        # "books older than our last trade" drop: the bench measures the pipeline, not the router.
        ts = now // 10**6 + 3_600_000 + i
        out.append(Signal(signal_id=f"sat-{i}", market=market, kind="BUY_SET", legs=legs, size=SIZE,
                          expected_profit=0, book_ts_ms={t: ts for t in tokens}, created_ns=now,
                          expires_ns=now + 600 * 10**9))
    return out


def system(n_signals: int, seconds: float, markets: int = 40) -> dict[str, Any]:
    world = actor_world(("venue", "nonce", "executor"),
                        sandbox={"venue": {"updates_per_second": 1, "markets": bench_markets(markets), "events": [],
                                           "arbitrage": {"rate_per_minute": 0},
                                           "faults": {"settlement_latency_ms": 0, "inject_binary_gap": False}}},
                        trading={"max_in_flight": 64, "sell_reserve": "0"},
                        runtime={"stats_interval_seconds": 0.5})
    with world as (cfg, tmp):
        return _saturate(cfg, tmp, n_signals, seconds, markets)


def _saturate(cfg: Any, tmp: Path, n_signals: int, seconds: float, markets: int) -> dict[str, Any]:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)  # XPUB: the executor's subscription shows when it has joined
    pub.setsockopt(zmq.SNDHWM, 0)
    if (security := for_config(cfg, "router")) is not None:
        security.serve(pub, enforce=False)  # the executor pins the router's key: this speaks as the router
    pub.bind(cfg.bus.endpoints["router"].pub)

    def executor() -> dict[str, Any]:
        got = asyncio.run(status.collect(cfg, 0.8)).get("executor")
        return got["stats"]["executor"] if got else {}

    try:
        deadline = time.monotonic() + 180
        while not executor().get("ready"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"executor not ready; logs in {tmp}")
            time.sleep(0.5)
        if not pub.poll(30_000):
            raise RuntimeError("the executor never subscribed to the signals")
        pub.recv()
        signals = asyncio.run(_signals(cfg.executor.clob_url, asyncio.run(_markets(cfg.executor.clob_url)),
                                       n_signals))
        stamper = Stamper("router", SystemClock())
        before = executor()
        for s in signals:
            pub.send_multipart(codec.encode(topics.signal(s.market), stamper.stamp(topics.signal(s.market), s)))
        samples: list[tuple[float, int, int]] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:  # a benchmark window, sampled about every 1.8 s
            time.sleep(1.0)  # plus the 0.8 s the stats collection listens
            ex = executor()
            samples.append((time.monotonic(), ex["total_executions"], ex["successful_executions"]))
            if ex["total_executions"] - before["total_executions"] >= n_signals:
                break
        ex = executor()
        # The steady part: from the first second that saw executions end to the last sample.
        start = next((i for i, (_, total, _) in enumerate(samples) if total > before["total_executions"]), 0)
        (ta, na, oka), (tb, nb, okb) = samples[start], samples[-1]
        span = max(tb - ta, 1e-9)
        return {"signals": n_signals, "window_seconds": round(span, 1),
                "executions_per_second": round((nb - na) / span, 2),
                "successful_executions_per_second": round((okb - oka) / span, 2),
                "by_status": {k: v for k, v in ex["by_status"].items() if v},
                "onchain": {k: ex["onchain"].get(k) for k in ("sent", "mined", "bumps") if k in ex["onchain"]},
                "markets": markets, "max_in_flight": cfg.trading.max_in_flight, "logs": str(tmp)}
    finally:
        pub.close(0)
        ctx.term()


def run(n_signals: int = 1500, seconds: float = 60.0) -> dict[str, Any]:
    raw = raw_baseline()
    sat = system(n_signals, seconds)
    return {
        "results": {"raw_pipelined_anvil_sends": raw, "executor": sat},
        "ratios": {"executions_per_second_over_raw_tx_per_second":
                   round(sat["executions_per_second"] / raw["tx_per_second"], 3),
                   "successful_executions_per_second_over_raw_tx_per_second":
                   round(sat["successful_executions_per_second"] / raw["tx_per_second"], 3)},
        "notes": "one execution = POST /orders of 2 FOK legs, the venue's settlement of each on chain, a merge "
                 "through the nonce authority; raw = eth_sendRawTransaction of pre-signed "
                 "transfers in JSON-RPC batches of 100 on a fresh anvil (automine)",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signals", type=int, default=1500)
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args()
    r = run(a.signals, a.seconds)
    print(write_result("executor_saturation", r))
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
