"""The user channel, `GET /ws/user`: the subscriber's own orders and trades (docs/polymarket.md, section 7).

Client -> server (text frames):
    {"type": "user", "auth": {"apiKey", "secret", "passphrase"}, "markets": [condition ids]}
        once per connection; no / empty `markets` = every market of the account. Credentials
        that do not hold -> the connection is closed (1008 "invalid api credentials"), counted.
    PING -> PONG (also before subscribing and while stalled)
    anything else (bad JSON, another type, `markets` not a list of strings, a second
    subscribe) -> `INVALID OPERATION`, counted; a frame above MAX_CLIENT_FRAME closes (1009)
Server -> client: one JSON object per event, for orders and trades whose maker is the
api key's address:
    {"event_type": "order", "type": PLACEMENT | UPDATE | CANCELLATION, ...}   (OrderRecord.user_event)
    {"event_type": "trade", "type": "TRADE", "status": MATCHED | MINED | CONFIRMED | RETRYING | FAILED, ...}
        on every status change of the trade (TradeRecord.user_event)

Connections are the channels' own (channel.py): a bounded queue per client,
drained by its own writer; a client that cannot keep up is disconnected (counted). The
market channel's fault knobs apply per connection through the same ConnectionFaults:
stall, duplicate_rate, malformed_rate, huge_frame_rate; disconnect_every_seconds in
housekeeping(). drop / reorder are price_change-only knobs: they never touch user events.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import msgspec
from aiohttp import WSCloseCode

from actors.runtime.clock import Clock
from sandbox.venue.channel import INVALID_OPERATION, TEXT, ChannelHub, Connection
from sandbox.venue.clob.auth import ApiCreds
from sandbox.venue.clob.records import OrderRecord, TradeRecord
from sandbox.venue.events import Frame
from sandbox.venue.faults import FaultInjector

log = logging.getLogger(__name__)

ORDER, TRADE = "order", "trade"
MAX_CLIENT_FRAME = 64 * 1024  # a subscription naming ~900 markets; larger frames close the connection (1009)
MAX_QUEUE_FRAMES = 10_000  # per connection: an account's own events are few, a client this far behind is stuck
MAX_QUEUE_BYTES = 16 * 1024 * 1024
AUTH_FAILED = "invalid api credentials"  # one reason for every failure: which part was wrong is not told

_encode = msgspec.json.Encoder().encode


class UserConnection(Connection):
    __slots__ = ("address", "markets")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.address: str | None = None  # lower-case; set by a valid subscribe frame
        self.markets: frozenset[str] | None = None  # lower-case condition ids; None = all


class UserHub(ChannelHub):
    """`clob`: the ClobService whose order and trade listeners feed the channel."""

    connection_class = UserConnection
    max_client_frame = MAX_CLIENT_FRAME
    name = "ws-user"

    def __init__(self, clob: Any, faults: FaultInjector, clock: Clock, *,
                 max_queue_frames: int = MAX_QUEUE_FRAMES, max_queue_bytes: int = MAX_QUEUE_BYTES) -> None:
        super().__init__(faults, clock, max_queue_frames=max_queue_frames, max_queue_bytes=max_queue_bytes)
        self.keys = clob.keys
        self.accounts: dict[str, set[UserConnection]] = {}  # address -> its subscribed connections
        clob.add_order_listener(self.on_order)
        clob.add_trade_listener(self.on_trade)

    # ------------------------------------------------------------ connections

    def _forget(self, conn: UserConnection) -> None:
        self.conns.discard(conn)
        if conn.address is not None:
            subs = self.accounts.get(conn.address)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self.accounts[conn.address]
        conn.queue.clear()

    # ------------------------------------------------------------ client frames

    def _on_message(self, conn: UserConnection, msg: Any) -> None:
        if not isinstance(msg, dict) or str(msg.get("type", "")).lower() != "user" or conn.address is not None:
            return self._invalid(conn)
        markets = msg.get("markets")
        if markets is None:
            markets = []
        if not isinstance(markets, list) or not all(isinstance(m, str) for m in markets):
            return self._invalid(conn)
        creds = self._authenticate(msg.get("auth"))
        if creds is None:
            self.counters["auth_failures"] += 1
            self.close(conn, WSCloseCode.POLICY_VIOLATION, AUTH_FAILED)
            return
        conn.address = creds.address.lower()
        conn.markets = frozenset(m.lower() for m in markets) or None
        self.accounts.setdefault(conn.address, set()).add(conn)
        self.counters["subscriptions_total"] += 1

    def _authenticate(self, auth: Any) -> ApiCreds | None:
        """The api key's credentials if secret and passphrase both match (reasons counted)."""
        fields = [auth.get(k) for k in ("apiKey", "secret", "passphrase")] if isinstance(auth, dict) else []
        if len(fields) != 3 or not all(isinstance(f, str) and f for f in fields):
            self.counters["auth_failures_missing"] += 1
            return None
        key, secret, passphrase = fields
        creds = self.keys.lookup(key, "")  # no address on this channel: keys issued since the venue started
        if creds is None:
            self.counters["auth_failures_unknown_key"] += 1
            return None
        # Both compared, always: the time taken must not tell which one was wrong.
        ok_secret = hmac.compare_digest(creds.secret.encode(), secret.encode())
        ok_passphrase = hmac.compare_digest(creds.passphrase.encode(), passphrase.encode())
        if not (ok_secret and ok_passphrase):
            self.counters["auth_failures_wrong_secret" if not ok_secret else "auth_failures_wrong_passphrase"] += 1
            return None
        return creds

    def _invalid(self, conn: UserConnection) -> None:
        self.counters["invalid_frames"] += 1
        conn.push(TEXT, INVALID_OPERATION)

    # ------------------------------------------------------------ fan-out (ClobService listeners)

    def on_order(self, record: OrderRecord, kind: str) -> None:
        self.events[f"{ORDER}_{kind.lower()}"] += 1
        conns = self._subscribers(record.maker, record.market)
        if conns:
            now_ms = self.clock.time_ns() // 1_000_000
            self._send(conns, ORDER, record, now_ms, _encode(record.user_event(kind, now_ms)))

    def on_trade(self, trade: TradeRecord) -> None:
        self.events[f"{TRADE}_{trade.status.lower()}"] += 1
        conns = self._subscribers(trade.maker, trade.market)
        if conns:
            now_ms = self.clock.time_ns() // 1_000_000
            # records.to_wire keeps REST's integer bucket_index; on the channel every number is a string
            event = {**trade.user_event(now_ms), "bucket_index": str(trade.bucket_index)}
            self._send(conns, TRADE, trade, now_ms, _encode(event))

    def _subscribers(self, address: str, market: str) -> list[UserConnection]:
        subs = self.accounts.get(address.lower())
        if not subs:
            return []
        market = market.lower()
        return [c for c in subs if c.markets is None or market in c.markets]

    def _send(self, conns: list[UserConnection], kind: str, rec: Any, now_ms: int, data: bytes) -> None:
        """Encoded once; each connection's faults shape its own copy."""
        frame = Frame(kind, frozenset((rec.asset_id,)), now_ms, rec.market, data)
        now = self.clock.monotonic_ns()
        for conn in conns:
            out = conn.faults.shape(frame, now)
            if not out:
                self.counters["drops"] += 1  # stalled: the event never reaches this client
            self.counters["duplicates"] += max(0, sum(1 for k, _ in out if k == kind) - 1)
            for k, d in out:
                conn.push(k, d)

    # ------------------------------------------------------------ venue hooks

    def housekeeping(self, now_ns: int) -> None:
        """Periodic (the venue's loop): scheduled disconnects."""
        self.disconnect_due(now_ns)

    def get_stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "connections": len(self.conns),
            "connections_total": c["connections_total"],
            "subscribers": sum(len(s) for s in self.accounts.values()),
            "accounts": len(self.accounts),
            "stalled_connections": sum(1 for conn in self.conns if conn.faults.stalled),
            "events": dict(self.events),
            "events_sent": self.frames_sent[ORDER] + self.frames_sent[TRADE],
            "frames_sent": sum(self.frames_sent.values()),
            "frames_sent_by_type": dict(self.frames_sent),
            "bytes_sent": c["bytes_sent"],
            "queued_frames": sum(len(conn.queue) for conn in self.conns),
            **{k: c[k] for k in ("subscriptions_total", "auth_failures", "invalid_frames", "drops", "duplicates",
                                 "disconnects", "slow_disconnects", "client_errors", "pongs",
                                 "binary_frames_ignored")},
            "auth_failures_by_reason": {k.removeprefix("auth_failures_"): v for k, v in c.items()
                                        if k.startswith("auth_failures_")},
        }
