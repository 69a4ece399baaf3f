"""A live barrage against the nonce authority's RPC socket: garbage multipart,
wrong body types, unknown methods, wrong param types, deep values, bursts of
clients that vanish before their reply. The authority keeps answering
correctly, counts every drop, and leases nothing it was not asked for.

With CurveZMQ on (the sandbox's default), the barrage is sent twice: as an
anonymous peer (no keys, or keys no config names), which never gets an answer
and changes nothing; and with the executor's own keys (the one identity allowed
to call it), so the parser still meets every hostile frame."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import msgspec
import pytest
import zmq
import zmq.asyncio

from actors.nonce.client import NonceClient
from actors.runtime.clock import SystemClock
from bus import codec, topics
from bus.codec import Stamper
from bus.curve import BusSecurity, KeyPair, for_config
from bus.messages import RpcReply, RpcRequest, Stats
from bus.sockets import RpcError, Subscriber
from config.loader import load
from sandbox.testbed import context_as
from tests.integration.conftest import write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

stamper = Stamper("attacker", SystemClock())


def request(method: str, params: dict, rid: str | None = None) -> bytes:
    return codec.encode_payload(stamper.stamp(b"rpc", RpcRequest(request_id=rid or os.urandom(6).hex(),
                                                                   method=method, params=params)))


def hostile_payloads() -> list[list[bytes]]:
    deep = b"\x91" * 50_000 + b"\x01"
    marker = msgspec.msgpack.encode("M" * 24)
    return [
        [b""],
        [b"\xc1garbage"],
        [os.urandom(64)],
        [b"a", b"b", b"c"],  # too many frames for REQ
        [codec.encode_payload(stamper.stamp(b"rpc", Stats(actor="x", stats={})))],  # not a request
        [codec.encode_payload(stamper.stamp(b"rpc", RpcReply(request_id="r", ok=True)))],
        [request("allocate", {"x": "M" * 24}).replace(marker, deep)],  # the 60 KB SIGSEGV of old
        [request("no_such_method", {})],
        [request("allocate", {"request_id": ["x", 1]})],
        [request("allocate", {"request_id": None})],
        [request("fail", {"nonce": 1.5})],
        [request("fail", {"nonce": True})],
        [request("confirm", {"nonce": "0"})],
        [request("mark_sent", {"nonce": 0, "tx_hash": "0x01", "raw": "zz"})],
    ]


async def barrage(endpoint: str, security: BusSecurity | None = None, rounds: int = 5,
                  wait_ms: int = 2000) -> dict[str, int]:
    ctx = zmq.asyncio.Context()
    answered = errors = 0
    try:
        for frames in hostile_payloads() * rounds:
            dealer = ctx.socket(zmq.DEALER)  # a raw peer: any frames, no REQ state machine
            dealer.setsockopt(zmq.LINGER, 0)
            if security is not None:
                security.client(dealer, endpoint)
            dealer.connect(endpoint)
            await dealer.send_multipart([b"", *frames])
            if await dealer.poll(wait_ms, zmq.POLLIN):
                reply = codec.decode_payload((await dealer.recv_multipart())[-1]).body
                answered += 1
                errors += not reply.ok
            dealer.close()
        # A burst of clients that send and vanish before their reply (the server must count, not block).
        for i in range(300 if rounds > 1 else 0):
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            if security is not None:
                security.client(dealer, endpoint)
            dealer.connect(endpoint)
            await dealer.send_multipart([b"", request("stats", {}, rid=f"gone-{i}")])
            dealer.close()
    finally:
        ctx.destroy(0)
    return {"answered": answered, "errors": errors}


def test_the_authority_survives_a_barrage_and_still_answers_correctly(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil)
    cfg = load(path)
    endpoint = cfg.bus.endpoints["nonce"].rpc
    authority = procs("--config", str(path), "actor", "nonce", name="nonce")

    async def run() -> None:
        ctx = context_as(cfg, "executor")
        client = NonceClient(ctx, endpoint, Stamper("executor", SystemClock()), timeout_ms=1000, retries=30)
        try:
            first = await client.allocate_nonce("before")
            # Anonymous: no keys at all, then keys no config names. Never answered, nothing applied.
            public, secret = zmq.curve_keypair()
            stranger = dataclasses.replace(for_config(cfg, "executor"), own=KeyPair(public, secret))
            for anonymous in (None, stranger):
                nobody = await barrage(endpoint, anonymous, rounds=1, wait_ms=300)
                assert nobody == {"answered": 0, "errors": 0}, nobody
            assert await client.allocate_nonce("between") == first + 1  # nothing leased meanwhile
            # The executor's own keys: the parser meets every hostile frame.
            result = await barrage(endpoint, for_config(cfg, "executor"))
            # every hostile request that is a request was answered with an error, never a crash
            assert result["answered"] >= 5 * 12 and result["errors"] == result["answered"]
            second = await client.allocate_nonce("after")
            assert second == first + 2  # nothing was leased for the hostile requests
            with pytest.raises(RpcError, match="request_id"):
                await client._rpc.call("allocate", {"request_id": ["x", 1]})
            stats = await client.get_stats()
            assert stats["pending_nonces"] == [first, first + 1, second]
            server = await rpc_server_stats(ctx, cfg.bus.endpoints["nonce"].pub,
                                            lambda s: s["malformed"] >= 5 * 7 and s["errors"] >= 5 * 7)
            assert server["malformed"] >= 5 * 7  # garbage, wrong frames and bodies, the deep value: counted
            assert server["errors"] >= 5 * 7  # unknown method and wrong params: answered, counted
        finally:
            client.close()
            ctx.destroy(0)

    asyncio.run(run())
    assert authority.p is not None and authority.p.poll() is None, authority.output()[-2000:]
    assert "Traceback" not in authority.output()


async def rpc_server_stats(ctx: zmq.asyncio.Context, pub: str, done, timeout: float = 15.0) -> dict[str, int]:
    """The RPC server's own counters, from the stats the actor publishes, once `done` holds."""
    sub = Subscriber(ctx, [pub], [topics.prefix(topics.STATS)])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: dict[str, int] = {}
    try:
        while loop.time() < deadline:
            try:
                batch = await asyncio.wait_for(sub.recv_batch(), deadline - loop.time())
            except TimeoutError:
                break
            for r in batch:
                last = r.env.body.stats["bus"]["rpc_server"]
                if done(last):
                    return last
        return last
    finally:
        sub.close()
