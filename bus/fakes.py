"""In-memory fakes of a zmq.asyncio context and its sockets.

The same interface the helpers in `bus.sockets` use (socket, bind, connect,
setsockopt, send_multipart, recv_multipart, poll, close), so every actor can be
unit-tested in one event loop without processes or ports. Supports PUB/SUB
with prefix filtering and MAXMSGSIZE, and REQ/ROUTER with identities.
`FakeContext.drop_next(endpoint, n)` loses the next n messages sent to an
endpoint, to exercise retries.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any

import zmq


class FakeContext:
    def __init__(self) -> None:
        self.bound: dict[str, FakeSocket] = {}
        self.connected: dict[str, list[FakeSocket]] = {}
        self._drops: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.sockets: list[FakeSocket] = []

    def socket(self, kind: int) -> FakeSocket:
        sock = FakeSocket(self, kind, b"id-%d" % next(self._ids))
        self.sockets.append(sock)
        return sock

    def drop_next(self, endpoint: str, n: int = 1) -> None:
        self._drops[endpoint] = self._drops.get(endpoint, 0) + n

    def _should_drop(self, endpoint: str) -> bool:
        left = self._drops.get(endpoint, 0)
        if left:
            self._drops[endpoint] = left - 1
            return True
        return False

    def term(self) -> None:
        for s in self.sockets:
            s.close()


class FakeSocket:
    def __init__(self, ctx: FakeContext, kind: int, identity: bytes) -> None:
        self._ctx = ctx
        self.kind = kind
        self.identity = identity
        self.options: dict[int, Any] = {}
        self.prefixes: list[bytes] = []
        self.endpoints: list[str] = []
        self.closed = False
        self._queue: deque[list[bytes]] = deque()
        self._ready = asyncio.Event()

    # -- configuration
    def setsockopt(self, opt: int, value: Any) -> None:
        if opt == zmq.SUBSCRIBE:
            self.prefixes.append(value)
        elif opt == zmq.UNSUBSCRIBE:
            self.prefixes.remove(value)
        else:
            self.options[opt] = value

    def bind(self, endpoint: str) -> None:
        if endpoint in self._ctx.bound:
            raise zmq.ZMQError(zmq.EADDRINUSE, "Address already in use")
        self._ctx.bound[endpoint] = self
        self.endpoints.append(endpoint)

    def connect(self, endpoint: str) -> None:
        self._ctx.connected.setdefault(endpoint, []).append(self)
        self.endpoints.append(endpoint)

    def close(self, linger: int | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        for ep in self.endpoints:
            if self._ctx.bound.get(ep) is self:
                del self._ctx.bound[ep]
            peers = self._ctx.connected.get(ep, [])
            if self in peers:
                peers.remove(self)

    # -- delivery
    def _deliver(self, frames: list[bytes]) -> None:
        limit = self.options.get(zmq.MAXMSGSIZE, -1)
        if limit is not None and limit >= 0 and any(len(f) > limit for f in frames):
            return  # libzmq drops an oversized message (and the peer's connection)
        self._queue.append(frames)
        self._ready.set()

    def _route(self, frames: list[bytes]) -> None:
        if self.kind == zmq.PUB:
            for ep in self.endpoints:
                if self._ctx._should_drop(ep):
                    continue
                for sub in list(self._ctx.connected.get(ep, [])):
                    if any(frames[0].startswith(p) for p in sub.prefixes):
                        sub._deliver(list(frames))
        elif self.kind == zmq.REQ:
            ep = self.endpoints[-1]
            server = self._ctx.bound.get(ep)
            if server is not None and not self._ctx._should_drop(ep):
                server._deliver([self.identity, b"", *frames])
        elif self.kind == zmq.ROUTER:
            ident, payload = frames[0], frames[1:]
            for sock in self._ctx.sockets:
                if sock.identity == ident and not sock.closed:
                    sock._deliver(payload[1:] if payload and payload[0] == b"" else payload)
        else:
            raise NotImplementedError(f"fake send on socket kind {self.kind}")

    # -- the asyncio interface
    async def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self._send_now(frames)

    def _send_now(self, frames: list[bytes]) -> None:
        if self.closed:
            raise zmq.ZMQError(zmq.ENOTSOCK, "Socket operation on non-socket")
        self._route([bytes(f) for f in frames])

    async def recv_multipart(self, flags: int = 0) -> list[bytes]:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def poll(self, timeout: int | None = None, flags: int = zmq.POLLIN) -> int:  # noqa: ASYNC109 - pyzmq signature
        if self._queue:
            return zmq.POLLIN
        self._ready.clear()
        try:
            await asyncio.wait_for(self._ready.wait(), None if timeout is None else timeout / 1000)
        except TimeoutError:
            return 0
        return zmq.POLLIN if self._queue else 0

    def sync_view(self) -> _SyncView:
        return _SyncView(self)


class _SyncView:
    """The NOBLOCK view used for sends and drains."""

    def __init__(self, sock: FakeSocket) -> None:
        self._sock = sock

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self._sock._send_now(frames)

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self._sock._queue:
            raise zmq.Again()
        return self._sock._queue.popleft()
