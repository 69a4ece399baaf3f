"""CurveZMQ on the real bus (real ZeroMQ, each identity its own context, actors on
distinct loopback addresses): the configured identities talk; an unknown key is refused
by every server (counted, nothing applied); a known key is refused the methods it is
not allowed (counted, nothing applied); a forged publisher on a real publisher's port
is never heard."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat

import pytest
import yaml
import zmq

from actors.runtime.clock import SystemClock
from bus import curve, topics
from bus.codec import Stamper
from bus.context import destroy, new_context
from bus.curve import BusSecurity, KeyPair, KeyStore, for_config, identities, start_authenticator
from bus.messages import Stats
from bus.sockets import Publisher, RpcClient, RpcError, RpcServer, RpcTimeout, Subscriber
from config.loader import load
from sandbox.testbed import free_port, write_config
from tests.helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def secure_config(tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9")
    raw = yaml.safe_load(path.read_text())
    for i, ep in enumerate(raw["bus"]["endpoints"].values()):  # each actor on its own address
        host = f"127.0.0.{i + 2}"
        ep["pub"] = f"tcp://{host}:{free_port()}"
        ep["rpc"] = f"tcp://{host}:{free_port()}"
    raw["bus"]["security"] = {"enabled": True, "keys_dir": str(tmp_path / "keys")}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load(path)
    KeyStore(cfg.bus.security.keys_dir).init(identities(cfg))
    return cfg


def test_keys_are_created_once_with_secrets_readable_by_their_owner_only(tmp_path):
    cfg = secure_config(tmp_path)
    store = KeyStore(cfg.bus.security.keys_dir)
    assert store.init(identities(cfg)) == []  # nothing overwritten
    key = tmp_path / "keys" / "executor.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pair = store.pair("executor")
    assert pair.public == store.public("executor") and pair.secret.decode() not in repr(pair) + str(pair)
    os.chmod(key, 0o644)
    with pytest.raises(ValueError, match="readable by others"):
        store.pair("executor")


def test_a_config_with_a_non_loopback_endpoint_and_security_off_is_refused(tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9")
    raw = yaml.safe_load(path.read_text())
    raw["bus"]["endpoints"]["nonce"]["rpc"] = "tcp://0.0.0.0:7102"
    raw["bus"]["security"]["enabled"] = False
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ValueError, match=r"not loopback.*turn bus.security on"):
        load(path)
    raw["bus"]["endpoints"]["nonce"]["rpc"] = "tcp://127.evil.example:7102"  # a name, not an address
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ValueError, match="not loopback"):
        load(path)
    for local in ("ipc:///tmp/polyarb-nonce.sock", "tcp://[::1]:7102", "tcp://localhost:7102"):
        raw["bus"]["endpoints"]["nonce"]["rpc"] = local  # never leaves the host: allowed without security
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        assert load(path).bus.endpoints["nonce"].rpc == local


async def test_allowed_calls_work_unknown_keys_and_forbidden_methods_are_refused(tmp_path):
    cfg = secure_config(tmp_path)
    nonce = for_config(cfg, "nonce")
    server_ctx = new_context(nonce)
    zap = start_authenticator(server_ctx, nonce)
    calls: list[str] = []

    callers: list[str] = []

    async def handler(method: str, params: dict) -> dict:
        calls.append(method)
        callers.append(curve.caller.get())  # who asked: what a halt or resume records
        return {"nonce": 7}

    server = RpcServer(server_ctx, cfg.bus.endpoints["nonce"].rpc, handler, Stamper("nonce", SystemClock()))
    serving = asyncio.create_task(server.serve())
    contexts = []

    def client(security: BusSecurity, timeout_ms: int = 500) -> RpcClient:
        ctx = new_context(security)
        contexts.append(ctx)
        return RpcClient(ctx, cfg.bus.endpoints["nonce"].rpc, Stamper("x", SystemClock()), timeout_ms=timeout_ms,
                         retries=0)

    try:
        executor = client(for_config(cfg, "executor"))
        assert await executor.call("allocate", {"request_id": "r1"}) == {"nonce": 7}
        assert callers == ["executor"]

        reader = client(for_config(cfg, "reader"))
        with pytest.raises(RpcError, match="not authorized: reader may not call fail"):
            await reader.call("fail", {"nonce": 7})
        assert nonce.refused == 1 and calls == ["allocate"]

        public, secret = zmq.curve_keypair()  # a key no config names: the handshake is refused
        stranger = dataclasses.replace(for_config(cfg, "executor"), own=KeyPair(public, secret))
        with pytest.raises(RpcTimeout):
            await client(stranger).call("fail", {"nonce": 7})
        assert nonce.denied >= 1 and calls == ["allocate"]  # nothing applied

        plain_ctx = zmq.asyncio.Context()  # no Curve at all
        contexts.append(plain_ctx)
        with pytest.raises(RpcTimeout):
            await RpcClient(plain_ctx, cfg.bus.endpoints["nonce"].rpc, Stamper("x", SystemClock()),
                            timeout_ms=500, retries=0).call("fail", {"nonce": 7})
        assert calls == ["allocate"]
    finally:
        serving.cancel()
        server.close()
        zap.stop()
        for ctx in contexts:
            destroy(ctx, 0)
        destroy(server_ctx, 0)


async def test_a_forged_publisher_on_the_feeds_port_is_never_heard(tmp_path):
    cfg = secure_config(tmp_path)
    endpoint = cfg.bus.endpoints["feed"].pub
    feed = for_config(cfg, "feed")
    feed_ctx = new_context(feed)
    zap = start_authenticator(feed_ctx, feed)
    router_ctx = new_context(for_config(cfg, "router"))
    sub = Subscriber(router_ctx, [endpoint], [topics.prefix(topics.STATS)])
    real = Publisher(feed_ctx, endpoint, Stamper("feed", SystemClock()))
    heard: list[str] = []

    async def listen() -> None:
        while True:
            heard.extend(r.env.body.stats.get("who", "") for r in await sub.recv_batch())

    listening = asyncio.create_task(listen())
    forged_ctx = None
    try:
        async def real_heard() -> bool:
            real.publish(topics.stats("feed"), Stats(actor="feed", stats={"who": "feed"}))
            return "feed" in heard

        await eventually(real_heard, timeout=10, interval=0.05, what="the real feed heard")
        real.close(0)  # the feed is down: a squatter takes its port, with its own keys
        public, secret = zmq.curve_keypair()
        squatter = dataclasses.replace(feed, own=KeyPair(public, secret))
        forged_ctx = new_context(squatter)
        forged_zap = start_authenticator(forged_ctx, squatter)
        forged = await _bind_when_free(forged_ctx, endpoint)
        heard.clear()
        for _ in range(40):  # 2 s of forged "valid" messages
            forged.publish(topics.stats("feed"), Stats(actor="feed", stats={"who": "forged"}))
            await asyncio.sleep(0.05)
        assert "forged" not in heard, heard  # late copies of the real feed's may still arrive
        forged.close(0)
        forged_zap.stop()
    finally:
        listening.cancel()
        sub.close()
        zap.stop()
        for ctx in (feed_ctx, router_ctx, forged_ctx):
            if ctx is not None:
                destroy(ctx, 0)


async def _bind_when_free(ctx, endpoint: str) -> Publisher:
    for _ in range(100):
        try:
            return Publisher(ctx, endpoint, Stamper("feed", SystemClock()))
        except zmq.ZMQError:
            await asyncio.sleep(0.05)  # the closed socket lets the port go
    raise AssertionError(f"{endpoint} never free")


async def test_a_server_with_no_zap_handler_admits_no_one_and_request_ids_are_per_caller(tmp_path):
    # libzmq admits any Curve key when no ZAP handler runs in the context; bus servers refuse.
    cfg = secure_config(tmp_path)
    nonce = for_config(cfg, "nonce")
    server_ctx = new_context(nonce)  # no authenticator started

    async def handler(method: str, params: dict) -> dict:
        return {"nonce": 7, "method": method}

    server = RpcServer(server_ctx, cfg.bus.endpoints["nonce"].rpc, handler, Stamper("nonce", SystemClock()))
    serving = asyncio.create_task(server.serve())
    client_ctx = new_context(for_config(cfg, "executor"))
    try:
        with pytest.raises(RpcTimeout):
            await RpcClient(client_ctx, cfg.bus.endpoints["nonce"].rpc, Stamper("x", SystemClock()),
                            timeout_ms=500, retries=0).call("allocate", {"request_id": "r"})
    finally:
        serving.cancel()
        server.close()
        destroy(client_ctx, 0)
        destroy(server_ctx, 0)
    # With the handler: one identity's request id does not hand another its cached reply.
    server_ctx = new_context(nonce)
    zap = start_authenticator(server_ctx, nonce)
    server = RpcServer(server_ctx, cfg.bus.endpoints["nonce"].rpc, handler, Stamper("nonce", SystemClock()))
    serving = asyncio.create_task(server.serve())
    ctxs = [new_context(for_config(cfg, who)) for who in ("operator", "executor")]
    try:
        operator, executor = (RpcClient(c, cfg.bus.endpoints["nonce"].rpc, Stamper("x", SystemClock()),
                                        timeout_ms=1000, retries=0) for c in ctxs)
        assert (await operator.call("stats", {}, request_id="allocate:k"))["method"] == "stats"
        assert (await executor.call("allocate", {}, request_id="allocate:k"))["method"] == "allocate"
    finally:
        serving.cancel()
        server.close()
        zap.stop()
        for c in [*ctxs, server_ctx]:
            destroy(c, 0)
