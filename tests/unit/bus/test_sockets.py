import asyncio

import pytest

from actors.runtime.clock import TestClock
from bus import codec, topics
from bus.clone import CloneStore, fetch_snapshot, snapshot_reply
from bus.codec import Stamper
from bus.fakes import FakeContext
from bus.messages import Stats
from bus.sequence import Arrival
from bus.sockets import Publisher, RpcClient, RpcError, RpcServer, RpcTimeout, Subscriber

pytestmark = pytest.mark.unit

PUB = "inproc://pub"
RPC = "inproc://rpc"


def stats(n: int) -> Stats:
    return Stats(actor="a", stats={"n": n})


async def test_subscriber_drains_in_batches_and_filters_by_prefix():
    ctx = FakeContext()
    pub = Publisher(ctx, PUB, Stamper("a", TestClock()))
    sub = Subscriber(ctx, [PUB], [topics.prefix(topics.STATS)])
    for i in range(5):
        pub.publish(topics.stats("a"), stats(i))
    pub.publish(topics.breaker_state(), stats(99))  # filtered out

    batch = await sub.recv_batch()

    assert [r.env.body.stats["n"] for r in batch] == [0, 1, 2, 3, 4]
    assert [r.arrival for r in batch] == [Arrival.JOINED] + [Arrival.IN_ORDER] * 4


async def test_subscriber_counts_gaps_and_drops_malformed_and_oversized():
    ctx = FakeContext()
    pub = Publisher(ctx, PUB, Stamper("a", TestClock()))
    sub = Subscriber(ctx, [PUB], max_message_bytes=200)
    pub.publish(b"stats.a", stats(1))
    ctx.drop_next(PUB, 2)
    pub.publish(b"stats.a", stats(2))
    pub.publish(b"stats.a", stats(3))
    raw = ctx.bound[PUB]
    await raw.send_multipart([b"stats.a", b"\xc1garbage"])
    await raw.send_multipart([b"stats.a", b"x" * 1000])  # oversized: dropped by MAXMSGSIZE
    pub.publish(b"stats.a", stats(4))

    batch = await sub.recv_batch()

    assert [r.env.seq for r in batch] == [1, 4]
    assert batch[1].arrival is Arrival.GAP
    assert sub.get_stats()["malformed"] == 1
    assert sub.get_stats()["missed"] == 2


async def test_new_boot_id_resets_the_stream():
    ctx = FakeContext()
    sub = Subscriber(ctx, [PUB])
    pub1 = Publisher(ctx, PUB, Stamper("a", TestClock(), boot_id="one"))
    pub1.publish(b"stats.a", stats(1))
    pub1.publish(b"stats.a", stats(2))
    pub1.close()
    pub2 = Publisher(ctx, PUB, Stamper("a", TestClock(), boot_id="two"))
    pub2.publish(b"stats.a", stats(1))

    batch = await sub.recv_batch()

    assert [r.arrival for r in batch] == [Arrival.JOINED, Arrival.IN_ORDER, Arrival.JOINED]
    assert sub.tracker.restarts == 1


async def serve(ctx, handler, **kw):
    server = RpcServer(ctx, RPC, handler, Stamper("srv", TestClock()), **kw)
    task = asyncio.create_task(server.serve())
    return server, task


async def test_rpc_round_trip_and_error_reply():
    ctx = FakeContext()

    async def handler(method, params):
        if method == "boom":
            raise ValueError("no such thing")
        return {"echo": params}

    server, task = await serve(ctx, handler)
    client = RpcClient(ctx, RPC, Stamper("cli", TestClock()), timeout_ms=500, retries=0)

    assert await client.call("echo", {"x": 1}) == {"echo": {"x": 1}}
    with pytest.raises(RpcError, match="no such thing"):
        await client.call("boom")
    task.cancel()


async def test_lazy_pirate_retries_with_a_new_socket_and_server_replays():
    ctx = FakeContext()
    calls = []

    async def handler(method, params):
        calls.append(method)
        return len(calls)

    server, task = await serve(ctx, handler)
    client = RpcClient(ctx, RPC, Stamper("cli", TestClock()), timeout_ms=30, retries=3)

    # The first request is lost on the way in: the client times out, re-creates
    # its socket and retries with the same request id.
    ctx.drop_next(RPC, 1)
    assert await client.call("allocate", request_id="r1") == 1
    assert client.get_stats()["timeouts"] == 1 and client.get_stats()["reconnects"] == 1

    # A retried id gets the cached reply: the work is not done twice.
    assert await client.call("allocate", request_id="r1") == 1
    assert calls == ["allocate"]
    assert server.get_stats()["replayed"] == 1
    task.cancel()


async def test_an_error_reply_is_not_replayed_to_a_retried_request():
    ctx = FakeContext()
    chain_up = False

    async def handler(method, params):
        if not chain_up:
            raise ConnectionError("chain down")
        return "nonce 7"

    server, task = await serve(ctx, handler)
    client = RpcClient(ctx, RPC, Stamper("cli", TestClock()), timeout_ms=500, retries=0)
    with pytest.raises(RpcError, match="chain down"):
        await client.call("allocate", request_id="r1")

    chain_up = True  # the failure is over: the same request id now gets the real answer

    assert await client.call("allocate", request_id="r1") == "nonce 7"
    assert server.get_stats()["replayed"] == 0 and server.get_stats()["cached"] == 1
    task.cancel()


async def test_rpc_client_gives_up_after_bounded_retries():
    ctx = FakeContext()
    client = RpcClient(ctx, "inproc://nobody", Stamper("cli", TestClock()), timeout_ms=10, retries=2)
    with pytest.raises(RpcTimeout):
        await client.call("allocate")
    assert client.get_stats() == {"calls": 1, "timeouts": 3, "reconnects": 3, "failures": 1}


async def test_malformed_request_gets_an_error_not_a_crash():
    ctx = FakeContext()

    async def handler(method, params):
        return "ok"

    server, task = await serve(ctx, handler)
    req = ctx.socket(__import__("zmq").REQ)
    req.connect(RPC)
    await req.send_multipart([b"\xc1nonsense"])
    reply = codec.decode_payload((await req.recv_multipart())[-1]).body
    assert not reply.ok and "malformed" in reply.error
    # the server still answers good requests
    client = RpcClient(ctx, RPC, Stamper("cli", TestClock()), timeout_ms=500, retries=0)
    assert await client.call("x") == "ok"
    assert server.get_stats()["malformed"] == 1
    task.cancel()


async def test_clone_snapshot_primes_the_tracker_so_covered_updates_are_dropped():
    ctx = FakeContext()
    stamper = Stamper("feed", TestClock())
    pub = Publisher(ctx, PUB, stamper)
    store = CloneStore("feed", stamper.boot_id)

    async def handler(method, params):
        return snapshot_reply(store, params)

    server, task = await serve(ctx, handler)
    for i in range(3):
        store.record(b"stats.a", pub.publish(b"stats.a", stats(i)))
    sub = Subscriber(ctx, [PUB])  # late joiner: missed all three
    client = RpcClient(ctx, RPC, Stamper("cli", TestClock()), timeout_ms=500, retries=0)

    snap = await fetch_snapshot(client, "stats.", sub)
    store.record(b"stats.a", pub.publish(b"stats.a", stats(3)))
    batch = await sub.recv_batch()

    assert [(e.topic, e.seq, e.body.stats["n"]) for e in snap.entries] == [("stats.a", 3, 2)]
    assert [(r.env.seq, r.arrival) for r in batch] == [(4, Arrival.IN_ORDER)]
    task.cancel()


async def test_the_reply_cache_is_bounded_in_bytes_not_only_in_count():
    ctx = FakeContext()

    async def handler(method, params):
        return "r" * 50_000  # a large reply, kept for replays

    server, task = await serve(ctx, handler, cache_size=10_000, cache_bytes=1_000_000)
    client = RpcClient(ctx, RPC, Stamper("cli", TestClock()), timeout_ms=500, retries=0)
    for i in range(100):  # 5 MB of replies: once all kept (100 x 0.9 MB ids took an authority to 256 MB)
        await client.call("big", request_id="i" * 500 + str(i))
    stats = server.get_stats()
    assert stats["cached_bytes"] <= 1_000_000
    assert 15 <= stats["cached"] < 20  # the newest ones stay
    assert await client.call("big", request_id="i" * 500 + "99") and server.get_stats()["replayed"] == 1
    task.cancel()
