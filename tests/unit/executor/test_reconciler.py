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


async def test_a_position_sale_the_venue_could_not_confirm_holds_the_check_until_it_is_booked(world):
    # Chaos seed 44: an open position's sale went through at the venue, but its reply
    # was an HTTP 5xx and so was the lookup; the executor restarted, the reconciler
    # compared, found the chain ahead of the books by that sale (pUSD +58.43, the
    # token -105.26) and forced the breaker open for good, though the next clearing
    # round booked the sale and the books were equal to the chain again.
    asset = "555"
    await world.reconciler.check()
    world.journal.hold("k:unwind:0", asset, SIZE, 450_000)
    world.chain.tokens[asset] = SIZE
    world.venue.script[asset] = ["lost_reply"]  # sold, the answer lost
    place = world.venue.place

    async def unreachable_after(*a, **kw):  # the venue answers nothing more, for now
        world.venue.place = down
        return await place(*a, **kw)

    async def down(*a, **kw):
        raise ConnectionError("HTTP 503")

    world.venue.place = unreachable_after
    world.venue.find_errors = 10**6  # the lookups fail too
    assert await world.sender.clear_positions() == 0
    sale = world.venue.orders[next(iter(world.venue.orders))]
    world.chain.collateral += sale.cost - sale.fee  # the sale settled on chain

    assert world.journal.sales_in_doubt() and world.sender.get_stats()["sales_in_doubt"] == 1
    for _ in range(3):  # rounds, and a restart's first check: not quiet, nothing compared
        assert await world.reconciler.check() is None
    assert world.breaker.state is CircuitState.CLOSED
    world.venue.place = place  # the order side answers, the lookups still fail
    await world.sender.clear_positions()  # still in doubt: no second sale of the token either
    assert len({c[4] for c in world.venue.calls if c[1] == "SELL"}) == 1 and world.journal.positions()

    world.venue.find_errors = 0  # the venue answers again
    await world.sender.reconcile()  # each round (and the start) resolves what is in doubt first
    assert world.journal.sales_in_doubt() == [] and world.journal.positions() == []
    assert await world.reconciler.check() == [] and world.breaker.state is CircuitState.CLOSED
    assert [s for _, s, _, _ in world.journal.outcomes()] == ["POSITION_SOLD"]


async def test_a_sale_the_venue_does_not_have_leaves_doubt_and_the_position_is_sold_again(world):
    world.journal.hold("k:unwind:0", "555", SIZE, 450_000)
    world.chain.tokens["555"] = SIZE
    world.venue.script["555"] = ["error"] * 100  # never reached the venue
    await world.sender.clear_positions()
    assert world.journal.sales_in_doubt() == [] and world.journal.positions() == [("555", SIZE, 450_000, 0)]
    assert await world.reconciler.check() == []  # quiet: nothing in doubt, books equal to the chain


async def test_a_clearing_sale_is_in_doubt_from_before_its_order_until_it_is_booked(world):
    # SIGKILL between the order and its booking: the next start must ask, not compare.
    world.journal.hold("k:unwind:0", "555", SIZE, 450_000)
    seen = []
    place = world.venue.place

    async def placing(*a, **kw):
        seen.append(list(world.journal.sales_in_doubt()))
        return await place(*a, **kw)

    world.venue.place = placing
    await world.sender.clear_positions()
    [[(cid, key, token, size)]] = seen
    assert key.startswith("position:555:") and (token, size) == ("555", SIZE)
    assert world.journal.sales_in_doubt() == [] and world.journal.positions() == []


async def test_an_unwind_whose_outcome_the_venue_could_not_tell_is_booked_when_it_can(world):
    # The unwind's sale went through, its reply and the lookup failed: the leg is held
    # (it may not have sold) and in doubt (it may have), never sold twice.
    world.venue.script["tok0"] = ["fill", "lost_reply"]
    world.venue.script["tok1"] = ["kill"]
    real_place, real_find, down = world.venue.place, world.venue.find, []

    async def place(token_id, side, *a, **kw):
        if down:
            raise ConnectionError("HTTP 503")
        if (token_id, side) == ("tok0", "SELL"):
            down.append(True)  # the unwind's sale goes through; then nothing answers
        return await real_place(token_id, side, *a, **kw)

    async def find(cid):
        if down:
            raise ConnectionError("venue unreachable")
        return await real_find(cid)

    world.venue.place, world.venue.find = place, find
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND
    [(_, key, doubted, _)] = world.journal.sales_in_doubt()
    assert doubted == "tok0" and key.endswith(":unwind:0:late")
    assert world.sender.quiet() is False

    down.clear()
    await world.sender.clear_positions()  # resolves first: the sale is found, nothing sold again
    assert world.journal.sales_in_doubt() == [] and world.journal.positions() == []
    assert len({c[4] for c in world.venue.calls if c[:2] == ("tok0", "SELL")}) == 1  # one sale, found
