"""The executor against a venue whose trades fail after MATCHED, whose orders are
delayed, and whose settlement takes seconds, trading binary sets and both kinds of
neg-risk baskets: every execution ends exact, held YES baskets are redeemed after
their event resolves, the reconciler never fires, and the wallet's pUSD equals the
books to the micro-USDC."""

from __future__ import annotations

import subprocess
from collections import Counter

import httpx
import pytest
import yaml

from sandbox.deploy import balances
from tests.helpers import wait_until
from tests.integration.conftest import POLYARB
from tests.integration.test_system import (
    TRADER,
    Results,
    all_ended,
    booked_collateral,
    journal_outcomes,
    snapshot,
    start_world,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_failed_trades_delayed_orders_and_slow_settlement_leave_the_books_exact(tmp_path, anvil, procs):
    world = start_world(tmp_path, anvil, procs, 60,
                        circuit_breaker={"consecutive_failures_threshold": 50, "failure_rate_threshold": 1.0},
                        router={"yes_baskets": True}, trading={"max_locked_capital": "1000"})
    path, cfg, w3 = world.path, world.cfg, world.w3
    raw = yaml.safe_load(path.read_text())
    raw["sandbox"]["venue"]["faults"].update(trade_fail_rate=0.3, delayed_rate=0.2, delay_ms=800,
                                              settlement_latency_ms=3000)
    tmp = path.with_suffix(".edit")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    tmp.replace(path)
    wait_until(lambda: snapshot(cfg)["venue"]["venue"]["faults"]["config"]["trade_fail_rate"] == 0.3,
               timeout=30, what="the venue took the faults")
    results = Results(cfg)
    procs("--config", str(path), "actor", "executor", name="executor")
    try:
        def enough() -> bool:
            faults = snapshot(cfg)["venue"]["venue"]["faults"]
            return (sum(r.success for r in results.items) >= 2 and faults.get("trades_failed", 0) >= 1
                    and faults.get("delayed_orders", 0) >= 1)

        wait_until(enough, timeout=200, interval=0.5, what="trades settled, failed and delayed")
        subprocess.run([POLYARB, "--config", str(path), "halt", "--reason", "check"], check=True, timeout=30)
        wait_until(lambda: all_ended(cfg), timeout=120, what="every execution ended")
        held = snapshot(cfg)["executor"]["executor"]["baskets_held"]
        if held:  # YES baskets wait for their event: resolve it, the executor redeems them
            resp = httpx.post(f"{cfg.router.clob_url}/sandbox/resolve", json={"event": "world-cup-2026"}, timeout=30)
            assert resp.status_code == 200, resp.text
            wait_until(lambda: snapshot(cfg)["executor"]["executor"]["baskets_held"] == 0, timeout=90,
                       what="every held basket redeemed")
        checks = snapshot(cfg)["executor"]["executor"]["reconciler"]["checks"]
        wait_until(lambda: snapshot(cfg)["executor"]["executor"]["reconciler"]["checks"] >= checks + 2, timeout=30,
                   what="the reconciler looked at the quiet books")
        ex = snapshot(cfg)["executor"]["executor"]
        venue = snapshot(cfg)["venue"]["venue"]
    finally:
        results.stop()

    outcomes = journal_outcomes(tmp_path)
    delta = balances(w3, world.dep, TRADER)["collateral"] - world.start
    booked = booked_collateral(tmp_path)
    print(f"outcomes {Counter(s for _, s, _, _ in outcomes)}, held baskets {held}, by strategy "
          f"{ex['by_strategy']}, venue faults {venue['faults']}, "
          f"delta {delta}, booked {booked}, open positions {ex['open_positions']}, reconciler {ex['reconciler']}")
    assert "PENDING" not in {s for _, s, _, _ in outcomes}
    assert delta == booked, "the books and the chain parted"
    # Nothing locked but the sell reserve's sets (no YES basket is left waiting).
    assert ex["reconciler"]["trips"] == 0 and ex["locked_capital_micro"] == ex["sell_reserve"]["sets_micro"]
