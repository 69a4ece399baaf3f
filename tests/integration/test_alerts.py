"""The alerts program (`polyarb actor alerts`, a real process on the real bus) against a
local webhook sink: exactly one POST per breaker transition, retried after a 500, none
lost and none repeated across a SIGKILL of the alerts program."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from actors.cli import status
from actors.domain.enums import CircuitState
from actors.runtime.clock import SystemClock
from bus import topics
from bus.codec import Stamper
from bus.context import destroy
from bus.curve import for_config, start_authenticator
from bus.messages import BreakerState
from bus.sockets import Publisher
from config.loader import load
from sandbox.testbed import context_as, free_port, write_config
from tests.helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Sink:
    """A webhook endpoint: the first POST answers 500, the others 200."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.requests = 0
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests == 1:
            return web.Response(status=500, text="try again")
        self.bodies.append(json.loads(await request.text()))
        return web.Response(text="ok")

    def keys(self) -> list[str]:
        return [b["polyarb"]["key"] for b in self.bodies]


async def test_one_alert_per_transition_retried_after_a_500_and_none_repeated_after_a_kill(tmp_path, procs):
    sink = Sink()
    app = web.Application()
    app.router.add_post("/hook/secret-token", sink.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sink.port).start()
    path = write_config(tmp_path, "http://127.0.0.1:9", alerts={
        "webhooks": [f"http://127.0.0.1:{sink.port}/hook/secret-token"], "state_dir": str(tmp_path / "state"),
        "actor_silent_seconds": 3600})
    cfg = load(path)
    ctx = context_as(cfg, "executor")  # the test speaks as the executor (its Curve keys)
    zap = start_authenticator(ctx, for_config(cfg, "executor"))  # a server admits only known keys
    executor = Publisher(ctx, cfg.bus.endpoints["executor"].pub, Stamper("executor", SystemClock()))
    state = {"now": BreakerState(state=CircuitState.CLOSED, reason="initial", since_ns=1)}

    async def broadcast() -> None:  # as the executor does: on change and every 0.1 s
        while True:
            executor.publish(topics.breaker_state(), state["now"])
            await asyncio.sleep(0.1)

    beat = asyncio.create_task(broadcast())
    alerts = procs("--config", str(path), "actor", "alerts", name="alerts")
    try:
        async def heard(state: str) -> bool:  # the alerts program has heard the executor's broadcast
            latest = await status.collect(cfg, 0.3)
            return latest.get("alerts", {}).get("stats", {}).get("alerts", {}).get("breaker_heard") == state

        await eventually(lambda: heard("CLOSED"), timeout=30, what="the alerts program heard CLOSED")
        state["now"] = BreakerState(state=CircuitState.OPEN, reason="3 consecutive failures", since_ns=2)
        await eventually(lambda: sink.keys() == ["breaker:OPEN:2"], timeout=30, what="the OPEN alert, after a 500")
        state["now"] = BreakerState(state=CircuitState.CLOSED, reason="3 probe calls succeeded", since_ns=3)
        await eventually(lambda: len(sink.bodies) == 2, timeout=30, what="the CLOSED alert")
        assert sink.keys() == ["breaker:OPEN:2", "breaker:CLOSED:3"] and sink.requests == 3
        opened = sink.bodies[0]
        assert opened["text"] == opened["content"] == "PolyArb-X breaker CLOSED -> OPEN: 3 consecutive failures"

        # The outbox has recorded both deliveries (a kill between a webhook's 200 and that record
        # sends the alert once more: at least once, the key lets a receiver drop it; CI once
        # killed in that window). Then the kill: what it recorded is never sent again.
        async def recorded() -> bool:
            latest = await status.collect(cfg, 0.3)
            return latest.get("alerts", {}).get("stats", {}).get("summary", {}).get("waiting") == 0
        await eventually(recorded, timeout=30, what="both deliveries recorded in the outbox")
        alerts.kill9()  # the outbox remembers what it sent
        procs("--config", str(path), "actor", "alerts", name="alerts")
        await eventually(lambda: heard("CLOSED"), timeout=30, what="the restarted alerts program heard CLOSED")
        state["now"] = BreakerState(state=CircuitState.FORCED_OPEN, reason="operator halt", since_ns=4)
        await eventually(lambda: len(sink.bodies) == 3, timeout=30, what="the halt alert after the restart")
        # A later transition proves more heartbeats and delivery passes went by: nothing was sent twice.
        state["now"] = BreakerState(state=CircuitState.CLOSED, reason="operator resume", since_ns=5)
        await eventually(lambda: len(sink.bodies) >= 4, timeout=30, what="the resume alert")
        assert sink.keys() == ["breaker:OPEN:2", "breaker:CLOSED:3", "breaker:FORCED_OPEN:4", "breaker:CLOSED:5"]
        log = (tmp_path / "alerts-0.log").read_text() + (tmp_path / "alerts-1.log").read_text()
        assert "secret-token" not in log  # a webhook URL's secret never reaches a log
    finally:
        beat.cancel()
        executor.close(0)
        zap.stop()
        destroy(ctx, 0)
        await runner.cleanup()
