"""The default sandbox makes money when nothing is wrong: every venue fault off, the
sandbox's own arbitrage settings and seed, the whole trading system as real processes.
PARTIAL_UNWOUND stays below 5% of the executions that traded, and the realized P&L is
positive.

The issue's figure is 10 minutes at the default rate (`POLYARB_PROFIT_SECONDS=600
POLYARB_PROFIT_RATE=6`); CI runs a shorter profile with gaps opened more often, so that
the share is measured on as many executions.
A short run holds few executions: there the share is judged with its sampling error
(the test fails once the count is too high for a true share below 5%, at 99%
confidence), so the test does not flake on a run of bad luck; the 10-minute profile
asserts the share itself."""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections import Counter

import pytest
import yaml

from config.loader import DEFAULT_PATH, load
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

SECONDS = float(os.environ.get("POLYARB_PROFIT_SECONDS", "90"))
RATE = int(os.environ.get("POLYARB_PROFIT_RATE", "60"))  # gaps per minute (the sandbox default: 6)
FULL = SECONDS >= 600  # the profile: the share itself
TRADED = ("SUCCESS", "PARTIAL_UNWOUND", "FAILED")  # executions that reached the venue (STALE: the book said no)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SECONDS + 300)]


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_binomial_tail():
    assert binomial_tail(0, 10, 0.05) == pytest.approx(1.0)
    assert binomial_tail(1, 10, 0.05) == pytest.approx(1 - 0.95**10)
    assert binomial_tail(13, 120, 0.05) < 0.01 < binomial_tail(12, 120, 0.05)  # 12 of 120 still fits 5%


def test_with_every_fault_off_the_default_sandbox_is_profitable(tmp_path, anvil, procs):
    default = yaml.safe_load(DEFAULT_PATH.read_text())["sandbox"]["venue"]
    assert not any(v for k, v in default["faults"].items()
                   if k.endswith("_rate") or k in ("stall", "reject_orders")), "the default sandbox has a fault on"
    world = start_world(tmp_path, anvil, procs, RATE,
                        arbitrage={k: v for k, v in default["arbitrage"].items() if k != "rate_per_minute"})
    cfg = world.cfg
    results = Results(cfg)
    procs("--config", str(world.path), "actor", "executor", name="executor")
    wait_until(lambda: snapshot(cfg).get("executor", {}).get("executor", {}).get("ready"), timeout=120,
               what="the executor ready")
    states = Counter()
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:  # paced by each snapshot's listening (0.5 s)
        states[snapshot(cfg).get("executor", {}).get("breaker", {}).get("state")] += 1
    subprocess.run([POLYARB, "--config", str(world.path), "halt", "--reason", "measured"], check=True, timeout=30)
    wait_until(lambda: all_ended(cfg), timeout=180, what="every execution ended")
    results._stop = True

    outcomes = journal_outcomes(tmp_path)
    by_status = Counter(status for key, status, _, _ in outcomes if ":" not in key)  # executions, not bookkeeping
    traded = sum(by_status[s] for s in TRADED)
    pnl = sum(p for _, _, p, _ in outcomes)
    print(f"\n{SECONDS:.0f} s at {RATE} gaps/min: {dict(by_status)}; traded {traded}; "
          f"partial unwound {by_status['PARTIAL_UNWOUND'] / max(traded, 1):.1%}; P&L {pnl / 1e6:+.6f} USDC")
    assert set(states) <= {"CLOSED", None}, states  # nothing wrong: the breaker never opened
    assert traded >= 10, by_status
    partial = by_status["PARTIAL_UNWOUND"]
    if FULL:
        assert partial < 0.05 * traded, by_status
    else:  # as many or more partials would happen less than 1% of the time with a true share of 5%
        assert binomial_tail(partial, traded, 0.05) > 0.01, by_status
    assert pnl > 0, (pnl, by_status)
    assert load(world.path).sandbox.venue.seed == 42  # the default seed: the same gaps every run
    # And the books are the chain's, to the micro-USDC.
    assert balances(world.w3, world.dep, TRADER)["collateral"] - world.start == booked_collateral(tmp_path)
