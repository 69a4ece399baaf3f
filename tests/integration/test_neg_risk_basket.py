"""NO baskets end to end on a test anvil: the venue opens sell-side gaps on its neg-risk
events only (YES bids summing above 1, so the NO asks sum below m - 1), the router
finds the NO basket of the complete World Cup event and never one of the augmented
NYC event, the executor buys the four NO on the neg-risk exchange and converts them
on the NegRiskAdapter, and the wallet's pUSD moves by exactly what the books say.
YES baskets likewise from buy-side gaps: held until the event resolves, then the
winner redeemed, the books again equal to the chain."""

from __future__ import annotations

import subprocess
from collections import Counter

import httpx
import pytest

from sandbox.deploy import Deployment, balances
from tests.helpers import wait_until
from tests.integration.conftest import POLYARB
from tests.integration.test_system import (
    TRADER,
    Results,
    World,
    all_ended,
    booked_collateral,
    journal_outcomes,
    snapshot,
    start_world,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def start_basket_world(tmp_path, anvil, procs, sell_side_share: float = 1.0, faults: dict | None = None,
                       **sections) -> World:
    """The system world with the venue's gaps on events only (no binary gap): sell-side
    gaps make NO baskets, buy-side YES baskets."""
    return start_world(tmp_path, anvil, procs, 40, arbitrage={"sell_side_share": sell_side_share},
                       venue_faults={"inject_binary_gap": False, **(faults or {})}, **sections)


def event_id(dep: Deployment, slug: str) -> str:
    """The adapter market id of an event (the deployment's JSON keeps events as dicts)."""
    events = [e if isinstance(e, dict) else vars(e) for e in dep.events]
    [ev] = [e for e in events if e["slug"] == slug]
    return str(ev["market_id"]).lower()


def test_no_baskets_are_bought_converted_and_booked_exactly(tmp_path, anvil, procs):
    world = start_basket_world(tmp_path, anvil, procs)
    path, cfg, w3, dep, start = world.path, world.cfg, world.w3, world.dep, world.start
    world_cup, nyc = event_id(dep, "world-cup-2026"), event_id(dep, "nyc-mayor-2029")

    # The router sees the complete event as a basket and the augmented one as not.
    router = wait_until(lambda: (r := snapshot(cfg).get("router", {}).get("router", {})).get(
        "neg_risk_events", {}).get("baskets") and r, timeout=60, what="the router found the baskets")
    assert router["neg_risk_events"]["baskets"] == [world_cup]
    assert router["neg_risk_events"]["skipped"] == {nyc: "augmented"}

    results = Results(cfg)
    procs("--config", str(path), "actor", "executor", name="executor")
    try:
        def converted():
            return [r for r in results.items if r.kind == "NO_BASKET" and r.status == "SUCCESS"]

        wait_until(lambda: len(converted()) >= 2, timeout=150, what="two NO baskets converted")
        for r in converted():
            receipt = w3.eth.get_transaction_receipt(r.tx_hash)
            tx = w3.eth.get_transaction(r.tx_hash)
            assert receipt["status"] == 1 and tx["to"].lower() == dep.neg_risk_adapter.lower()
            assert r.market == world_cup and r.realized_pnl > 0
        ex = snapshot(cfg)["executor"]["executor"]
        assert ex["by_strategy"]["NO_BASKET"]["successful"] >= 2
        assert set(ex["by_strategy"]) == {"NO_BASKET"}  # no binary set had a gap to trade
        out = subprocess.run([POLYARB, "--config", str(path), "status"], capture_output=True, text=True, timeout=30)
        assert "by_strategy=NO_BASKET" in out.stdout, out.stdout

        # Quiesce, then the reconciler compares the books with the chain.
        subprocess.run([POLYARB, "--config", str(path), "halt", "--reason", "reconcile"], check=True, timeout=30)
        wait_until(lambda: (e := snapshot(cfg)["executor"]["executor"])["queue_size"] == 0 and e["in_flight"] == 0,
                   timeout=60, what="executor idle")
        checks = snapshot(cfg)["executor"]["executor"]["reconciler"]["checks"]
        wait_until(lambda: snapshot(cfg)["executor"]["executor"]["reconciler"]["checks"] >= checks + 2,
                   timeout=60, what="the reconciler compared the books with the chain twice")
        ex = snapshot(cfg)["executor"]["executor"]
        wait_until(lambda: len(results.items) >= ex["total_executions"], timeout=10, what="every TxResult heard")
        assert ex["reconciler"]["trips"] == 0, f"books and chain parted: {ex['reconciler']}"
        assert "books differ" not in snapshot(cfg)["executor"]["breaker"]["reason"]
    finally:
        results.stop()

    assert results.gaps == 0, "a TxResult was lost on the bus"
    assert {r.kind for r in results.items} == {"NO_BASKET"} and {r.market for r in results.items} == {world_cup}
    delta = balances(w3, dep, TRADER)["collateral"] - start
    booked = booked_collateral(tmp_path)
    heard = sum(r.realized_pnl + r.gas_cost for r in results.items)
    print(f"collateral delta {delta}, booked {booked}, heard {heard}, open positions {ex['open_positions']}, "
          f"by strategy {ex['by_strategy']}, results {len(results.items)}")
    assert delta == booked  # open positions included: a partial fill books what its legs and unwind moved
    assert delta > 0


def test_yes_baskets_are_held_redeemed_after_the_resolution_and_booked_exactly(tmp_path, anvil, procs):
    # Under venue faults: trades that fail after MATCHED, delayed orders, slow settlement (a milder
    # fail rate than test_executor_faults' 0.3: a basket needs all four legs, 0.7^4 = 24% of tries).
    world = start_basket_world(tmp_path, anvil, procs, sell_side_share=0.0, router={"yes_baskets": True},
                               # a long TTL: settlement holds the event's lock for seconds, signals queue behind it
                               trading={"max_locked_capital": "1000", "signal_ttl_ms": 15_000},
                               faults={"trade_fail_rate": 0.1, "delayed_rate": 0.2, "delay_ms": 800,
                                       "settlement_latency_ms": 3000})
    path, cfg, w3, dep, start = world.path, world.cfg, world.w3, world.dep, world.start
    world_cup = event_id(dep, "world-cup-2026")
    results = Results(cfg)
    procs("--config", str(path), "actor", "executor", name="executor")
    try:
        def held():
            return [r for r in results.items if r.kind == "YES_BASKET" and r.status == "HELD"]

        wait_until(lambda: len(held()) >= 2, timeout=200, what="two YES baskets bought and held")
        subprocess.run([POLYARB, "--config", str(path), "halt", "--reason", "resolution"], check=True, timeout=30)
        wait_until(lambda: all_ended(cfg), timeout=120, what="every execution ended")
        ex = snapshot(cfg)["executor"]["executor"]
        assert ex["baskets_held"] >= 2 and ex["locked_capital_micro"] > 0
        out = subprocess.run([POLYARB, "--config", str(path), "status"], capture_output=True, text=True, timeout=30)
        assert "locked_usdc=" in out.stdout and "YES_BASKET" in out.stdout, out.stdout

        # The event resolves: the venue reports every question's payout on chain.
        resp = httpx.post(f"{cfg.router.clob_url}/sandbox/resolve", json={"event": "world-cup-2026"}, timeout=30)
        assert resp.status_code == 200, resp.text
        wait_until(lambda: snapshot(cfg)["executor"]["executor"]["baskets_held"] == 0, timeout=90,
                   what="every held basket redeemed")
        ex = snapshot(cfg)["executor"]["executor"]
        assert ex["locked_capital_micro"] == 0 and ex["redemptions"]["failed"] == 0
        checks = ex["reconciler"]["checks"]
        wait_until(lambda: snapshot(cfg)["executor"]["executor"]["reconciler"]["checks"] >= checks + 2,
                   timeout=60, what="the reconciler compared the books with the chain twice")
        ex = snapshot(cfg)["executor"]["executor"]
        assert ex["reconciler"]["trips"] == 0, f"books and chain parted: {ex['reconciler']}"
        wait_until(lambda: len(results.items) >= ex["total_executions"], timeout=10, what="every TxResult heard")
        faults = snapshot(cfg)["venue"]["venue"]["faults"]
    finally:
        results.stop()

    redeemed = [r for r in results.items if r.status == "REDEEMED"]
    assert len(redeemed) == len(held()) and all(r.market == world_cup and r.tx_hash for r in redeemed)
    for r in redeemed:
        tx = w3.eth.get_transaction(r.tx_hash)
        assert w3.eth.get_transaction_receipt(r.tx_hash)["status"] == 1
        assert tx["to"].lower() == dep.neg_risk_adapter.lower()
    delta = balances(w3, dep, TRADER)["collateral"] - start
    booked = booked_collateral(tmp_path)
    outcomes = journal_outcomes(tmp_path)
    print(f"collateral delta {delta}, booked {booked}, held {len(held())}, outcomes "
          f"{Counter(s for _, s, _, _ in outcomes)}, open positions {ex['open_positions']}, by strategy "
          f"{ex['by_strategy']}, venue: {faults['trades_failed']} trades failed, "
          f"{faults['delayed_orders']} orders delayed")
    assert "PENDING" not in {s for _, s, _, _ in outcomes}
    assert delta == booked  # open positions included: a partial basket books what its legs and unwind moved
