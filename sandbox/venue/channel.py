"""What the venue's WebSocket channels share: one connection's bounded queue and
writer, and the hub plumbing that accepts, closes and faults connections.

Each connection has its own bounded queue drained by its own writer task: a
client that cannot keep up is disconnected (counted) and never slows the
others. A hub subclass says what a client frame means (`_on_text`) and how to
forget a connection's subscriptions (`_forget`); `disconnect_every_seconds`
and `stall` apply to every channel alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from typing import Any, ClassVar

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from actors.domain.values import Value
from actors.runtime.clock import Clock
from sandbox.venue.faults import ConnectionFaults, FaultInjector

log = logging.getLogger(__name__)

PONG = b"PONG"
INVALID_OPERATION = b"INVALID OPERATION"
TEXT = "text"
CLOSE_TIMEOUT = 2.0  # seconds a close handshake may take before the transport is dropped

_decode = msgspec.json.Decoder(Value).decode  # bounded depth: a deep body is a decode error


class Connection:
    __slots__ = ("closing", "connected_ns", "faults", "hub", "id", "queue", "queued_bytes", "sent", "transport",
                 "wake", "ws")

    def __init__(self, hub: ChannelHub, ws: web.WebSocketResponse, transport: Any, faults: ConnectionFaults,
                 now_ns: int, conn_id: int) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.faults = faults
        self.connected_ns = now_ns
        self.id = conn_id
        self.closing = False
        self.queue: deque[tuple[str, bytes]] = deque()
        self.queued_bytes = 0
        self.sent = 0
        self.wake = asyncio.Event()

    def push(self, kind: str, data: bytes) -> None:
        if self.closing:
            return
        self.queue.append((kind, data))
        self.queued_bytes += len(data)
        if len(self.queue) > self.hub.max_queue_frames or self.queued_bytes > self.hub.max_queue_bytes:
            self.hub.counters["slow_disconnects"] += 1
            log.warning("connection %d too slow (%d frames queued): disconnecting", self.id, len(self.queue))
            self.hub.close(self, WSCloseCode.TRY_AGAIN_LATER, "slow consumer")
            return
        self.wake.set()

    async def write_loop(self) -> None:
        hub, ws, queue = self.hub, self.ws, self.queue
        try:
            while not self.closing:
                if not queue:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                kind, data = queue.popleft()
                self.queued_bytes -= len(data)
                await ws.send_frame(data, WSMsgType.TEXT)
                self.sent += 1
                hub.frames_sent[kind] += 1
                hub.counters["bytes_sent"] += len(data)
        except (ConnectionError, RuntimeError, OSError) as exc:  # the peer went away mid-send
            log.debug("connection %d writer stopped: %r", self.id, exc)


class ChannelHub:
    """The connections of one channel; subclasses implement `_on_text` and `_forget`."""

    connection_class: ClassVar[type[Connection]] = Connection
    max_client_frame: ClassVar[int] = 256 * 1024  # larger client frames close the connection (1009)
    name: ClassVar[str] = "ws"

    def __init__(self, faults: FaultInjector, clock: Clock, *, max_queue_frames: int, max_queue_bytes: int) -> None:
        self.faults = faults
        self.clock = clock
        self.max_queue_frames = max_queue_frames  # read by Connection.push
        self.max_queue_bytes = max_queue_bytes
        self.conns: set[Any] = set()
        self.counters = Counter[str]()
        self.frames_sent = Counter[str]()  # by kind; written by Connection.write_loop
        self.events = Counter[str]()
        self._next_id = 1
        self._closers: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=True, max_msg_size=self.max_client_frame, timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        conn = self.connection_class(self, ws, request.transport, self.faults.connection(),
                                     self.clock.monotonic_ns(), self._next_id)
        self._next_id += 1
        self.conns.add(conn)
        self.counters["connections_total"] += 1
        writer = asyncio.create_task(conn.write_loop(), name=f"{self.name}-writer-{conn.id}")
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self.counters["binary_frames_ignored"] += 1
                elif msg.type is WSMsgType.ERROR:  # e.g. a frame above max_client_frame: aiohttp closed with 1009
                    self.counters["client_errors"] += 1
                    break
        finally:
            self._forget(conn)
            conn.closing = True
            conn.wake.set()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    def _on_text(self, conn: Any, text: str) -> None:
        """PING is answered, anything that is not JSON is invalid; the rest is the channel's."""
        if text == "PING":
            return self._pong(conn)
        try:
            msg = _decode(text)
        except msgspec.DecodeError:
            return self._invalid(conn)
        self._on_message(conn, msg)

    def _on_message(self, conn: Any, msg: Any) -> None:
        raise NotImplementedError

    def _invalid(self, conn: Any) -> None:
        raise NotImplementedError

    def _forget(self, conn: Any) -> None:
        self.conns.discard(conn)
        conn.queue.clear()

    def _pong(self, conn: Connection) -> None:
        self.counters["pongs"] += 1
        conn.push(TEXT, PONG)

    def close(self, conn: Any, code: int, reason: str, *, abort: bool = False) -> None:
        """Close a connection from synchronous code (fan-out, listeners, housekeeping)."""
        if conn.closing:
            return
        conn.closing = True
        conn.queue.clear()
        conn.wake.set()
        self._forget(conn)
        if abort and conn.transport is not None:  # like a dropped TCP connection: no close frame (1006)
            conn.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._close(conn, code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _close(self, conn: Connection, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await conn.ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            pass  # aiohttp has dropped the transport itself

    async def close_all(self) -> None:
        for conn in list(self.conns):
            self.close(conn, WSCloseCode.GOING_AWAY, "venue stopping")
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)

    def disconnect_due(self, now_ns: int) -> list[Any]:
        """Close (counted) the connections `disconnect_every_seconds` says are due; the others."""
        alive = []
        for conn in list(self.conns):
            if conn.closing:
                continue
            if self.faults.disconnect_due(conn.connected_ns, now_ns):
                self.faults.count("disconnects")
                self.counters["disconnects"] += 1
                self.close(conn, WSCloseCode.GOING_AWAY, "injected disconnect", abort=self.faults.rng.random() < 0.5)
                continue
            alive.append(conn)
        return alive

    def set_stall(self, started: bool, ended: bool) -> None:
        """Apply a change of the `stall` knob (FaultInjector.configure's answer) to the open connections."""
        for conn in self.conns:
            if started:
                conn.faults.stall()
            elif ended:
                conn.faults.stalled = False
