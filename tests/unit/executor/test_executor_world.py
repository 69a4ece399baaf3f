"""The executor's books belong to one chain: started on another, it moves them aside."""

import msgspec
import pytest

from actors.executor.actor import ExecutorActor
from actors.runtime.clock import TestClock
from actors.runtime.shell import ActorRuntime
from bus.fakes import FakeContext
from config.runtime import ConfigReloader
from tests.unit.executor.fakes import FakeChain, FakeVenue
from tests.unit.nonce.fake_chain import FakeNonceChain

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


async def started(cfg, genesis):
    chain = FakeChain(FakeNonceChain())
    chain.genesis = genesis
    rt = ActorRuntime("executor", ConfigReloader(initial=cfg), FakeContext(), TestClock())
    actor = ExecutorActor(rt, venue=FakeVenue(), chain=chain, nonces=object())
    await actor.start()
    return actor


async def test_books_of_another_chain_are_archived_not_applied(sandbox_config, tmp_path):
    cfg = msgspec.structs.replace(sandbox_config, executor=msgspec.structs.replace(
        sandbox_config.executor, state_dir=str(tmp_path / "ex")))
    first = await started(cfg, "0x" + "aa" * 32)
    first.journal.hold("test", "123", 5_000_000, 400_000)
    first.journal.close()
    first.idem.close()

    same = await started(cfg, "0x" + "aa" * 32)
    assert same.archived_state == [] and same.journal.positions()  # the same world: books kept
    same.journal.close()
    same.idem.close()

    other = await started(cfg, "0x" + "bb" * 32)  # the sandbox was reset underneath

    assert other.journal.positions() == [] and len(other.archived_state) == 1  # journal and claims: one file
    assert all("/archive/" in p for p in other.archived_state)
    assert other.get_stats()["archived_state"] == other.archived_state
    assert (tmp_path / "ex" / "archive").is_dir()


async def test_claims_of_the_older_separate_file_are_adopted_into_the_one_store(sandbox_config, tmp_path):
    from actors.executor.idempotency import IdempotencyStore

    cfg = msgspec.structs.replace(sandbox_config, executor=msgspec.structs.replace(
        sandbox_config.executor, state_dir=str(tmp_path / "ex")))
    first = await started(cfg, "0x" + "aa" * 32)
    tag = f"{cfg.chain.chain_id}-{first._chain.address.lower()}"
    first.journal.close()
    old = IdempotencyStore(tmp_path / "ex" / f"idempotency-{tag}.sqlite", clock=TestClock())
    assert old.claim("left-in-progress").owned  # what an older version left behind
    old.close()

    again = await started(cfg, "0x" + "aa" * 32)

    assert [r.key for r in again.idem.in_progress()] == ["left-in-progress"]
    assert not (tmp_path / "ex" / f"idempotency-{tag}.sqlite").exists()
    assert list((tmp_path / "ex" / "archive").glob(f"*/idempotency-{tag}.sqlite"))


async def test_approvals_end_finished_and_a_killed_attempt_is_closed_by_the_next(sandbox_config, tmp_path):
    # A chaos run found the approvals record left "approve_..._sent" forever: never
    # finished when they were mined, nor when the process that sent them was killed.
    from types import SimpleNamespace

    from actors.executor.actor import _APPROVAL_SIGNAL

    cfg = msgspec.structs.replace(sandbox_config, executor=msgspec.structs.replace(
        sandbox_config.executor, state_dir=str(tmp_path / "ex")))
    actor = await started(cfg, "0x" + "aa" * 32)
    actor.journal.begin("approvals:0xdead:1", _APPROVAL_SIGNAL)  # what a SIGKILL left
    sent = []

    async def missing():
        return [] if sent else ["approve_exchange", "approve_ctf"]

    async def send(key, purpose, call, gas_hint, prior=None):
        sent.append((key, purpose))
        return SimpleNamespace(tx_hash="0x" + "11" * 32, gas_cost=7_000)

    actor._chain.approvals_missing = missing
    actor._chain.approval_calls = lambda: [("approve_exchange", {}), ("approve_ctf", {})]
    actor.onchain = SimpleNamespace(send=send)

    await actor._approve()

    assert actor.journal.unfinished("approvals:") == []
    outcomes = {k: (s, pnl, gas) for k, s, pnl, gas in actor.journal.outcomes()}
    assert outcomes["approvals:0xdead:1"] == ("SUPERSEDED", 0, 0)
    [(key, _)] = [(k, v) for k, v in outcomes.items() if v[0] == "APPROVED"]
    assert outcomes[key] == ("APPROVED", -14_000, 14_000)  # no pUSD moved: P&L is the gas
    assert [p for _, p in sent] == ["approve_exchange", "approve_ctf"]
    actor.journal.close()
    actor.idem.close()


async def test_healthz_says_when_the_chain_stops_answering_after_start(sandbox_config, tmp_path):
    cfg = msgspec.structs.replace(sandbox_config, executor=msgspec.structs.replace(
        sandbox_config.executor, state_dir=str(tmp_path / "ex")))
    actor = await started(cfg, "0x" + "aa" * 32)
    await actor._probe_chain()
    assert actor.health()["chain"] is True

    async def down() -> int:
        raise ConnectionError("connection refused")

    actor._chain.nonce_latest = down
    await actor._probe_chain()
    assert actor.health()["chain"] is False and actor.get_stats()["chain_reachable"] is False


async def test_a_halt_records_who_and_can_require_that_identity_to_resume(sandbox_config, tmp_path):
    from bus import curve

    security = msgspec.structs.replace(sandbox_config.bus.security, resume_by_halting_identity=True)
    cfg = msgspec.structs.replace(sandbox_config, bus=msgspec.structs.replace(sandbox_config.bus, security=security),
                                  executor=msgspec.structs.replace(sandbox_config.executor,
                                                                   state_dir=str(tmp_path / "ex")))
    actor = await started(cfg, "0x" + "aa" * 32)
    rpc = actor.rpc_methods()
    token = curve.caller.set("alice")
    try:
        out = await rpc["halt"]({"reason": "checking the venue"})
    finally:
        curve.caller.reset(token)
    assert out["state"] == "FORCED_OPEN" and out["reason"].endswith("checking the venue (by alice)")
    token = curve.caller.set("bob")
    try:
        with pytest.raises(PermissionError, match="only alice may resume"):
            await rpc["resume"]({"reason": "not mine"})
    finally:
        curve.caller.reset(token)
    assert str(actor.breaker.state) == "FORCED_OPEN"
    token = curve.caller.set("alice")
    try:
        assert (await rpc["resume"]({"reason": "done"}))["state"] == "CLOSED"
    finally:
        curve.caller.reset(token)
