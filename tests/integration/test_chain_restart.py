"""The sandbox chain killed with SIGKILL while the system trades, and restarted on its
state file (as supervisord does): the world continues, the nonce authority recovers the
nonces whose transactions were lost with the chain's last second, and trading resumes."""

from __future__ import annotations

import subprocess

import pytest

from sandbox.deploy import balances
from tests.helpers import wait_until
from tests.integration.conftest import POLYARB, RestartableAnvil
from tests.integration.test_system import (
    TRADER,
    Results,
    all_ended,
    booked_collateral,
    snapshot,
    start_world,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(300)]

def test_anvil_killed_with_sigkill_restarts_on_its_state_and_the_system_converges(tmp_path, procs):
    anvil = RestartableAnvil(tmp_path / "anvil-state.json", "--state-interval", "1")
    url = anvil.start()
    try:
        world = start_world(tmp_path, url, procs, 40,
                            nonce={"resend_after_seconds": 2},
                            circuit_breaker={"consecutive_failures_threshold": 50, "failure_rate_threshold": 1.0})
        cfg, w3 = world.cfg, world.w3
        results = Results(cfg)
        try:
            procs("--config", str(world.path), "actor", "executor", name="executor")
            wait_until(lambda: sum(r.success for r in results.items) >= 1, timeout=120, what="a first trade")
            wait_until(lambda: anvil.state.exists(), timeout=10, what="anvil wrote its state")
            before = len(results.items)

            anvil.kill9()  # what the state file had not caught yet is gone with it
            anvil.start()

            def converged() -> bool:
                nonce = snapshot(cfg).get("nonce", {}).get("nonce", {})
                latest = w3.eth.get_transaction_count(TRADER, "latest")
                return (nonce.get("pending_count") == 0 and nonce.get("chain_latest") == latest
                        and w3.eth.get_transaction_count(TRADER, "pending") == latest)

            wait_until(lambda: any(r.success for r in results.items[before:]), timeout=150,
                       what="trading resumed after the chain restart")
            subprocess.run([POLYARB, "--config", str(world.path), "halt", "--reason", "reconcile"], check=True,
                           timeout=30)
            wait_until(lambda: all_ended(cfg), timeout=120, interval=0.5, what="every execution ended")
            wait_until(converged, timeout=90, interval=0.5, what="no nonce stuck: pending == latest")
            stats = snapshot(cfg)
            delta = balances(w3, world.dep, TRADER)["collateral"] - world.start
        finally:
            results.stop()
    finally:
        anvil.stop()

    nonce = stats["nonce"]["nonce"]
    settler = stats["venue"]["venue"]["clob"]["settler"]
    ex = stats["executor"]["executor"]
    booked = booked_collateral(tmp_path)
    print(f"nonce rewinds {nonce.get('chain_rewinds')}, rebroadcasts {nonce.get('rebroadcasts')}, "
          f"no-ops {nonce.get('noop_replacements')}, venue heals {settler['heals']} "
          f"({settler['rebroadcasts']} settlements), collateral delta {delta}, booked {booked}, "
          f"open positions {ex['open_positions']}")
    assert delta == booked, "the books and the chain parted"
    assert ex["reconciler"]["trips"] == 0
