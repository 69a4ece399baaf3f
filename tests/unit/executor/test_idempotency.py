import hashlib
import multiprocessing
import random
import shutil
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.executor.idempotency import (
    IdempotencyConflict,
    IdempotencyStateError,
    IdempotencyStore,
    Status,
    canonical_bytes,
)
from actors.runtime.clock import TestClock

pytestmark = pytest.mark.unit

LEASE = 300.0
TTL = 3600.0


class Leg(msgspec.Struct, frozen=True):
    token_id: str
    price: Decimal
    size: int


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    market: str
    side: str
    legs: tuple[Leg, ...]
    tags: frozenset[str]
    received_ns: int


@dataclass(frozen=True)
class SignalDC:
    market: str
    side: str
    legs: tuple[Leg, ...]
    tags: frozenset[str]
    received_ns: int


def signal(received_ns: int = 1, market: str = "0xabc") -> Signal:
    legs = (Leg("111", Decimal("0.48"), 10_000_000), Leg("222", Decimal("0.50"), 10_000_000))
    return Signal(market=market, side="buy", legs=legs, tags=frozenset({"binary", "sports", "fast"}),
                  received_ns=received_ns)  # fmt: skip


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def store(tmp_path: Path, clock: TestClock):
    with IdempotencyStore(tmp_path / "idem.sqlite", clock=clock, ttl_seconds=TTL, in_progress_ttl_seconds=LEASE,
                          exclude_fields=("received_ns",)) as s:  # fmt: skip
        yield s


# ----- keys -----


def test_canonical_encoding_sorts_keys_and_keeps_decimals_exact():
    assert canonical_bytes({"b": 1, "a": Decimal("0.50"), "c": {"z": 1, "y": [2, 1]}}) == (
        b'{"a":"0.50","b":1,"c":{"y":[2,1],"z":1}}'
    )


def test_key_is_the_sha256_of_the_canonical_encoding(store: IdempotencyStore):
    assert store.generate({"b": 1, "a": 2}) == hashlib.sha256(b'{"a":2,"b":1}').hexdigest()
    assert store.generate({"a": 2, "b": 1}) == store.generate({"b": 1, "a": 2})


def test_struct_dataclass_and_dict_of_the_same_content_share_a_key(store: IdempotencyStore):
    s = signal()
    as_dict = msgspec.structs.asdict(s)
    as_dataclass = SignalDC(**{f: getattr(s, f) for f in s.__struct_fields__})
    assert store.generate(s) == store.generate(as_dict) == store.generate(as_dataclass)


def test_volatile_fields_are_excluded_and_content_changes_the_key(store: IdempotencyStore):
    assert store.generate(signal(received_ns=1)) == store.generate(signal(received_ns=2))
    assert store.generate(signal(market="0xabc")) != store.generate(signal(market="0xdef"))
    assert store.generate(signal(1), exclude=()) != store.generate(signal(2), exclude=())


def test_dotted_paths_exclude_nested_fields(store: IdempotencyStore):
    a = {"meta": {"recv_ns": 1, "venue": "clob"}, "x": 1}
    b = {"meta": {"recv_ns": 2, "venue": "clob"}, "x": 1}
    assert store.generate(a, exclude=["meta.recv_ns"]) == store.generate(b, exclude=["meta.recv_ns"])


# ----- claim / complete / fail -----


def test_first_claim_owns_the_key_and_the_second_does_not(store: IdempotencyStore):
    key = store.generate(signal())
    first = store.claim(key, "h1")
    second = store.claim(key, "h1")

    assert first.owned and first.record.status is Status.IN_PROGRESS
    assert not second.owned and not second.duplicate and not second.needs_reconciliation
    assert store.is_seen(key)


def test_a_completed_key_is_a_duplicate_with_its_result_until_the_ttl(store: IdempotencyStore, clock: TestClock):
    store.claim("k", "h")
    store.complete("k", {"orders": ["o1", "o2"], "tx": "0xbeef"})

    again = store.claim("k", "h")
    assert again.duplicate and again.record.result == {"orders": ["o1", "o2"], "tx": "0xbeef"}

    clock.advance(TTL)

    assert not store.is_seen("k")
    fresh = store.claim("k", "another payload is fine once expired")
    assert fresh.owned and fresh.record.attempts == 1


def test_same_key_with_another_payload_is_a_conflict(store: IdempotencyStore):
    store.claim("k", "h1")
    with pytest.raises(IdempotencyConflict):
        store.claim("k", "h2")
    assert not store.claim("k").owned  # no hash given: no check
    assert store.get_stats()["conflicts"] == 1


def test_an_expired_in_progress_record_is_reported_never_re_run(store: IdempotencyStore, clock: TestClock):
    store.claim("k", "h")
    clock.advance(LEASE)

    claim = store.claim("k", "h")

    assert not claim.owned and claim.needs_reconciliation
    assert [r.key for r in store.stale_in_progress()] == ["k"]
    assert store.needs_reconciliation() == store.stale_in_progress()
    store.complete("k", {"reconciled": "order filled"})  # the reconciler found it had happened
    assert store.claim("k", "h").duplicate


def test_a_failed_key_may_be_claimed_again(store: IdempotencyStore):
    store.claim("k", "h")
    store.fail("k", "FOK not filled")
    assert store.get("k").reason == "FOK not filled"

    again = store.claim("k", "h")

    assert again.owned and again.record.attempts == 2 and again.record.reason is None


def test_touch_extends_the_lease(store: IdempotencyStore, clock: TestClock):
    store.claim("k", "h")
    clock.advance(LEASE - 1)
    store.touch("k")
    clock.advance(LEASE - 1)
    assert store.stale_in_progress() == []
    clock.advance(1)
    assert len(store.stale_in_progress()) == 1


def test_finishing_a_key_that_is_not_in_progress_is_an_error(store: IdempotencyStore):
    with pytest.raises(IdempotencyStateError):
        store.complete("missing", None)
    store.claim("k", "h")
    store.complete("k", 1)
    with pytest.raises(IdempotencyStateError):
        store.fail("k", "too late")
    with pytest.raises(IdempotencyStateError):
        store.touch("k")


def test_purge_removes_expired_results_but_never_in_progress(store: IdempotencyStore, clock: TestClock):
    for key in ("done", "failed", "running"):
        store.claim(key, "h")
    store.complete("done", None)
    store.fail("failed", "rejected")
    clock.advance(TTL)

    assert store.purge_expired() == 2

    assert store.get("done") is None and store.get("failed") is None
    assert store.get("running").stale


def test_records_survive_a_restart_for_reconciliation(tmp_path: Path, clock: TestClock):
    path = tmp_path / "idem.sqlite"
    with IdempotencyStore(path, clock=clock) as before:
        before.claim("sent", "h")
        before.claim("done", "h")
        before.complete("done", {"tx": "0x1"})

    with IdempotencyStore(path, clock=clock) as after:
        assert [r.key for r in after.in_progress()] == ["sent"]
        assert after.claim("done", "h").record.result == {"tx": "0x1"}


def test_sqlite_runs_in_wal_with_synchronous_normal(store: IdempotencyStore):
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_stats(store: IdempotencyStore):
    store.claim("a", "h")
    store.claim("a", "h")
    store.claim("b", "h")
    store.complete("b", None)
    store.claim("b", "h")
    stats = store.get_stats()
    assert stats["records"] == {"IN_PROGRESS": 1, "COMPLETED": 1, "FAILED": 0}
    assert (stats["claims"], stats["owned"], stats["in_flight"], stats["duplicates"]) == (4, 2, 1, 1)


# ----- two processes -----


def _hammer(path: str, keys: list[str], seed: int, barrier, results) -> None:  # runs in a spawned process
    store = IdempotencyStore(path, clock=TestClock())
    random.Random(seed).shuffle(keys)  # different orders: the processes collide all along the way
    barrier.wait(30)
    first = [key for key in keys if store.claim(key, "same payload").owned]  # INSERT ... ON CONFLICT
    barrier.wait(30)  # (a FAILED key may be claimed again: no failing while the other still claims)
    for key in first:
        store.fail(key, "retry me")
    barrier.wait(30)
    second = [key for key in keys if store.claim(key, "same payload").owned]  # BEGIN IMMEDIATE, read, update
    results.put((first, second, store.generate(signal())))
    store.close()


def test_two_processes_claiming_the_same_keys_have_exactly_one_winner_each(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    path = str(tmp_path / "shared.sqlite")
    IdempotencyStore(path).close()  # create the schema before the race
    keys = [f"key-{i}" for i in range(1000)]
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(path, keys, seed, barrier, results)) for seed in (1, 2)]
    for proc in procs:
        proc.start()

    (a1, a2, key_a), (b1, b2, key_b) = [results.get(timeout=45) for _ in procs]
    for proc in procs:
        proc.join(10)

    for a, b in ((a1, b1), (a2, b2)):
        assert set(a).isdisjoint(b)
        assert sorted(a + b) == sorted(keys)
    assert [proc.exitcode for proc in procs] == [0, 0]
    # The key is the same in every process (set order differs between processes).
    assert key_a == key_b == IdempotencyStore(":memory:").generate(signal())


# ----- property -----


KEYS = ("k0", "k1", "k2")


class ClaimMachine(RuleBasedStateMachine):
    """Two connections to one file, several claimers: a key has at most one owner at a time,
    and an owner's expired lease is reported for reconciliation, never handed to another."""

    @initialize()
    def setup(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.clock = TestClock()
        path = Path(self.dir) / "idem.sqlite"
        self.stores = [IdempotencyStore(path, clock=self.clock, ttl_seconds=TTL, in_progress_ttl_seconds=LEASE)
                       for _ in range(2)]  # fmt: skip
        self.owner: dict[str, tuple[int, int] | None] = dict.fromkeys(KEYS)  # key -> (claimer, lease end)
        self.done_until: dict[str, int] = {}

    def teardown(self) -> None:
        for store in getattr(self, "stores", []):
            store.close()
        shutil.rmtree(getattr(self, "dir", ""), ignore_errors=True)

    @rule(key=st.sampled_from(KEYS), claimer=st.integers(0, 2), conn=st.integers(0, 1))
    def claim(self, key: str, claimer: int, conn: int) -> None:
        now = self.clock.time_ns()
        claim = self.stores[conn].claim(key, "payload")
        holder = self.owner[key]
        if claim.owned:
            assert holder is None, f"{key} owned by {holder} and {claimer}"
            assert self.done_until.get(key, 0) <= now  # a completed key is not re-run before its TTL
            self.owner[key] = (claimer, now + int(LEASE * 1e9))
        elif holder is not None:
            assert claim.needs_reconciliation == (now >= holder[1])
        else:
            assert claim.duplicate

    @rule(key=st.sampled_from(KEYS), conn=st.integers(0, 1), ok=st.booleans())
    def finish(self, key: str, conn: int, ok: bool) -> None:
        if self.owner[key] is None:
            return
        if ok:
            record = self.stores[conn].complete(key, {"ok": True})
            self.done_until[key] = record.expires_ns
        else:
            self.stores[conn].fail(key, "did not happen")
            self.done_until.pop(key, None)
        self.owner[key] = None

    @rule(seconds=st.sampled_from([1.0, 100.0, LEASE, TTL]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(conn=st.integers(0, 1))
    def purge(self, conn: int) -> None:
        self.stores[conn].purge_expired()

    @invariant()
    def in_progress_matches_the_owners(self) -> None:
        if hasattr(self, "stores"):
            running = {r.key for r in self.stores[0].in_progress()}
            assert running == {k for k, v in self.owner.items() if v is not None}


ClaimMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
test_claim_state_machine = ClaimMachine.TestCase
