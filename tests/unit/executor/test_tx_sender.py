"""The executor's pipeline, branch by branch, with a fake venue, a fake chain,
the real nonce manager / breaker / retry policy / idempotency store and a test clock."""

import asyncio
import random
import sqlite3
from decimal import Decimal

import msgspec
import pytest

from actors.domain.enums import CircuitState, TxStatus
from actors.executor.circuit_breaker import CircuitBreaker
from actors.executor.idempotency import IdempotencyStore
from actors.executor.journal import Journal
from actors.executor.legs import LegEvent, LegState, client_id
from actors.executor.onchain import OnChainSender
from actors.executor.ports import OrderRejected
from actors.executor.retry_policy import RetryPolicy
from actors.executor.tx_sender import TxSender
from actors.nonce.nonce_manager import NonceManager
from actors.nonce.store import NonceStore
from actors.runtime.clock import TestClock
from bus.messages import Leg, Signal
from tests.unit.executor.fakes import FakeChain, FakeVenue
from tests.unit.nonce.fake_chain import FakeNonceChain

pytestmark = pytest.mark.unit

M = "0xmarket"
SIZE = 10_000_000  # 10 sets


class World:
    def __init__(self, tmp_path, cfg, clock=None, nonce_chain=None, venue=None):
        self.tmp, self.cfg = tmp_path, cfg
        self.clock = clock or TestClock()
        self.nonce_chain = nonce_chain or FakeNonceChain()
        self.venue = venue or FakeVenue()
        self.chain = FakeChain(self.nonce_chain)
        self.venue.wallet = self.chain.tokens  # the legs' tokens arrive in the wallet
        self.build()

    def build(self):
        self.nonces = NonceManager(self.nonce_chain, NonceStore(self.tmp / "nonce.sqlite"), self.clock)
        self.breaker = CircuitBreaker.from_config(self.cfg.circuit_breaker, clock=self.clock)
        self.retry = RetryPolicy.from_config(self.cfg.retry_policy, clock=self.clock, rng=random.Random(1),
                                             sleep=self._nosleep)
        self.journal = Journal(self.tmp / "journal.sqlite", self.clock)
        self.idem = IdempotencyStore(self.tmp / "journal.sqlite", clock=self.clock, db=self.journal.db)
        self.onchain = OnChainSender(self.chain, self.nonces, self.retry, self.clock, self.journal,
                                     lambda: self.cfg)
        self.sender = TxSender(venue=self.venue, chain=self.chain, onchain=self.onchain, breaker=self.breaker,
                               retry=self.retry, idempotency=self.idem, journal=self.journal, clock=self.clock,
                               config=lambda: self.cfg)

    async def _nosleep(self, seconds):
        self.clock.advance(seconds)


async def until(cond, what: str = "", limit: int = 2000) -> None:
    """Turn the event loop until `cond()` holds, or fail saying what never happened
    (an unbounded wait would hang until the test's timeout instead)."""
    for _ in range(limit):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"still waiting after {limit} loop turns: {what}")


async def drive(clock, task, step=0.25, limit=2000):
    """Advance the test clock until `task` finishes (its waits are on that clock)."""
    for _ in range(limit):
        if task.done():
            return task.result()
        clock.advance(step)
        for _ in range(3):
            await asyncio.sleep(0)
    raise AssertionError("task did not finish")


@pytest.fixture
async def world(tmp_path, sandbox_config):
    # SELL_SETs split inline here, and no top-up moves money behind the tests' backs:
    # test_sell_reserve.py has the reserve on.
    cfg = msgspec.structs.replace(sandbox_config, trading=msgspec.structs.replace(
        sandbox_config.trading, sell_reserve=Decimal(0)))
    w = World(tmp_path, cfg)
    await w.nonces.initialize()
    return w


async def restarted(world, tmp_path):
    """A new executor process on the same databases, venue and chain (after a crash)."""
    w2 = World(tmp_path, world.cfg, clock=world.clock, nonce_chain=world.nonce_chain, venue=world.venue)
    w2.chain = world.chain
    w2.build()
    w2.sender.chain = world.chain
    w2.onchain.chain = world.chain
    await w2.nonces.initialize()
    return w2


def signal(clock, kind="BUY_SET", prices=(450_000, 500_000), created_offset=0, size=SIZE):
    side = "BUY" if kind == "BUY_SET" else "SELL"
    legs = [Leg(token_id=f"tok{i}", side=side, limit_price=p, size=size, cost=p * size // 1_000_000, fee=1_000)
            for i, p in enumerate(prices)]
    now = clock.time_ns() + created_offset
    return Signal(signal_id=f"s{created_offset}", market=M, kind=kind, legs=legs, size=size, expected_profit=1,
                  book_ts_ms={leg.token_id: now // 1_000_000 for leg in legs}, created_ns=now,
                  expires_ns=now + 2_000_000_000)


async def test_buy_set_success_merges_and_books_the_profit(world):
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS and r.success
    # 10 sets merged for 10 USDC; paid 4.5 + 5.0 + fees 0.002; gas 120k * 60 gwei * 0.5 USDC/POL
    gas = 120_000 * 60 * 10**9 * 500_000 // 10**18
    assert r.gas_cost == gas and r.realized_pnl == SIZE - 9_500_000 - 2_000 - gas
    assert [c[1] for c in world.venue.calls] == ["BUY", "BUY"]
    assert world.chain.sent[0]["data"].startswith("merge:") and r.nonce == 0 and world.nonce_chain.latest == 1
    assert world.idem.get(r.idempotency_key).status.value == "COMPLETED"
    assert world.nonces.get_stats()["pending_count"] == 0


async def test_sell_set_splits_before_selling(world):
    r = await world.sender.execute(signal(world.clock, "SELL_SET", prices=(520_000, 500_000)))
    assert r.status is TxStatus.SUCCESS
    assert world.chain.sent[0]["data"].startswith("split:")
    assert [c[1] for c in world.venue.calls] == ["SELL", "SELL"]
    assert r.realized_pnl == 10_200_000 - 2_000 - SIZE - r.gas_cost


async def test_expired_signal_is_dropped_before_anything(world):
    s = signal(world.clock)
    world.clock.advance(3)
    r = await world.sender.execute(s)
    assert r.status is TxStatus.EXPIRED and world.venue.calls == []


async def test_open_breaker_rejects_with_the_reason(world):
    world.breaker.force_open("operator halt")
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.REJECTED and "operator halt" in r.error and world.venue.calls == []


async def test_the_same_opportunity_twice_executes_once(world):
    first = await world.sender.execute(signal(world.clock))
    again = await world.sender.execute(signal(world.clock, created_offset=5))  # re-signalled, same books
    assert first.status is TxStatus.SUCCESS and again.status is TxStatus.DUPLICATE
    assert len(world.venue.calls) == 2 and len(world.chain.sent) == 1


async def test_all_legs_killed_is_stale_and_does_not_count_against_the_breaker(world):
    world.venue.script["tok0"] = ["kill"]
    world.venue.script["tok1"] = ["kill"]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.STALE and world.chain.sent == []
    assert world.breaker.get_stats()["failure_count"] == 0


async def test_partial_fill_is_unwound_and_recorded(world):
    world.venue.script["tok1"] = ["kill"]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND and not r.success
    unwind = world.venue.calls[-1]
    assert unwind[:2] == ("tok0", "SELL") and unwind[5] is True  # FAK
    assert unwind[2] == 450_000 - 100_000  # bounded by unwind_max_price_move
    assert r.realized_pnl < 0 and world.chain.sent == []
    # The book killed the other leg: a market outcome, not a failing venue.
    assert world.breaker.get_stats()["consecutive_failures"] == 0 and "killed by the book" in r.error
    _, state, data = world.journal.get(r.idempotency_key)
    assert state == "done" and data["status"] == "PARTIAL_UNWOUND" and data["pnl"] == r.realized_pnl
    assert data["proceeds"] > 0  # the unwind's own record


async def test_a_partial_fill_from_a_refused_leg_counts_against_the_breaker(world):
    world.venue.script["tok1"] = ["reject"]  # "not enough balance / allowance"
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND and "not enough balance" in r.error
    assert world.breaker.get_stats()["consecutive_failures"] == 1


async def test_every_leg_refused_by_the_venue_is_a_failure_not_a_stale_signal(world):
    # Issue 12, sequence 8: refused legs (no balance, market closed) were booked
    # STALE, which the breaker ignores: a venue refusing everything never tripped it.
    world.venue.script["tok0"] = ["reject"]
    world.venue.script["tok1"] = ["reject"]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.FAILED and "not enough balance" in r.error
    assert world.breaker.get_stats()["consecutive_failures"] == 1


async def test_half_open_probes_pass_although_the_book_kills_some_of_them(world):
    # Issue 12, sequence 12: a probe whose leg the book killed failed the probe, so
    # a healthy system with moving books could never close its breaker again.
    world.breaker.force_open("test")
    world.breaker.reset("test")
    for i in range(3):
        world.venue.script["tok0"] = ["reject"]
        await world.sender.execute(signal(world.clock, prices=(450_000 + i * 10_000, 500_000)))
    assert world.breaker.state is CircuitState.OPEN
    world.clock.advance(world.cfg.circuit_breaker.open_timeout_seconds + 1)
    world.venue.script["tok1"] = ["kill"]  # the first probe: one leg killed by a moved book
    r = await world.sender.execute(signal(world.clock, prices=(300_000, 500_000)))
    assert r.status is TxStatus.PARTIAL_UNWOUND and world.breaker.state is CircuitState.HALF_OPEN
    for i in range(world.cfg.circuit_breaker.half_open_max_calls):
        assert (await world.sender.execute(signal(world.clock, prices=(310_000 + i * 10_000, 500_000)))).success
    assert world.breaker.state is CircuitState.CLOSED


async def test_a_store_error_at_the_claim_gives_the_breaker_permit_back(world, monkeypatch):
    # Issue 12, sequence 8: a permit taken before a claim that raised was never
    # returned; in HALF_OPEN three of them rejected every later signal for ever.
    for i in range(3):
        world.venue.script["tok0"] = ["reject"]
        await world.sender.execute(signal(world.clock, prices=(450_000 + i * 10_000, 500_000)))
    world.clock.advance(world.cfg.circuit_breaker.open_timeout_seconds + 1)
    assert world.breaker.state is CircuitState.HALF_OPEN
    real = world.idem.claim

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(world.idem, "claim", locked)
    for i in range(world.cfg.circuit_breaker.half_open_max_calls + 1):
        with pytest.raises(sqlite3.OperationalError):
            await world.sender.execute(signal(world.clock, prices=(300_000 + i * 10_000, 500_000)))
    monkeypatch.setattr(world.idem, "claim", real)

    r = await world.sender.execute(signal(world.clock, prices=(200_000, 500_000)))
    assert r.status is TxStatus.SUCCESS


async def test_transient_venue_errors_are_retried(world):
    world.venue.script["tok0"] = ["http500", "http500", "fill"]  # its batch answer, then alone: retried
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS
    assert world.retry.get_stats()["retries"] >= 1 and [c[0] for c in world.venue.calls].count("tok0") == 3


@pytest.mark.parametrize("error, expect", [
    ("{'code': -32000, 'message': 'replacement transaction underpriced'}", "bumps"),
    ("{'code': -32000, 'message': 'already known'}", "already_known"),
    ("{'code': -32000, 'message': 'gas required exceeds allowance (150000)'}", "reestimates"),
])
async def test_node_errors_get_their_remedy(world, error, expect):
    world.chain.send_errors = [error]
    if expect == "already_known":
        world.chain.automine = False
    task = asyncio.create_task(world.sender.execute(signal(world.clock)))
    if expect == "already_known":
        # the first send "failed" with already known: nothing was pooled, so send it for real, then mine
        await asyncio.sleep(0)
        await until(lambda: world.chain.txs, "a transaction signed")
        h, tx = next(iter(world.chain.txs.items()))
        world.chain.sent.append(tx)
        world.nonce_chain.pool[tx["nonce"]] = h
        world.chain.mine()
    r = await drive(world.clock, task)
    assert r.status is TxStatus.SUCCESS
    assert world.onchain.get_stats()[expect] >= 1


async def test_nonce_too_low_resyncs_and_takes_a_new_nonce(world):
    world.nonce_chain.latest = 0
    # someone else used nonce 0 after our allocation: the node refuses ours
    orig = world.chain.send_raw

    async def send_raw(raw):
        if world.nonce_chain.latest == 0:
            world.nonce_chain.latest = 1
        return await orig(raw)

    world.chain.send_raw = send_raw
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS and r.nonce == 1
    assert world.onchain.get_stats()["nonce_resyncs"] == 1


async def test_no_gas_for_the_merge_frees_the_nonce_and_leaves_the_bought_set_pending(world):
    # Issue 12, sequence 1: the legs were bought, so the execution is not over:
    # FAILED with P&L = -gas would drop the legs' cost and the tokens from the books.
    world.chain.send_errors = ["{'code': -32003, 'message': 'Insufficient funds for gas * price + value'}"]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PENDING and "nsufficient" in r.error
    assert world.idem.get(r.idempotency_key).status.value == "IN_PROGRESS"
    assert world.nonces.get_stats()["pending_count"] == 0 and await world.nonces.allocate_nonce() == 0

    resumed = await world.sender.resume(r.idempotency_key)  # gas topped up: reconciliation merges
    assert resumed.status is TxStatus.SUCCESS and len(world.chain.sent) == 1
    assert resumed.realized_pnl == SIZE - sum(leg.cost + 1_000 for leg in signal(world.clock).legs) - resumed.gas_cost


async def test_stuck_transaction_is_replaced_with_higher_fees(world):
    world.chain.automine = False
    task = asyncio.create_task(world.sender.execute(signal(world.clock)))
    await until(lambda: len(world.chain.sent) >= 1, "1 transaction(s) sent")
    for _ in range(200):  # past receipt_timeout (20 s) in 0.25 s polls
        world.clock.advance(0.25)
        await asyncio.sleep(0)
        if len(world.chain.sent) == 2:
            break
    world.chain.mine()
    r = await drive(world.clock, task)
    first, second = world.chain.sent
    assert r.status is TxStatus.SUCCESS and first["nonce"] == second["nonce"]
    assert second["maxFeePerGas"] >= first["maxFeePerGas"] * 110 // 100 + 1
    assert second["maxPriorityFeePerGas"] >= first["maxPriorityFeePerGas"] * 110 // 100 + 1


async def test_gas_above_the_limit_fails_before_any_order(world):
    world.chain.base_fee = 10**13  # 10,000 gwei
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.FAILED and "GasTooExpensive" in r.error and world.venue.calls == []


async def test_reverted_merge_burns_gas_that_the_breaker_counts(world):
    world.chain.revert = True
    s = signal(world.clock)
    r = await world.sender.execute(s)
    assert r.status is TxStatus.FAILED and r.gas_cost > 0
    stats = world.breaker.get_stats()
    assert stats["failure_count"] == 1 and stats["gas_burnt_window_usdc"] != "0.000000"
    # Issue 12, sequence 1: the legs' cost is booked and their tokens are held, not forgotten.
    assert r.realized_pnl == -sum(leg.cost + 1_000 for leg in s.legs) - r.gas_cost
    assert sorted((t, n) for t, n, _, _ in world.journal.positions()) == [("tok0", SIZE), ("tok1", SIZE)]


async def test_breaker_trips_after_consecutive_failures_then_half_opens_and_closes(world):
    for i in range(3):
        world.venue.script["tok0"] = ["reject"]
        world.venue.script["tok1"] = ["fill"]
        await world.sender.execute(signal(world.clock, prices=(450_000 + i * 10_000, 500_000)))
    assert world.breaker.state is CircuitState.OPEN
    assert (await world.sender.execute(signal(world.clock, prices=(400_000, 500_000)))).status is TxStatus.REJECTED
    world.clock.advance(world.cfg.circuit_breaker.open_timeout_seconds + 1)
    assert world.breaker.state is CircuitState.HALF_OPEN
    for i in range(world.cfg.circuit_breaker.half_open_max_calls):
        r = await world.sender.execute(signal(world.clock, prices=(300_000 + i * 10_000, 500_000)))
        assert r.status is TxStatus.SUCCESS
    assert world.breaker.state is CircuitState.CLOSED


async def test_a_crash_after_the_legs_is_reconciled_without_executing_twice(world, tmp_path):
    world.chain.automine = False
    s = signal(world.clock)
    task = asyncio.create_task(world.sender.execute(s))
    await until(lambda: world.chain.sent, "a transaction sent")
    task.cancel()  # the process dies with the merge in the pool, unmined
    await asyncio.gather(task, return_exceptions=True)
    orders_before = len(world.venue.orders)
    world.chain.mine()

    # A new process: same databases, same venue and chain.
    w2 = await restarted(world, tmp_path)
    pending = w2.idem.in_progress()
    assert len(pending) == 1 and w2.journal.get(pending[0].key)[1] == "merge_sent"
    r = await w2.sender.resume(pending[0].key)

    assert r.status is TxStatus.SUCCESS
    assert len(world.venue.orders) == orders_before  # the legs were not placed again
    assert len(world.chain.sent) == 1  # the merge was found, not re-sent
    assert w2.idem.get(r.idempotency_key).status.value == "COMPLETED"


async def test_a_signal_older_than_our_last_trade_on_its_market_is_dropped(world):
    old = signal(world.clock, prices=(400_000, 500_000))  # computed before the trade below
    world.clock.advance(0.01)
    first = await world.sender.execute(signal(world.clock, prices=(450_000, 500_000), created_offset=1))
    late = await world.sender.execute(old)
    assert first.status is TxStatus.SUCCESS and late.status is TxStatus.STALE
    assert len(world.venue.calls) == 2 and world.breaker.get_stats()["failure_count"] == 0


async def test_sell_set_whose_legs_all_fail_merges_the_set_back_and_counts_a_failure(world):
    for tok in ("tok0", "tok1"):
        world.venue.script[tok] = ["http500"] * 10
    r = await world.sender.execute(signal(world.clock, "SELL_SET", prices=(520_000, 500_000)))
    assert r.status is TxStatus.FAILED and "VenueFailure" in r.error
    assert [tx["data"].split(":")[0] for tx in world.chain.sent] == ["split", "merge"]  # collateral restored
    assert r.realized_pnl == -r.gas_cost and r.gas_cost > 0
    assert world.breaker.get_stats()["failure_count"] == 1


async def test_a_leg_error_does_not_hide_the_other_legs_fill(world):
    world.venue.script["tok1"] = ["error"] * 10  # unreachable for this leg only
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND  # tok0 filled alone and was sold back
    sells = [c for c in world.venue.calls if c[1] == "SELL"]
    assert [c[0] for c in sells] == ["tok0"]


async def test_a_leg_that_errored_but_filled_at_the_venue_is_found_by_client_id(world):
    real_place = world.venue.place

    async def place(token_id, side, price, size, client_id, *, fill_and_kill=False):
        fill = await real_place(token_id, side, price, size, client_id, fill_and_kill=fill_and_kill)
        if (token_id, side) == ("tok1", "BUY"):
            raise ConnectionError("reply lost after the venue filled it")
        return fill

    world.venue.place = place
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS  # found by its client id: a complete set, merged
    assert world.chain.sent[0]["data"].startswith("merge:")


async def test_a_failed_unwind_leaves_a_recorded_position_that_is_sold_later(world):
    world.venue.script["tok0"] = ["fill"] + ["error"] * 10  # bought; the unwind cannot sell
    world.venue.script["tok1"] = ["kill"]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND
    assert world.journal.positions() == [("tok0", SIZE, 450_000, 0)]
    assert world.sender.get_stats()["unhedged_legs"] == 1

    world.venue.script["tok0"] = ["fill"]  # the venue takes it now
    proceeds = await world.sender.clear_positions()

    assert world.journal.positions() == []
    sale = world.venue.calls[-1]
    assert sale[:2] == ("tok0", "SELL") and sale[5] is True and sale[2] == 450_000 - 2 * 100_000
    booked = {status: pnl for _, status, pnl, _ in world.journal.outcomes()}
    assert booked["POSITION_SOLD"] == proceeds > 0
    # execution (-cost) + sale (+proceeds): the books follow the collateral
    assert booked["PARTIAL_UNWOUND"] + booked["POSITION_SOLD"] == r.realized_pnl + proceeds


async def test_an_unwind_sale_whose_answer_was_lost_is_found_at_the_venue_not_held_twice(world):
    # Issue 12, sequence 10: an unwind that errored was taken for "not sold": the
    # sale settled anyway and the journal kept a position the wallet did not hold.
    world.venue.script["tok0"] = ["fill", "lost_reply"]
    world.venue.script["tok1"] = ["kill"]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND
    assert world.journal.positions() == [] and world.sender.get_stats()["unhedged_legs"] == 0
    _, _, data = world.journal.get(r.idempotency_key)
    assert data["proceeds"] > 0


async def test_an_unwind_replayed_after_a_crash_records_its_position_once(world):
    # Issue 12, sequence 6: the unwind's position committed on its own; a crash and
    # a resume added it again.
    world.venue.script["tok0"] = ["error"] * 20
    legs = signal(world.clock).legs[:1]
    await world.sender.positions.unwind("k", legs)
    await world.sender.positions.unwind("k", legs)  # the replay
    assert world.journal.positions() == [("tok0", SIZE, 450_000, 0)]


async def test_a_new_position_of_a_token_sold_before_gets_a_new_sale(world):
    # Issue 12, sequence 5: the sale's key (position:<token>:<attempts>) came back
    # for a later position of the same token: "Duplicated", the old sale returned,
    # nothing sold, and the tokens stayed in the wallet unbooked.
    world.journal.hold("first", "tok0", SIZE, 450_000)
    await world.sender.clear_positions()
    assert world.journal.positions() == []
    world.journal.hold("second", "tok0", SIZE, 450_000)
    proceeds = await world.sender.clear_positions()
    assert proceeds > 0 and world.journal.positions() == []
    sales = [c for c in world.venue.calls if c[1] == "SELL"]
    assert len({c[4] for c in sales}) == 2  # two client ids
    assert [status for _, status, _, _ in world.journal.outcomes()].count("POSITION_SOLD") == 2


async def test_a_sale_attempt_that_sold_nothing_is_counted_and_the_next_one_goes_lower(world):
    world.journal.hold("h", "tok0", SIZE, 450_000)
    world.venue.script["tok0"] = ["kill"]
    await world.sender.clear_positions()
    assert world.journal.positions() == [("tok0", SIZE, 450_000, 1)]
    await world.sender.clear_positions()
    first, second = [c[2] for c in world.venue.calls if c[1] == "SELL"]
    assert second == first - 100_000 and world.journal.positions() == []


async def test_a_key_still_queued_behind_its_market_is_dropped_at_resume_not_traded(world):
    # Issue 12, sequence 7: a key that never reached its legs was executed in full
    # after a restart, even with the breaker FORCED_OPEN.
    s = signal(world.clock)
    key = world.idem.generate(s, exclude=["created_ns", "expires_ns", "signal_id"])
    assert world.idem.claim(key).owned
    world.journal.begin(key, s)
    world.breaker.force_open("operator")

    r = await world.sender.resume(key)

    assert r.status is TxStatus.EXPIRED and world.venue.calls == [] and world.chain.sent == []
    assert world.idem.get(key).status.value == "FAILED"


async def test_a_resume_reads_the_journaled_fills_instead_of_placing_the_legs_again(world):
    world.chain.send_errors = ["{'code': -32003, 'message': 'Insufficient funds for gas * price + value'}"]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PENDING
    calls = len(world.venue.calls)

    [resumed] = await world.sender.reconcile()

    assert resumed.status is TxStatus.SUCCESS and len(world.venue.calls) == calls
    assert await world.sender.reconcile() == []  # nothing left


async def test_a_fee_bump_that_cannot_be_broadcast_keeps_watching_the_first_attempt(world):
    # Issue 12, sequence 3: an error on re-broadcast escaped the bump loop while the
    # first attempt could still be mined: the split was booked FAILED, its key
    # re-opened, and the attempt mined later.
    world.chain.automine = False
    world.chain.send_errors = [None] + [ConnectionResetError("connection reset by peer")] * 10
    task = asyncio.create_task(world.sender.execute(signal(world.clock, kind="SELL_SET", prices=(550_000, 500_000))))
    await until(lambda: len(world.chain.sent) >= 1, "1 transaction(s) sent")
    for _ in range(200):  # past the receipt timeout: the bump is tried and fails
        if world.sender.onchain.get_stats()["rebroadcast_errors"]:
            break
        world.clock.advance(0.5)
        await asyncio.sleep(0)
    assert world.sender.onchain.get_stats()["rebroadcast_errors"] == 1 and not task.done()
    world.chain.mine()  # the first attempt is mined after all

    r = await drive(world.clock, task)

    assert r.status is TxStatus.SUCCESS and len(world.chain.sent) == 1


async def test_a_split_whose_broadcast_outcome_is_unknown_is_pending_not_failed(world):
    world.chain.send_errors = [ConnectionResetError("connection reset by peer")] * 5
    r = await world.sender.execute(signal(world.clock, kind="SELL_SET", prices=(550_000, 500_000)))
    assert r.status is TxStatus.PENDING and "outcome unknown" in r.error and world.venue.calls == []
    assert world.idem.get(r.idempotency_key).status.value == "IN_PROGRESS"


def with_executor(cfg, **values):
    import msgspec

    return msgspec.structs.replace(cfg, executor=msgspec.structs.replace(cfg.executor, **values))


async def test_a_fee_bump_never_passes_the_fee_cap_and_the_first_attempt_is_still_watched(world):
    # Issue 12, sequence 9: bumps were not capped by max_fee_per_gas_gwei.
    world.cfg = with_executor(world.cfg, max_fee_per_gas_gwei=95)  # first attempt 90 gwei; a bump is 100.8
    world.chain.automine = False
    task = asyncio.create_task(world.sender.execute(signal(world.clock)))
    await until(lambda: len(world.chain.sent) >= 1, "1 transaction(s) sent")
    for _ in range(200):
        if world.sender.onchain.get_stats()["bumps_capped"]:
            break
        world.clock.advance(0.5)
        await asyncio.sleep(0)
    assert world.sender.onchain.get_stats()["bumps_capped"] >= 1 and len(world.chain.sent) == 1
    assert all(tx["maxFeePerGas"] <= 95 * 10**9 for tx in world.chain.sent)
    world.chain.mine()
    assert (await drive(world.clock, task)).status is TxStatus.SUCCESS


async def test_a_fee_bump_follows_a_base_fee_that_rose(world):
    world.chain.automine = False
    task = asyncio.create_task(world.sender.execute(signal(world.clock)))
    await until(lambda: len(world.chain.sent) >= 1, "1 transaction(s) sent")
    world.chain.base_fee = 200 * 10**9  # the network got busy after the quote
    await world.sender.onchain.refresh_fees()
    while len(world.chain.sent) < 2:
        world.clock.advance(0.5)
        await asyncio.sleep(0)
    first, second = world.chain.sent[:2]
    assert second["maxFeePerGas"] >= 200 * 10**9 + second["maxPriorityFeePerGas"]
    assert second["maxPriorityFeePerGas"] > first["maxPriorityFeePerGas"] * 110 // 100
    world.chain.mine()
    assert (await drive(world.clock, task)).status is TxStatus.SUCCESS


async def test_underpriced_answers_never_bump_beyond_max_fee_bumps(world):
    # Issue 12, sequence 9: the BUMP_FEE remedy added bumps beyond max_fee_bumps.
    world.cfg = with_executor(world.cfg, max_fee_bumps=1)
    world.chain.send_errors = ["{'code': -32000, 'message': 'transaction underpriced'}"] * 20
    r = await world.sender.execute(signal(world.clock))
    assert world.sender.onchain.get_stats()["bumps"] == 1
    assert r.status in (TxStatus.PENDING, TxStatus.FAILED)


async def test_a_signal_created_after_our_trade_from_books_before_it_is_stale(world):
    # Issue 12, sequence 11: the rule compared the signal's creation time with our
    # last trade, not the books it was computed from: books our own trade had just
    # emptied passed, and their legs were killed or filled alone.
    before = signal(world.clock, prices=(400_000, 500_000))  # books seen before the trade below
    world.clock.advance(0.01)
    first = await world.sender.execute(signal(world.clock, prices=(450_000, 500_000), created_offset=1))
    world.clock.advance(0.01)
    late = msgspec.structs.replace(before, created_ns=world.clock.time_ns(),
                                   expires_ns=world.clock.time_ns() + 2_000_000_000)
    r = await world.sender.execute(late)
    assert first.status is TxStatus.SUCCESS and r.status is TxStatus.STALE and "books older" in r.error
    assert len(world.venue.calls) == 2


async def test_the_market_is_free_for_the_next_signal_while_a_merge_is_mined(world):
    # Issue 12, sequence 13: the per-market lock was held while the merge settled on
    # chain, so signals behind it expired (41 of 80 outcomes in one run).
    world.chain.automine = False
    first = asyncio.create_task(world.sender.execute(signal(world.clock, prices=(450_000, 500_000))))
    # its legs traded, its merge is in the pool
    await until(lambda: len(world.chain.sent) >= 1, "1 transaction(s) sent")
    world.clock.advance(0.01)
    second = asyncio.create_task(world.sender.execute(signal(world.clock, prices=(440_000, 500_000),
                                                             created_offset=1)))
    await until(lambda: len(world.venue.calls) == 4, "the second execution's legs placed")
    assert len(world.venue.calls) == 4 and not first.done()  # the second placed its legs meanwhile
    await until(lambda: len(world.chain.sent) >= 2, "2 transaction(s) sent")
    world.chain.mine()
    assert (await drive(world.clock, first)).status is TxStatus.SUCCESS
    assert (await drive(world.clock, second)).status is TxStatus.SUCCESS


async def test_the_market_is_free_while_an_unwinds_sale_settles(world, monkeypatch):
    # Issue 13: the unwind placed its sale AND waited for the sale's trade to settle
    # under the market lock (~2 s on the sandbox venue): every signal on the market
    # queued behind it (tick-to-trade p99 2 s).
    gate, sales = asyncio.Event(), set()
    place_sync, settle = world.venue.place_sync, world.venue.settle

    def placing(token_id, side, price, size, cid, fak):
        if fak:
            sales.add(cid)
        return place_sync(token_id, side, price, size, cid, fak)

    async def settling(fill):
        if fill.client_id in sales:
            await gate.wait()  # the sale's trade is not on chain yet
        return await settle(fill)

    monkeypatch.setattr(world.venue, "place_sync", placing)
    monkeypatch.setattr(world.venue, "settle", settling)
    world.venue.script["tok1"] = ["kill"]
    first = asyncio.create_task(world.sender.execute(signal(world.clock)))
    await until(lambda: bool(sales), "the unwind's sale placed")
    world.clock.advance(0.01)
    second = asyncio.create_task(world.sender.execute(signal(world.clock, prices=(440_000, 500_000),
                                                             created_offset=1)))
    await until(lambda: len(world.venue.calls) == 5, "the second execution's legs placed")
    assert not first.done()  # its sale still settling, and the market free meanwhile
    gate.set()
    assert (await drive(world.clock, first)).status is TxStatus.PARTIAL_UNWOUND
    assert (await drive(world.clock, second)).status is TxStatus.SUCCESS
    assert world.journal.positions() == []  # the sale settled: nothing held


async def test_a_crash_between_the_claim_and_the_journal_never_leaves_an_outcome_unbooked(world, monkeypatch):
    # Issue 12, sequence 4: the claim was completed in one SQLite file and the
    # outcome journaled in another; a crash between them left the execution
    # COMPLETED with nothing booked, and start-up resumes only IN_PROGRESS keys.
    real = world.journal.finish

    def crash(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")  # the process dies here

    monkeypatch.setattr(world.journal, "finish", crash)
    with pytest.raises(sqlite3.OperationalError):
        await world.sender.execute(signal(world.clock))
    monkeypatch.setattr(world.journal, "finish", real)
    [rec] = world.idem.in_progress()  # the claim's end was rolled back with it
    calls, sent = len(world.venue.calls), len(world.chain.sent)

    [r] = await world.sender.reconcile()

    assert r.status is TxStatus.SUCCESS and len(world.venue.calls) == calls and len(world.chain.sent) == sent
    assert [status for _, status, _, _ in world.journal.outcomes()] == ["SUCCESS"]


# -- NO_BASKET: the NO of every outcome of a neg-risk event, converted on the adapter ----

EVENT = "0x" + "ab" * 31 + "00"
WORLD_CUP_NO = (780_000, 800_000, 820_000, 560_000)  # sum 2.96 < m - 1 = 3
GAS = 120_000 * 60 * 10**9 * 500_000 // 10**18  # the fake chain's receipt: 120k gas at 60 gwei, 0.5 USDC/POL


def basket(clock, prices=WORLD_CUP_NO, size=SIZE, fee_bips=0, created_offset=0, event=EVENT):
    legs = [Leg(token_id=f"no{i}", side="BUY", limit_price=p, size=size, cost=p * size // 1_000_000, fee=1_000)
            for i, p in enumerate(prices)]
    now = clock.time_ns() + created_offset
    return Signal(signal_id=f"b{created_offset}", market=event, kind="NO_BASKET", legs=legs, size=size,
                  expected_profit=1, book_ts_ms={leg.token_id: now // 1_000_000 for leg in legs}, created_ns=now,
                  expires_ns=now + 2_000_000_000, neg_risk_market_id=event, convert_fee_bips=fee_bips)


PAID = sum(p * SIZE // 1_000_000 + 1_000 for p in WORLD_CUP_NO)  # 29.6 USDC of NO + 4 fees of 0.001


async def test_a_no_basket_buys_every_no_and_converts_them_into_m_minus_one(world):
    r = await world.sender.execute(basket(world.clock))

    assert r.status is TxStatus.SUCCESS and r.success and r.gas_cost == GAS
    # 10 NO of each of 4 outcomes convert into 3 x 10 USDC
    assert r.realized_pnl == 3 * SIZE - PAID - GAS == 392_400
    assert [(c[0], c[1], c[2], c[3], c[5]) for c in world.venue.calls] == [
        (f"no{i}", "BUY", p, SIZE, False) for i, p in enumerate(WORLD_CUP_NO)]  # FOK
    [tx] = world.chain.sent
    assert tx["to"] == "0xADAPTER" and tx["data"] == f"convert:{EVENT}:{0b1111}:{SIZE}"  # every question
    assert world.idem.get(r.idempotency_key).status.value == "COMPLETED"
    assert world.journal.positions() == []
    by = world.sender.get_stats()["by_strategy"]
    assert by["NO_BASKET"] == {"executions": 1, "successful": 1, "failed": 0, "realized_pnl_micro": 392_400,
                               "gas_spent_micro": GAS, "realized_pnl_usdc": "0.3924"}


async def test_the_adapters_convert_fee_is_booked_as_the_adapter_computes_it(world):
    world.chain.adapters[EVENT] = (4, 50)
    r = await world.sender.execute(basket(world.clock, fee_bips=50))
    # the adapter keeps floor(10 x 0.005) of every converted set: 3 x 9.95
    assert r.status is TxStatus.SUCCESS and r.realized_pnl == 3 * (SIZE - 50_000) - PAID - GAS == 242_400


async def test_binary_sets_and_baskets_are_counted_per_strategy(world):
    await world.sender.execute(signal(world.clock))
    world.venue.script["no3"] = ["kill"]
    await world.sender.execute(basket(world.clock))
    by = world.sender.get_stats()["by_strategy"]
    assert (by["BUY_SET"]["successful"], by["NO_BASKET"]["successful"], by["NO_BASKET"]["failed"]) == (1, 0, 1)
    assert sum(v["realized_pnl_micro"] for v in by.values()) == world.sender.realized_pnl


async def test_a_killed_no_leg_is_unwound_and_the_breaker_ignores_it(world):
    world.venue.script["no3"] = ["kill"]
    r = await world.sender.execute(basket(world.clock))

    assert r.status is TxStatus.PARTIAL_UNWOUND and "killed by the book" in r.error and world.chain.sent == []
    sells = [c for c in world.venue.calls if c[1] == "SELL"]
    # each filled NO sold back FAK at its limit minus unwind_max_price_move
    assert [(c[0], c[2], c[3], c[5]) for c in sells] == [
        (f"no{i}", p - 100_000, SIZE, True) for i, p in enumerate(WORLD_CUP_NO[:3])]
    paid = sum(p * SIZE // 1_000_000 + 1_000 for p in WORLD_CUP_NO[:3])
    proceeds = sum((p - 100_000) * SIZE // 1_000_000 - 1_000 for p in WORLD_CUP_NO[:3])
    assert r.realized_pnl == proceeds - paid == -3_006_000
    assert world.breaker.get_stats()["consecutive_failures"] == 0  # BookMoved: a market outcome
    assert world.journal.positions() == []
    _, state, data = world.journal.get(r.idempotency_key)
    assert state == "done" and data["status"] == "PARTIAL_UNWOUND" and data["pnl"] == r.realized_pnl


async def test_a_no_leg_that_cannot_be_unwound_is_held(world):
    world.venue.script["no0"] = ["fill"] + ["error"] * 10
    world.venue.script["no1"] = ["kill"]
    r = await world.sender.execute(basket(world.clock))
    assert r.status is TxStatus.PARTIAL_UNWOUND
    assert world.journal.positions() == [("no0", SIZE, WORLD_CUP_NO[0], 0)]


async def test_a_reverted_convert_holds_the_no_tokens_and_books_their_cost(world):
    world.chain.revert = True
    r = await world.sender.execute(basket(world.clock))

    assert r.status is TxStatus.FAILED and "TxReverted" in r.error and r.gas_cost == GAS
    assert r.realized_pnl == -PAID - GAS
    assert sorted((t, n) for t, n, _, _ in world.journal.positions()) == [(f"no{i}", SIZE) for i in range(4)]
    sources = [row[0] for row in world.journal.db.execute("SELECT source FROM holdings")]
    assert all(":convert_reverted:" in s for s in sources) and len(sources) == 4
    assert world.breaker.get_stats()["failure_count"] == 1
    # Its legs traded: the claim ends for good (a FAILED claim could be run again under the
    # same key, reusing the legs' client ids); the outcome stays FAILED in the books.
    assert world.idem.get(r.idempotency_key).status.value == "COMPLETED"
    assert world.journal.get(r.idempotency_key)[2]["status"] == "FAILED"


async def test_a_convert_that_cannot_be_sent_leaves_the_basket_pending_then_reconciled(world):
    world.chain.adapters[EVENT] = (4, 50)
    world.chain.send_errors = ["{'code': -32003, 'message': 'Insufficient funds for gas * price + value'}"]
    r = await world.sender.execute(basket(world.clock, fee_bips=50))
    assert r.status is TxStatus.PENDING and world.idem.get(r.idempotency_key).status.value == "IN_PROGRESS"
    calls, reads = len(world.venue.calls), world.chain.terms_reads
    world.chain.terms_error = ConnectionError("node down")  # the fee was journaled: not needed again

    [resumed] = await world.sender.reconcile()

    assert resumed.status is TxStatus.SUCCESS and len(world.venue.calls) == calls
    assert world.chain.terms_reads == reads
    assert resumed.realized_pnl == 3 * (SIZE - 50_000) - PAID - resumed.gas_cost


async def test_a_crash_with_the_convert_in_the_pool_is_resumed_without_trading_twice(world, tmp_path):
    world.chain.automine = False
    task = asyncio.create_task(world.sender.execute(basket(world.clock)))
    await until(lambda: world.chain.sent, "a transaction sent")
    task.cancel()  # the process dies with the convert unmined
    await asyncio.gather(task, return_exceptions=True)
    orders = len(world.venue.orders)
    world.chain.mine()

    w2 = World(tmp_path, world.cfg, clock=world.clock, nonce_chain=world.nonce_chain, venue=world.venue)
    w2.chain = world.chain
    w2.build()
    await w2.nonces.initialize()
    [pending] = w2.idem.in_progress()
    assert w2.journal.get(pending.key)[1] == "convert_sent"
    r = await w2.sender.resume(pending.key)

    assert r.status is TxStatus.SUCCESS and r.realized_pnl == 3 * SIZE - PAID - r.gas_cost
    assert len(world.venue.orders) == orders and len(world.chain.sent) == 1  # found, not sent again


@pytest.mark.parametrize("terms, why", [((5, 0), "5 questions"), ((3, 0), "3 questions"),
                                        ((4, 100), "convert fee 100 bips")])
async def test_a_basket_the_adapter_would_not_pay_for_is_refused_before_any_order(world, terms, why):
    world.chain.adapters[EVENT] = terms
    r = await world.sender.execute(basket(world.clock))
    assert r.status is TxStatus.FAILED and "BasketMismatch" in r.error and why in r.error
    assert world.venue.calls == [] and world.chain.sent == []


async def test_a_basket_without_its_adapter_market_is_refused(world):
    s = msgspec.structs.replace(basket(world.clock), neg_risk_market_id="")
    r = await world.sender.execute(s)
    assert r.status is TxStatus.FAILED and "BasketMismatch" in r.error and world.venue.calls == []


async def test_a_convert_above_the_gas_limit_fails_before_any_order(world):
    world.chain.base_fee = 10**13  # 10,000 gwei
    r = await world.sender.execute(basket(world.clock))
    assert r.status is TxStatus.FAILED and "GasTooExpensive" in r.error and world.venue.calls == []


async def test_the_adapters_terms_are_read_once_a_minute(world):
    await world.sender.execute(basket(world.clock))
    await world.sender.execute(basket(world.clock, prices=(770_000, *WORLD_CUP_NO[1:])))
    assert world.chain.terms_reads == 1
    world.clock.advance(61)
    await world.sender.execute(basket(world.clock, prices=(760_000, *WORLD_CUP_NO[1:])))
    assert world.chain.terms_reads == 2


async def test_the_event_is_free_for_the_next_basket_while_a_convert_is_mined(world):
    world.chain.automine = False
    first = asyncio.create_task(world.sender.execute(basket(world.clock)))
    # its legs traded, its convert is in the pool
    await until(lambda: len(world.chain.sent) >= 1, "1 transaction(s) sent")
    world.clock.advance(0.01)
    second = asyncio.create_task(world.sender.execute(basket(world.clock, prices=(770_000, *WORLD_CUP_NO[1:]),
                                                             created_offset=1)))
    await until(lambda: len(world.venue.calls) == 8, "the second execution's legs placed")
    assert len(world.venue.calls) == 8 and not first.done()
    await until(lambda: len(world.chain.sent) >= 2, "2 transaction(s) sent")
    world.chain.mine()
    assert (await drive(world.clock, first)).status is TxStatus.SUCCESS
    assert (await drive(world.clock, second)).status is TxStatus.SUCCESS


async def test_a_basket_computed_before_our_last_trade_on_the_event_is_stale(world):
    old = basket(world.clock, prices=(770_000, *WORLD_CUP_NO[1:]))
    world.clock.advance(0.01)
    first = await world.sender.execute(basket(world.clock, created_offset=1))
    late = await world.sender.execute(old)
    assert first.status is TxStatus.SUCCESS and late.status is TxStatus.STALE and len(world.venue.calls) == 4


def test_baskets_lock_by_their_event_binary_sets_by_their_condition(world):
    b = basket(world.clock)
    assert TxSender._lock_key(b) == f"event:NO_BASKET:{EVENT}"
    assert TxSender._lock_key(signal(world.clock)) == M


# -- approvals and the published result --------------------------------------------------


def web3_chain():
    from actors.domain.wallet import Wallet, dev_account
    from actors.executor.web3_chain import Web3Chain

    return Web3Chain("http://127.0.0.1:9", Wallet(dev_account(1)), 137)


def decode_approval(call):
    from eth_abi import decode

    data = bytes.fromhex(call["data"][2:])
    kind = "approve" if data[:4].hex() == "095ea7b3" else "setApprovalForAll"
    who, value = decode(["address", "uint256" if kind == "approve" else "bool"], data[4:])
    return call["to"].lower(), kind, who.lower(), value


def test_the_approvals_include_the_neg_risk_exchange_and_the_adapter():
    from py_clob_client_v2.config import get_contract_config

    c = get_contract_config(137)
    pusd, ctf = c.collateral.lower(), c.conditional_tokens.lower()
    calls = dict(web3_chain().approval_calls())
    got = {name: decode_approval(call) for name, call in calls.items()}
    assert got == {
        "approve_exchange": (pusd, "approve", c.exchange_v2.lower(), 2**256 - 1),
        "approve_ctf": (pusd, "approve", ctf, 2**256 - 1),
        "approve_exchange_tokens": (ctf, "setApprovalForAll", c.exchange_v2.lower(), True),
        # BUY orders on neg-risk markets settle on the neg-risk exchange: pUSD in, tokens out (unwinds)
        "approve_neg_risk_exchange": (pusd, "approve", c.neg_risk_exchange_v2.lower(), 2**256 - 1),
        "approve_neg_risk_exchange_tokens": (ctf, "setApprovalForAll", c.neg_risk_exchange_v2.lower(), True),
        # convertPositions pulls the NO it converts
        "approve_neg_risk_adapter_tokens": (ctf, "setApprovalForAll", c.neg_risk_adapter.lower(), True),
    }


async def test_only_the_missing_approvals_are_reported(monkeypatch):
    from eth_abi import decode

    chain = web3_chain()
    granted = {chain.exchange.lower(), chain.ctf.lower()}  # an older version approved these

    async def get_code(addr):
        return b"\x60\x00"

    async def call(tx):
        data = bytes.fromhex(tx["data"][2:])
        _, spender = decode(["address", "address"], data[4:])
        return (2**256 - 1 if spender.lower() in granted else 0).to_bytes(32, "big")

    monkeypatch.setattr(chain._w3.eth, "get_code", get_code)
    monkeypatch.setattr(chain._w3.eth, "call", call)
    assert await chain.approvals_missing() == ["approve_neg_risk_exchange", "approve_neg_risk_exchange_tokens",
                                               "approve_neg_risk_adapter_tokens"]
    granted |= {chain.neg_risk_exchange.lower(), chain.neg_risk_adapter.lower()}
    assert await chain.approvals_missing() == []


def test_the_convert_call_encodes_market_index_set_and_amount():
    from eth_abi import decode
    from eth_utils import function_signature_to_4byte_selector

    chain = web3_chain()
    call = chain.convert_call(EVENT, 0b1111, SIZE)
    data = bytes.fromhex(call["data"][2:])
    assert call["to"] == chain.neg_risk_adapter and call["from"] == chain.address
    assert data[:4] == function_signature_to_4byte_selector("convertPositions(bytes32,uint256,uint256)")
    assert decode(["bytes32", "uint256", "uint256"], data[4:]) == (bytes.fromhex(EVENT[2:]), 15, SIZE)


async def test_the_published_result_names_its_strategy(world, sandbox_config, tmp_path):
    from actors.executor.actor import ExecutorActor
    from actors.runtime.shell import ActorRuntime
    from bus.fakes import FakeContext
    from bus.messages import TxResult as TxResultMsg
    from config.runtime import ConfigReloader

    cfg = msgspec.structs.replace(sandbox_config, executor=msgspec.structs.replace(
        sandbox_config.executor, state_dir=str(tmp_path / "ex")))
    rt = ActorRuntime("executor", ConfigReloader(initial=cfg), FakeContext(), TestClock())
    actor = ExecutorActor(rt, venue=FakeVenue(), chain=FakeChain(FakeNonceChain()), nonces=object())
    await actor.start()
    sent = []
    monkeypatch_publish = rt.publisher.publish

    def publish(topic, body, **kw):
        sent.append(body)
        return monkeypatch_publish(topic, body, **kw)

    rt.publisher.publish = publish
    done = await world.sender.execute(basket(world.clock))
    actor._publish(done)
    [msg] = [b for b in sent if isinstance(b, TxResultMsg)]
    assert (msg.kind, msg.status, msg.market, msg.realized_pnl) == ("NO_BASKET", "SUCCESS", EVENT, 392_400)
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(msg), type=TxResultMsg)
    assert decoded.kind == "NO_BASKET"
    old = msgspec.msgpack.encode({k: v for k, v in msgspec.structs.asdict(msg).items() if k != "kind"})
    assert msgspec.msgpack.decode(old, type=TxResultMsg).kind is None  # an older executor's result
    actor.sender.by_kind = world.sender.by_kind
    assert actor.summary()["by_strategy"] == "NO_BASKET 1/1 0.392400"
    actor.journal.close()


def test_a_signal_of_an_older_router_still_decodes():
    s = signal(TestClock())
    old = {k: v for k, v in msgspec.to_builtins(s).items() if k not in ("neg_risk_market_id", "convert_fee_bips")}
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=Signal)
    assert (back.neg_risk_market_id, back.convert_fee_bips) == ("", 0) and back.legs == s.legs


async def test_the_legs_go_out_in_one_batch(world):
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS and len(world.venue.batch_calls) == 1
    assert len(world.venue.batch_calls[0]) == 2 and world.sender.get_stats()["batches"] == 1


async def test_a_failed_batch_request_places_the_legs_one_by_one_and_never_twice(world):
    world.venue.batch_errors = [ConnectionResetError("connection reset by peer")]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS and world.sender.get_stats()["batch_fallbacks"] == 1
    assert len(world.venue.orders) == 2  # one order per leg at the venue


async def test_a_leg_whose_batch_answer_errored_is_retried_alone(world):
    world.venue.script["tok1"] = ["error"]  # this leg's answer in the batch is an error
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS and len(world.venue.batch_calls) == 1
    assert [c[0] for c in world.venue.calls].count("tok1") == 2  # in the batch, then alone


async def test_a_leg_refused_in_the_batch_counts_as_refused(world):
    world.venue.script["tok0"] = ["reject"]
    world.venue.script["tok1"] = ["reject"]
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.FAILED and "not enough balance" in r.error


# -- settlement-aware legs (issue 12): each leg's states persisted; the merge waits for
# the legs' tokens on chain.
async def test_every_leg_state_the_venue_tells_is_persisted(world):
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS
    assert [state for _, state, *_ in world.journal.legs(r.idempotency_key)] == [LegState.MINED] * 2
    assert world.sender.leg_events == 4 and world.journal.legs_in_flight() == {}


async def test_a_merge_waits_for_the_legs_tokens_and_stays_pending_when_the_node_never_shows_them(world):
    world.venue.wallet = None  # the venue says mined; our node has not seen it
    task = asyncio.ensure_future(world.sender.execute(signal(world.clock)))
    r = await drive(world.clock, task, step=1.0)
    assert r.status is TxStatus.PENDING and "wallet lacks" in r.error and world.chain.sent == []
    assert world.idem.in_progress()  # left for reconciliation, never FAILED with its legs unbooked

    world.chain.tokens.update(tok0=SIZE, tok1=SIZE)  # the node catches up
    [done] = await world.sender.reconcile()
    assert done.status is TxStatus.SUCCESS and len(world.chain.sent) == 1
    assert len(world.venue.calls) == 2  # read from the legs' records, not placed again


async def test_a_resume_reads_decided_legs_from_their_records(world):
    # The process died after the venue told both legs mined, before the fills were journaled.
    s = signal(world.clock)
    key = world.idem.generate(s, exclude=["created_ns", "expires_ns", "signal_id"])
    assert world.idem.claim(key).owned
    world.journal.begin(key, s)
    world.journal.update(key, "legs")
    world.journal.place_legs(key, [(client_id(key, i), f"tok{i}", "BUY") for i in range(2)])
    for i in range(2):
        world.journal.leg_event(LegEvent(client_id(key, i), LegState.MATCHED, f"o{i}", SIZE, 4_500_000, 1_000))
        world.journal.leg_event(LegEvent(client_id(key, i), LegState.MINED, f"o{i}", SIZE, 4_500_000, 1_000))
    world.chain.tokens.update(tok0=SIZE, tok1=SIZE)

    r = await world.sender.resume(key)

    assert r.status is TxStatus.SUCCESS and world.venue.calls == [] and len(world.chain.sent) == 1
    assert r.realized_pnl == SIZE - 2 * (4_500_000 + 1_000) - r.gas_cost


async def test_the_books_are_cash_flows_each_tied_to_the_fill_or_transaction_that_caused_it(world):
    # Issue 12: the journal's money is the sum of recorded cash flows, so the books can
    # be rebuilt from the records and compared with the chain.
    results = [await world.sender.execute(signal(world.clock))]  # a merged set
    world.venue.script["tok1"] = ["kill"]
    results.append(await world.sender.execute(signal(world.clock, prices=(440_000, 500_000))))  # unwound
    results.append(await world.sender.execute(signal(world.clock, "SELL_SET", prices=(520_000, 500_000))))
    results.append(await world.sender.execute(basket(world.clock)))
    assert [r.status for r in results] == [TxStatus.SUCCESS, TxStatus.PARTIAL_UNWOUND, TxStatus.SUCCESS,
                                           TxStatus.SUCCESS]
    hashes = {h for h in world.chain.receipts}
    for r in results:
        flows = world.journal.flows(r.idempotency_key)
        assert flows == list(r.flows) and sum(f.amount for f in flows) == r.realized_pnl
        assert -sum(f.amount for f in flows if f.kind == "gas") == r.gas_cost
        for f in flows:  # each tied to a fill (its client id) or a mined transaction
            cids = {x.client_id for x in r.fills} | {client_id(r.idempotency_key, i, "unwind") for i in range(4)}
            assert f.ref in (hashes if f.kind in ("gas", "merge", "split", "convert") else cids), f
    kinds = [f.kind for f in world.journal.flows(results[1].idempotency_key)]
    assert kinds == ["buy", "fee", "unwind", "fee"]  # the leg bought, and sold back
    assert world.journal.booked() == sum(r.realized_pnl + r.gas_cost for r in results)


async def test_trades_that_fail_after_matching_are_the_venue_failing_and_count_against_the_breaker(world):
    # A venue whose matched trades never settle must trip the breaker, like one that errors.
    world.venue.script.update(tok0=["trade_failed"], tok1=["trade_failed"])
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.FAILED and "failed after it matched" in r.error
    world.venue.script["tok1"] = ["trade_failed"]
    r = await world.sender.execute(signal(world.clock, prices=(440_000, 500_000)))
    assert r.status is TxStatus.PARTIAL_UNWOUND and "failed after it matched" in r.error
    assert world.breaker.get_stats()["consecutive_failures"] == 2


async def test_receipts_are_polled_adaptively_from_milliseconds_up_to_the_configured_interval(world):
    # Issue 13: a flat 250 ms sleep whenever the receipt was not there at the first look
    # was 76% of an execution.
    world.chain.automine = False
    slept: list[float] = []
    real_sleep = world.clock.sleep

    async def recording(seconds):
        slept.append(seconds)
        await real_sleep(seconds)

    world.clock.sleep = recording
    task = asyncio.ensure_future(world.sender.execute(signal(world.clock)))
    for _ in range(400):
        await asyncio.sleep(0)
        if len(slept) >= 8:
            break
        if slept:
            world.clock.advance(slept[-1])
    world.chain.mine()
    r = await drive(world.clock, task)
    assert r.status is TxStatus.SUCCESS
    assert slept[:7] == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.25]  # then at most receipt_poll_seconds


async def test_the_market_is_free_for_the_next_signal_while_the_legs_settle(world):
    # Issue 13: the lock was held until every leg's trade was MINED (the venue's
    # settlement takes seconds), so the signals behind it expired or went stale.
    gate = asyncio.Event()
    real_settle = world.venue.settle

    async def slow_settle(fill):
        await gate.wait()  # MATCHED; the operator's settlement transaction is not mined yet
        return await real_settle(fill)

    world.venue.settle = slow_settle
    first = asyncio.create_task(world.sender.execute(signal(world.clock, prices=(450_000, 500_000))))
    await until(lambda: len(world.venue.calls) >= 2, "both legs placed")
    world.clock.advance(0.01)
    second = asyncio.create_task(world.sender.execute(signal(world.clock, prices=(440_000, 500_000),
                                                             created_offset=1)))
    await until(lambda: len(world.venue.calls) == 4, "the second execution's legs placed")
    assert len(world.venue.calls) == 4 and not first.done()  # placed while the first one settles
    gate.set()
    assert (await drive(world.clock, first)).status is TxStatus.SUCCESS
    assert (await drive(world.clock, second)).status is TxStatus.SUCCESS


@pytest.mark.parametrize(("estimate", "limit"), [(100_000, 180_000), (200_000, 240_000)])
async def test_a_transactions_gas_limit_is_never_below_the_configured_budget(world, estimate, limit):
    # 20% over a fresh estimate ran splits out of gas (all of the limit burnt) when a
    # concurrent merge emptied a token balance between the estimate and the mining.
    world.chain.gas_estimate = estimate
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS and world.chain.sent[0]["gas"] == limit  # budget: 90k x 2 outcomes


async def test_an_execution_that_traded_is_never_run_again_under_its_key(world):
    # A chaos run saw keys executed twice: a non-success outcome released its claim, and the
    # router re-signalled the same opportunity (same books: the same key). The second run
    # reused the journal row and the client ids of the first: its cash flows collided with
    # the first's (lost from the books) and a "Duplicated" leg could adopt the first's fill.
    world.venue.script["tok1"] = ["kill"]
    first = await world.sender.execute(signal(world.clock))
    assert first.status is TxStatus.PARTIAL_UNWOUND and world.journal.flows(first.idempotency_key)
    calls = len(world.venue.calls)
    again = await world.sender.execute(signal(world.clock, created_offset=5))  # re-signalled, same books
    assert again.idempotency_key == first.idempotency_key
    assert again.status is TxStatus.DUPLICATE and len(world.venue.calls) == calls
    assert world.journal.booked() == first.realized_pnl + first.gas_cost


async def test_an_execution_refused_before_any_order_may_run_again(world):
    world.breaker.force_open("operator halt")
    first = await world.sender.execute(signal(world.clock))
    world.breaker.reset("operator resume")
    again = await world.sender.execute(signal(world.clock, created_offset=5))
    assert first.status is TxStatus.REJECTED and again.status is TxStatus.SUCCESS


async def test_an_execution_that_ended_after_the_reconciliation_listed_it_is_not_run_again(world):
    # A chaos run: "reconciliation round failed: completed: ... is COMPLETED, not IN_PROGRESS":
    # a round listed an execution while it ran, reached it after it ended, and ran its
    # pipeline again in resume mode (a second unwind of a finished PARTIAL_UNWOUND, ...).
    world.venue.script["tok1"] = ["kill"]
    done = await world.sender.execute(signal(world.clock))
    assert done.status is TxStatus.PARTIAL_UNWOUND
    calls, flows = len(world.venue.calls), world.journal.flows(done.idempotency_key)
    assert await world.sender.resume(done.idempotency_key) is None
    assert len(world.venue.calls) == calls and world.journal.flows(done.idempotency_key) == flows


class LateBatchVenue(FakeVenue):
    """POST /orders times out (the venue is held up); it takes the batch later, after the
    legs' own retries were refused (503) and a lookup found nothing yet."""

    def __init__(self) -> None:
        super().__init__()
        self.late: list[tuple[str, str, int, int, str]] = []
        self.unsure: set[str] = set()

    async def place_batch(self, orders, settle=True):
        self.batch_calls.append([o[4] for o in orders])
        self.late = list(orders)
        self.unsure |= {o[4] for o in orders}
        raise ConnectionError("Request exception!")  # no answer

    def unanswered(self, cid):
        return cid in self.unsure

    def take_the_late_batch(self):
        for token_id, side, price, size, cid in self.late:
            self.script[token_id].insert(0, "fill")
            self.place_sync(token_id, side, price, size, cid, False)


async def test_legs_whose_batch_timed_out_are_never_booked_unfilled_on_a_lookup_that_finds_nothing_yet(tmp_path,
                                                                                                      world):
    # A chaos run (anvil frozen by SIGSTOP): the venue took a timed-out batch after the legs'
    # single retries met 503 and the lookup found nothing yet: FAILED, nothing booked, and
    # the fills' tokens (and their cost) landed in the wallet: books 201 pUSD off the chain.
    world.venue = LateBatchVenue()
    world.venue.wallet = world.chain.tokens
    world.build()
    for t in ("tok0", "tok1"):
        world.venue.script[t] = ["http500"] * 10  # every single retry refused
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.PENDING, r.error  # not FAILED: the batch may still be taken
    assert world.idem.get(r.idempotency_key).status.value == "IN_PROGRESS"

    world.venue.take_the_late_batch()  # the venue matched it after all
    [done] = await world.sender.reconcile()
    assert done.status is TxStatus.SUCCESS  # adopted by client id, merged
    assert [f.kind for f in world.journal.flows(done.idempotency_key)][:4] == ["buy", "fee", "buy", "fee"]
    assert world.journal.booked() == done.realized_pnl + done.gas_cost and world.journal.held_tokens() == {}


async def test_a_resume_never_takes_a_refusal_for_a_leg_that_matched_before_the_crash(world, tmp_path):
    """Chaos seed 46: a SELL_SET's legs MATCHED, then the executor was killed while following
    their trades; the venue settled them (the wallet sold the set). The restarted executor placed
    the legs again during an engine restart: the venue's 425 came before its client-id check, the
    legs were booked unsold, and the set was merged back from the sell reserve's tokens: the books
    104.02 pUSD and 100 sets away from the chain. A leg the journal has past PLACED is looked up,
    never placed again, and a refusal on a resume proves nothing until the venue says it has no
    such order."""
    s = signal(world.clock, "SELL_SET", prices=(520_000, 500_000))
    hang = asyncio.Event()

    async def unsettled(fill):  # the trades are matched; the process dies before they settle
        await hang.wait()

    world.venue.settle = unsettled
    told = world.venue.observer
    world.venue.observer = lambda ev: told(ev) if ev.state is LegState.MATCHED else None  # MINED never heard
    task = asyncio.create_task(world.sender.execute(s))
    await until(lambda: (k := world.idem.in_progress()) and [st for _, st, *_ in world.journal.legs(k[0].key)]
                == [LegState.MATCHED] * 2, "both legs MATCHED")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    del world.venue.settle
    sent_before = [tx["data"].split(":")[0] for tx in world.chain.sent]
    assert sent_before == ["split"]

    w2 = await restarted(world, tmp_path)
    # The engine restarts: every placement is refused before any client-id check.
    world.venue.batch_errors = [OrderRejected("the matching engine is restarting; try again shortly", 425)]

    async def restarting(*args, **kwargs):
        raise OrderRejected("the matching engine is restarting; try again shortly", 425)

    world.venue.place = restarting
    [r] = await w2.sender.reconcile()
    assert [tx["data"].split(":")[0] for tx in world.chain.sent] == ["split"]  # no merge of a set already sold
    assert r.status is TxStatus.SUCCESS, r.error
    assert [f.kind for f in w2.journal.flows(r.idempotency_key)] == ["split", "gas", "sell", "fee", "sell", "fee"]


async def test_a_resume_takes_a_refusal_for_an_unfilled_leg_only_once_the_venue_has_no_such_order(world, tmp_path):
    """A leg PLACED (no answer journaled) when the process died, which the venue did match:
    the resume's placement is refused (the 425 comes before the client-id check), and the
    lookup by client id finds the match."""
    s = signal(world.clock)
    hang = asyncio.Event()

    async def unsettled(fill):
        await hang.wait()

    world.venue.settle = unsettled
    world.venue.observer = lambda ev: None  # nothing heard: both legs stay PLACED in the journal
    task = asyncio.create_task(world.sender.execute(s))
    await until(lambda: len(world.venue.orders) == 2, "both legs matched at the venue")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    del world.venue.settle
    w2 = await restarted(world, tmp_path)
    key = w2.idem.in_progress()[0].key
    assert {st for _, st, *_ in w2.journal.legs(key)} == {LegState.PLACED}

    async def restarting(*args, **kwargs):
        raise OrderRejected("the matching engine is restarting; try again shortly", 425)

    world.venue.place = restarting
    world.venue.batch_errors = [OrderRejected("the matching engine is restarting; try again shortly", 425)]
    [r] = await w2.sender.reconcile()
    assert r.status is TxStatus.SUCCESS, r.error  # the legs found by client id, the set merged
    assert [f.kind for f in w2.journal.flows(r.idempotency_key)][:4] == ["buy", "fee", "buy", "fee"]
