"""PolymarketWSClient: connections to the market channel, kept alive and honest.

Each connection carries at most `max_assets_per_connection` assets. It sends
the initial frame on every (re)connect, answers nothing but sends `PING`
every interval, and is declared dead after `pong_timeout` without `PONG`. A
separate data watchdog reconnects a connection whose books stay silent while
PONGs still arrive (the known silent stall). Reconnects back off
exponentially with full jitter; after one, every book of that connection is
invalid until its fresh snapshot. Assets can be added and removed at run time
with `operation` frames, without reconnecting. Invalid books are re-requested
(unsubscribe + subscribe) so they come back without a reconnect.

The reading task only parses and applies (FeedCore) and hands the changed
asset ids to `on_change`, which must not block.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

from actors.feed.core import FeedCore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WSOptions:
    max_assets_per_connection: int = 200
    ping_interval: float = 10.0
    pong_timeout: float = 30.0
    data_timeout: float = 30.0
    reconnect_base: float = 0.5
    reconnect_max: float = 30.0
    resubscribe_after: float = 1.0
    max_frame_bytes: int = 8 * 1024 * 1024


@dataclass
class Connection:
    id: int
    assets: set[str] = field(default_factory=set)
    ws: Any = None
    connected: bool = False
    connect_count: int = 0
    disconnect_count: int = 0
    failures: int = 0
    last_pong_ns: int = 0
    last_data_ns: int = 0
    last_reason: str = ""
    closed_by_us: bool = False
    task: asyncio.Task[None] | None = None


def default_connect(url: str, max_size: int) -> Any:
    # compression=None: permessage-deflate halves throughput here; the
    # protocol's own text PING replaces websockets' keepalive.
    return websockets.connect(url, compression=None, max_size=max_size, ping_interval=None,
                              close_timeout=1, open_timeout=10)


class PolymarketWSClient:
    def __init__(
        self,
        url: str,
        core: FeedCore,
        clock: Any,
        *,
        on_change: Callable[[set[str]], None],
        options: WSOptions = WSOptions(),
        connect: Callable[[str, int], Any] = default_connect,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.core = core
        self.clock = clock
        self.options = options
        self._on_change = on_change
        self._connect = connect
        self._rng = rng or random.Random()
        self.connections: list[Connection] = []
        self._markets: dict[str, str] = {}
        self._next_id = 0
        self._maintenance: asyncio.Task[None] | None = None
        self.stall_reconnects = 0
        self.heartbeat_timeouts = 0
        self.resubscribes = 0

    # -- assets
    def set_assets(self, assets: dict[str, str]) -> None:
        """The wanted asset -> market map; subscribes and unsubscribes the difference.
        Unsubscribed assets are reported to `on_change` (their books are gone)."""
        now = self.clock.time_ns()  # the core's time base (invalid_since, stale_invalid)
        current = {a for c in self.connections for a in c.assets}
        removed: set[str] = set()
        for conn in self.connections:
            gone = [a for a in conn.assets if a not in assets]
            if gone:
                conn.assets.difference_update(gone)
                for a in gone:
                    self.core.untrack(a)
                self._send_op(conn, "unsubscribe", gone)
                removed.update(gone)
        if removed:
            self._on_change(removed)
        new = [a for a in assets if a not in current]
        for a in new:
            self.core.track(a, assets[a], now)
        self._markets = dict(assets)
        cap = self.options.max_assets_per_connection
        while new:
            conn = next((c for c in self.connections if len(c.assets) < cap), None)
            if conn is None:
                conn = self._new_connection()
            room = cap - len(conn.assets)
            batch, new = new[:room], new[room:]
            conn.assets.update(batch)
            self._send_op(conn, "subscribe", batch)

    def _new_connection(self) -> Connection:
        self._next_id += 1
        conn = Connection(self._next_id)
        self.connections.append(conn)
        if self._maintenance is not None:  # started: run it now
            conn.task = asyncio.create_task(self._run(conn), name=f"ws-{conn.id}")
        return conn

    def _send_op(self, conn: Connection, op: str, assets: list[str]) -> None:
        # Not connected: the initial frame of the next connect covers it.
        if conn.connected and conn.ws is not None and assets:
            frame = json.dumps({"operation": op, "assets_ids": assets, "custom_feature_enabled": False})
            task = asyncio.create_task(self._send(conn, frame))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _send(self, conn: Connection, frame: str) -> None:
        try:
            await conn.ws.send(frame)
        except Exception as exc:  # the reader notices the closed connection
            log.debug("send on connection %d failed: %s", conn.id, exc)

    # -- lifecycle
    async def start(self) -> None:
        self._maintenance = asyncio.create_task(self._maintain(), name="ws-maintenance")
        for conn in self.connections:
            conn.task = asyncio.create_task(self._run(conn), name=f"ws-{conn.id}")

    async def stop(self) -> None:
        tasks = [c.task for c in self.connections if c.task] + ([self._maintenance] if self._maintenance else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in self.connections:
            if c.ws is not None:
                await c.ws.close()

    async def _run(self, conn: Connection) -> None:
        while True:
            try:
                async with self._connect(self.url, self.options.max_frame_bytes) as ws:
                    conn.ws = ws
                    await self._session(conn, ws)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                conn.last_reason = f"{type(exc).__name__}: {exc}"
            self._disconnected(conn)
            conn.failures += 1
            cap = min(self.options.reconnect_max, self.options.reconnect_base * 2 ** min(conn.failures, 16))
            await self.clock.sleep(self._rng.uniform(0, cap))

    async def _session(self, conn: Connection, ws: Any) -> None:
        now = self.clock.monotonic_ns()
        conn.connected, conn.last_pong_ns, conn.last_data_ns = True, now, now
        conn.closed_by_us = False
        conn.connect_count += 1
        await ws.send(json.dumps({"type": "market", "assets_ids": sorted(conn.assets),
                                  "custom_feature_enabled": False}))
        watchdog = asyncio.create_task(self._watchdog(conn, ws))
        try:
            async for msg in ws:
                recv = self.clock.time_ns()
                if isinstance(msg, bytes):
                    msg = msg.decode("utf-8", errors="replace")
                head = msg[:1]
                if head == "{" or head == "[":
                    conn.last_data_ns = self.clock.monotonic_ns()
                    conn.failures = 0  # data flows: the next reconnect starts fast
                    changed = self.core.on_frame(msg, recv)
                    if changed:
                        self._on_change(changed)
                elif msg == "PONG":
                    conn.last_pong_ns = self.clock.monotonic_ns()
                else:
                    self.core.on_text_frame(msg)
            if not conn.closed_by_us:
                conn.last_reason = f"closed by peer ({ws.close_code})"
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def _watchdog(self, conn: Connection, ws: Any) -> None:
        next_ping = self.clock.monotonic_ns()
        while True:
            o = self.options  # read on every pass: a config reload applies to open connections too
            step = min(1.0, o.ping_interval)
            now = self.clock.monotonic_ns()
            if now >= next_ping:
                await ws.send("PING")
                next_ping = now + int(o.ping_interval * 1e9)
            if now - conn.last_pong_ns > o.pong_timeout * 1e9:
                self.heartbeat_timeouts += 1
                conn.last_reason, conn.closed_by_us = "no PONG within the timeout", True
                await ws.close()
                return
            if conn.assets and now - conn.last_data_ns > o.data_timeout * 1e9:
                self.stall_reconnects += 1
                conn.last_reason, conn.closed_by_us = "silent stall: PONGs but no data", True
                await ws.close()
                return
            await self.clock.sleep(step)

    def _disconnected(self, conn: Connection) -> None:
        if conn.connected:
            conn.disconnect_count += 1
        conn.connected, conn.ws = False, None
        now = self.clock.time_ns()
        changed = {a for a in conn.assets if self.core.invalidate(a, "disconnected: awaiting snapshot", now)}
        if changed:
            self._on_change(changed)

    async def _maintain(self) -> None:
        """Crossed-book checks and re-requests of invalid books."""
        while True:
            await self.clock.sleep(0.25)
            now = self.clock.time_ns()
            changed = self.core.check(now)
            if changed:
                self._on_change(changed)
            stale = set(self.core.stale_invalid(now, int(self.options.resubscribe_after * 1e9)))
            for conn in self.connections:
                ask = [a for a in conn.assets if a in stale]
                if ask and conn.connected:
                    # Subscribing an already-subscribed asset is rejected: unsubscribe first.
                    self._send_op(conn, "unsubscribe", ask)
                    self._send_op(conn, "subscribe", ask)
                    self.resubscribes += len(ask)
                    for a in ask:
                        self.core.mark_requested(a, now)

    # -- stats
    @property
    def heartbeat_ok(self) -> bool:
        now = self.clock.monotonic_ns()
        live = [c for c in self.connections if c.connected]
        return bool(live) and all(now - c.last_pong_ns <= self.options.pong_timeout * 1e9 for c in live)

    def get_stats(self) -> dict[str, Any]:
        now = self.clock.monotonic_ns()
        core = self.core.get_stats()
        return {
            "connected": bool(self.connections) and all(c.connected for c in self.connections),
            "connections": len(self.connections),
            "connections_up": sum(c.connected for c in self.connections),
            "connect_count": sum(c.connect_count for c in self.connections),
            "disconnect_count": sum(c.disconnect_count for c in self.connections),
            "message_count": core["messages"],
            "duplicate_count": core["duplicates"],
            "sequence_gap_count": core["sequence_gaps"],
            "out_of_order_count": core["out_of_order"],
            "cache_stats": self.core.dedup.get_stats(),
            "heartbeat_ok": self.heartbeat_ok,
            "heartbeat_timeouts": self.heartbeat_timeouts,
            "stall_reconnects": self.stall_reconnects,
            "resubscribes": self.resubscribes,
            "per_connection": [
                {"id": c.id, "assets": len(c.assets), "connected": c.connected,
                 "last_data_age_s": round((now - c.last_data_ns) / 1e9, 3) if c.connected else None,
                 "connects": c.connect_count, "last_reason": c.last_reason}
                for c in self.connections
            ],
            "core": core,
        }
