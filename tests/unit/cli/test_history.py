"""`polyarb trades` and `polyarb pnl` over a journal the executor itself wrote (the
TxSender of the executor's unit tests, with its fake venue and chain)."""

from __future__ import annotations

import csv
import io
import json

import msgspec
import pytest

from actors.cli import history
from actors.domain.enums import TxStatus
from actors.domain.money import format_usdc, to_micro
from tests.unit.executor.test_tx_sender import signal, world  # noqa: F401 - the fixture

pytestmark = pytest.mark.unit

HOUR_NS = 3600 * 10**9


@pytest.fixture
async def books(world):  # noqa: F811
    """Three executions an hour apart: a BUY_SET success, a BUY_SET killed by the book, a
    SELL_SET success on another market."""
    done = [await world.sender.execute(signal(world.clock))]
    world.clock.advance(HOUR_NS / 1e9)
    world.venue.script["tok0"] = ["kill"]
    world.venue.script["tok1"] = ["kill"]
    done.append(await world.sender.execute(signal(world.clock, created_offset=1)))
    world.clock.advance(HOUR_NS / 1e9)
    sell = msgspec.structs.replace(signal(world.clock, kind="SELL_SET", prices=(550_000, 500_000), created_offset=2),
                                   market="0xother")
    done.append(await world.sender.execute(sell))
    assert [r.status for r in done] == [TxStatus.SUCCESS, TxStatus.STALE, TxStatus.SUCCESS]
    # Book-keeping (a sell-reserve split: its gas is spent money) and a redemption.
    j = world.journal
    j.begin("reserve:0xother:1", signal(world.clock, created_offset=3))
    j.finish("reserve:0xother:1", "RESERVED", -1_250, 1_250)
    j.begin("redeem:abc", signal(world.clock, created_offset=4))
    j.finish("redeem:abc", "REDEEMED", 2_000_000, 0)
    cfg = msgspec.structs.replace(world.cfg, executor=msgspec.structs.replace(world.cfg.executor,
                                                                              state_dir=str(world.tmp)))
    return world, cfg, done


def test_trades_lists_every_execution_with_its_books(books):
    w, cfg, done = books
    journal = str(w.tmp / "journal.sqlite")
    rows = json.loads(history.render_trades(cfg, journal=journal, since=None, status=[], fmt="json",
                                            bookkeeping=False))
    assert [(r["strategy"], r["status"]) for r in rows] == [("BUY_SET", "SUCCESS"), ("BUY_SET", "STALE"),
                                                            ("SELL_SET", "SUCCESS"), ("REDEMPTION", "REDEEMED")]
    assert rows[0]["pnl_usdc"] == f"{done[0].realized_pnl / 1e6:.6f}" and rows[0]["legs"] == 2
    assert rows[2]["market"] == "0xother"

    only = json.loads(history.render_trades(cfg, journal=journal, since=None, status=["success"], fmt="json",
                                            bookkeeping=False))
    assert len(only) == 2
    every = json.loads(history.render_trades(cfg, journal=journal, since=None, status=[], fmt="json",
                                             bookkeeping=True))
    assert [r["strategy"] for r in every if r["key"].startswith("reserve:")] == ["BOOKKEEPING"]
    table = history.render_trades(cfg, journal=journal, since=None, status=[], fmt="table", bookkeeping=False)
    total = sum(r.realized_pnl for r in done) + 2_000_000
    assert table.splitlines()[-1] == f"4 executions, pnl {format_usdc(total)} USDC"
    parsed = list(csv.DictReader(io.StringIO(history.render_trades(cfg, journal=journal, since=None, status=[],
                                                                   fmt="csv", bookkeeping=False))))
    assert [r["status"] for r in parsed] == ["SUCCESS", "STALE", "SUCCESS", "REDEEMED"]


def test_since_takes_relative_and_iso_times():
    now = 1_800_000_000 * 10**9
    assert history.since_ns("2h", now) == now - 2 * HOUR_NS
    assert history.since_ns("2026-12-01") == 1_796_083_200 * 10**9
    with pytest.raises(SystemExit, match="give 30m, 3h, 2d"):
        history.since_ns("yesterday", now)


def test_since_keeps_the_last_hours(books):
    w, cfg, _ = books
    journal = str(w.tmp / "journal.sqlite")
    rows = json.loads(history.render_trades(cfg, journal=journal, since=None, status=[], fmt="json",
                                            bookkeeping=False))
    from contextlib import closing

    from actors.executor.history import open_read_only, trades

    with closing(open_read_only(journal)) as db:
        recent = trades(db, since_ns=w.clock.time_ns() - HOUR_NS // 2)
    assert [t.key for t in recent] == [r["key"] for r in rows[2:]]  # the SELL_SET and the redemption


def test_pnl_by_strategy_market_and_day_adds_up(books):
    w, cfg, done = books
    journal = str(w.tmp / "journal.sqlite")
    total = sum(r.realized_pnl for r in done) + 2_000_000 - 1_250  # the reserve's gas is in every total
    for by in ("strategy", "market", "day"):
        rows = json.loads(history.render_pnl(cfg, journal=journal, since=None, by=by, fmt="json"))
        assert sum(to_micro(r["pnl_usdc"]) for r in rows) == total
        assert sum(r["executions"] for r in rows) == 5
    by_strategy = {r["strategy"]: r for r in json.loads(history.render_pnl(cfg, journal=journal, since=None,
                                                                           by="strategy", fmt="json"))}
    assert by_strategy["BUY_SET"]["executions"] == 2 and by_strategy["BUY_SET"]["successes"] == 1
    assert by_strategy["BOOKKEEPING"]["pnl_usdc"] == "-0.001250"
    assert by_strategy["REDEMPTION"]["successes"] == 0  # it ends a HELD basket: not a second success
    table = history.render_pnl(cfg, journal=journal, since=None, by="market", fmt="table")
    assert table.splitlines()[-1].startswith("total")


def test_a_missing_journal_says_where_it_looked(tmp_path, sandbox_config):
    cfg = msgspec.structs.replace(sandbox_config, executor=msgspec.structs.replace(sandbox_config.executor,
                                                                                   state_dir=str(tmp_path)))
    with pytest.raises(SystemExit, match="no executor journal for chain 137"):
        history.render_pnl(cfg, journal=None, since=None, by="day", fmt="table")
