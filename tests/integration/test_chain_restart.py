"""The sandbox chain killed with SIGKILL while the system trades, and restarted on its
state file (as supervisord does): the world continues, the nonce authority recovers the
nonces whose transactions were lost with the chain's last second, and trading resumes."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import pytest

from config.loader import load
from sandbox.chain import anvil_args
from sandbox.deploy import balances
from tests.helpers import wait_until
from tests.integration.conftest import POLYARB
from tests.integration.test_system import TRADER, Results, journal_outcomes, snapshot, start_world

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(300)]

_LISTENING = re.compile(rb"Listening on ([\d.]+):(\d+)")


class Anvil:
    """anvil on a state file, dumped every second; restartable on the same port."""

    def __init__(self, state: Path) -> None:
        self.state, self.port, self.proc = state, 0, None

    def start(self) -> str:
        chain = load().sandbox.chain  # type: ignore[union-attr]
        args = [a for a in anvil_args(chain.__class__(block_time_seconds=0, accounts=chain.accounts), 137,
                                      port=self.port) if a != "--silent"]
        args += ["--state", str(self.state), "--state-interval", "1"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in self.proc.stdout:  # type: ignore[union-attr]
            m = _LISTENING.search(line)
            if m:
                self.port = int(m.group(2))
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]
                return f"http://127.0.0.1:{self.port}"
        raise RuntimeError(f"anvil exited with {self.proc.wait()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def test_anvil_killed_with_sigkill_restarts_on_its_state_and_the_system_converges(tmp_path, procs):
    anvil = Anvil(tmp_path / "anvil-state.json")
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
            wait_until(lambda: (e := snapshot(cfg)["executor"]["executor"])["queue_size"] == 0
                       and e["in_flight"] == 0, timeout=60, what="executor idle")
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
    booked = sum(pnl + gas for _, _, pnl, gas in journal_outcomes(tmp_path))
    print(f"nonce rewinds {nonce.get('chain_rewinds')}, rebroadcasts {nonce.get('rebroadcasts')}, "
          f"no-ops {nonce.get('noop_replacements')}, venue heals {settler['heals']} "
          f"({settler['rebroadcasts']} settlements), collateral delta {delta}, booked {booked}, "
          f"open positions {ex['open_positions']}")
    assert delta == booked, "the books and the chain parted"
    assert ex["reconciler"]["trips"] == 0
