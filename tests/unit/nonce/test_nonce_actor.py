import asyncio

import pytest

from actors.nonce.actor import NonceActor
from actors.nonce.client import NonceClient
from actors.runtime.clock import TestClock
from actors.runtime.launcher import rpc_handler
from actors.runtime.shell import ActorRuntime
from bus import codec, topics
from bus.codec import Stamper
from bus.fakes import FakeContext
from bus.messages import Stats
from bus.sockets import RpcError, RpcServer, Subscriber
from config.runtime import ConfigReloader
from tests.unit.nonce.fake_chain import FakeNonceChain

pytestmark = pytest.mark.unit

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture
async def served(sandbox_config):
    ctx, clock, chain = FakeContext(), TestClock(), FakeNonceChain()
    chain.latest = 3
    rt = ActorRuntime("nonce", ConfigReloader(initial=sandbox_config), ctx, clock)
    actor = NonceActor(rt, chain=chain, address=ADDRESS)
    await actor.start()
    endpoint = sandbox_config.bus.endpoints["nonce"].rpc
    server = RpcServer(ctx, endpoint, rpc_handler(actor.rpc_methods()), rt.stamper)
    task = asyncio.create_task(server.serve())
    client = NonceClient(ctx, endpoint, Stamper("executor", clock), timeout_ms=200, retries=2)
    yield actor, client, chain, ctx, rt
    task.cancel()
    await actor.stop()


async def test_client_drives_the_authority_over_the_bus(served):
    actor, client, chain, ctx, rt = served

    n = await client.allocate_nonce("exec-1")
    assert await client.allocate_nonce("exec-1") == n  # idempotent
    await client.mark_sent(n, chain.broadcast(n))
    assert await client.is_pending(n)
    chain.mine()
    assert await client.mark_confirmed(n) is True
    m = await client.get_nonce()
    await client.mark_failed(m)

    assert n == 3
    stats = await client.get_stats()
    assert stats["confirmed_count"] == 1 and stats["free_nonces"] == [] and stats["next_nonce"] == 4


async def test_lost_reply_is_retried_without_leaking_a_nonce(served):
    actor, client, chain, ctx, rt = served
    endpoint = rt.config.bus.endpoints["nonce"].rpc
    ctx.drop_next(endpoint, 1)  # the first request never arrives

    n = await client.allocate_nonce("exec-7")

    assert n == 3 and client.client_stats()["timeouts"] == 1
    assert actor.manager.get_stats()["allocations"] == 1


async def test_errors_come_back_as_rpc_errors(served):
    actor, client, chain, ctx, rt = served
    with pytest.raises(RpcError, match="not allocated"):
        await client.mark_failed(99)


async def test_stats_message_carries_the_nonce_and_the_breaker_view(served):
    actor, client, chain, ctx, rt = served
    sub = Subscriber(ctx, [rt.config.bus.endpoints["nonce"].pub], [topics.prefix(topics.STATS)])
    rt.publisher.publish(topics.stats("nonce"), rt.stats_message(actor))
    [r] = await sub.recv_batch()
    body = r.env.body
    assert isinstance(body, Stats)
    assert body.stats["nonce"]["next_nonce"] == 3
    assert body.stats["summary"]["next_nonce"] == 3
    assert body.stats["breaker"]["state"] == "UNKNOWN"
    assert "private" not in codec.encode_payload(r.env).decode(errors="ignore").lower()


async def test_hot_reload_changes_the_lease(served, tmp_path):
    actor, client, chain, ctx, rt = served
    import msgspec

    old = rt.config
    new = msgspec.structs.replace(old, nonce=msgspec.structs.replace(old.nonce, lease_seconds=5.0))
    actor.on_config(old, new)
    n = await client.allocate_nonce("short-lease")
    rt.clock.advance(6)
    report = await actor.manager.tick()
    assert report["reclaimed"] == [n]


async def test_mark_sent_carries_the_raw_transaction_as_hex(served):
    actor, client, chain, ctx, rt = served
    n = await client.allocate_nonce("merge")
    h, raw = chain.sign(n)
    await client.mark_sent(n, h, 200, 40, raw)
    [at] = actor.manager.ledger.attempts(n)
    assert (at.tx_hash, at.max_fee, at.tip, at.raw) == (h, 200, 40, raw)
    await client.mark_sent(n, h)  # a report without raw keeps the raw journaled
    assert actor.manager.ledger.attempts(n)[0].raw == raw


async def test_a_raw_that_is_not_hex_is_refused(served):
    actor, client, chain, ctx, rt = served
    n = await client.allocate_nonce("merge")
    with pytest.raises(RpcError, match="raw"):
        await client._rpc.call("mark_sent", {"nonce": n, "tx_hash": "0x01", "raw": "not hex"})


async def test_hot_reload_changes_noop_after(served):
    actor, client, chain, ctx, rt = served
    import msgspec

    old = rt.config
    new = msgspec.structs.replace(old, nonce=msgspec.structs.replace(old.nonce, noop_after_seconds=3.0))
    actor.on_config(old, new)
    assert actor.manager._noop_ns == 3 * 10**9


@pytest.mark.parametrize("rid", [["x", 1], None, 7, "", {"a": 1}, "k" * 513])
async def test_a_request_id_that_is_not_a_short_string_allocates_nothing(served, rid):
    actor, client, chain, ctx, rt = served
    # once: str(["x", 1]) and str(None) were request ids, and real nonces were leased for them
    with pytest.raises(RpcError, match="request_id"):
        await client._rpc.call("allocate", {"request_id": rid})
    assert actor.manager.get_stats()["allocations"] == 0


@pytest.mark.parametrize("method", ["fail", "confirm", "is_pending", "mark_sent"])
@pytest.mark.parametrize("nonce", [3.9, True, "3", None, -1, [3]])
async def test_a_nonce_that_is_not_a_plain_integer_changes_nothing(served, method, nonce):
    actor, client, chain, ctx, rt = served
    n = await client.allocate_nonce("exec-1")
    assert n == 3
    before = actor.manager.get_stats()
    # int(3.9) and int(True) once named nonce 3 and 1: an anonymous `fail` could free a live one
    with pytest.raises(RpcError, match="nonce"):
        await client._rpc.call(method, {"nonce": nonce, "tx_hash": "0x" + "ab" * 32})
    assert actor.manager.get_stats() == before
    assert actor.manager.is_pending(3)
