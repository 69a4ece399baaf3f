"""Invariants of the nonce authority under random operations, restarts and time."""

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.nonce.nonce_manager import NonceManager
from actors.nonce.store import NonceStore
from actors.runtime.clock import TestClock
from tests.unit.nonce.fake_chain import FakeNonceChain

pytestmark = pytest.mark.unit

LEASE, GAP = 30.0, 10.0
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

    def _boot(self) -> NonceManager:
        m = NonceManager(
            self.chain, NonceStore(self.dir / "n.sqlite"), self.clock,
            lease_seconds=LEASE, gap_fill_after_seconds=GAP,
        )
        self.run(m.initialize())
        return m

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
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
        nonce = self.run(self.m.allocate_nonce(rid))
        if free and not replay:
            assert nonce == free[0], f"got {nonce}, the lowest free nonce is {free[0]}"
        assert nonce >= self.chain.latest, "handed out a nonce that is already mined"
        owner = self.held.get(nonce)
        assert owner in (None, rid), f"nonce {nonce} handed to {rid} while {owner} holds it"
        for n, r in self.held.items():
            if r == rid and n != nonce:
                assert not self.m.is_pending(n) or self.m.ledger.allocation(n).request_id != rid
        self.held[nonce] = rid

    @precondition(lambda self: any(n not in self.sent for n in self.held))
    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        n = data.draw(st.sampled_from(sorted(n for n in self.held if n not in self.sent)))
        if n < self.chain.latest or n in self.chain.pool:
            return
        self.run(self.m.mark_sent(n, self.chain.broadcast(n)))
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
        self.m = self._boot()
        self._forget_settled()
        self._reconciled()

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
    def allocated_and_free_are_disjoint_and_below_next(self) -> None:
        ledger = self.m.ledger
        pending = set(ledger.pending_nonces())
        free = set(ledger.free_nonces)
        assert not pending & free
        assert all(n < ledger.next_nonce for n in pending | free)
        assert all(n >= self.chain.latest for n in free), "a mined nonce is back in the pool"


NonceAuthorityMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestNonceAuthority = NonceAuthorityMachine.TestCase
