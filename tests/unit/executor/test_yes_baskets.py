"""YES baskets (issue 12): every YES of a neg-risk event bought, held to the
resolution, the winner redeemed; the capital locked meanwhile is capped."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import msgspec
import pytest

from actors.domain.enums import TxStatus
from actors.executor.redemption import Redeemer
from bus.messages import Leg, Signal
from tests.unit.executor.test_tx_sender import EVENT, GAS, SIZE, World, until

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

YES = (300_000, 250_000, 200_000, 150_000)  # sum 0.90 < 1
PAID = sum(p * SIZE // 1_000_000 + 1_000 for p in YES)


def yes_basket(clock, prices=YES, created_offset=0) -> Signal:
    legs = [Leg(token_id=f"yes{i}", side="BUY", limit_price=p, size=SIZE, cost=p * SIZE // 1_000_000, fee=1_000)
            for i, p in enumerate(prices)]
    now = clock.time_ns() + created_offset
    return Signal(signal_id=f"y{created_offset}", market=EVENT, kind="YES_BASKET", legs=legs, size=SIZE,
                  expected_profit=1, book_ts_ms={leg.token_id: now // 1_000_000 for leg in legs}, created_ns=now,
                  expires_ns=now + 2_000_000_000, neg_risk_market_id=EVENT)


def with_cap(world: World, usdc: str) -> None:
    raw = msgspec.structs.replace(world.cfg.trading, max_locked_capital=Decimal(usdc))
    world.cfg = msgspec.structs.replace(world.cfg, trading=raw)


@pytest.fixture
async def world(tmp_path, sandbox_config):
    w = World(tmp_path, sandbox_config)
    await w.nonces.initialize()
    return w


async def test_a_yes_basket_is_bought_and_held_its_cost_locked_not_sold(world):
    r = await world.sender.execute(yes_basket(world.clock))

    assert r.status is TxStatus.HELD and r.success and r.realized_pnl == -PAID and world.chain.sent == []
    assert world.journal.locked_capital() == PAID and world.sender.get_stats()["locked_capital_micro"] == PAID
    assert world.journal.positions() == []  # not for sale
    assert world.journal.held_tokens() == {f"yes{i}": SIZE for i in range(4)}  # what the reconciler expects
    assert await world.sender.clear_positions() == 0 and [c[1] for c in world.venue.calls] == ["BUY"] * 4
    assert world.sender.get_stats()["by_strategy"]["YES_BASKET"]["successful"] == 1


async def test_a_basket_that_would_lock_more_than_the_cap_is_refused_before_any_order(world):
    with_cap(world, "25")
    assert (await world.sender.execute(yes_basket(world.clock))).status is TxStatus.HELD  # 9.004 locked
    second = yes_basket(world.clock, prices=(300_000, 250_000, 200_000, 160_000), created_offset=1)
    assert (await world.sender.execute(second)).status is TxStatus.HELD  # 18.108 locked
    calls = len(world.venue.calls)

    r = await world.sender.execute(yes_basket(world.clock, prices=(310_000, 250_000, 200_000, 150_000),
                                              created_offset=2))

    assert r.status is TxStatus.REJECTED and "max_locked_capital" in r.error and len(world.venue.calls) == calls
    assert world.breaker.get_stats()["consecutive_failures"] == 0


async def test_a_partial_yes_basket_is_unwound_and_locks_nothing(world):
    world.venue.script["yes2"] = ["kill"]
    r = await world.sender.execute(yes_basket(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND and world.journal.locked_capital() == 0


async def test_the_winner_is_redeemed_once_every_question_is_reported(world):
    await world.sender.execute(yes_basket(world.clock))
    redeemer = Redeemer(world.sender)
    assert await redeemer.redeem_resolved() == []  # not resolved

    world.chain.reported.update({f"{EVENT}:q{i}": (0, 1) for i in range(4)})
    world.chain.reported[f"{EVENT}:q2"] = (1, 0)  # question 2 won
    [r] = await redeemer.redeem_resolved()

    assert r.status is TxStatus.REDEEMED and r.realized_pnl == SIZE - GAS and r.gas_cost == GAS
    [tx] = world.chain.sent
    assert tx["data"] == f"redeem:{EVENT}:q2:[{SIZE}, 0]"
    assert world.journal.locked_capital() == 0 and world.journal.held_tokens() == {
        "yes0": SIZE, "yes1": SIZE, "yes3": SIZE}  # the losers stay, worth nothing
    assert world.journal.booked() == SIZE - PAID  # -paid at the buy, +payout at the redemption (gas apart)
    assert await redeemer.redeem_resolved() == []  # once


async def test_a_crash_after_the_redeem_was_sent_never_redeems_twice(world, tmp_path):
    await world.sender.execute(yes_basket(world.clock))
    world.chain.reported.update({f"{EVENT}:q{i}": (1 if i == 0 else 0, 0 if i == 0 else 1) for i in range(4)})
    world.chain.automine = False
    task = asyncio.ensure_future(Redeemer(world.sender).redeem_resolved())
    await until(lambda: world.chain.sent, "the redeem in the pool")  # then the process dies
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(world.chain.sent) == 1

    world.chain.mine()
    world.build()  # a restart: the same files, new objects
    await world.nonces.initialize()
    [r] = await Redeemer(world.sender).redeem_resolved()

    assert r.status is TxStatus.REDEEMED and len(world.chain.sent) == 1 and world.journal.locked_capital() == 0
