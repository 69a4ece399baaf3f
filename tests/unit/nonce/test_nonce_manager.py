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
