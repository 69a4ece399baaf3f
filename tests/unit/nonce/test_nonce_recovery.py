"""Recovery of stuck SENT nonces: re-broadcast of the journaled signed transaction
first, a zero-value no-op later; and a chain that lost blocks (same genesis)."""

import asyncio
import logging
import sqlite3

import pytest

from actors.nonce.ledger import CONFIRMED_KEEP, SENT
from actors.nonce.nonce_manager import NonceManager
from actors.nonce.store import NonceStore
from actors.runtime.clock import TestClock
from tests.unit.nonce.fake_chain import FEE, TIP, FakeNonceChain

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

LEASE, GAP, RESEND, NOOP = 30.0, 10.0, 15.0, 30.0


def manager(path, chain, clock):
    return NonceManager(chain, NonceStore(path), clock, lease_seconds=LEASE, gap_fill_after_seconds=GAP,
                        resend_after_seconds=RESEND, noop_after_seconds=NOOP)


@pytest.fixture
def world(tmp_path):
    return tmp_path / "nonce.sqlite", FakeNonceChain(), TestClock()


async def send(m, chain, rid, *, fee=None, tip=None, broadcast=True):
    """What the executor does: allocate, sign, mark_sent with the raw, broadcast."""
    n = await m.allocate_nonce(rid)
    h, raw = chain.sign(n)
    await m.mark_sent(n, h, fee, tip, raw)
    if broadcast:
        chain.broadcast(n, h)
    return n, h, raw


async def unknown_for(m, clock, seconds):
    """Tick once (the node is found not to know the nonce: the clock starts), then after `seconds`."""
    await m.tick()
    clock.advance(seconds)
    return await m.tick()


# -- re-broadcast first

async def test_a_dropped_transaction_is_rebroadcast_not_replaced(world, caplog):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, h, raw = await send(m, chain, "merge", fee=200 * 10**9, tip=40 * 10**9)
    behind, _, _ = await send(m, chain, "queued")
    chain.drop(n)

    await m.tick()
    clock.advance(RESEND - 1)
    assert (await m.tick())["recovered"] == []  # not yet
    clock.advance(2)
    with caplog.at_level(logging.WARNING):
        report = await m.tick()

    assert report["recovered"] == [n]
    assert chain.rebroadcasts == [h] and chain.pool[n] == h  # the executor's own transaction, again
    assert chain.self_transfers == []
    stats = m.get_stats()
    assert (stats["rebroadcasts"], stats["noop_replacements"], stats["recoveries"]) == (1, 0, 1)
    assert f"recovered stuck nonce {n} by re-broadcasting" in caplog.text and h in caplog.text
    assert raw.hex() not in caplog.text and "signed:" not in caplog.text  # hashes logged, never the raw bytes
    chain.mine()
    await m.tick()
    assert chain.latest == 2 and chain.mined_at[n] == h and m.ledger.pending_nonces() == []
    assert behind == 1


async def test_a_rebroadcast_the_node_forgets_again_is_replaced_after_noop_after(world, caplog):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, h, _ = await send(m, chain, "merge", fee=200 * 10**9, tip=40 * 10**9)
    h2, raw2 = chain.sign(n)  # the executor's fee bump, journaled with its raw
    await m.mark_sent(n, h2, 224 * 10**9, 45 * 10**9, raw2)
    chain.broadcast(n, h2)
    chain.drop(n)

    await unknown_for(m, clock, RESEND + 1)
    assert chain.rebroadcasts == [h2]  # the LATEST attempt
    chain.drop(n)  # the node forgets it again
    clock.advance(NOOP - 1)
    assert (await m.tick())["recovered"] == [] and chain.self_transfers == []
    clock.advance(2)
    with caplog.at_level(logging.WARNING):
        report = await m.tick()

    assert report["recovered"] == [n] and chain.self_transfers == [n]
    # The no-op outbids every known attempt by >= 10% + 1 wei.
    assert chain.self_transfer_fees == [(224 * 10**9 * 110 // 100 + 1, 45 * 10**9 * 110 // 100 + 1)]
    stats = m.get_stats()
    assert (stats["rebroadcasts"], stats["noop_replacements"], stats["recoveries"]) == (1, 1, 2)
    assert f"recovered stuck nonce {n}" in caplog.text and h in caplog.text and h2 in caplog.text
    chain.mine()
    await m.tick()
    assert chain.latest == 1 and m.ledger.pending_nonces() == []


async def test_a_rebroadcast_the_node_keeps_is_never_replaced(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, h, _ = await send(m, chain, "merge")
    chain.drop(n)
    await unknown_for(m, clock, RESEND + 1)
    clock.advance(NOOP * 3)
    await m.tick()
    assert chain.rebroadcasts == [h] and chain.self_transfers == [] and chain.pool[n] == h
    assert m.get_stats()["unknown_sent"] == []


async def test_a_refused_rebroadcast_is_replaced_by_a_noop_at_once(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, _, _ = await send(m, chain, "merge", fee=10, tip=5)
    chain.drop(n)
    chain.reject_raw = "insufficient funds for gas * price + value"
    report = await unknown_for(m, clock, RESEND + 1)
    assert report["recovered"] == [n] and chain.rebroadcasts == [] and chain.self_transfers == [n]
    assert chain.self_transfer_fees == [(FEE, TIP)]  # outbids 10/5 wei, never below today's caps
    stats = m.get_stats()
    assert (stats["rebroadcasts"], stats["noop_replacements"], stats["recovery_errors"]) == (0, 1, 1)


@pytest.mark.parametrize("answer", ["already known", "transaction already imported", "nonce too low"])
async def test_already_known_or_nonce_too_low_answers_mean_fine(world, answer):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, _, _ = await send(m, chain, "merge")
    chain.drop(n)
    chain.reject_raw = answer
    await unknown_for(m, clock, RESEND + 1)
    assert chain.self_transfers == []
    stats = m.get_stats()
    assert (stats["rebroadcasts"], stats["recovery_errors"]) == (1, 0)


async def test_without_a_journaled_raw_the_noop_comes_at_resend_after(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n = await m.allocate_nonce("old-executor")
    await m.mark_sent(n, chain.broadcast(n), 200 * 10**9, 40 * 10**9)  # no raw
    chain.drop(n)
    report = await unknown_for(m, clock, RESEND + 1)
    assert report["recovered"] == [n] and chain.self_transfers == [n] and chain.rebroadcasts == []
    assert chain.self_transfer_fees == [(220 * 10**9 + 1, 44 * 10**9 + 1)]


async def test_a_repeated_report_adds_the_raw_a_first_one_lacked(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n = await m.allocate_nonce("x")
    h, raw = chain.sign(n)
    await m.mark_sent(n, h)
    await m.mark_sent(n, h, 7, 3, raw)
    [at] = m.ledger.attempts(n)
    assert (at.tx_hash, at.max_fee, at.tip, at.raw) == (h, 7, 3, raw)
    m.store.close()
    [at] = manager(path, chain, clock).ledger.attempts(n)
    assert at.raw == raw and at.max_fee == 7


async def test_the_raw_survives_a_restart_and_is_rebroadcast_by_the_new_process(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, h, raw = await send(m, chain, "merge")
    chain.drop(n)
    m.store.close()  # killed

    m2 = manager(path, chain, clock)
    await m2.initialize()
    assert [(at.tx_hash, at.raw) for at in m2.ledger.attempts(n)] == [(h, raw)]
    await unknown_for(m2, clock, RESEND + 1)
    assert chain.rebroadcasts == [h] and chain.self_transfers == []


async def test_noop_after_is_hot_reloaded(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, _, _ = await send(m, chain, "merge")
    chain.drop(n)
    await unknown_for(m, clock, RESEND + 1)
    chain.drop(n)
    m.configure(LEASE, GAP, RESEND, noop_after_seconds=2.0)
    clock.advance(2.5)
    assert (await m.tick())["recovered"] == [n] and chain.self_transfers == [n]


# -- blocks lost: the chain's count goes backwards with the same genesis

async def mined_and_confirmed(m, chain, count, *, raw=True):
    out = []
    for i in range(count):
        if raw:
            n, h, _ = await send(m, chain, f"tx-{i}")
        else:
            n = await m.allocate_nonce(f"tx-{i}")
            h = chain.broadcast(n)
            await m.mark_sent(n, h)
        out.append((n, h))
    chain.mine()
    for n, _ in out:
        assert await m.mark_confirmed(n)
    return out


async def test_blocks_lost_unconfirm_the_lost_nonces_and_rebroadcast_them(world, caplog):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    sent = await mined_and_confirmed(m, chain, 4)
    await m.tick()
    assert m.ledger.chain_latest == 4 and m.get_stats()["confirmed_count"] == 4
    queued = [await send(m, chain, f"next-{i}") for i in range(2)]  # nonces 4 and 5 in the pool

    lost = chain.lose_blocks(1)  # nonce 3 (the executor's merge) is gone
    assert lost == [3] and chain.pending == 3  # 4 and 5 queued forever behind it
    with caplog.at_level(logging.WARNING):
        report = await m.tick()

    assert report["recovered"] == []
    assert m.ledger.chain_latest == 3  # follows the chain down
    a = m.ledger.allocation(3)
    assert a is not None and a.status == SENT and a.request_id == "tx-3"
    assert [at.tx_hash for at in m.ledger.attempts(3)] == [sent[3][1]]
    stats = m.get_stats()
    assert stats["chain_rewinds"] == 1 and stats["archived_state"] is None and stats["confirmed_count"] == 3
    assert "from 4 back to 3" in caplog.text and "[3]" in caplog.text and sent[3][1] in caplog.text

    clock.advance(RESEND + 1)
    report = await m.tick()
    assert report["recovered"] == [3] and chain.rebroadcasts == [sent[3][1]] and chain.self_transfers == []
    chain.mine()
    await m.tick()
    assert chain.latest == 6 and chain.mined_at[3] == sent[3][1]
    for n, h, _ in queued:
        assert chain.mined_at[n] == h
    assert m.ledger.pending_nonces() == [] and m.ledger.chain_latest == 6


async def test_blocks_lost_rebroadcast_only_the_attempt_the_chain_had_mined(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, h1, _ = await send(m, chain, "merge")
    h2, raw2 = chain.sign(n)  # a fee bump, journaled, that lost the race: h1 was mined
    await m.mark_sent(n, h2, 10, 5, raw2)
    chain.mine()
    assert await m.mark_confirmed(n)
    assert m.ledger.confirmed_record(n).tx_hash == h1
    await m.tick()
    chain.lose_blocks(1)
    await m.tick()
    assert [at.tx_hash for at in m.ledger.attempts(n)] == [h1, h2]
    await unknown_for(m, clock, RESEND + 1)
    assert chain.rebroadcasts == [h1] and chain.pool[n] == h1


async def test_a_lost_nonce_someone_else_had_used_is_never_rebroadcast(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, _, _ = await send(m, chain, "merge", broadcast=False)
    chain.broadcast(n, "0x" + "0f" * 32)  # another sender with the same key used the nonce
    chain.mine()
    assert await m.mark_confirmed(n)  # the executor's `nonce too low`: consumed by someone else
    # ... and it sends its call again at the next nonce, which mines.
    await send(m, chain, "merge:r1")
    chain.mine()
    await m.tick()
    chain.lose_blocks(2)
    await m.tick()
    assert m.ledger.sent_nonces() == [0, 1]
    await unknown_for(m, clock, RESEND + 1)
    # Re-broadcasting nonce 0's attempt would run the call twice: a no-op instead.
    assert chain.self_transfers == [0] and len(chain.rebroadcasts) == 1 and chain.pool[1] == chain.rebroadcasts[0]


async def test_lost_nonces_of_one_request_id_are_all_reopened_and_survive_a_restart(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    for _ in range(2):  # the same request id, allocated again once its first nonce was confirmed
        await mined_and_confirmed(m, chain, 1)
    await m.tick()
    chain.lose_blocks(2)
    await m.tick()
    assert m.ledger.allocation(1).request_id == "tx-0"  # the request id stays with its latest nonce
    assert m.ledger.allocation(0).request_id == "reopened:0:tx-0"
    m.store.close()
    m2 = manager(path, chain, clock)
    assert m2.ledger.sent_nonces() == [0, 1]


async def test_blocks_lost_while_the_authority_was_down_are_found_at_start(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    sent = await mined_and_confirmed(m, chain, 3)
    await m.tick()
    m.store.close()
    chain.lose_blocks(2)

    m2 = manager(path, chain, clock)
    report = await m2.initialize()
    assert report["rewound"] == [1, 2] and m2.get_stats()["archived_state"] is None
    assert m2.ledger.sent_nonces() == [1, 2] and m2.ledger.chain_latest == 1
    await unknown_for(m2, clock, RESEND + 1)
    assert chain.rebroadcasts == [sent[1][1], sent[2][1]]
    chain.mine()
    await m2.tick()
    assert chain.latest == 3 and m2.ledger.pending_nonces() == []


async def test_lost_nonces_without_a_signed_transaction_are_replaced_by_noops(world):
    path, chain, clock = world
    chain.latest = 3  # nonces 0-2 were sent by someone else: the authority holds no record of them
    m = manager(path, chain, clock)
    await m.initialize()
    n, h, _ = await send(m, chain, "queued")  # nonce 3
    chain.mine()
    await mined_and_confirmed(m, chain, 1, raw=False)  # nonce 4: confirmed, no raw
    await m.tick()
    chain.lose_blocks(3)  # nonces 2, 3, 4

    await m.tick()
    assert m.ledger.sent_nonces() == [2, 3, 4]
    assert m.ledger.allocation(2).request_id == "reopened:2"
    clock.advance(RESEND + 1)
    report = await m.tick()
    assert report["recovered"] == [2, 3, 4]
    assert chain.rebroadcasts == [h]  # nonce 3 had its raw
    assert chain.self_transfers == [2, 4]  # the others: no-ops
    chain.mine()
    await m.tick()
    assert chain.latest == 5 and m.ledger.pending_nonces() == []


async def test_a_settled_nonce_missing_below_a_pooled_one_is_reopened(world, caplog):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    sent = await mined_and_confirmed(m, chain, 4)  # confirmed by the executor, before any tick
    assert m.ledger.chain_latest == 4  # the confirms saw the chain pass them
    queued = [await send(m, chain, f"next-{i}") for i in range(2)]  # nonces 4 and 5
    chain.lose_blocks(1)  # nonce 3 lost before the authority's next tick

    with caplog.at_level(logging.WARNING):
        await m.tick()
    assert m.ledger.sent_nonces() == [3, 4, 5] and m.get_stats()["reopened_nonces"] == 1
    assert m.get_stats()["chain_rewinds"] == 1 and "from 4 back to 3" in caplog.text
    await unknown_for(m, clock, RESEND + 1)
    assert chain.rebroadcasts == [sent[3][1]] and chain.self_transfers == []
    chain.mine()
    await m.tick()
    assert chain.latest == 6 and [chain.mined_at[n] for n, _, _ in queued] == [h for _, h, _ in queued]
    assert m.ledger.pending_nonces() == []


async def test_a_pooled_nonce_above_a_mined_one_confirmed_meanwhile_reopens_nothing(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    await mined_and_confirmed(m, chain, 2)
    await m.tick()
    # The tick asks for the counts (2, 2); while its answer is on the way, the chain mines
    # 2, the executor confirms it and sends 3. The tick's late answer must change nothing.
    n2, _, _ = await send(m, chain, "a")
    real = chain.transaction_counts
    asked, answer = asyncio.Event(), asyncio.Event()

    async def counts():
        if not asked.is_set():  # the tick's read: asked before the mine, answered after
            asked.set()
            await answer.wait()
            return 2, 2
        return await real()

    chain.transaction_counts = counts
    tick = asyncio.create_task(m.tick())
    await asked.wait()
    chain.mine()
    assert await m.mark_confirmed(n2)
    await send(m, chain, "b")
    answer.set()
    await tick
    assert m.get_stats()["reopened_nonces"] == 0 and m.get_stats()["chain_rewinds"] == 0
    assert m.ledger.sent_nonces() == [3]


async def test_a_drop_deeper_than_the_kept_records_is_a_node_behind_not_a_rewind(world, caplog):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    for i in range(CONFIRMED_KEEP + 2):
        await send(m, chain, f"r{i}")
    chain.mine()
    await m.tick()
    chain.lose_blocks(CONFIRMED_KEEP + 1)
    with caplog.at_level(logging.WARNING):
        await m.tick()
        await m.tick()
    stats = m.get_stats()
    assert stats["chain_rewinds"] == 0 and stats["chain_behind"] == CONFIRMED_KEEP + 1
    assert m.ledger.sent_nonces() == [] and m.ledger.chain_latest == CONFIRMED_KEEP + 2
    assert caplog.text.count("taken for a node behind") == 1  # once, not every tick
    chain.latest = CONFIRMED_KEEP + 2  # it caught up
    await m.tick()
    assert m.get_stats()["chain_behind"] == 0


async def test_the_confirmed_records_kept_are_the_last_256_and_pruned_with_the_confirm(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    total = CONFIRMED_KEEP + 44
    for i in range(total):
        await send(m, chain, f"r{i}")
    chain.mine()
    await m.tick()  # confirms them all, one transaction each

    assert CONFIRMED_KEEP == 256
    assert m.ledger.confirmed_records == list(range(total - 256, total))
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*), MIN(nonce) FROM confirmed").fetchone() == (256, total - 256)
    assert db.execute("SELECT COUNT(DISTINCT nonce), MIN(nonce) FROM hashes").fetchone() == (256, total - 256)
    assert db.execute("SELECT COUNT(*) FROM hashes WHERE raw IS NULL").fetchone() == (0,)
    db.close()
    m.store.close()
    m2 = manager(path, chain, clock)
    assert m2.ledger.confirmed_records == list(range(total - 256, total))
    assert m2.ledger.attempts(total - 256) and not m2.ledger.attempts(total - 257)
    assert m2.get_stats()["confirmed_count"] == total


async def test_a_failed_prune_leaves_memory_and_disk_agreeing(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    for i in range(CONFIRMED_KEEP + 1):
        await send(m, chain, f"r{i}")
    chain.mine()
    for n in range(CONFIRMED_KEEP):
        await m.mark_confirmed(n)
    before = m.ledger.confirmed_records
    real = m.ledger._store.confirm

    def confirm_then_fail(record, prune=()):
        real(record, prune)
        raise sqlite3.OperationalError("disk I/O error")

    m.ledger._store.confirm = confirm_then_fail
    with pytest.raises(sqlite3.OperationalError):
        m.ledger.mark_confirmed(CONFIRMED_KEEP)
    assert m.ledger.confirmed_records == before and m.ledger.attempts(0)
    m.ledger._store.close()
    assert manager(path, chain, clock).ledger.confirmed_records == before


async def test_an_old_database_without_the_raw_column_is_migrated(world):
    path, chain, clock = world
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE allocations (
            nonce INTEGER PRIMARY KEY, request_id TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL CHECK (status IN ('leased', 'sent')),
            lease_expires_ns INTEGER, tx_hash TEXT, allocated_ns INTEGER NOT NULL);
        CREATE TABLE free (nonce INTEGER PRIMARY KEY, freed_ns INTEGER NOT NULL);
        CREATE TABLE hashes (
            nonce INTEGER NOT NULL, tx_hash TEXT NOT NULL, max_fee INTEGER, tip INTEGER,
            sent_ns INTEGER NOT NULL, PRIMARY KEY (nonce, tx_hash));
    """)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("next_nonce", 1), ("chain_latest", 0), ("confirmed_count", 0),
        ("chain_id", 137), ("genesis_hash", chain.genesis)])
    db.execute("INSERT INTO allocations VALUES (0, 'old', 'sent', NULL, '0xold', 1)")
    db.execute("INSERT INTO hashes VALUES (0, '0xold', 11, 5, 1)")
    db.commit()
    db.close()

    m = manager(path, chain, clock)
    await m.initialize()
    [old] = m.ledger.attempts(0)
    assert (old.tx_hash, old.max_fee, old.raw) == ("0xold", 11, None)
    h, raw = chain.sign(0)
    await m.mark_sent(0, h, 20, 9, raw)
    m.store.close()

    db = sqlite3.connect(path)
    assert "raw" in {row[1] for row in db.execute("PRAGMA table_info(hashes)")}
    assert db.execute("SELECT COUNT(*) FROM confirmed").fetchone() == (0,)
    db.close()
    m2 = manager(path, chain, clock)
    assert [(at.tx_hash, at.raw) for at in m2.ledger.attempts(0)] == [("0xold", None), (h, raw)]
    NonceStore(path).close()  # opening a migrated database again is a no-op


# -- the rules that stay

async def test_no_chain_call_under_the_lock_while_rebroadcasting_and_rewinding(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    seen = []
    for name in ("transaction_counts", "transaction_known", "fee_caps", "send_self_transfer",
                 "send_raw_transaction", "genesis_hash", "chain_id"):
        real = getattr(chain, name)

        def wrap(real=real, name=name):
            async def call(*a, **kw):
                seen.append((name, m._lock.locked()))
                return await real(*a, **kw)
            return call
        setattr(chain, name, wrap())
    await m.initialize()
    await mined_and_confirmed(m, chain, 3)
    await m.tick()
    await send(m, chain, "queued")
    chain.lose_blocks(2)
    await m.tick()
    n, _, _ = await send(m, chain, "dropped", broadcast=False)
    await m.mark_sent(await m.allocate_nonce("no-raw"), "0x" + "78" * 32)
    await m.tick()
    clock.advance(RESEND + 1)
    await m.tick()
    clock.advance(NOOP + 1)
    await m.tick()
    assert chain.rebroadcasts and chain.self_transfers
    assert {name for name, _ in seen} >= {"send_raw_transaction", "send_self_transfer", "genesis_hash"}
    assert [name for name, locked in seen if locked] == []


async def test_nonce_too_high_still_never_confirms_a_reopened_nonce(world):
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    await mined_and_confirmed(m, chain, 2)
    await m.tick()
    chain.lose_blocks(1)
    await m.tick()
    assert m.ledger.sent_nonces() == [1]
    assert await m.mark_confirmed(1) is False  # the chain has not mined it (again)
    stats = m.get_stats()
    assert stats["unmined_confirms"] == 1 and stats["confirmed_count"] == 1


async def test_a_nonce_lost_before_the_tick_after_its_confirm_is_still_rewound(world):
    # Found by the anvil SIGKILL test in CI: the executor confirmed its merge, anvil
    # died before the authority's next tick, and the mark blocks lost are judged by
    # was still below the merge: nothing was rewound, the next transaction took the
    # lost merge's nonce, and the wallet kept the tokens the books said were merged.
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, h, _ = await send(m, chain, "merge")
    chain.mine()
    assert await m.mark_confirmed(n)  # the receipt seen; no tick since

    assert chain.lose_blocks(1) == [n]
    await m.tick()

    assert m.get_stats()["chain_rewinds"] == 1 and m.ledger.allocation(n).status == SENT
    assert await m.allocate_nonce("next") == n + 1  # never the lost merge's nonce
    clock.advance(RESEND + 1)
    assert (await m.tick())["recovered"] == [n] and chain.rebroadcasts == [h]


async def test_a_confirm_with_the_senders_receipt_keeps_the_mined_hash_though_the_node_is_down(world):
    # The chain-restart test: the executor confirmed its merge's nonce while anvil was
    # being killed; the authority's own look-up of which hash mined failed, the record
    # kept none, and when the chain lost that block the merge was replaced by a no-op:
    # the books said merged, the wallet held the set (105.04 pUSD apart).
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, h, _ = await send(m, chain, "merge")
    chain.mine()
    chain.down = True  # the node goes away as the receipt is reported
    assert await m.mark_confirmed(n, h) is True
    chain.down = False
    assert m.get_stats()["confirmed_count"] == 1
    await m.tick()

    assert chain.lose_blocks(1) == [n]
    await m.tick()
    clock.advance(RESEND + 1)
    report = await m.tick()
    assert report["recovered"] == [n] and chain.rebroadcasts == [h] and chain.self_transfers == []


async def test_a_confirm_of_a_block_the_chain_then_lost_keeps_the_nonce_and_rebroadcasts_it(world):
    # A fresh-clone CI run (issue 13 review): the executor's merge mined, anvil was SIGKILLed
    # and came back without that block, and the receipt's confirm arrived after: "the chain
    # has mined only 6: back to the pool". The nonce went to the next transaction and the
    # merge never ran again: the books said merged, the wallet held the set (105.04 pUSD).
    path, chain, clock = world
    m = manager(path, chain, clock)
    await m.initialize()
    n, h, _ = await send(m, chain, "merge")
    chain.mine()
    assert chain.lose_blocks(1) == [n]  # before the authority heard of the receipt
    assert await m.mark_confirmed(n, h) is False  # not mined now: nothing to confirm yet
    assert m.is_pending(n) and await m.allocate_nonce("next") == n + 1  # never handed out again
    await m.tick()  # unknown to the node from now
    clock.advance(RESEND + 1)
    await m.tick()
    assert chain.rebroadcasts == [h] and chain.self_transfers == []  # the merge itself, never a no-op
