"""Chaos: the executor is killed with SIGKILL while it trades, and restarted.

Afterwards nothing is lost or done twice: every execution a dead executor
left IN_PROGRESS is reconciled by the next one, the wallet's collateral equals
what the executors booked, and no nonce is left pending."""

from __future__ import annotations

import subprocess

import pytest

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

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(300)]


def test_sigkill_during_trading_loses_and_duplicates_nothing(tmp_path, anvil, procs):
    world = start_world(tmp_path, anvil, procs, 120,
                        circuit_breaker={"consecutive_failures_threshold": 50, "failure_rate_threshold": 1.0})
    path, cfg, w3, dep, start = world.path, world.cfg, world.w3, world.dep, world.start
    results = Results(cfg)
    try:
        executor = procs("--config", str(path), "actor", "executor", name="executor")
        kills = 0
        for _ in range(3):
            # Kill it while an execution is in flight if we can catch one, else after a trade.
            def busy() -> bool:
                ex = snapshot(cfg).get("executor", {}).get("executor", {})
                return ex.get("in_flight", 0) > 0 or ex.get("total_executions", 0) > 0
            wait_until(busy, timeout=120, interval=0.05, what="executor trading")
            executor.kill9()
            kills += 1
            executor = procs("--config", str(path), "actor", "executor", name="executor")
        wait_until(lambda: snapshot(cfg).get("executor", {}).get("executor", {}).get("ready"), timeout=120,
                   what="the last executor reconciled and ready")
        subprocess.run([POLYARB, "--config", str(path), "halt", "--reason", "chaos check"], check=True, timeout=30)
        wait_until(lambda: all_ended(cfg), timeout=120, interval=0.5, what="every execution ended")
        wait_until(lambda: snapshot(cfg)["nonce"]["nonce"]["pending_count"] == 0, timeout=60,
                   what="no nonce left pending")
    finally:
        results.stop()

    # The executors' durable books: the journal's final outcome of every execution
    # (the bus stream of TxResults can lose the last message of a killed process).
    outcomes = journal_outcomes(tmp_path)
    delta = balances(w3, dep, TRADER)["collateral"] - start
    booked = booked_collateral(tmp_path)
    reported = [r.idempotency_key for r in results.items if r.status not in ("DUPLICATE", "REJECTED", "EXPIRED")]
    ex = snapshot(cfg)["executor"]["executor"]
    print(f"kills {kills}, outcomes {len(outcomes)}, results heard {len(results.items)}, delta {delta}, "
          f"booked {booked}, unhedged {ex['unhedged_legs']}, open positions {ex['open_positions']}")
    assert len(reported) == len(set(reported)), "an execution was reported twice"
    assert any(status == "SUCCESS" for _, status, _, _ in outcomes)
    # Nothing executed twice and nothing lost: executions cut by a kill were finished
    # by the next process, and the chain agrees with the books to the micro-USDC.
    # Open positions included: a partial fill books what its legs and unwind moved.
    assert delta == booked
    assert ex["reconciler"]["trips"] == 0 and ex["reconciler"]["checks"] >= 1
