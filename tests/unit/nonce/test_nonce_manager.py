import pytest

from actors.nonce.ledger import NonceError
from actors.nonce.nonce_manager import NonceManager
from actors.nonce.store import NonceStore
from actors.runtime.clock import TestClock
from tests.unit.nonce.fake_chain import FakeNonceChain

pytestmark = pytest.mark.unit

LEASE = 30.0
GAP = 10.0


def manager(path, chain, clock):
    return NonceManager(chain, NonceStore(path), clock, lease_seconds=LEASE, gap_fill_after_seconds=GAP)


@pytest.fixture
def world(tmp_path):
    chain, clock = FakeNonceChain(), TestClock()
    return tmp_path / "nonce.sqlite", chain, clock


async def test_seed_api(world):
    path, chain, clock = world
    chain.latest = 5
    m = manager(path, chain, clock)
    await m.initialize()

    n1 = await m.allocate_nonce()
    n2 = await m.get_nonce()
    chain.broadcast(n1)
    chain.mine()
    await m.mark_confirmed(n1)
    await m.mark_failed(n2)
    n3 = await m.allocate_nonce()

    assert (n1, n2) == (5, 6)
    assert n3 == 6  # the failed nonce is reused
    assert m.is_pending(n3) and not m.is_pending(n1)
    stats = m.get_stats()
    assert {k: stats[k] for k in ("next_nonce", "pending_count", "confirmed_count", "pending_nonces")} == {
        "next_nonce": 7, "pending_count": 1, "confirmed_count": 1, "pending_nonces": [6]}


async def test_failed_nonces_are_reused_lowest_first(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    nonces = [await m.allocate_nonce() for _ in range(5)]
    await m.mark_sent(nonces[4], "0x4")
    for n in (3, 1, 2):
        await m.mark_failed(n)
    assert [await m.allocate_nonce() for _ in range(4)] == [1, 2, 3, 5]


async def test_allocation_is_idempotent_per_request_id(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    a = await m.allocate_nonce("exec-1")
    b = await m.allocate_nonce("exec-1")
    c = await m.allocate_nonce("exec-2")
    assert a == b == 0 and c == 1
    assert m.get_stats()["replays"] == 1


async def test_unsent_lease_is_reclaimed_and_handed_out_again(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    leased = await m.allocate_nonce("lost-client")
    sent = await m.allocate_nonce("ok-client")
    await m.mark_sent(sent, chain.broadcast(sent))

    clock.advance(LEASE + 1)
    report = await m.tick()

    assert report["reclaimed"] == [leased]
    assert await m.allocate_nonce("next") == leased
    # the expired request id does not get its old nonce back: it lost the lease
    assert await m.allocate_nonce("lost-client") == 2


async def test_an_unreused_gap_is_filled_with_a_self_transfer(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    hole = await m.allocate_nonce("crashed-before-send")
    after = await m.allocate_nonce("sent")
    await m.mark_sent(after, chain.broadcast(after))
    chain.mine()
    assert chain.latest == 0  # stuck behind the hole

    clock.advance(LEASE + 1)
    await m.tick()  # reclaims the lease
    clock.advance(GAP + 1)
    report = await m.tick()  # nobody reused it: fill it
    chain.mine()
    await m.tick()

    assert report["gaps_filled"] == [hole]
    assert chain.self_transfers == [hole]
    assert chain.latest == 2
    assert m.get_stats()["pending_count"] == 0 and m.get_stats()["gap_fills"] == 1


async def test_failed_gap_fill_is_retried_later(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    await m.allocate_nonce("a")
    top = await m.allocate_nonce("b")
    await m.mark_sent(top, chain.broadcast(top))
    chain.reject_sends = 1
    clock.advance(LEASE + 1)
    await m.tick()
    clock.advance(GAP + 1)
    await m.tick()
    assert chain.self_transfers == [] and m.get_stats()["gap_fill_errors"] == 1
    clock.advance(GAP + 1)
    await m.tick()
    assert chain.self_transfers == [0]


async def test_free_nonce_at_the_top_is_compacted_not_gap_filled(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    await m.mark_sent(0, chain.broadcast(await m.allocate_nonce()))
    await m.allocate_nonce("never-sent")  # nonce 1, the highest
    clock.advance(LEASE + GAP + 2)
    await m.tick()
    await m.tick()
    assert chain.self_transfers == []
    assert m.get_stats()["next_nonce"] == 1


async def test_restart_recovers_leases_and_never_reissues_a_mined_nonce(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    a = await m.allocate_nonce("a")  # sent and mined, but never reported
    b = await m.allocate_nonce("b")  # reported sent, still in the pool
    c = await m.allocate_nonce("c")  # leased, the client is still working on it
    chain.broadcast(a)
    chain.mine()
    await m.mark_sent(b, chain.broadcast(b))

    m2 = manager(path, chain, clock)  # the process was killed; a new one starts
    report = await m2.initialize()

    assert report["confirmed"] == [a]
    assert m2.is_pending(b) and m2.is_pending(c) and not m2.is_pending(a)
    assert await m2.allocate_nonce("c") == c  # a retried request keeps its lease
    assert await m2.allocate_nonce("d") == 3


async def test_nonces_sent_by_someone_else_are_skipped(world):
    path, chain, clock = world
    chain.latest = 3
    chain.broadcast(3)
    chain.broadcast(4)
    m = manager(path, chain, clock)
    await m.initialize()
    assert await m.allocate_nonce() == 5


async def test_chain_down_during_tick_is_counted_not_fatal(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    chain.down = True
    report = await m.tick()
    assert "error" in report and m.get_stats()["chain_errors"] == 1
    assert await m.allocate_nonce() == 0  # still serving from the ledger


async def test_contradictions_are_errors(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    with pytest.raises(NonceError):
        await m.mark_failed(42)
    with pytest.raises(NonceError):
        await m.mark_sent(42, "0x")
    assert await m.mark_confirmed(42) is False  # confirming twice is harmless


# -- chain identity: state of another chain is archived, never applied

GENESIS_B = "0x" + "bb" * 32


async def test_state_of_another_chain_is_archived_and_never_applied(world, caplog):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    for i in range(5):
        n = await m.allocate_nonce(f"old-{i}")
        await m.mark_sent(n, chain.broadcast(n))
    chain.mine()
    for i in range(5, 9):  # SENT on chain A, never mined: the user's next_nonce=9 pending=4
        n = await m.allocate_nonce(f"old-{i}")
        await m.mark_sent(n, chain.broadcast(n))
    m.store.close()

    chain.reset(GENESIS_B)  # `make run` again: a fresh anvil
    chain.latest = 1  # something mined nonce 0 on the new chain already
    m2 = manager(path, chain, clock)
    await m2.initialize()

    stats = m2.get_stats()
    archived = stats["archived_state"]
    assert archived is not None and "/archive/" in archived and archived.endswith(path.name)
    assert (path.parent / "archive").is_dir() and list((path.parent / "archive").rglob(path.name))
    assert stats["pending_count"] == 0 and stats["next_nonce"] == 1 and stats["confirmed_count"] == 0
    assert await m2.allocate_nonce("old-7") == 1  # a fresh nonce of chain B, not the old lease
    assert "moved aside" in caplog.text and archived in caplog.text
    assert m2.ledger.meta["genesis_hash"] == GENESIS_B

    m2.store.close()  # a third start on chain B keeps its state
    m3 = manager(path, chain, clock)
    await m3.initialize()
    assert m3.get_stats()["archived_state"] is None and m3.is_pending(1)


async def test_legacy_state_without_identity_is_archived_when_the_chain_went_backwards(world):
    path, chain, clock = world
    store = NonceStore(path)
    with store.transaction():
        store.set_meta("next_nonce", 5)
        store.set_meta("chain_latest", 3)
    store.close()
    m = manager(path, chain, clock)  # chain.latest == 0
    await m.initialize()
    assert m.get_stats()["archived_state"] is not None and m.ledger.next_nonce == 0


async def test_a_chain_reset_under_a_running_authority_is_detected(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    for i in range(3):
        await m.mark_sent(await m.allocate_nonce(f"r{i}"), chain.broadcast(i))
    chain.mine()
    await m.mark_sent(await m.allocate_nonce("stuck"), chain.broadcast(3))
    await m.tick()
    chain.reset(GENESIS_B)
    await m.tick()
    assert m.get_stats()["archived_state"] is not None
    assert m.ledger.pending_nonces() == [] and await m.allocate_nonce("next") == 0


# -- stuck SENT nonces

RESEND = 15.0


def recovering(path, chain, clock):
    return NonceManager(chain, NonceStore(path), clock, lease_seconds=LEASE, gap_fill_after_seconds=GAP,
                        resend_after_seconds=RESEND)


async def test_a_sent_nonce_dropped_from_the_mempool_is_replaced_outbidding_the_reported_fee(world, caplog):
    path, chain, clock = world
    m = recovering(path, chain, clock)
    await m.initialize()
    n = await m.allocate_nonce("evicted")
    h = chain.broadcast(n)
    await m.mark_sent(n, h, max_fee=200 * 10**9, tip=40 * 10**9)
    behind = await m.allocate_nonce("queued")
    await m.mark_sent(behind, chain.broadcast(behind))
    chain.drop(n)

    await m.tick()  # unknown: the clock starts
    clock.advance(RESEND - 1)
    assert (await m.tick())["recovered"] == []  # not yet
    clock.advance(2)
    report = await m.tick()

    assert report["recovered"] == [n] and chain.self_transfers == [n]
    assert chain.self_transfer_fees == [(220 * 10**9 + 1, 44 * 10**9 + 1)]
    assert m.get_stats()["recoveries"] == 1
    assert f"recovered stuck nonce {n}" in caplog.text and h in caplog.text
    assert [at.tx_hash for at in m.ledger.attempts(n)] == [h, chain.pool[n]]  # every hash journaled
    chain.mine()
    await m.tick()
    assert chain.latest == 2 and m.ledger.pending_nonces() == []  # the queued one mined too


async def test_without_reported_fees_the_chains_caps_are_bumped(world):
    path, chain, clock = world
    m = recovering(path, chain, clock)
    await m.initialize()
    n = await m.allocate_nonce("x")
    await m.mark_sent(n, "0x" + "12" * 32)  # never reached the node
    await m.tick()
    clock.advance(RESEND + 1)
    await m.tick()
    from tests.unit.nonce.fake_chain import FEE, TIP
    assert chain.self_transfer_fees == [(FEE * 110 // 100 + 1, TIP * 110 // 100 + 1)]


async def test_a_new_attempt_restarts_the_grace_period_and_a_known_hash_is_never_replaced(world):
    path, chain, clock = world
    m = recovering(path, chain, clock)
    await m.initialize()
    n = await m.allocate_nonce("x")
    await m.mark_sent(n, "0x" + "12" * 32)
    await m.tick()
    clock.advance(RESEND - 1)
    await m.mark_sent(n, chain.broadcast(n, "0x" + "34" * 32))  # the executor's fee bump
    clock.advance(RESEND * 3)
    await m.tick()
    assert chain.self_transfers == [] and m.get_stats()["unknown_sent"] == []


async def test_an_underpriced_replacement_is_retried_higher(world):
    path, chain, clock = world
    m = recovering(path, chain, clock)
    await m.initialize()
    n = await m.allocate_nonce("x")
    await m.mark_sent(n, "0x" + "12" * 32, max_fee=10, tip=5)
    real = chain.send_self_transfer
    refusals = []

    async def refuse_once(nonce, max_fee=None, tip=None):
        if not refusals:
            refusals.append((max_fee, tip))
            raise ValueError("replacement transaction underpriced")
        return await real(nonce, max_fee=max_fee, tip=tip)

    chain.send_self_transfer = refuse_once
    await m.tick()
    clock.advance(RESEND + 1)
    await m.tick()
    await m.tick()
    (fee0, tip0), [(fee1, tip1)] = refusals[0], chain.self_transfer_fees
    assert fee1 >= fee0 * 11 // 10 + 1 and tip1 >= tip0 * 11 // 10 + 1
    assert m.get_stats()["recovery_errors"] == 1 and m.get_stats()["recoveries"] == 1


# -- `nonce too high`: never confirmed

async def test_confirming_a_nonce_the_chain_has_not_passed_returns_it_to_the_pool(world):
    path, chain, clock = world
    m = recovering(path, chain, clock)
    await m.initialize()
    n = await m.allocate_nonce("too-high")
    await m.mark_sent(n, "0x" + "56" * 32)  # the node refused it: `nonce too high`
    assert await m.mark_confirmed(n) is False
    stats = m.get_stats()
    assert stats["confirmed_count"] == 0 and stats["unmined_confirms"] == 1
    assert not m.is_pending(n) and await m.allocate_nonce("retry") == n


async def test_confirming_a_pooled_unmined_nonce_is_left_to_reconciliation(world):
    path, chain, clock = world
    m = recovering(path, chain, clock)
    await m.initialize()
    n = await m.allocate_nonce("a")
    await m.mark_sent(n, chain.broadcast(n))
    assert await m.mark_confirmed(n) is False and m.is_pending(n)
    chain.mine()
    await m.tick()
    assert not m.is_pending(n) and m.get_stats()["confirmed_count"] == 1


# -- the lock is never held across a network call

async def test_the_lock_is_never_held_across_a_chain_call(world):
    path, chain, clock = world
    m = recovering(path, chain, clock)
    seen = []
    for name in ("transaction_counts", "transaction_known", "fee_caps", "send_self_transfer", "genesis_hash"):
        real = getattr(chain, name)

        def wrap(real=real, name=name):
            async def call(*a, **kw):
                seen.append((name, m._lock.locked()))
                return await real(*a, **kw)
            return call
        setattr(chain, name, wrap())
    await m.initialize()
    hole = await m.allocate_nonce("hole")
    top = await m.allocate_nonce("top")
    await m.mark_sent(top, chain.broadcast(top))
    dropped = await m.allocate_nonce("dropped")
    await m.mark_sent(dropped, "0x" + "78" * 32)
    await m.tick()
    clock.advance(LEASE + RESEND + 1)
    await m.tick()
    clock.advance(GAP + 1)
    await m.tick()
    await m.mark_confirmed(top)
    assert chain.self_transfers == [dropped, hole]
    assert {name for name, _ in seen} >= {"transaction_counts", "transaction_known", "fee_caps", "send_self_transfer"}
    assert [name for name, locked in seen if locked] == []


# -- SQLite first, memory after the commit

@pytest.mark.parametrize("op", ["allocate", "mark_sent", "confirm", "fail", "reclaim"])
async def test_a_failed_write_leaves_memory_and_disk_agreeing(world, op):
    import sqlite3

    path, chain, clock = world
    m = recovering(path, chain, clock)
    await m.initialize()
    leased = await m.allocate_nonce("leased")
    sent = await m.allocate_nonce("sent")
    await m.mark_sent(sent, chain.broadcast(sent))
    chain.mine()
    chain.latest = 0  # keep `sent` unmined for confirm below; the ledger sees chain_latest 0
    ledger = m.ledger
    before = (ledger.get_stats(), {n: ledger.allocation(n) for n in ledger.pending_nonces()})

    def boom(*a, **kw):
        raise sqlite3.OperationalError("disk I/O error")

    ledger._store.set_meta = boom
    ledger._store.put_allocation = boom
    ledger._store.add_free = boom
    with pytest.raises(sqlite3.OperationalError):
        if op == "allocate":
            ledger.allocate("new")
        elif op == "mark_sent":
            ledger.mark_sent(leased, "0xabc")
        elif op == "confirm":
            ledger.mark_confirmed(sent)
        elif op == "fail":
            ledger.mark_failed(leased)
        else:
            clock.advance(LEASE + 1)
            ledger.reclaim_expired()
    after = (ledger.get_stats(), {n: ledger.allocation(n) for n in ledger.pending_nonces()})
    assert after == before
    ledger._store.close()
    m2 = recovering(path, chain, clock)
    disk = m2.ledger
    assert disk.pending_nonces() == ledger.pending_nonces() and disk.free_nonces == ledger.free_nonces
    assert disk.next_nonce == ledger.next_nonce and disk.confirmed_count == ledger.confirmed_count
