"""Invariants of the nonce authority under random operations, restarts and time."""

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.nonce.nonce_manager import NonceManager
from actors.nonce.store import NonceStore
from actors.runtime.clock import TestClock
from tests.unit.nonce.fake_chain import FakeNonceChain

pytestmark = pytest.mark.unit

LEASE, GAP, RESEND, NOOP = 30.0, 10.0, 15.0, 20.0
GENESES = st.sampled_from(["0x" + c * 64 for c in "abcdef"])
REQUESTS = st.sampled_from([f"r{i}" for i in range(8)])


class NonceAuthorityMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.loop = asyncio.new_event_loop()
        self.chain = FakeNonceChain()
        self.clock = TestClock()
        self.m = self._boot()
        # What clients hold: nonce -> request id, for allocations they may still use.
        self.held: dict[int, str] = {}
        self.sent: set[int] = set()
        # Request ids holding a nonce on a chain that no longer exists: never given that nonce back.
        self.old_chain_requests: set[str] = set()

    def _boot(self) -> NonceManager:
        m = NonceManager(
            self.chain, NonceStore(self.dir / "n.sqlite"), self.clock,
            lease_seconds=LEASE, gap_fill_after_seconds=GAP, resend_after_seconds=RESEND,
            noop_after_seconds=NOOP,
        )
        self.run(m.initialize())
        return m

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.m.store.close()
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _forget_settled(self) -> None:
        for n in list(self.held):
            if not self.m.is_pending(n):
                del self.held[n]
                self.sent.discard(n)

    @rule(rid=REQUESTS)
    def allocate(self, rid: str) -> None:
        ledger = self.m.ledger
        free = ledger.free_nonces
        replay = ledger._by_request.get(rid) in set(ledger.pending_nonces())
        replays_before = ledger.replays
        nonce = self.run(self.m.allocate_nonce(rid))
        if free and not replay:
            assert nonce == free[0], f"got {nonce}, the lowest free nonce is {free[0]}"
        assert nonce >= self.chain.latest, "handed out a nonce that is already mined"
        if rid in self.old_chain_requests:  # its first allocation on the new chain is never a replay
            self.old_chain_requests.discard(rid)
            assert ledger.replays == replays_before, f"{rid} got the old chain's nonce {nonce} back"
        owner = self.held.get(nonce)
        assert owner in (None, rid), f"nonce {nonce} handed to {rid} while {owner} holds it"
        for n, r in self.held.items():
            if r == rid and n != nonce:
                assert not self.m.is_pending(n) or self.m.ledger.allocation(n).request_id != rid
        self.held[nonce] = rid

    @precondition(lambda self: any(n not in self.sent for n in self.held))
    @rule(data=st.data(), with_raw=st.booleans())
    def send(self, data: st.DataObject, with_raw: bool) -> None:
        """The executor: journal the signed transaction (with its raw, or as an old executor did,
        without), then broadcast it."""
        n = data.draw(st.sampled_from(sorted(n for n in self.held if n not in self.sent)))
        if n < self.chain.latest or n in self.chain.pool:
            return
        h, raw = self.chain.sign(n)
        self.run(self.m.mark_sent(n, h, raw=raw if with_raw else None))
        self.chain.broadcast(n, h)
        self.sent.add(n)

    @precondition(lambda self: any(n not in self.sent for n in self.held))
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        n = data.draw(st.sampled_from(sorted(n for n in self.held if n not in self.sent)))
        if n < self.chain.latest:
            return
        self.run(self.m.mark_failed(n))
        del self.held[n]

    @rule()
    def mine(self) -> None:
        self.chain.mine()
        for n in [n for n in self.sent if n < self.chain.latest]:
            self.run(self.m.mark_confirmed(n))

    @rule(seconds=st.sampled_from([1.0, 5.0, 15.0, 31.0]))
    def advance_and_tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        report = self.run(self.m.tick())
        for n in report.get("reclaimed", []):
            self.held.pop(n, None)  # that client lost its lease
        self._forget_settled()
        self._reconciled()

    def _reconciled(self) -> None:
        pending = self.m.ledger.pending_nonces()
        assert all(n >= self.chain.latest for n in pending), f"mined nonces still pending: {pending}"

    @rule()
    def restart(self) -> None:
        self.m.store.close()
        self.m = self._boot()
        self._forget_settled()
        self._reconciled()

    @precondition(lambda self: any(n in self.chain.pool for n in self.sent))
    @rule(data=st.data())
    def drop_from_mempool(self, data: st.DataObject) -> None:
        """The node evicts one of our pooled transactions."""
        event("dropped from the mempool")
        self.chain.drop(data.draw(st.sampled_from(sorted(n for n in self.sent if n in self.chain.pool))))

    @precondition(lambda self: self.chain.latest > 0)
    @rule(k=st.integers(min_value=1, max_value=4))
    def blocks_lost(self, k: int) -> None:
        """The chain drops its last k mined transactions of the wallet, same genesis (a node
        restarted on a state file a second old, a deep reorg): what was queued stays queued."""
        lost = self.chain.lose_blocks(k)
        event(f"blocks lost: {min(len(lost), 2)}+ nonces")

    @rule(genesis=GENESES)
    def chain_reset(self, genesis: str) -> None:
        """`make run` again: a fresh dev chain, and the authority restarts on it."""
        if genesis == self.chain.genesis:
            return
        ledger = self.m.ledger
        old = {a.request_id for n in ledger.pending_nonces() if (a := ledger.allocation(n))}
        event(f"chain reset with {len(old)} live allocations")
        self.m.store.close()
        self.chain.reset(genesis)
        self.m = self._boot()
        assert self.m.ledger.pending_nonces() == [] and self.m.ledger.free_nonces == []
        assert self.m.ledger.next_nonce == self.chain.pending
        assert self.m.get_stats()["archived_state"] is not None
        self.old_chain_requests = old
        self.held.clear()
        self.sent.clear()

    @rule()
    def resend_after_and_mine(self) -> None:
        """After resend_after with the chain mining, no sent nonce is one the node does not know."""
        for _ in range(3):
            self.advance_and_tick(RESEND / 2 + 1)
            self.chain.mine()
        self.run(self.m.tick())
        self._forget_settled()
        known = set(self.chain.pool.values()) | self.chain.mined
        for n in self.m.ledger.sent_nonces():
            hashes = {at.tx_hash for at in self.m.ledger.attempts(n)}
            assert hashes & known or (not hashes and n < self.chain.pending), \
                f"sent nonce {n} is stuck: the node knows none of {hashes}"
        event(f"recoveries so far: {min(self.m.get_stats()['recoveries'], 3)}")

    @rule()
    def recover_everything(self) -> None:
        """After leases, gap fills, resend_after + noop_after, with the chain mining: every
        nonce is mined (pending == latest), none stays SENT, and nothing waits in the pool."""
        self.advance_and_tick(LEASE + 1)  # unsent leases come back to the pool
        for _ in range(4):
            for seconds in (GAP + 1, RESEND + 1, NOOP + 1):
                self.advance_and_tick(seconds)
                self.chain.mine()
        self.run(self.m.tick())
        self._forget_settled()
        ledger = self.m.ledger
        assert self.chain.pending == self.chain.latest and self.chain.pool == {}, \
            f"stuck: mined {self.chain.latest}, pool {sorted(self.chain.pool)}, sent {ledger.sent_nonces()}"
        assert ledger.sent_nonces() == [], f"nonces stay SENT: {ledger.sent_nonces()}"
        assert ledger.chain_latest == self.chain.latest
        event(f"rewinds so far: {min(self.m.get_stats()['chain_rewinds'], 2)}")

    @rule()
    def expire_everything(self) -> None:
        """After leases expire and gaps are filled, nothing is stuck behind a hole."""
        self.advance_and_tick(LEASE + 1)
        self.advance_and_tick(GAP + 1)
        ledger = self.m.ledger
        top = ledger.highest_sent
        if top is not None:
            assert [n for n in ledger.free_nonces if n < top] == []
        self.chain.mine()
        self.run(self.m.tick())
        self._forget_settled()

    @invariant()
    def disk_agrees_with_memory(self) -> None:
        """What a restart would load is what the running authority holds."""
        store = NonceStore(self.dir / "n.sqlite")
        try:
            meta, allocs, free = store.load()
            confirmed = store.load_confirmed()
            attempts = store.load_attempts()
        finally:
            store.close()
        ledger = self.m.ledger
        assert allocs == {n: ledger.allocation(n) for n in ledger.pending_nonces()}
        assert sorted(free) == ledger.free_nonces
        assert sorted(confirmed) == ledger.confirmed_records
        assert {n: ats for n, ats in attempts.items()} == {
            n: ledger.attempts(n) for n in set(ledger.pending_nonces()) | set(ledger.confirmed_records)
            if ledger.attempts(n)}
        assert int(meta.get("chain_latest", 0)) == ledger.chain_latest
        assert int(meta.get("next_nonce", 0)) == ledger.next_nonce

    @invariant()
    def allocated_and_free_are_disjoint_and_below_next(self) -> None:
        ledger = self.m.ledger
        pending = set(ledger.pending_nonces())
        free = set(ledger.free_nonces)
        assert not pending & free
        assert all(n < ledger.next_nonce for n in pending | free)
        assert all(n >= self.chain.latest for n in free), "a mined nonce is back in the pool"


NonceAuthorityMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestNonceAuthority = NonceAuthorityMachine.TestCase
