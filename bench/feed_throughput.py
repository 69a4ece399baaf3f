"""Feed throughput: frames per second parsed, deduplicated, applied and
published to ZeroMQ by the real feed pipeline (PolymarketWSClient + FeedCore +
FeedActor's coalescing publisher), next to a bare websockets + json receive
loop measured in the same run against the same server; and the feed's CPU and
memory with 2,000 subscribed tokens.

The server (a subprocess) speaks the market channel: on the initial frame it
sends the snapshots, then blasts `price_change` frames for the connection's
assets as fast as it can.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

import websockets

from sandbox.testbed import free_port

SERVER = r'''
import asyncio, json, sys, random
import websockets
N = int(sys.argv[2])
async def handler(ws):
    init = json.loads(await ws.recv())
    assets = init["assets_ids"]
    await ws.send(json.dumps([{"event_type": "book", "asset_id": a, "market": "0xm", "timestamp": "1", "hash": "h",
        "bids": [{"price": "0.40", "size": "100"}, {"price": "0.39", "size": "50"}],
        "asks": [{"price": "0.45", "size": "100"}, {"price": "0.46", "size": "50"}]} for a in assets]))
    rnd = random.Random(7)
    for i in range(N):
        a = assets[i % len(assets)]
        p = "0.%02d" % rnd.randint(30, 39)
        frame = json.dumps({"event_type": "price_change", "market": "0xm", "timestamp": str(2 + i), "price_changes": [
            {"asset_id": a, "price": p, "size": str(rnd.randint(1, 500)), "side": "BUY", "hash": "x%d" % i,
             "best_bid": "0.40", "best_ask": "0.45"}]})
        await ws.send(frame)
    await ws.send("DONE")
    await asyncio.sleep(3600)
async def main():
    async with websockets.serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None, max_size=None):
        await asyncio.Future()
asyncio.run(main())
'''


async def _bare(url: str, assets: list[str]) -> tuple[int, float]:
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        await ws.send(json.dumps({"type": "market", "assets_ids": assets}))
        json.loads(await ws.recv())
        n, t0 = 0, time.perf_counter()
        async for msg in ws:
            if msg == "DONE":
                break
            json.loads(msg)
            n += 1
        return n, time.perf_counter() - t0


async def _feed(url: str, assets: list[str], connections: int, scrape_every: float | None = None) -> dict[str, Any]:
    """The real FeedActor, publishing to a real ZeroMQ PUB socket; with `scrape_every`,
    its Prometheus metrics rendered that often meanwhile (what a scraper costs it)."""
    import msgspec

    from actors.domain.listing import Market
    from actors.feed.actor import FeedActor
    from actors.runtime.clock import SystemClock
    from actors.runtime.shell import ActorRuntime
    from bus.context import new_context
    from config.loader import load
    from config.runtime import ConfigReloader

    cfg = load()
    eps = {k: msgspec.structs.replace(v, pub=f"tcp://127.0.0.1:{free_port()}") for k, v in cfg.bus.endpoints.items()}
    cfg = msgspec.structs.replace(
        cfg, bus=msgspec.structs.replace(cfg.bus, endpoints=eps),
        feed=msgspec.structs.replace(cfg.feed, ws_url=url, data_timeout_seconds=600,
                                     max_assets_per_connection=max(1, len(assets) // connections)))

    async def lister(session: Any, clob_url: str) -> list[Market]:
        return [Market("0xm", "bench", tuple(assets), tuple("o" for _ in assets), True)]

    ctx = new_context()
    rt = ActorRuntime("feed", ConfigReloader(initial=cfg), ctx, SystemClock())
    actor = FeedActor(rt, lister=lister)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await actor.start()
    run = asyncio.create_task(actor.run())
    scrapes: list[float] = []
    scraper = asyncio.create_task(_scrape(rt, actor, scrape_every, scrapes)) if scrape_every else None
    core = actor.core
    while not actor.client.connections or core.text_frames.get("DONE", 0) < len(actor.client.connections):
        await asyncio.sleep(0.05)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    frames = core.counts["frames"] - len(actor.client.connections)  # minus the snapshot arrays
    if scraper is not None:
        scraper.cancel()
    run.cancel()
    await actor.stop()
    rt.close()
    ctx.destroy(0)
    return {"frames": frames, "seconds": wall, "cpu_seconds": cpu, "published": actor.published,
            "scrapes": len(scrapes), "scrape_ms_p50": round(sorted(scrapes)[len(scrapes) // 2] * 1e3, 3)
            if scrapes else None}


async def _scrape(rt: Any, actor: Any, every: float, took: list[float]) -> None:
    """What a Prometheus scrape does in the actor: collect and render every series."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from actors.runtime.metrics import ActorCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ActorCollector("feed", lambda: rt.stats_message(actor).stats, actor.metric_series(),
                                     actor.histograms, actor.breaker_state))
    while True:
        await asyncio.sleep(every)
        t0 = time.perf_counter()
        generate_latest(registry)
        took.append(time.perf_counter() - t0)


def _serve(frames_per_conn: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(frames_per_conn)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"ws://127.0.0.1:{port}"
        time.sleep(0.05)
    raise RuntimeError("bench server did not start")


def run(frames: int = 60_000, tokens: int = 2000) -> dict[str, Any]:
    one = [str(10**76 + i) for i in range(20)]
    many = [str(10**76 + i) for i in range(tokens)]
    proc, url = _serve(frames)
    try:
        n, secs = asyncio.run(_bare(url, one))
        feed1 = asyncio.run(_feed(url, one, 1))
    finally:
        proc.terminate()
        proc.wait()
    conns = max(1, tokens // 200)
    proc, url = _serve(frames // conns)
    try:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        feed_many = asyncio.run(_feed(url, many, conns))
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        proc.terminate()
        proc.wait()
    bare_rate = n / secs
    feed_rate = feed1["frames"] / feed1["seconds"]
    return {
        "results": {
            "bare_websockets_json_frames_per_s": round(bare_rate),
            "feed_frames_per_s_1_connection": round(feed_rate),
            "feed_published_per_s_1_connection": round(feed1["published"] / feed1["seconds"]),
            f"feed_frames_per_s_{tokens}_tokens_{conns}_connections": round(feed_many["frames"] / feed_many["seconds"]),
            f"feed_cpu_us_per_frame_{tokens}_tokens":
                round(feed_many["cpu_seconds"] / max(1, feed_many["frames"]) * 1e6, 1),
            f"max_rss_mib_after_{tokens}_tokens": round(rss1 / 1024, 1),
            "rss_growth_mib_for_many_tokens": round((rss1 - rss0) / 1024, 1),
            "pid": os.getpid(),
        },
        "ratios": {"feed_over_bare": round(feed_rate / bare_rate, 3)},
        "notes": "one frame = one price_change of one level; server and client share the 2 cores",
    }


if __name__ == "__main__":
    from bench.common import write_result

    r = run()
    print(write_result("feed_throughput", r))
    print(json.dumps(r, indent=1))
