"""Paper trading as `make paper` runs it, with the sandbox venue standing in for Polymarket
(there is no internet here): the feed and the router on the venue's market channel and
listing, the executor on paper. It trades on the live books, sends nothing to the venue
or the chain, survives a SIGKILL, and its P&L report is what a replay of its own
decisions gives."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from actors.domain.money import to_micro
from actors.executor.paper.world import ledger_path
from sandbox.deploy import balances
from tests.helpers import wait_until
from tests.integration.conftest import POLYARB
from tests.integration.test_system import TRADER, Results, all_ended, snapshot, start_world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def cli(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([POLYARB, "--config", str(path), *args], capture_output=True, text=True, timeout=60)


def test_paper_trading_matches_the_live_books_sends_nothing_and_its_report_replays(tmp_path, anvil, procs):
    world = start_world(tmp_path, anvil, procs, 40,
                        paper={"funding": "1000", "settlement_latency_ms": 300, "order_latency_ms": 20},
                        executor={"state_dir": str(tmp_path / "paper")})
    cfg, path = world.cfg, world.path
    nonce_before = world.w3.eth.get_transaction_count(TRADER)
    results = Results(cfg)
    executor = procs("--config", str(path), "actor", "executor", name="executor")
    ok = lambda: sum(r.success for r in results.items)  # noqa: E731
    wait_until(lambda: ok() >= 2, timeout=150, what="two paper executions succeed")
    stats = snapshot(cfg)["executor"]["executor"]
    assert stats["paper"]["books"] > 0 and stats["venue"]["paper"] is True
    status = cli(path, "status", "--seconds", "1")
    assert "(paper)" in status.stdout.splitlines()[0], status.stdout

    # SIGKILL in the middle of trading, then a new process goes on from the ledger and the journal.
    executor.kill9()
    executor = procs("--config", str(path), "actor", "executor", name="executor2")
    before = ok()
    wait_until(lambda: ok() >= before + 2, timeout=150, what="two more paper executions after the restart")
    assert cli(path, "halt", "--reason", "measured").returncode == 0
    wait_until(lambda: all_ended(cfg), timeout=120, what="every paper execution ended")
    reconciler = snapshot(cfg)["executor"]["executor"]["reconciler"]
    executor.terminate()
    results.stop()

    # Nothing was sent: the trader's wallet never moved on chain, and the venue never saw an order of ours.
    assert world.w3.eth.get_transaction_count(TRADER) == nonce_before == 0
    assert balances(world.w3, world.dep, TRADER)["collateral"] == world.start
    venue_db = next((tmp_path / "state").glob("venue-*.sqlite"))
    with sqlite3.connect(venue_db) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"orders", "trades"} <= tables
        assert db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 0
    # The books are the paper wallet's: the reconciler compared them with the paper chain each round.
    assert reconciler["checks"] >= 1 and reconciler["trips"] == 0 and not reconciler["differences"], reconciler

    # The P&L report is the replay of the paper venue's own decisions, to the micro-USDC.
    rep = cli(path, "paper", "report", "--json")
    assert rep.returncode == 0, rep.stdout + rep.stderr
    report = json.loads(rep.stdout)
    assert report["matches"] and report["problem_count"] == 0, report
    assert report["journal_pnl_micro"] == report["replay_pnl_micro"]
    assert report["orders_by_status"].get("MINED", 0) >= 8, report
    pnl = json.loads(cli(path, "pnl", "--by", "strategy", "--json").stdout)
    assert sum(to_micro(g["pnl_usdc"]) for g in pnl) == report["journal_pnl_micro"], pnl
    assert ledger_path(cfg.executor.state_dir).is_file()
    text = cli(path, "paper", "report")
    assert "replay MATCHES" in text.stdout, text.stdout
    print("\n" + text.stdout)
