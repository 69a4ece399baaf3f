"""Nonce allocation over REQ/REP against the real authority process (real
anvil, SQLite WAL), next to a raw pyzmq REQ/REP echo measured in the same run;
with CurveZMQ off and on (bus.security), alternated, and the bus's PUB/SUB
throughput with CurveZMQ off and on (bus.sockets, one process, 200-byte bodies).

    python -m bench.nonce_rpc [--n 3000] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
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
from bus.context import destroy, new_context
from bus.curve import KeyStore, for_config, identities
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


async def _ready(endpoint: str, cfg: Any) -> None:
    ctx = new_context(for_config(cfg, "executor"))
    await NonceClient(ctx, endpoint, Stamper("bench", SystemClock()), timeout_ms=1000, retries=60).get_stats()
    ctx.destroy(0)


async def _allocations(endpoint: str, n: int, clients: int, cfg: Any) -> tuple[list[int], float]:
    ctx = new_context(for_config(cfg, "executor"))
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


def _config(tmp: Path, url: str, secure: bool) -> tuple[Path, Any]:
    """A config of its own (fresh ports, state and keys), CurveZMQ on or off."""
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    raw["bus"]["endpoints"] = {k: {"pub": f"tcp://127.0.0.1:{free_port()}", "rpc": f"tcp://127.0.0.1:{free_port()}"}
                               for k in raw["bus"]["endpoints"]}
    raw["bus"]["security"] = {"enabled": secure, "keys_dir": str(tmp / "keys")}
    raw["chain"]["rpc_url"] = url
    raw["nonce"]["state_dir"] = str(tmp / "state")
    raw["nonce"]["lease_seconds"] = 600
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load(path)
    KeyStore(cfg.bus.security.keys_dir).init(identities(cfg))
    return path, cfg


def _authority(tmp: Path, url: str, secure: bool) -> tuple[subprocess.Popen[bytes], str, Any]:
    """A nonce authority process on its own config and state; (process, endpoint, config)."""
    path, cfg = _config(tmp, url, secure)
    polyarb = str(Path(sys.executable).with_name("polyarb"))
    actor = subprocess.Popen([polyarb, "--config", str(path), "actor", "nonce"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return actor, cfg.bus.endpoints["nonce"].rpc, cfg


def _allocate_run(tmp: Path, url: str, secure: bool, n: int, clients: int) -> tuple[list[int], float]:
    actor, endpoint, cfg = _authority(tmp, url, secure)
    try:
        asyncio.run(_ready(endpoint, cfg))
        return asyncio.run(_allocations(endpoint, n, clients, cfg))
    finally:
        actor.send_signal(signal.SIGTERM)
        actor.wait(15)


async def _pubsub_rate(cfg: Any, n: int) -> float:
    """Messages per second from one Publisher to one Subscriber (bus.sockets) in one process."""
    from bus.curve import start_authenticator
    from bus.messages import Stats
    from bus.sockets import Publisher, Subscriber

    pub_sec, sub_sec = for_config(cfg, "feed"), for_config(cfg, "router")
    pctx, sctx = new_context(pub_sec), new_context(sub_sec)
    zap = start_authenticator(pctx, pub_sec) if pub_sec is not None else None
    endpoint = cfg.bus.endpoints["feed"].pub
    pub = Publisher(pctx, endpoint, Stamper("feed", SystemClock()))
    sub = Subscriber(sctx, [endpoint], [b""])
    body = Stats(actor="feed", stats={"x": "y" * 160})
    try:
        while True:  # joined
            pub.publish(b"stats.feed", body)
            try:
                await asyncio.wait_for(sub.recv_batch(), 0.05)
                break
            except TimeoutError:
                continue
        got, t = 0, time.perf_counter()
        sent = 0
        while got < n:
            while sent - got < 5_000 and sent < n + 5_000:
                pub.publish(b"stats.feed", body)
                sent += 1
            try:
                got += len(await asyncio.wait_for(sub.recv_batch(), 1.0))
            except TimeoutError:
                break
        return got / (time.perf_counter() - t)
    finally:
        sub.close()
        pub.close(0)
        if zap is not None:
            zap.stop()
        destroy(pctx, 0)
        destroy(sctx, 0)


def run(n: int = 3000, clients: int = 4) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp())
    anvil, url = start_anvil(load().sandbox.chain.__class__(block_time_seconds=0), 137)  # type: ignore[union-attr]
    echo_ep, aecho_ep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, echo_ep])
    aecho = subprocess.Popen([sys.executable, "-c", ASYNC_ECHO_SERVER, aecho_ep])
    runs: dict[bool, list[tuple[list[int], float]]] = {False: [], True: []}
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        raw_samples = asyncio.run(_raw_echo(echo_ep, n))
        araw_samples = asyncio.run(_raw_echo(aecho_ep, n))
        for round_ in range(2):  # alternated: the machine's drift hits both
            for secure in (False, True):
                runs[secure].append(_allocate_run(tmp / f"{round_}-{secure}", url, secure, n, clients))
        for i, secure in enumerate((False, True, False, True)):
            _, cfg = _config(tmp / f"pubsub-{i}", url, secure)
            rates[secure].append(asyncio.run(_pubsub_rate(cfg, 50_000)))
    finally:
        for p in (echo, aecho, anvil):
            p.send_signal(signal.SIGTERM)
        for p in (echo, aecho, anvil):
            p.wait(15)
    samples = [x for s, _ in runs[False] for x in s]
    secure_samples = [x for s, _ in runs[True] for x in s]
    alloc, curve = percentiles_us(samples), percentiles_us(secure_samples)
    echo_p, aecho_p = percentiles_us(raw_samples), percentiles_us(araw_samples)
    rate_off = statistics.median(r for _, r in runs[False])
    rate_on = statistics.median(r for _, r in runs[True])
    bus_off, bus_on = statistics.median(rates[False]), statistics.median(rates[True])
    return {
        "results": {
            "allocate_round_trip": alloc,
            "allocate_round_trip_curve": curve,
            "allocations_per_second_sequential": round(1e9 / (sum(samples) / len(samples))),
            "allocations_per_second_sequential_curve": round(1e9 / (sum(secure_samples) / len(secure_samples))),
            f"allocations_per_second_{clients}_clients": round(rate_off),
            f"allocations_per_second_{clients}_clients_curve": round(rate_on),
            "bus_pubsub_messages_per_second": round(bus_off),
            "bus_pubsub_messages_per_second_curve": round(bus_on),
            "bus_pubsub_rounds": {"off": [round(r) for r in rates[False]], "curve": [round(r) for r in rates[True]]},
            "raw_echo_asyncio_req_to_sync_rep": echo_p,
            "raw_echo_asyncio_req_to_asyncio_router": aecho_p,
        },
        "ratios": {
            "allocate_p50_over_async_echo_p50": round(alloc["p50_us"] / aecho_p["p50_us"], 2),
            "allocate_p99_over_async_echo_p99": round(alloc["p99_us"] / aecho_p["p99_us"], 2),
            "allocate_p50_over_sync_echo_p50": round(alloc["p50_us"] / echo_p["p50_us"], 2),
            "allocate_p50_curve_over_off": round(curve["p50_us"] / alloc["p50_us"], 3),
            "allocate_p99_curve_over_off": round(curve["p99_us"] / alloc["p99_us"], 3),
            "allocations_per_second_curve_over_off": round(rate_on / rate_off, 3),
            "bus_pubsub_curve_over_off": round(bus_on / bus_off, 3),
        },
        "notes": "allocation = REQ -> ROUTER, msgspec envelope, asyncio lock, SQLite WAL commit, reply cache; "
                 "curve = the same with bus.security on (CurveZMQ: every frame encrypted and authenticated; "
                 "the handshake once per connection); two runs each way, alternated",
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
