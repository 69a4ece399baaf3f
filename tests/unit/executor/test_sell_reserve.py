"""The sell reserve: SELL_SETs from sets split ahead, topped up in the background (issue 13)."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal

import msgspec
import pytest

from actors.domain.enums import TxStatus
from actors.executor.outcomes import GAS, RESERVE
from tests.unit.executor.test_tx_sender import SIZE, M, World, drive, signal, until

pytestmark = pytest.mark.unit

SELL = (520_000, 500_000)  # bids summing to 1.02: a SELL_SET
GAS_COST = 120_000 * 60 * 10**9 * 500_000 // 10**18  # the fake chain's receipt at 0.5 USDC/POL


def with_reserve(cfg, sets: str = "20", cap: str = "200"):
    return msgspec.structs.replace(cfg, trading=msgspec.structs.replace(
        cfg.trading, sell_reserve=Decimal(sets), max_locked_capital=Decimal(cap)))


@pytest.fixture
async def world(tmp_path, sandbox_config):
    w = World(tmp_path, with_reserve(sandbox_config))
    await w.nonces.initialize()
    return w


def sent(world, what: str) -> list[dict]:
    return [tx for tx in world.chain.sent if tx["data"].startswith(what)]


async def topped_up(world, n: int) -> None:
    await until(lambda: world.sender.reserve.counts["top_ups"] == n, f"{n} top-up(s) booked")


def cash(world) -> int:
    """Every recorded flow that moved pUSD (what the reconciler compares with the wallet)."""
    rows = world.journal.db.execute("SELECT kind, amount FROM cash_flows").fetchall()
    return sum(a for k, a in rows if k not in (GAS, RESERVE))


async def test_the_first_sell_set_splits_then_the_next_sells_from_the_reserve(world):
    first = await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL))
    assert first.status is TxStatus.SUCCESS and len(sent(world, "split:")) == 1  # its own split, inline
    await topped_up(world, 1)
    assert sent(world, "split:")[1]["data"] == f"split:{M}:2:20000000"  # the reserve: 20 sets
    assert world.journal.reserved(M) == 20_000_000 and world.journal.locked_capital() == 20_000_000

    world.clock.advance(0.01)
    txs = len(world.chain.sent)
    second = await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL, created_offset=1))
    assert second.status is TxStatus.SUCCESS
    assert len(world.venue.batch_calls) == 2 and second.tx_hash is None  # no transaction before its legs
    assert len(world.chain.sent) == txs  # until the top-up
    # The same P&L as a SELL_SET with its own split, but no gas on the hot path.
    assert second.realized_pnl == 10_200_000 - 2_000 - SIZE and second.gas_cost == 0
    await topped_up(world, 2)
    assert sent(world, "split:")[2]["data"] == f"split:{M}:2:{SIZE}" and world.journal.reserved(M) == 20_000_000
    # The books: every pUSD the splits took, and every sale's proceeds; the reserve's sets are held.
    assert cash(world) == world.journal.booked() == -SIZE - 20_000_000 - SIZE + 2 * (10_200_000 - 2_000)
    assert world.journal.held_tokens() == {"tok0": 20_000_000, "tok1": 20_000_000}
    assert world.journal.positions() == []  # never sold by the clearing of open positions
    # P&L of the world: the two sales' edge, less the four transactions' gas (top-ups included).
    total = sum(pnl for _, _, pnl, _ in world.journal.outcomes())
    assert total == 2 * (200_000 - 2_000) - 3 * GAS_COST
    assert world.sender.get_stats()["sell_reserve"]["draws"] == 1


async def test_nothing_sold_puts_the_set_back_without_a_transaction(world):
    await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL))
    await topped_up(world, 1)
    world.clock.advance(0.01)
    world.venue.script["tok0"] = ["kill"]
    world.venue.script["tok1"] = ["kill"]
    txs = len(world.chain.sent)
    r = await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL, created_offset=1))
    assert r.status is TxStatus.STALE and r.realized_pnl == 0
    assert len(world.chain.sent) == txs and not sent(world, "merge:")  # back into the reserve, not merged
    assert world.journal.reserved(M) == 20_000_000 and world.sender.reserve.counts["restocks"] == 1


async def test_a_partial_sale_from_the_reserve_unwinds_the_rest(world):
    await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL))
    await topped_up(world, 1)
    world.clock.advance(0.01)
    world.venue.script["tok1"] = ["kill"]
    r = await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL, created_offset=1))
    assert r.status is TxStatus.PARTIAL_UNWOUND
    assert world.journal.reserved(M) == 10_000_000  # the set was drawn: one leg sold, the other unwound
    assert world.journal.held_tokens() == {"tok0": 10_000_000, "tok1": 10_000_000}
    assert world.journal.positions() == []


async def test_a_crash_after_the_draw_puts_the_set_back_and_trades_nothing(tmp_path, sandbox_config, monkeypatch):
    w = World(tmp_path, with_reserve(sandbox_config))
    await w.nonces.initialize()
    await w.sender.execute(signal(w.clock, "SELL_SET", prices=SELL))
    await topped_up(w, 1)
    w.clock.advance(0.01)

    def crash(*args, **kwargs):
        raise SystemExit("killed")  # the process dies after the draw, before the legs' step

    monkeypatch.setattr(w.journal, "place_legs", crash)
    with pytest.raises(SystemExit):
        await w.sender.execute(signal(w.clock, "SELL_SET", prices=SELL, created_offset=1))
    assert w.journal.reserved(M) == 10_000_000  # drawn, and journaled with its execution
    monkeypatch.undo()
    w.build()  # the restarted process
    await w.nonces.initialize()
    calls = len(w.venue.calls)
    [r] = await w.sender.reconcile()
    assert r.status is TxStatus.EXPIRED and "sell reserve" in r.error
    assert len(w.venue.calls) == calls and w.journal.reserved(M) == 20_000_000


async def test_turned_off_the_reserve_is_merged_back(world):
    await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL))
    await topped_up(world, 1)
    world.cfg = with_reserve(world.cfg, "0")
    await world.sender.reconcile()
    await until(lambda: world.sender.reserve.counts["releases"] == 1, "the release booked")
    assert sent(world, "merge:")[-1]["data"] == f"merge:{M}:2:20000000"
    assert world.journal.reserved() == 0 and world.journal.locked_capital() == 0
    assert world.journal.held_tokens() == {}
    assert cash(world) == world.journal.booked() == -SIZE + 10_200_000 - 2_000  # the splits and merge net out
    assert world.sender.quiet()


async def test_a_top_up_over_the_locked_capital_cap_is_not_split(tmp_path, sandbox_config):
    w = World(tmp_path, with_reserve(sandbox_config, "20", cap="15"))
    await w.nonces.initialize()
    await w.sender.execute(signal(w.clock, "SELL_SET", prices=SELL))
    assert w.sender.reserve.counts["capped"] == 1 and len(w.chain.sent) == 1 and w.journal.reserved() == 0


async def test_a_top_up_that_could_not_be_sent_is_finished_by_reconciliation(world):
    world.chain.automine = False
    task = asyncio.create_task(world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL)))
    await until(lambda: len(world.chain.sent) == 1, "the inline split sent")
    world.chain.mine()
    assert (await drive(world.clock, task)).status is TxStatus.SUCCESS
    await until(lambda: len(world.chain.sent) == 2, "the top-up's split sent")
    assert not world.sender.quiet()  # a top-up under way: the books cannot be compared now
    await world.sender.reserve.close()  # the process stops before it is mined
    assert world.journal.unfinished("reserve:") and world.journal.reserved() == 0
    world.chain.mine()
    await world.sender.reconcile()  # the next round: the journaled hash is found mined
    assert world.journal.reserved(M) == 20_000_000 and len(sent(world, "split:")) == 2
    assert world.sender.quiet()


async def test_a_top_up_refused_before_it_was_sent_is_booked_failed_and_blocks_nothing(world):
    # Review: a top-up the gas cap refused raised out of every reconciliation round and
    # stayed unfinished for ever: the executor was never quiet, the books never compared.
    r = await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL))
    assert r.status is TxStatus.SUCCESS
    world.chain.base_fee = 10**13  # the top-up's split now costs more than trading.max_gas_cost
    await until(lambda: world.sender.reserve.counts["failures"] == 1, "the top-up refused")
    assert len(sent(world, "split:")) == 1 and world.journal.reserved() == 0
    assert not world.sender.reserve.busy() and world.sender.quiet()
    assert "FAILED" in [status for _, status, _, _ in world.journal.outcomes()]
    assert await world.sender.reconcile() == []  # nothing left over, nothing raised


async def test_a_drawn_sell_set_that_waited_behind_its_market_is_judged_again(world, monkeypatch):
    await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL))
    await topped_up(world, 1)
    world.clock.advance(0.01)
    gate = asyncio.Event()
    batch = world.venue.place_batch

    async def slow(orders, settle=True):
        await gate.wait()  # the first execution's placement holds the market
        return await batch(orders, settle)

    monkeypatch.setattr(world.venue, "place_batch", slow)
    first = asyncio.create_task(world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL,
                                                            created_offset=2)))
    await until(lambda: world.journal.legs_in_flight(), "the first placing its legs")
    world.clock.advance(0.01)  # other books: another opportunity
    second = asyncio.create_task(world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL,
                                                             created_offset=1)))
    await until(lambda: world.sender.reserve.counts["draws"] == 2, "the second drew its set")
    world.clock.advance(3)  # its signal expires while it waits for the market
    gate.set()
    assert (await drive(world.clock, first)).status is TxStatus.SUCCESS
    r = await drive(world.clock, second)
    assert r.status is TxStatus.EXPIRED and "queued behind its market" in r.error
    assert world.sender.reserve.counts["restocks"] == 1 and len(world.venue.batch_calls) == 2  # never placed
    await topped_up(world, 2)  # what the first sold
    assert world.journal.reserved(M) == 20_000_000


async def test_an_unexpected_error_after_the_draw_leaves_the_execution_pending_not_failed(world, monkeypatch):
    # Review: after its set was drawn (or split), any unexpected error was booked FAILED
    # with no flow: the set gone from the books, the sale's proceeds never booked.
    await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL))
    await topped_up(world, 1)
    world.clock.advance(0.01)
    settle = world.sender._settle

    async def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(world.sender, "_settle", broken)
    r = await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL, created_offset=1))
    assert r.status is TxStatus.PENDING
    monkeypatch.setattr(world.sender, "_settle", settle)
    calls = len(world.venue.calls)
    [done] = await world.sender.reconcile()
    assert done.status is TxStatus.SUCCESS and len(world.venue.calls) == calls  # its legs read, not placed again
    assert done.realized_pnl == 10_200_000 - 2_000 - SIZE
    await topped_up(world, 2)
    assert cash(world) == world.journal.booked() == -SIZE - 20_000_000 - SIZE + 2 * (10_200_000 - 2_000)


async def test_a_split_mined_while_the_nonce_authority_did_not_answer_its_confirm_is_booked(world):
    # The CI chaos profile: the authority was slow (the chain had just restarted) and the
    # `confirm` of a mined top-up split timed out; the reserve took it for "not sent" and
    # booked nothing, and the chain held 100 sets the books did not (100 pUSD apart).
    from bus.sockets import RpcTimeout

    confirm = world.nonces.mark_confirmed
    calls = []

    async def times_out_once(nonce, tx_hash=None):
        calls.append(nonce)
        if len(calls) == 2:  # the inline split confirms; the top-up's confirm gets no reply
            raise RpcTimeout("confirm to tcp://nonce: no reply after 4 attempts")
        return await confirm(nonce, tx_hash)

    world.nonces.mark_confirmed = times_out_once
    first = await world.sender.execute(signal(world.clock, "SELL_SET", prices=SELL))
    assert first.status is TxStatus.SUCCESS
    await topped_up(world, 1)
    assert len(calls) >= 2 and len(sent(world, "split:")) == 2  # the top-up's split was sent and mined
    assert world.journal.reserved(M) == 20_000_000  # ...and is in the books
    assert cash(world) == world.journal.booked() == -SIZE - 20_000_000 + 10_200_000 - 2_000
    assert world.onchain.counts["confirm_errors"] == 1
