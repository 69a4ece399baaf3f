"""The whole system on a test anvil: venue, nonce, feed, router and executor as
real processes over real ZeroMQ. Arbitrage is found, executed and settled;
the breaker opens when the venue's order endpoint fails, every actor sees it,
the router stops signalling, and trading resumes after HALF_OPEN."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from web3 import Web3

from actors.cli import status
from bus import topics
from bus.context import destroy, new_context
from bus.messages import TxResult
from bus.sockets import Subscriber
from config.loader import DEFAULT_PATH, load
from sandbox.deploy import Deployment, MarketInfo, balances, contract
from sandbox.testbed import context_as
from tests.helpers import wait_until
from tests.integration import scrape
from tests.integration.browser import chromium, console_errors, text
from tests.integration.conftest import POLYARB, ROOT, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TRADER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
INJECTED = 15_375_352  # pUSD sent to the trader behind the system's back
SCREENSHOTS = ROOT / "run" / "screenshots"


@contextmanager
def _journal(tmp_path) -> Iterator[Any]:
    """The executor's journal in a finished test's state folder (read after the run)."""
    from actors.executor.journal import Journal
    from actors.runtime.clock import SystemClock

    [path] = (tmp_path / "state").glob("executor-*.sqlite")
    journal = Journal(path, SystemClock())
    try:
        yield journal
    finally:
        journal.close()


def journal_outcomes(tmp_path) -> list[tuple[str, str, int, int]]:
    """The executors' durable books: the final outcome of every execution."""
    with _journal(tmp_path) as journal:
        return journal.outcomes()


def booked_collateral(tmp_path) -> int:
    """What the executor's books say the wallet's pUSD moved: every outcome's P&L plus its
    gas (paid in POL, not pUSD), less the sets the sell reserve holds (collateral split
    into tokens, not spent: worth one pUSD a set)."""
    with _journal(tmp_path) as journal:
        return sum(pnl + gas for _, _, pnl, gas in journal.outcomes()) - journal.reserved()


def snapshot(cfg) -> dict:
    latest = asyncio.run(status.collect(cfg, 0.5))
    return {name: e["stats"] for name, e in latest.items()}


def all_ended(cfg) -> bool:
    """Nothing queued, running or left PENDING at the executor, no sell-reserve top-up
    under way: every execution's money is booked (PENDING ones are finished by its
    reconciliation, e.g. a merge whose nonce a chain restart lost is sent again after
    the receipt timeout)."""
    e = snapshot(cfg)["executor"]["executor"]
    return (e["queue_size"] == 0 and e["in_flight"] == 0 and e["idempotency"]["records"]["IN_PROGRESS"] == 0
            and not e["sell_reserve"]["busy"])  # no top-up of the sell reserve under way or unfinished


def edit(path, fn) -> None:
    raw = yaml.safe_load(path.read_text())
    fn(raw)
    tmp = path.with_suffix(".edit")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.replace(tmp, path)


class Results:
    """Every TxResult the executor publishes, collected in a background thread."""

    def __init__(self, cfg) -> None:
        import threading

        self.items: list[TxResult] = []
        self.traces: dict[str, str] = {}  # idempotency key -> the trace id its result came with
        self.gaps = 0
        self._stop = False
        self._t = threading.Thread(target=lambda: asyncio.run(self._run(cfg)), daemon=True)
        self._t.start()

    async def _run(self, cfg) -> None:
        ctx = context_as(cfg, "reader")
        sub = Subscriber(ctx, [cfg.bus.endpoints["executor"].pub], [topics.prefix(topics.TX)])
        while not self._stop:
            try:
                batch = await asyncio.wait_for(sub.recv_batch(), 0.2)
            except TimeoutError:
                continue
            self.items += [r.env.body for r in batch if isinstance(r.env.body, TxResult)]
            self.traces.update({r.env.body.idempotency_key: r.env.trace_id for r in batch
                                if isinstance(r.env.body, TxResult)})
        self.gaps = sub.tracker.gaps
        sub.close()
        destroy(ctx, 0)

    def stop(self) -> None:
        self._stop = True
        self._t.join(5)


@dataclass
class World:
    path: Path
    cfg: Any
    w3: Web3
    dep: Deployment
    start: int  # the trader's collateral before any trade


def stranger_hears_and_gets_nothing(cfg) -> tuple[int, int]:
    """(messages heard, RPC answers) of a peer whose Curve key no config names, subscribed to
    every actor and calling every RPC server (a halt, an allocation): both must be 0."""
    import dataclasses

    import zmq

    from actors.runtime.clock import SystemClock
    from bus.codec import Stamper
    from bus.curve import KeyPair, for_config
    from bus.sockets import RpcClient, RpcTimeout

    async def run() -> tuple[int, int]:
        public, secret = zmq.curve_keypair()
        ctx = new_context(dataclasses.replace(for_config(cfg, "reader"), own=KeyPair(public, secret)))
        heard = answered = 0
        try:
            sub = Subscriber(ctx, [e.pub for e in cfg.bus.endpoints.values()], [b""])
            try:
                heard = len(await asyncio.wait_for(sub.recv_batch(), 1.5))
            except TimeoutError:
                pass
            sub.close()
            for name, e in cfg.bus.endpoints.items():
                if e.rpc is None:
                    continue
                client = RpcClient(ctx, e.rpc, Stamper("stranger", SystemClock()), timeout_ms=300, retries=0)
                try:
                    await client.call("halt" if name == "executor" else "allocate", {"request_id": "x"})
                    answered += 1
                except RpcTimeout:
                    pass
                finally:
                    client.close()
        finally:
            destroy(ctx, 0)
        return heard, answered

    return asyncio.run(run())


def badge_within_2_s(driver, state: str, after_ms: int) -> None:
    """The page's breaker badge showed `state` within 2 s of the executor's transition
    to it at or after `after_ms` (the page logs when it showed each state, next to the
    transition's time)."""
    def shown():
        log = driver.execute_script("return window.polyarbBadgeLog") or []
        return next((e for e in log if e[1] == state and e[2] is not None and e[2] >= after_ms), None)

    wait_until(shown, timeout=10, what=f"the page's badge says {state}")
    shown_ms, _, since_ms = shown()
    assert shown_ms - since_ms <= 2000, f"the badge said {state} {shown_ms - since_ms} ms after the transition"


def start_world(tmp_path, anvil, procs, arbitrage_per_minute: int, *, arbitrage: dict | None = None,
                venue_faults: dict | None = None, **sections) -> World:
    """anvil + venue + nonce + feed + router as real processes (the executor is
    the caller's to start), with the venue's chain bootstrapped. `arbitrage` and
    `venue_faults`: changes to the venue's gap settings and to its default faults."""
    venue = {"updates_per_second": 10, "arbitrage": {
        "rate_per_minute": arbitrage_per_minute, "margin": "0.05", "lifetime_seconds": 6, **(arbitrage or {})}}
    if venue_faults:
        venue["faults"] = {**yaml.safe_load(DEFAULT_PATH.read_text())["sandbox"]["venue"]["faults"], **venue_faults}
    path = write_config(
        tmp_path, anvil, anvil_port=int(anvil.rsplit(":", 1)[1]), own_hosts=True,  # as on separate hosts
        sandbox={"venue": venue},
        retry_policy={"max_retries": 1, "base_delay_ms": 20, "max_delay_ms": 100},
        runtime={"stats_interval_seconds": 0.25, "log_levels": {"feed": "DEBUG"}},  # the feed's flushes, traced
        executor={"reconcile_seconds": 1, **sections.pop("executor", {})}, **sections,
    )
    cfg = load(path)
    for name in ("venue", "nonce", "feed", "router"):
        procs("--config", str(path), "actor", name, name=name)
    w3 = Web3(Web3.HTTPProvider(anvil))
    wait_until(lambda: snapshot(cfg).get("venue", {}).get("venue", {}).get("chain_ready"), timeout=90,
               what="venue bootstrapped the chain")
    raw = json.loads(subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "sandbox.deploy", "--config", str(path)],
                                    capture_output=True, text=True, timeout=60).stdout)
    dep = Deployment(**{**raw, "markets": [MarketInfo(**m) for m in raw["markets"]]})
    return World(path, cfg, w3, dep, balances(w3, dep, TRADER)["collateral"])


def test_trades_settle_on_chain_and_the_breaker_halts_and_resumes(tmp_path, anvil, procs):
    world = start_world(tmp_path, anvil, procs, 40,
                        circuit_breaker={"open_timeout_seconds": 4, "consecutive_failures_threshold": 3})
    path, cfg, w3, dep, start = world.path, world.cfg, world.w3, world.dep, world.start
    results = Results(cfg)
    procs("--config", str(path), "actor", "executor", name="executor")
    procs("--config", str(path), "actor", "dashboard", name="dashboard")
    page = contextlib.ExitStack()
    try:
        # 1. Arbitrage found, executed, settled; the chain agrees with the books.
        wait_until(lambda: sum(r.success for r in results.items) >= 2, timeout=120, what="two successful trades")
        # The dashboard's page, in a real browser: every running actor up, the trades listed.
        driver = page.enter_context(chromium(tmp_path / "browser"))
        driver.get(f"http://{cfg.dashboard.listen}/")
        running = ("venue", "nonce", "feed", "router", "executor")
        wait_until(lambda: all((text(driver, f"actor-{a}") or "").split("\t")[1:2] == ["up"] for a in running),
                   timeout=30, what="the page shows every running actor up")
        wait_until(lambda: "SUCCESS" in (text(driver, "executions") or ""), timeout=30, what="trades on the page")
        # `polyarb top`, the same facts in a terminal: one frame.
        top = subprocess.run([POLYARB, "--config", str(path), "top", "--once", "--seconds", "1.5"],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
        assert top.returncode == 0, top.stderr
        assert "CLOSED" in top.stdout and "realized P&L" in top.stdout and "SUCCESS" in top.stdout, top.stdout
        assert all(f"{a} " in top.stdout for a in running), top.stdout
        # CurveZMQ: a stranger's key (no config names it) is refused by every server, counted by each.
        assert stranger_hears_and_gets_nothing(cfg) == (0, 0)
        wait_until(lambda: all(snapshot(cfg)[a]["bus"]["security"]["zap_denied"] >= 1 for a in running),
                   timeout=15, what="every actor counted the stranger")
        assert all(snapshot(cfg)[a]["bus"]["security"]["rpc_refused"] == 0 for a in running)
        ex = snapshot(cfg)["executor"]["executor"]
        assert ex["successful_executions"] >= 2 and ex["realized_pnl_micro"] > 0
        wait_until(lambda: snapshot(cfg)["executor"]["executor"]["queue_size"] == 0, timeout=30)
        # Every actor serves its metrics and is healthy.
        names = ("venue", "nonce", "feed", "router", "executor")
        wait_until(lambda: all(scrape.health(cfg, a) == 200 for a in names), timeout=30, what="every /healthz 200")
        from actors.executor.metrics import SERIES as EXECUTOR
        from actors.feed.metrics import SERIES as FEED
        from actors.nonce.metrics import SERIES as NONCE
        from actors.router.metrics import SERIES as ROUTER

        # Every declared figure is there (a path that matches no stats key never has a sample).
        no_rpc = ["polyarb_rpc_requests_total", "polyarb_rpc_malformed_total", "polyarb_rpc_errors_total"]
        follower = ["polyarb_breaker_transitions_seen_total", "polyarb_breaker_heard_seconds_ago"]
        for actor, series, allowed in (("executor", EXECUTOR, follower), ("nonce", NONCE, []), ("feed", FEED, []),
                                       ("router", ROUTER, no_rpc), ("venue", (), no_rpc)):  # no RPC methods
            assert [n for n in scrape.missing(cfg, actor, series) if n not in allowed] == [], actor
        m = scrape.metrics(cfg, "executor")
        assert m[("polyarb_executions_total", (("status", "SUCCESS"),))] >= 2
        assert m[("polyarb_tick_to_trade_seconds_count", ())] >= 2
        trips = m[("polyarb_breaker_trips_total", ())]

        # 2. The order endpoint fails: the breaker opens and every actor sees it.
        rejecting_ms = time.time_ns() // 1_000_000
        edit(path, lambda raw: raw["sandbox"]["venue"]["faults"].update(reject_orders=True))
        wait_until(lambda: all(s.get("breaker", {}).get("state") == "OPEN" for s in snapshot(cfg).values()),
                   timeout=120, what="every actor sees OPEN")
        badge_within_2_s(driver, "OPEN", rejecting_ms)
        wait_until(lambda: all(scrape.breaker(cfg, a) == "OPEN" for a in names), timeout=10,
                   what="every actor's polyarb_breaker_state says OPEN")
        assert scrape.metrics(cfg, "executor")[("polyarb_breaker_trips_total", ())] >= trips + 1
        router = snapshot(cfg)["router"]["router"]
        assert any(k.startswith("breaker_") for k in router["suppressed"])
        sent = router["signals_published"]

        # 3. Recovery: HALF_OPEN probes, then CLOSED, trading again.
        healed_ms = time.time_ns() // 1_000_000
        edit(path, lambda raw: raw["sandbox"]["venue"]["faults"].update(reject_orders=False))
        wait_until(lambda: snapshot(cfg)["executor"]["breaker"]["state"] in ("HALF_OPEN", "CLOSED"), timeout=30)
        wait_until(lambda: snapshot(cfg)["executor"]["breaker"]["state"] == "CLOSED", timeout=150,
                   what="probes succeeded")
        badge_within_2_s(driver, "CLOSED", healed_ms)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / "dashboard-system-test.png"))
        assert console_errors(driver) == []
        page.close()
        assert snapshot(cfg)["router"]["router"]["signals_published"] > sent
        wait_until(lambda: all(scrape.breaker(cfg, a) == "CLOSED" for a in names), timeout=10,
                   what="every actor's polyarb_breaker_state says CLOSED")

        # 4. The kill switch: FORCED_OPEN everywhere within a second or so, then resume.
        out = subprocess.run([POLYARB, "--config", str(path), "halt", "--reason", "test halt"],
                             capture_output=True, text=True, timeout=30)
        assert "FORCED_OPEN" in out.stdout
        wait_until(lambda: all(s.get("breaker", {}).get("state") == "FORCED_OPEN"
                               for s in snapshot(cfg).values()), timeout=10)
        subprocess.run([POLYARB, "--config", str(path), "resume"], check=True, timeout=30)
        wait_until(lambda: snapshot(cfg)["executor"]["breaker"]["state"] == "CLOSED", timeout=10)

        # 5. Quiesce (halt, nothing queued or in flight), then reconcile with the chain.
        subprocess.run([POLYARB, "--config", str(path), "halt", "--reason", "reconcile"], check=True, timeout=30)
        wait_until(lambda: (e := snapshot(cfg)["executor"]["executor"])["queue_size"] == 0 and e["in_flight"] == 0,
                   timeout=60, what="executor idle")
        ex = snapshot(cfg)["executor"]["executor"]
        wait_until(lambda: len(results.items) >= ex["total_executions"], timeout=10, what="every TxResult heard")
        wait_until(lambda: snapshot(cfg)["executor"]["executor"]["reconciler"]["checks"] >= 1,
                   timeout=30, what="the reconciler compared the books with the chain")
        assert snapshot(cfg)["executor"]["executor"]["reconciler"]["trips"] == 0, "books and chain parted"

        # 6. Money the books cannot explain (the independent chaos run's 15.375352 pUSD):
        # the reconciler halts trading and says why; an operator resume accepts the chain.
        operator = w3.eth.accounts[0]
        contract(w3, "Collateral", dep.collateral).functions.transfer(TRADER, INJECTED).transact({"from": operator})
        wait_until(lambda: "books differ from the chain: pUSD" in snapshot(cfg)["executor"]["breaker"]["reason"],
                   timeout=30, what="the reconciler tripped the breaker")
        assert "15.375352" in snapshot(cfg)["executor"]["breaker"]["reason"]
        out = subprocess.run([POLYARB, "--config", str(path), "resume", "--reason", "test: a deposit"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        checks = snapshot(cfg)["executor"]["executor"]["reconciler"]["checks"]
        wait_until(lambda: snapshot(cfg)["executor"]["executor"]["reconciler"]["checks"] >= checks + 2,
                   timeout=90, what="two more rounds")  # rounds run only at quiet moments: trading is back on
        assert snapshot(cfg)["executor"]["breaker"]["state"] == "CLOSED"  # the chain accepted: no re-trip

        subprocess.run([POLYARB, "--config", str(path), "halt", "--reason", "reconcile"], check=True, timeout=30)
        wait_until(lambda: (e := snapshot(cfg)["executor"]["executor"])["queue_size"] == 0 and e["in_flight"] == 0,
                   timeout=60, what="executor idle")
        ex = snapshot(cfg)["executor"]["executor"]
        wait_until(lambda: len(results.items) >= ex["total_executions"], timeout=10, what="every TxResult heard")
    finally:
        page.close()
        results.stop()

    # The wallet's collateral moved by exactly what the executor booked:
    # realised P&L plus gas (gas is paid in POL, not collateral). A leg whose
    # unwind did not complete leaves tokens instead of collateral: then only
    # the direction can be checked.
    assert results.gaps == 0, "a TxResult was lost on the bus"
    # `polyarb trace` over this run's logs: one successful execution, from the feed's flush
    # of books that revealed it to its result, in the feed's, router's and executor's lines.
    traced = next(r for r in results.items if r.success and results.traces.get(r.idempotency_key))
    tid = results.traces[traced.idempotency_key]
    out = subprocess.run([POLYARB, "--config", str(path), "trace", tid, "--logs", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    head = out.stdout.splitlines()[0]
    assert all(a in head for a in ("feed", "router", "executor")), out.stdout[:3000]
    by_key = subprocess.run([POLYARB, "--config", str(path), "trace", traced.idempotency_key[:12], "--logs",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert by_key.returncode == 0, by_key.stdout + by_key.stderr
    assert by_key.stdout.startswith(f"trace {tid} (execution {traced.idempotency_key})"), by_key.stdout[:2000]
    delta = balances(w3, dep, TRADER)["collateral"] - start - INJECTED
    heard = sum(r.realized_pnl + r.gas_cost for r in results.items)
    booked = booked_collateral(tmp_path)
    print(f"collateral delta {delta}, booked {booked}, heard {heard}, unhedged legs {ex['unhedged_legs']}, "
          f"open positions {ex['open_positions']}, results {len(results.items)}")
    assert delta == booked  # open positions included: a partial fill books what its legs and unwind moved
    assert ex["batches"] >= 1 and ex["venue"]["batches"] >= 1  # the legs went out as one POST /orders
    assert ex["venue"]["user_channel"]["trade_events"] >= 1  # settlement heard on the user channel
    # Made money: the P&L of every outcome (the sell reserve's sets count at one pUSD each).
    assert sum(pnl + gas for _, _, pnl, gas in journal_outcomes(tmp_path)) > 0
