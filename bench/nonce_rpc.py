"""Nonce allocation over REQ/REP against the real authority process (real
anvil, SQLite WAL), next to a raw pyzmq REQ/REP echo measured in the same run.

    python -m bench.nonce_rpc [--n 3000] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
import zmq
import zmq.asyncio

from actors.nonce.client import NonceClient
from actors.runtime.clock import SystemClock
from bench.common import percentiles_us, write_result
from bus.codec import Stamper
from config.loader import DEFAULT_PATH, load
from sandbox.chain import start_anvil
from sandbox.testbed import free_port

ECHO_SERVER = """
import sys, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.REP); s.bind(sys.argv[1])
while True:
    s.send(s.recv())
"""
# The same shape as our server: asyncio ROUTER.
ASYNC_ECHO_SERVER = """
import asyncio, sys, zmq, zmq.asyncio
async def main():
    ctx = zmq.asyncio.Context(); s = ctx.socket(zmq.ROUTER); s.bind(sys.argv[1])
    while True:
        await s.send_multipart(await s.recv_multipart())
asyncio.run(main())
"""


async def _raw_echo(endpoint: str, n: int) -> list[int]:
    ctx = zmq.asyncio.Context()
    req = ctx.socket(zmq.REQ)
    req.connect(endpoint)
    payload = os.urandom(120)  # about the size of an allocate request
    for _ in range(50):
        await req.send(payload)
        await req.recv()
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        await req.send(payload)
        await req.recv()
        samples.append(time.perf_counter_ns() - t)
    ctx.destroy(0)
    return samples


async def _ready(endpoint: str) -> None:
    ctx = zmq.asyncio.Context()
    await NonceClient(ctx, endpoint, Stamper("bench", SystemClock()), timeout_ms=1000, retries=60).get_stats()
    ctx.destroy(0)


async def _allocations(endpoint: str, n: int, clients: int) -> tuple[list[int], float]:
    ctx = zmq.asyncio.Context()
    cs = [NonceClient(ctx, endpoint, Stamper(f"bench{i}", SystemClock()), timeout_ms=2000, retries=20)
          for i in range(clients)]
    for i in range(50):
        await cs[0].allocate_nonce(f"warm-{i}")
    samples: list[int] = []
    for i in range(n):
        t = time.perf_counter_ns()
        await cs[0].allocate_nonce(f"seq-{i}")
        samples.append(time.perf_counter_ns() - t)

    async def worker(c: NonceClient, k: int) -> None:
        for i in range(n // clients):
            await c.allocate_nonce(f"par-{k}-{i}")

    t = time.perf_counter()
    await asyncio.gather(*(worker(c, k) for k, c in enumerate(cs)))
    rate = (n // clients) * clients / (time.perf_counter() - t)
    ctx.destroy(0)
    return samples, rate


def run(n: int = 3000, clients: int = 4) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp())
    anvil, url = start_anvil(load().sandbox.chain.__class__(block_time_seconds=0), 137)  # type: ignore[union-attr]
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    raw["bus"]["endpoints"] = {k: {"pub": f"tcp://127.0.0.1:{free_port()}", "rpc": f"tcp://127.0.0.1:{free_port()}"}
                               for k in raw["bus"]["endpoints"]}
    raw["chain"]["rpc_url"] = url
    raw["nonce"]["state_dir"] = str(tmp / "state")
    raw["nonce"]["lease_seconds"] = 600
    cfg_path = tmp / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    polyarb = str(Path(sys.executable).with_name("polyarb"))
    actor = subprocess.Popen([polyarb, "--config", str(cfg_path), "actor", "nonce"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    echo_ep, aecho_ep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, echo_ep])
    aecho = subprocess.Popen([sys.executable, "-c", ASYNC_ECHO_SERVER, aecho_ep])
    endpoint = raw["bus"]["endpoints"]["nonce"]["rpc"]
    try:
        asyncio.run(_ready(endpoint))
        raw_samples = asyncio.run(_raw_echo(echo_ep, n))
        araw_samples = asyncio.run(_raw_echo(aecho_ep, n))
        samples, rate = asyncio.run(_allocations(endpoint, n, clients))
    finally:
        for p in (actor, echo, aecho, anvil):
            p.send_signal(signal.SIGTERM)
        for p in (actor, echo, aecho, anvil):
            p.wait(15)
    alloc, echo_p, aecho_p = percentiles_us(samples), percentiles_us(raw_samples), percentiles_us(araw_samples)
    return {
        "results": {
            "allocate_round_trip": alloc,
            "allocations_per_second_sequential": round(1e9 / (sum(samples) / len(samples))),
            f"allocations_per_second_{clients}_clients": round(rate),
            "raw_echo_asyncio_req_to_sync_rep": echo_p,
            "raw_echo_asyncio_req_to_asyncio_router": aecho_p,
        },
        "ratios": {
            "allocate_p50_over_async_echo_p50": round(alloc["p50_us"] / aecho_p["p50_us"], 2),
            "allocate_p99_over_async_echo_p99": round(alloc["p99_us"] / aecho_p["p99_us"], 2),
            "allocate_p50_over_sync_echo_p50": round(alloc["p50_us"] / echo_p["p50_us"], 2),
        },
        "notes": "allocation = REQ -> ROUTER, msgspec envelope, asyncio lock, SQLite WAL commit, reply cache",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=4)
    a = ap.parse_args()
    result = run(a.n, a.clients)
    print(write_result("nonce_rpc", result))
    print(yaml.safe_dump(result["results"] | {"ratios": result["ratios"]}, sort_keys=False))


if __name__ == "__main__":
    main()
