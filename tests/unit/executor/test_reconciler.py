"""The reconciler: the books against the wallet's pUSD and ERC-1155 balances."""

import pytest

from actors.domain.enums import CircuitState, TxStatus
from actors.executor.reconciler import Reconciler
from tests.unit.executor.test_tx_sender import SIZE, World, signal

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@pytest.fixture
async def world(tmp_path, sandbox_config):
    w = World(tmp_path, sandbox_config)
    await w.nonces.initialize()
    w.reconciler = Reconciler(w.chain, w.journal, w.breaker, w.sender)
    return w


async def test_books_equal_to_the_chain_pass_and_the_first_check_sets_the_baseline(world):
    assert await world.reconciler.check() == []
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS
    world.chain.collateral += r.realized_pnl + r.gas_cost  # what the trade did to the wallet's pUSD
    assert await world.reconciler.check() == [] and world.breaker.state is CircuitState.CLOSED


async def test_pusd_the_books_do_not_explain_forces_the_breaker_open(world):
    # The independent chaos run: the wallet held 15.375352 pUSD more than the books.
    assert await world.reconciler.check() == []
    world.chain.collateral += 15_375_352

    [diff] = await world.reconciler.check()
    assert world.reconciler.suspect and world.breaker.state is CircuitState.CLOSED  # seen once
    [diff] = await world.reconciler.check()  # and again: confirmed

    assert diff.what == "pUSD" and diff.chain - diff.books == 15_375_352
    assert world.breaker.state is CircuitState.FORCED_OPEN
    assert "books differ from the chain: pUSD" in world.breaker.reason and "15.375352" in world.breaker.reason
    assert world.reconciler.get_stats()["trips"] == 1


async def test_a_phantom_position_is_found_and_an_operator_resume_accepts_the_chain(world):
    # ... and a journal position of 96.91 shares that the chain did not hold.
    await world.reconciler.check()
    world.journal.hold("unwind", "123", 96_910_000, 400_000)

    await world.reconciler.check()
    [diff] = await world.reconciler.check()
    assert diff.what == "token 123" and (diff.chain, diff.books) == (0, 96_910_000)

    done = world.reconciler.accept("explained: the unwind sold after all")
    world.breaker.reset("explained")
    assert any("token 123 -96910000" in d for d in done)
    assert world.journal.positions() == [] and await world.reconciler.check() == []


async def test_tokens_on_chain_the_books_do_not_hold_are_found(world):
    await world.sender.execute(signal(world.clock))  # tok* are not numeric: a real token id instead
    world.journal.hold("x", "555", 0, 400_000)
    await world.reconciler.check()
    world.chain.tokens["555"] = SIZE
    await world.reconciler.check()
    [diff] = await world.reconciler.check()
    assert (diff.what, diff.chain, diff.books) == ("token 555", SIZE, 0)


async def test_no_check_while_anything_is_under_way(world):
    assert world.idem.claim("in-flight").owned  # an execution not finished yet
    assert await world.reconciler.check() is None
    assert world.reconciler.get_stats()["skipped"] == 1 and world.journal.get_value("books_baseline") is None


async def test_a_round_during_which_something_moved_is_void(world):
    await world.reconciler.check()
    real = world.chain.collateral_balance

    async def moving():
        world.sender.activity += 1  # an execution started while we read
        world.chain.collateral += 1
        return await real()

    world.chain.collateral_balance = moving
    assert await world.reconciler.check() is None and world.breaker.state is CircuitState.CLOSED


async def test_a_difference_gone_by_the_next_round_never_trips(world):
    # A reorg set a settlement back for a few seconds: it came again.
    await world.reconciler.check()
    world.chain.collateral -= 5_000_000
    assert len(await world.reconciler.check()) == 1 and world.reconciler.suspect
    world.chain.collateral += 5_000_000
    assert await world.reconciler.check() == [] and not world.reconciler.suspect
    assert world.breaker.state is CircuitState.CLOSED and world.reconciler.get_stats()["trips"] == 0


async def test_the_journals_placeholder_signals_do_not_stop_the_check(world):
    # Approvals and position sales are journaled under placeholder signals whose
    # kind no Signal decodes: the first real start-up failed on them, forever.
    from actors.executor.actor import _APPROVAL_SIGNAL

    world.journal.begin("approvals:0xabc:1", _APPROVAL_SIGNAL)
    assert await world.reconciler.check() == []
