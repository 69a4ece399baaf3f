"""Socket helpers: publisher, batch-draining subscriber, RPC server and
Lazy Pirate client.

Publishers bind, subscribers connect. Every helper takes the context it
creates sockets from, so tests pass `bus.fakes.FakeContext` and production
passes a `zmq.asyncio.Context` made inside the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import zmq

from bus import codec, curve
from bus.codec import FrameError, Stamper
from bus.curve import security_of
from bus.messages import Body, Envelope, RpcReply, RpcRequest
from bus.sequence import Arrival, SequenceTracker
from bus.trace import tracing

log = logging.getLogger(__name__)


def _sync_view(sock: Any) -> Any:
    """A non-blocking view of an asyncio socket: NOBLOCK sends and drains that
    raise zmq.Again at once instead of returning futures."""
    if isinstance(sock, zmq.Socket):
        return zmq.Socket.shadow(sock.underlying)
    return sock.sync_view()


class Publisher:
    """A bound PUB socket that stamps envelopes with per-topic sequences.

    Sends never wait: at the high-water mark ZeroMQ drops, and so do we
    (counted); subscribers see the gap in the sequence numbers.
    """

    def __init__(
        self, ctx: Any, endpoint: str, stamper: Stamper, *, hwm: int = 100_000, linger_ms: int = 200
    ) -> None:
        self.endpoint = endpoint
        self.stamper = stamper
        self._sock = ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, linger_ms)
        if (security := security_of(ctx)) is not None:
            security.serve(self._sock)  # only the configured identities may subscribe
        self._sock.bind(endpoint)
        self._sync = _sync_view(self._sock)
        self.sent = 0
        self.dropped = 0

    def publish(
        self, topic: bytes, body: Body, *, event_ns: int | None = None, trace_id: str = ""
    ) -> Envelope:
        env = self.stamper.stamp(topic, body, event_ns=event_ns, trace_id=trace_id)
        self.send(topic, env)
        return env

    def send(self, topic: bytes, env: Envelope) -> None:
        try:
            self._sync.send_multipart(codec.encode(topic, env), zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1

    def get_stats(self) -> dict[str, int]:
        return {"sent": self.sent, "dropped": self.dropped}

    def close(self, linger_ms: int = 200) -> None:
        self._sock.close(linger=linger_ms)


@dataclass(frozen=True, slots=True)
class Received:
    topic: bytes
    env: Envelope
    arrival: Arrival


class Subscriber:
    """A SUB socket connected to one or more publishers.

    `recv_batch()` awaits one message, then drains what is already queued with
    NOBLOCK (one await per message is six times slower here). Malformed and
    oversized frames are counted and dropped; ZMQ_MAXMSGSIZE makes libzmq drop
    the connection of a peer that sends an oversized frame.
    """

    def __init__(
        self,
        ctx: Any,
        endpoints: Iterable[str],
        prefixes: Iterable[bytes] = (b"",),
        *,
        max_message_bytes: int = 1 << 20,
        hwm: int = 100_000,
    ) -> None:
        self._sock = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self._sock.setsockopt(zmq.RCVHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        for p in prefixes:
            self._sock.setsockopt(zmq.SUBSCRIBE, p)
        self.endpoints = list(endpoints)
        for ep in self.endpoints:
            if (security := security_of(ctx)) is not None:
                security.client(self._sock, ep)  # the publisher bound there, and no other, is heard
            self._sock.connect(ep)
        self._sync = _sync_view(self._sock)
        self.tracker = SequenceTracker()
        self.received = 0
        self.malformed = 0

    def _accept(self, frames: list[bytes], out: list[Received]) -> None:
        try:
            topic, env = codec.decode(frames)
        except FrameError as exc:
            self.malformed += 1
            log.debug("dropped malformed frame: %s", exc)
            return
        self.received += 1
        arrival = self.tracker.observe(env.source, env.boot_id, topic, env.seq)
        if arrival is not Arrival.STALE:
            out.append(Received(topic, env, arrival))

    async def recv_batch(self, max_batch: int = 1000) -> list[Received]:
        out: list[Received] = []
        self._accept(await self._sock.recv_multipart(), out)
        for _ in range(max_batch - 1):
            try:
                frames = self._sync.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._accept(frames, out)
        return out

    def get_stats(self) -> dict[str, int]:
        return {"received": self.received, "malformed": self.malformed, **self.tracker.get_stats()}

    def close(self) -> None:
        self._sock.close(linger=0)


class RpcError(RuntimeError):
    """The server answered with an error."""


class RpcTimeout(TimeoutError):
    """No reply after every retry: the server is down or unreachable."""


Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class RpcServer:
    """A ROUTER server for REQ clients.

    Each request runs in its own task. Successful replies are cached by request
    id (LRU), and a retried request that is still running waits for the same
    result, so a client retry never does the work twice. An error reply is not
    cached: the failure (a chain that was down, a lock that was busy) may be
    over when the client retries, and replaying it would repeat a stale "no".
    """

    def __init__(
        self,
        ctx: Any,
        endpoint: str,
        handler: Handler,
        stamper: Stamper,
        *,
        cache_size: int = 10_000,
        cache_bytes: int = 32 << 20,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self._sock = ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self._sock.setsockopt(zmq.LINGER, 0)
        # A reply that cannot be delivered (peer gone, its queue full) raises instead of
        # vanishing, so it is counted.
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._security = security_of(ctx)
        if self._security is not None:
            self._security.serve(self._sock)  # only the configured identities connect; methods by identity
        self._sock.bind(endpoint)
        self._sync = _sync_view(self._sock)
        self.endpoint = endpoint
        self._handler = handler
        self._stamper = stamper
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes  # ids and replies: a count limit alone let 0.9 MB ids grow it by 180 MB
        self._cached_bytes = 0
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.replayed = 0
        self.malformed = 0
        self.errors = 0
        self.replies_dropped = 0

    async def serve(self) -> None:
        while True:
            if self._security is None:
                frames = await self._sock.recv_multipart()
                caller = ""
            else:  # the caller's identity, as the ZAP handler named its key
                raw = await self._sock.recv_multipart(copy=False)
                try:
                    caller = raw[-1].get("User-Id") or ""
                except zmq.ZMQError:  # no mechanism named the peer (inproc): an unnamed caller, refused
                    caller = ""
                frames = [f.bytes for f in raw]
            if len(frames) < 3 or frames[-2] != b"":
                self.malformed += 1
                continue
            route, payload = frames[:-1], frames[-1]
            task = asyncio.create_task(self._answer(route, payload, caller))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, route: list[bytes], payload: bytes, caller: str = "") -> None:
        reply = await self._reply_for(payload, caller)
        try:
            # ROUTER never blocks on send: skip an event-loop round trip.
            self._sync.send_multipart([*route, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone or not reading: its retry will hit the cache
            self.replies_dropped += 1
            log.debug("reply not sent: %s", exc)

    async def _reply_for(self, payload: bytes, caller: str = "") -> bytes:
        try:
            env = codec.decode_payload(payload)
            body = env.body
            if not isinstance(body, RpcRequest):
                raise FrameError(f"expected rpc_request, got {type(body).__name__}")
        except FrameError as exc:
            self.malformed += 1
            return self._encode(RpcReply(request_id="", ok=False, error=f"malformed request: {exc}"))
        # A request id is the caller's own: another identity reusing it neither reads nor joins its reply.
        rid = body.request_id
        key = f"{caller}\x00{rid}" if self._security is not None else rid
        if self._security is not None and not self._security.may_call(caller, body.method):
            self._security.refused += 1  # never run, never cached: counted and said
            log.warning("rpc %s refused: %r may not call it", body.method, caller)
            return self._encode(RpcReply(request_id=rid, ok=False,
                                         error=f"not authorized: {caller or 'an unnamed key'} may not call "
                                               f"{body.method}"))
        cached = self._cache.get(key)
        if cached is not None:
            self.replayed += 1
            self._cache.move_to_end(key)
            return cached
        running = self._inflight.get(key)
        if running is not None:
            self.replayed += 1
            return await asyncio.shield(running)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            self.requests += 1
            try:
                with tracing(env.trace_id):  # the handler's log lines carry the caller's trace
                    who = curve.caller.set(caller)
                    try:
                        result = await self._handler(body.method, body.params)
                    finally:
                        curve.caller.reset(who)
                reply = self._encode(RpcReply(request_id=rid, ok=True, result=result))
            except Exception as exc:  # the handler's failure is the client's answer (this time)
                self.errors += 1
                reply = self._encode(RpcReply(request_id=rid, ok=False, error=f"{type(exc).__name__}: {exc}"))
            else:
                self._remember(key, reply)
            fut.set_result(reply)
            return reply
        finally:
            del self._inflight[key]

    def _remember(self, rid: str, reply: bytes) -> None:
        self._cache[rid] = reply
        self._cached_bytes += len(rid) + len(reply)
        while len(self._cache) > self._cache_size or self._cached_bytes > self._cache_bytes:
            old, data = self._cache.popitem(last=False)
            self._cached_bytes -= len(old) + len(data)

    def _encode(self, body: Body) -> bytes:
        return codec.encode_payload(self._stamper.stamp(b"rpc", body))

    def get_stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "replayed": self.replayed,
            "malformed": self.malformed,
            "errors": self.errors,
            "replies_dropped": self.replies_dropped,
            "cached": len(self._cache),
            "cached_bytes": self._cached_bytes,
        }

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._sock.close(linger=0)


def new_request_id() -> str:
    return os.urandom(12).hex()


class RpcClient:
    """Lazy Pirate: a REQ client with a timeout, bounded retries and a fresh
    socket after every timeout (a REQ socket that missed its reply is stuck).

    The request id stays the same across retries so the server replays
    instead of repeating the work. Calls are serialised: REQ alternates.
    """

    def __init__(
        self,
        ctx: Any,
        endpoint: str,
        stamper: Stamper,
        *,
        timeout_ms: int = 1000,
        retries: int = 3,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self._ctx = ctx
        self.endpoint = endpoint
        self._stamper = stamper
        self.timeout_ms = timeout_ms
        self.retries = retries
        self._max_bytes = max_message_bytes
        self._sock: Any = None
        self._sync: Any = None
        self._lock = asyncio.Lock()
        self.calls = 0
        self.timeouts = 0
        self.reconnects = 0
        self.failures = 0

    def _socket(self) -> Any:
        if self._sock is None:
            sock = self._ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_bytes)
            if (security := security_of(self._ctx)) is not None:
                security.client(sock, self.endpoint)  # the actor bound there, and no squatter
            sock.connect(self.endpoint)
            self._sock = sock
            self._sync = _sync_view(sock)
        return self._sock

    def _discard_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
            self.reconnects += 1

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        timeout_ms: int | None = None,
    ) -> Any:
        rid = request_id or new_request_id()
        env = self._stamper.stamp(b"rpc", RpcRequest(request_id=rid, method=method, params=params or {}))
        payload = codec.encode_payload(env)
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        async with self._lock:
            self.calls += 1
            for _ in range(self.retries + 1):
                sock = self._socket()
                await sock.send_multipart([payload])
                while await sock.poll(timeout, zmq.POLLIN):
                    # poll said readable: take it without a second await
                    try:
                        frames = self._sync.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        continue
                    reply = self._decode(frames)
                    if reply is None or reply.request_id != rid:
                        continue  # a malformed or foreign reply: keep waiting
                    if not reply.ok:
                        raise RpcError(reply.error or "error")
                    return reply.result
                self.timeouts += 1
                self._discard_socket()
            self.failures += 1
            raise RpcTimeout(f"{method} to {self.endpoint}: no reply after {self.retries + 1} attempts")

    def _decode(self, frames: list[bytes]) -> RpcReply | None:
        try:
            body = codec.decode_payload(frames[-1]).body
        except FrameError:
            return None
        if not isinstance(body, RpcReply):
            return None
        if body.request_id == "" and not body.ok:
            raise RpcError(body.error or "server rejected the request")
        return body

    def get_stats(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "timeouts": self.timeouts,
            "reconnects": self.reconnects,
            "failures": self.failures,
        }

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
