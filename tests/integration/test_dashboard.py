"""The dashboard program (`polyarb actor dashboard`, a real process on the real bus),
read by a real headless browser: the page loads with no console error, shows every
actor, shows the breaker badge OPEN within 2 s of the executor's broadcast and
CLOSED again after, lists an execution as it happens; the program stops at once on
SIGTERM with the page's event stream open. The actors here are publishers the test
drives (the whole system's page is checked in test_system)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest

from actors.domain.enums import CircuitState, TxStatus
from actors.runtime.clock import SystemClock
from bus import topics
from bus.codec import Stamper
from bus.context import destroy
from bus.curve import for_config, start_authenticator
from bus.messages import BreakerState, Stats, TxResult
from bus.sockets import Publisher
from config.loader import load
from sandbox.testbed import context_as, write_config
from tests.helpers import eventually
from tests.integration.browser import chromium, console_errors, text
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ACTORS = ("nonce", "executor", "feed", "router", "alerts", "venue")
SCREENSHOTS = ROOT / "run" / "screenshots"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - the test's loopback page
        return json.loads(resp.read())


async def test_the_page_shows_every_actor_and_the_breaker_within_2_s(tmp_path: Path, procs):
    path = write_config(tmp_path, "http://127.0.0.1:9", dashboard={"push_interval_seconds": 0.2})
    cfg = load(path)
    ctxs = {a: context_as(cfg, a) for a in ACTORS}  # each publisher speaks as its actor (its Curve keys)
    zaps = [start_authenticator(ctxs[a], for_config(cfg, a)) for a in ACTORS]  # servers admit known keys only
    pubs = {a: Publisher(ctxs[a], cfg.bus.endpoints[a].pub, Stamper(a, SystemClock())) for a in ACTORS}
    breaker = {"now": BreakerState(state=CircuitState.CLOSED, reason="initial", since_ns=time.time_ns())}

    async def actors_publish() -> None:  # stats as every actor does, and the executor's breaker broadcast
        while True:
            for name, pub in pubs.items():
                pub.publish(topics.stats(name), Stats(actor=name, stats={
                    "summary": {"ok": 1}, "runtime": {"uptime_seconds": 1.0, "pid": 1},
                    "breaker": {"state": str(breaker["now"].state)}}))
            pubs["executor"].publish(topics.breaker_state(), breaker["now"])
            await asyncio.sleep(0.1)

    beat = asyncio.create_task(actors_publish())
    dashboard = procs("--config", str(path), "actor", "dashboard", name="dashboard")
    url = f"http://{cfg.dashboard.listen}"
    try:
        def all_up() -> bool:
            try:
                return all(a["up"] for a in get_json(f"{url}/api/state")["actors"])
            except OSError:
                return False

        await eventually(lambda: asyncio.to_thread(all_up), timeout=30, what="every actor up in /api/state")
        state = get_json(f"{url}/api/state")
        assert [a["name"] for a in state["actors"]] == list(ACTORS)
        assert state["breaker"]["state"] == "CLOSED" and state["world"]["chain_id"] == cfg.chain.chain_id

        with chromium(tmp_path / "profile") as driver:
            await asyncio.to_thread(driver.get, f"{url}/")

            def badge() -> str | None:
                return text(driver, "breaker-badge")

            await eventually(lambda: asyncio.to_thread(lambda: badge() == "CLOSED"), timeout=20,
                             what="the page got the state")
            rows = await asyncio.to_thread(
                lambda: {a: text(driver, f"actor-{a}") or "" for a in ACTORS})
            assert all(row.split("\t")[:2] == [a, "up"] for a, row in rows.items()), rows

            for state_now, reason in ((CircuitState.OPEN, "3 consecutive failures"),
                                      (CircuitState.CLOSED, "3 probe calls succeeded")):
                breaker["now"] = BreakerState(state=state_now, reason=reason, since_ns=time.time_ns())
                await eventually(lambda s=state_now: asyncio.to_thread(lambda: badge() == str(s)), timeout=10,
                                 what=f"the badge says {state_now}")
                shown_ms, shown, since_ms = (await asyncio.to_thread(
                    driver.execute_script, "return window.polyarbBadgeLog"))[-1]
                assert shown == str(state_now) and shown_ms - since_ms <= 2000, (shown_ms - since_ms, shown)

            pubs["executor"].publish(topics.tx_result(), TxResult(
                signal_id="s1", idempotency_key="k" * 64, market="0xm", status=TxStatus.SUCCESS, success=True,
                attempt=1, realized_pnl=2_500_000, gas_cost=1_000, legs=2, latency_us=12_300), trace_id="t1")
            await eventually(lambda: asyncio.to_thread(
                lambda: "2.500000" in (text(driver, "executions") or "")), timeout=10,
                what="the execution listed")
            assert "2.500000" in (await asyncio.to_thread(text, driver, "pnl-total") or "")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(driver.save_screenshot, str(SCREENSHOTS / "dashboard-test.png"))
            assert await asyncio.to_thread(console_errors, driver) == []

            # SIGTERM with the page's event stream open: the program stops at once, cleanly.
            started = time.monotonic()
            assert await asyncio.to_thread(dashboard.terminate) == 0
            assert time.monotonic() - started < 5
    finally:
        beat.cancel()
        for pub in pubs.values():
            pub.close(0)
        for zap in zaps:
            zap.stop()
        for ctx in ctxs.values():
            destroy(ctx, 0)
