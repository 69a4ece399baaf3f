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
subscriber; connections and their bounded queues are channel.py's.
permessage-deflate only when the client offers it.
"""

from __future__ import annotations

import logging
from typing import Any

from actors.runtime.clock import Clock
from sandbox.venue.channel import INVALID_OPERATION, TEXT, ChannelHub
from sandbox.venue.channel import Connection as BaseConnection
from sandbox.venue.events import BOOK, CUSTOM_FEATURES, Event, encode
from sandbox.venue.faults import FaultInjector
from sandbox.venue.state import VenueState

log = logging.getLogger(__name__)

NO_NEW_ASSETS = b"NO NEW ASSETS"
MAX_CLIENT_FRAME = 256 * 1024  # a subscription of ~500 ids is ~40 KB; larger frames close the connection (1009)
MAX_QUEUE_FRAMES = 20_000  # per connection; beyond this the client is too slow
MAX_QUEUE_BYTES = 64 * 1024 * 1024



class Connection(BaseConnection):
    __slots__ = ("assets", "custom", "initialized")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.assets: set[str] = set()
        self.initialized = False
        self.custom = False  # custom_feature_enabled: market_resolved and the other custom events


class MarketHub(ChannelHub):
    connection_class = Connection
    max_client_frame = MAX_CLIENT_FRAME
    name = "ws-market"

    def __init__(self, state: VenueState, faults: FaultInjector, clock: Clock, *,
                 max_queue_frames: int = MAX_QUEUE_FRAMES, max_queue_bytes: int = MAX_QUEUE_BYTES) -> None:
        super().__init__(faults, clock, max_queue_frames=max_queue_frames, max_queue_bytes=max_queue_bytes)
        self.state = state
        self.subs: dict[str, set[Connection]] = {}
        state.add_listener(self.on_event)

    # ------------------------------------------------------------ connections

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

    # ------------------------------------------------------------ client frames

    def _on_message(self, conn: Connection, msg: Any) -> None:
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
        for conn in self.disconnect_due(now_ns):
            held = conn.faults.release_held(now_ns)
            if held is not None:
                conn.push(held.kind, held.data)

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
