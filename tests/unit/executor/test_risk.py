"""Portfolio risk limits (config `risk`): each trips the breaker with its name and figures
in the reason, a hot edit of the limit applies at once, and the guard closes only the
breaker it opened itself."""

from decimal import Decimal

import msgspec
import pytest

from actors.domain.enums import CircuitState, TxStatus
from actors.executor.outcomes import Execution, Flow
from actors.executor.reconciler import Reconciler
from actors.executor.risk import DAY_NS, HALT_KEY
from config.schema import Risk, UnwindLoss
from tests.unit.executor.test_tx_sender import SIZE, World, signal

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@pytest.fixture
def world(tmp_path, sandbox_config):
    return World(tmp_path, sandbox_config)


def limits(world, **risk):
    """A hot edit of the `risk` section (the sender reads the config in force at each call)."""
    world.cfg = msgspec.structs.replace(world.cfg, risk=Risk(**risk))
    world.sender.risk.evaluate()


def lost(world, key, pnl, status=TxStatus.FAILED):
    """An outcome booked through the sender's own books (as the pipeline books one)."""
    s = signal(world.clock, created_offset=len(key))
    world.journal.begin(key, s)
    world.sender.book(Execution(s, key, 1, status, "lost", realized_pnl=pnl, flows=(Flow("buy", pnl, key),)))


def state(world):
    return world.breaker.state, world.breaker.reason


async def test_the_daily_loss_limit_halts_and_a_raised_limit_or_a_new_day_resumes(world):
    limits(world, daily_loss_limit=Decimal("5"))
    lost(world, "k1", -3_000_000)
    assert world.breaker.state is CircuitState.CLOSED  # -3 is within -5
    lost(world, "k2", -2_500_000)

    st, reason = state(world)
    assert st is CircuitState.FORCED_OPEN
    assert "risk.daily_loss_limit" in reason and "-5.500000" in reason and "limit -5" in reason
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.REJECTED and "risk.daily_loss_limit" in r.error and world.venue.calls == []

    limits(world, daily_loss_limit=Decimal("10"))  # the hot edit applies at once
    assert state(world)[0] is CircuitState.CLOSED and "back within" in world.breaker.reason
    limits(world, daily_loss_limit=Decimal("5"))
    assert state(world)[0] is CircuitState.FORCED_OPEN

    world.clock.advance(DAY_NS / 1e9)  # 00:00 UTC: today's P&L starts from the books again, at 0
    world.sender.risk.evaluate()
    assert state(world)[0] is CircuitState.CLOSED and world.sender.risk.pnl_today == 0
    assert (await world.sender.execute(signal(world.clock))).status is TxStatus.SUCCESS


async def test_the_days_figures_come_from_the_journal_after_a_restart(world):
    lost(world, "k1", -4_000_000)
    lost(world, "k2", -1_500_000, TxStatus.PARTIAL_UNWOUND)
    world.build()  # a new process on the same journal
    world.cfg = msgspec.structs.replace(world.cfg, risk=Risk(daily_loss_limit=Decimal("5")))
    risk = world.sender.risk
    assert (risk.pnl_today, risk.unwind_today) == (-5_500_000, 1_500_000)
    risk.evaluate()
    assert "risk.daily_loss_limit" in world.breaker.reason


async def test_a_signal_over_max_exposure_is_refused_before_any_order_without_halting(world):
    limits(world, max_exposure=Decimal("5"))  # the signal's legs cost 9.502 USDC
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.REJECTED and world.venue.calls == []
    assert "risk.max_exposure" in r.error and "this signal 9.502000" in r.error and "limit 5" in r.error
    assert world.breaker.state is CircuitState.CLOSED and world.sender.risk.refused == 1
    # Nothing claimed: the same opportunity may run once the limit allows it.
    limits(world, max_exposure=Decimal("20"))
    assert (await world.sender.execute(signal(world.clock))).status is TxStatus.SUCCESS


async def test_open_positions_past_max_exposure_halt_until_they_are_sold(world):
    limits(world, max_exposure=Decimal("5"))
    world.journal.hold("unwind:k:0", "123", 20_000_000, 400_000)  # 20 shares at 0.40 = 8 USDC unhedged
    world.sender.risk.refresh()
    world.sender.risk.evaluate()
    st, reason = state(world)
    assert st is CircuitState.FORCED_OPEN and "risk.max_exposure" in reason and "open positions 8.000000" in reason

    world.journal.hold("sale:k:0", "123", -20_000_000, 400_000)  # sold
    world.sender.risk.refresh()
    world.sender.risk.evaluate()
    assert world.breaker.state is CircuitState.CLOSED


async def test_running_executions_count_in_the_exposure(world):
    limits(world, max_exposure=Decimal("15"))
    first = signal(world.clock, created_offset=1)
    world.sender.risk.started("running", first)  # 9.502 USDC of legs in flight
    r = await world.sender.execute(signal(world.clock, created_offset=2))
    assert r.status is TxStatus.REJECTED and "running legs 9.502000" in r.error
    world.sender.risk.booked(Execution(first, "running", 1, TxStatus.SUCCESS))
    assert world.sender.risk.exposure() == 0


async def test_one_unwind_past_its_limit_halts_until_an_operator_resumes(world):
    limits(world, max_unwind_loss=UnwindLoss(execution=Decimal("0.5")))
    world.venue.script["tok1"] = ["kill"]  # tok0 fills alone and is sold back 0.10 lower: -1.002 USDC
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND and r.realized_pnl == -1_002_000

    st, reason = state(world)
    assert st is CircuitState.FORCED_OPEN and "risk.max_unwind_loss.execution" in reason and "-1.002000" in reason
    limits(world, max_unwind_loss=UnwindLoss(execution=Decimal("5")))  # even a raised limit: a person looks first
    assert world.breaker.state is CircuitState.FORCED_OPEN
    world.breaker.reset("operator resume")
    world.sender.risk.evaluate()
    assert world.breaker.state is CircuitState.CLOSED and world.journal.get_value(HALT_KEY) is None


async def test_the_days_unwind_losses_halt_past_their_limit(world):
    limits(world, max_unwind_loss=UnwindLoss(day=Decimal("1")))
    lost(world, "u1", -600_000, TxStatus.PARTIAL_UNWOUND)
    lost(world, "f1", -900_000, TxStatus.FAILED)  # not an unwind
    assert world.breaker.state is CircuitState.CLOSED
    lost(world, "u2", -600_000, TxStatus.PARTIAL_UNWOUND)
    st, reason = state(world)
    assert st is CircuitState.FORCED_OPEN and "risk.max_unwind_loss.day" in reason and "1.200000" in reason
    world.clock.advance(DAY_NS / 1e9)
    world.sender.risk.evaluate()
    assert world.breaker.state is CircuitState.CLOSED


async def test_collateral_below_its_floor_halts_until_a_deposit(world):
    world.reconciler = Reconciler(world.chain, world.journal, world.breaker, world.sender)
    limits(world, min_collateral_balance=Decimal("100"))
    world.chain.collateral = 80_000_000
    await world.reconciler.check()  # the reconciler's read of the wallet's pUSD
    world.sender.risk.evaluate()
    st, reason = state(world)
    assert st is CircuitState.FORCED_OPEN and "risk.min_collateral_balance" in reason and "80.000000" in reason
    world.chain.collateral = 150_000_000  # a deposit
    world.journal.put_value("books_baseline", None)  # (the reconciler would re-base it on a resume)
    await world.reconciler.check()
    world.sender.risk.evaluate()
    assert world.breaker.state is CircuitState.CLOSED


async def test_a_booked_outcome_moves_the_collateral_before_the_next_read(world):
    limits(world, min_collateral_balance=Decimal("100"))
    world.sender.risk.chain_collateral(101_000_000)
    lost(world, "k1", -2_000_000)  # its buy flow paid 2 pUSD: 99 left
    assert "risk.min_collateral_balance" in world.breaker.reason and "99.000000" in world.breaker.reason


async def test_a_runaway_rate_of_executions_halts_for_the_rest_of_the_minute(world):
    limits(world, max_executions_per_minute=2)
    for i in range(2):  # distinct prices: distinct opportunities, not the same one again
        s = signal(world.clock, prices=(450_000 + i * 10_000, 500_000), created_offset=i)
        assert (await world.sender.execute(s)).status is TxStatus.SUCCESS
    r = await world.sender.execute(signal(world.clock, prices=(430_000, 500_000), created_offset=3))
    assert r.status is TxStatus.REJECTED and "risk.max_executions_per_minute" in r.error
    assert "2 executions in the last 60 s" in world.breaker.reason
    world.clock.advance(61)
    world.sender.risk.evaluate()
    assert world.breaker.state is CircuitState.CLOSED


async def test_the_guard_never_closes_a_breaker_another_cause_forced_open(world):
    world.breaker.force_open("operator halt (by operator)")
    limits(world, daily_loss_limit=Decimal("1"))
    lost(world, "k1", -2_000_000)
    assert world.breaker.reason == "forced: operator halt (by operator)"  # not overwritten
    limits(world, daily_loss_limit=Decimal("10"))
    assert world.breaker.reason == "forced: operator halt (by operator)"  # and not closed


async def test_an_operator_resume_past_a_standing_limit_is_halted_again(world):
    limits(world, daily_loss_limit=Decimal("1"))
    lost(world, "k1", -2_000_000)
    world.breaker.reset("operator resume")
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.REJECTED and "risk.daily_loss_limit" in world.breaker.reason  # raise the limit


async def test_a_restarted_executor_closes_the_breaker_its_guard_opened(world):
    limits(world, daily_loss_limit=Decimal("1"))
    lost(world, "k1", -2_000_000)
    snap = world.breaker.snapshot()
    world.build()  # restart: the breaker comes back FORCED_OPEN from its snapshot
    world.breaker.restore(snap)
    assert world.breaker.state is CircuitState.FORCED_OPEN
    limits(world, daily_loss_limit=Decimal("3"))
    assert world.breaker.state is CircuitState.CLOSED


async def test_no_limit_set_changes_nothing(world):
    limits(world)  # every limit off
    lost(world, "k1", -500 * SIZE)
    assert world.breaker.state is CircuitState.CLOSED
    stats = world.sender.get_stats()["risk"]
    assert stats["pnl_today_micro"] == -500 * SIZE and stats["breaches"] == [] and stats["halted"] is None
