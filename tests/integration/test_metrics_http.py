"""An actor's `/metrics` and `/healthz` over real HTTP (actors.runtime.metrics.MetricsServer)."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from actors.runtime.metrics import ActorCollector, MetricsServer, counter
from sandbox.testbed import free_port
from tests.helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def registry(stats: dict) -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(ActorCollector("nonce", lambda: stats, (counter("polyarb_nonce_allocations_total", "n", "n"),),
                              lambda: ()))
    return r


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as r:
        return r.status, await r.text()


async def test_metrics_parse_and_health_says_which_dependency_is_down():
    stats = {"nonce": {"n": 1}, "breaker": {"state": "CLOSED"}}
    health = {"running": True, "chain_reachable": True}
    port = free_port()
    server = MetricsServer(f"127.0.0.1:{port}", registry(stats), lambda: health)
    task = asyncio.create_task(server.serve(asyncio.sleep))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: server.get_stats()["bound"], timeout=10)
            status, text = await get(session, f"{base}/metrics")
            samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
            assert status == 200 and samples["polyarb_nonce_allocations_total"] == 1
            stats["nonce"]["n"] = 5  # read at scrape time
            _, text = await get(session, f"{base}/metrics")
            assert "polyarb_nonce_allocations_total{actor=\"nonce\"} 5.0" in text

            assert (await get(session, f"{base}/healthz"))[0] == 200
            health["chain_reachable"] = False
            status, text = await get(session, f"{base}/healthz")
            assert status == 503 and '"chain_reachable": false' in text
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert server.stats["scrapes"] == 2 and server.stats["health_checks"] == 2


async def test_a_taken_port_is_counted_and_tried_again_never_fatal():
    port = free_port()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    server = MetricsServer(f"127.0.0.1:{port}", registry({}), lambda: {"running": True})
    task = asyncio.create_task(server.serve(asyncio.sleep, retry_seconds=0.05))
    try:
        await eventually(lambda: server.get_stats()["bind_errors"] >= 2, timeout=10, what="bind tried again")
        assert not task.done() and not server.get_stats()["bound"]
        squatter.close()
        await eventually(lambda: server.get_stats()["bound"], timeout=10, what="bound once the port was free")
        async with aiohttp.ClientSession() as session:
            assert (await get(session, f"http://127.0.0.1:{port}/healthz"))[0] == 200
    finally:
        squatter.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
