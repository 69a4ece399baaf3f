"""The market channel, `GET /ws/market`: Polymarket's protocol (docs/polymarket.md).

Client -> server (text frames):
    {"type": "market", "assets_ids": [...], "custom_feature_enabled": false}
        once per connection -> ONE JSON array with the `book` of every known
        asset among them (unknown ids are ignored). A second one -> `INVALID OPERATION`.
    {"operation": "subscribe", "assets_ids": [...]}   -> an array of the NEW assets'
        books; if none is new (all already subscribed or unknown) -> `NO NEW ASSETS`
    {"operation": "unsubscribe", "assets_ids": [...]} -> no reply
    PING -> PONG (also while the connection is stalled)
    anything else (bad JSON, unknown operation, bad assets_ids) -> `INVALID OPERATION`, counted
Server -> client: book / price_change / last_trade_price / tick_size_change as
JSON objects. A price_change carries every level of its market event, so a
client subscribed to one token of a market also sees the other token's entries.

Fan-out: each event is encoded once and the same bytes are queued for every
subscriber. Each connection has its own bounded queue drained by its own
writer task: a client that cannot keep up is disconnected (counted) and never
slows the others. permessage-deflate only when the client offers it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from actors.runtime.clock import Clock
from sandbox.venue.events import BOOK, CUSTOM_FEATURES, Event, encode
from sandbox.venue.faults import ConnectionFaults, FaultInjector
from sandbox.venue.state import VenueState

log = logging.getLogger(__name__)

PONG = b"PONG"
INVALID_OPERATION = b"INVALID OPERATION"
NO_NEW_ASSETS = b"NO NEW ASSETS"
TEXT = "text"
MAX_CLIENT_FRAME = 256 * 1024  # a subscription of ~500 ids is ~40 KB; larger frames close the connection (1009)
MAX_QUEUE_FRAMES = 20_000  # per connection; beyond this the client is too slow
MAX_QUEUE_BYTES = 64 * 1024 * 1024
CLOSE_TIMEOUT = 2.0  # seconds a close handshake may take before the transport is dropped

_decode = msgspec.json.Decoder().decode


class Connection:
    __slots__ = ("assets", "closing", "connected_ns", "custom", "faults", "hub", "id", "initialized", "queue",
                 "queued_bytes", "sent", "transport", "wake", "ws")

    def __init__(self, hub: MarketHub, ws: web.WebSocketResponse, transport: Any, faults: ConnectionFaults,
                 now_ns: int, conn_id: int) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.faults = faults
        self.connected_ns = now_ns
        self.id = conn_id
        self.assets: set[str] = set()
        self.initialized = False
        self.custom = False  # custom_feature_enabled: market_resolved and the other custom events
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


class MarketHub:
    def __init__(self, state: VenueState, faults: FaultInjector, clock: Clock, *,
                 max_queue_frames: int = MAX_QUEUE_FRAMES, max_queue_bytes: int = MAX_QUEUE_BYTES) -> None:
        self.state = state
        self.faults = faults
        self.clock = clock
        self.max_queue_frames = max_queue_frames
        self.max_queue_bytes = max_queue_bytes
        self.conns: set[Connection] = set()
        self.subs: dict[str, set[Connection]] = {}
        self.counters = Counter[str]()
        self.frames_sent = Counter[str]()
        self.events = Counter[str]()
        self._next_id = 1
        self._closers: set[asyncio.Task[None]] = set()
        state.add_listener(self.on_event)

    # ------------------------------------------------------------ connections

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=True, max_msg_size=MAX_CLIENT_FRAME, timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        conn = Connection(self, ws, request.transport, self.faults.connection(), self.clock.monotonic_ns(),
                          self._next_id)
        self._next_id += 1
        self.conns.add(conn)
        self.counters["connections_total"] += 1
        writer = asyncio.create_task(conn.write_loop(), name=f"ws-writer-{conn.id}")
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self.counters["binary_frames_ignored"] += 1
                elif msg.type is WSMsgType.ERROR:  # e.g. a frame above MAX_CLIENT_FRAME: aiohttp closed with 1009
                    self.counters["client_errors"] += 1
                    break
        finally:
            self._forget(conn)
            conn.closing = True
            conn.wake.set()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    def _forget(self, conn: Connection) -> None:
        self.conns.discard(conn)
        for a in conn.assets:
            subs = self.subs.get(a)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self.subs[a]
        conn.assets.clear()
        conn.queue.clear()

    def close(self, conn: Connection, code: int, reason: str, *, abort: bool = False) -> None:
        """Close a connection from synchronous code (fan-out, housekeeping)."""
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

    # ------------------------------------------------------------ client frames

    def _on_text(self, conn: Connection, text: str) -> None:
        if text == "PING":
            self.counters["pongs"] += 1
            conn.push(TEXT, PONG)
            return
        try:
            msg = _decode(text)
        except msgspec.DecodeError:
            return self._invalid(conn)
        ids = msg.get("assets_ids") if isinstance(msg, dict) else None
        if not isinstance(ids, list) or not all(isinstance(a, str) for a in ids):
            return self._invalid(conn)
        op = msg.get("operation")
        if isinstance(msg.get("custom_feature_enabled"), bool):
            conn.custom = msg["custom_feature_enabled"]
        if op is None:
            if str(msg.get("type", "")).lower() != "market" or conn.initialized:
                return self._invalid(conn)
            conn.initialized = True
            self._send_snapshots(conn, self._subscribe(conn, ids))
        elif op == "subscribe":
            new = self._subscribe(conn, ids)
            if new:
                self._send_snapshots(conn, new)
            else:
                conn.push(TEXT, NO_NEW_ASSETS)
        elif op == "unsubscribe":
            for a in ids:
                if a in conn.assets:
                    conn.assets.discard(a)
                    self.subs[a].discard(conn)
        else:
            self._invalid(conn)

    def _invalid(self, conn: Connection) -> None:
        self.counters["invalid_operations"] += 1
        conn.push(TEXT, INVALID_OPERATION)

    def _subscribe(self, conn: Connection, ids: list[str]) -> list[str]:
        """Subscribe the known, not yet subscribed ids; returns them in request order."""
        new = [a for a in dict.fromkeys(ids) if a in self.state.books and a not in conn.assets]
        self.counters["unknown_assets_ignored"] += sum(1 for a in set(ids) if a not in self.state.books)
        for a in new:
            conn.assets.add(a)
            self.subs.setdefault(a, set()).add(conn)
        return new

    def _send_snapshots(self, conn: Connection, assets: list[str]) -> None:
        if not assets or conn.faults.stalled:
            return
        conn.push(BOOK, b"[" + b",".join(self.state.book(a).encoded() for a in assets) + b"]")

    # ------------------------------------------------------------ fan-out

    def on_event(self, event: Event) -> None:
        """State listener: encode once, queue for every subscriber of its assets."""
        self.events[event.kind] += 1
        assets = event.asset_ids
        if len(assets) == 1:
            conns = self.subs.get(next(iter(assets)))
        else:
            conns = set().union(*(self.subs.get(a, ()) for a in assets))
        if event.kind in CUSTOM_FEATURES:
            conns = {c for c in conns or () if c.custom}
        if not conns:
            return
        frame = encode(event)
        now = self.clock.monotonic_ns()
        for conn in list(conns):
            for kind, data in conn.faults.shape(frame, now):
                conn.push(kind, data)

    def housekeeping(self, now_ns: int) -> None:
        """Periodic: scheduled disconnects, held frames that waited too long."""
        for conn in list(self.conns):
            if conn.closing:
                continue
            if self.faults.disconnect_due(conn.connected_ns, now_ns):
                self.faults.count("disconnects")
                self.close(conn, WSCloseCode.GOING_AWAY, "injected disconnect", abort=self.faults.rng.random() < 0.5)
                continue
            held = conn.faults.release_held(now_ns)
            if held is not None:
                conn.push(held.kind, held.data)

    def set_stall(self, started: bool, ended: bool) -> None:
        """Apply a change of the `stall` knob to the connections open now."""
        for conn in self.conns:
            if started:
                conn.faults.stall()
            elif ended:
                conn.faults.stalled = False

    def get_stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "connections": len(self.conns),
            "connections_total": c["connections_total"],
            "subscribers": sum(1 for conn in self.conns if conn.assets),
            "subscriptions": sum(len(conn.assets) for conn in self.conns),
            "stalled_connections": sum(1 for conn in self.conns if conn.faults.stalled),
            "frames_sent": sum(self.frames_sent.values()),
            "frames_sent_by_type": dict(self.frames_sent),
            "bytes_sent": c["bytes_sent"],
            "events": dict(self.events),
            "queued_frames": sum(len(conn.queue) for conn in self.conns),
            **{k: c[k] for k in ("slow_disconnects", "invalid_operations", "client_errors", "pongs",
                                 "binary_frames_ignored", "unknown_assets_ignored")},
        }
