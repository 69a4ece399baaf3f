"""The venue's memory of orders, trades and client ids, durable across restarts.

Write-through: every change is one SQLite (WAL) transaction before the caller
goes on, and the whole store is loaded at start, so a `kill -9` of the venue
loses nothing it answered: a client id (metadata) is refused twice even
across a restart, and a trade matched before the crash is settled (or
failed) after it. `path=None` keeps it in memory (unit tests).

A store belongs to one sandbox world (one chain): `world` records the chain's
genesis hash, and `adopt_world` clears a store left by another world, whose
orders and trades refer to a chain that no longer exists.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import msgspec

from actors.runtime.storage import immediate, open_wal
from sandbox.venue.clob.orders import ZERO32
from sandbox.venue.clob.records import TRADE_DONE, OrderRecord, TradeRecord

MAX_ORDERS = 200_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, maker TEXT NOT NULL, metadata TEXT NOT NULL,
                                   seq INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS trades (id TEXT PRIMARY KEY, maker TEXT NOT NULL, status TEXT NOT NULL,
                                   seq INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_encode = msgspec.msgpack.Encoder().encode


class DuplicateOrder(Exception):
    def __init__(self, first: OrderRecord) -> None:
        super().__init__(first.id)
        self.first = first


class VenueStore:
    def __init__(self, path: str | None = None, *, max_orders: int = MAX_ORDERS) -> None:
        self.max_orders = max_orders
        self._orders: OrderedDict[str, OrderRecord] = OrderedDict()
        self._by_meta: dict[tuple[str, str], str] = {}  # (maker lowercase, metadata) -> order id
        self._trades: OrderedDict[str, TradeRecord] = OrderedDict()
        self._seq = 0
        self.db: sqlite3.Connection | None = None
        if path is not None:
            self.db = open_wal(path)
            self.db.executescript(_SCHEMA)
            self._load()

    def _load(self) -> None:
        assert self.db is not None
        for seq, body in self.db.execute("SELECT seq, body FROM orders ORDER BY seq"):
            self._remember(msgspec.msgpack.decode(body, type=OrderRecord))
            self._seq = max(self._seq, seq)
        for seq, body in self.db.execute("SELECT seq, body FROM trades ORDER BY seq"):
            t = msgspec.msgpack.decode(body, type=TradeRecord)
            self._trades[t.id] = t
            self._seq = max(self._seq, seq)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    # ------------------------------------------------------------ the world

    @property
    def world(self) -> str:
        return self._meta("world")

    def adopt_world(self, world: str) -> bool:
        """Bind the store to this chain; True if it held another world's records (now cleared)."""
        old = self.world
        if old == world:
            return False
        stale = bool(old) and bool(self._orders or self._trades)
        self._orders.clear()
        self._by_meta.clear()
        self._trades.clear()
        if self.db is not None:
            with immediate(self.db):
                self.db.execute("DELETE FROM orders")
                self.db.execute("DELETE FROM trades")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('world', ?)", (world,))
        else:
            self._memory_meta = {"world": world}
        return stale

    def _meta(self, key: str) -> str:
        if self.db is None:
            return getattr(self, "_memory_meta", {}).get(key, "")
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else ""

    # ------------------------------------------------------------ orders

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, order_id: str) -> OrderRecord | None:
        return self._orders.get(order_id.lower())

    def by_metadata(self, maker: str, metadata: str) -> OrderRecord | None:
        order_id = self._by_meta.get((maker.lower(), metadata.lower()))
        return self._orders.get(order_id) if order_id else None

    def check_new(self, order_id: str, maker: str, metadata: str) -> None:
        """DuplicateOrder if this order, or its non-zero metadata for this maker, was seen."""
        first = self._orders.get(order_id.lower())
        if first is None and metadata != ZERO32:
            first = self.by_metadata(maker, metadata)
        if first is not None:
            raise DuplicateOrder(first)

    def claim(self, record: OrderRecord) -> None:
        """Record a new order and claim its metadata; call check_new first, with no
        await in between, so two concurrent requests cannot both pass."""
        self.check_new(record.id, record.maker, record.metadata)
        self._write_order(record)
        self._remember(record)
        while len(self._orders) > self.max_orders:
            _, old = self._orders.popitem(last=False)
            if self._by_meta.get((old.maker.lower(), old.metadata)) == old.id:
                del self._by_meta[(old.maker.lower(), old.metadata)]
            if self.db is not None:
                self.db.execute("DELETE FROM orders WHERE id = ?", (old.id,))

    def _remember(self, record: OrderRecord) -> None:
        self._orders[record.id] = record
        if record.metadata != ZERO32:
            self._by_meta[(record.maker.lower(), record.metadata)] = record.id

    def update(self, record: OrderRecord, **changes: Any) -> OrderRecord:
        """Replace a record with changed fields (records are frozen); returns the new one."""
        new = replace(record, **changes)
        if new.id in self._orders:
            self._write_order(new)
            self._orders[new.id] = new
        return new

    def _write_order(self, record: OrderRecord) -> None:
        if self.db is None:
            return
        self._seq += 1
        with immediate(self.db):
            self.db.execute("INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?)",
                            (record.id, record.maker.lower(), record.metadata, self._seq, _encode(record)))

    def of_owner(self, owner_address: str) -> list[OrderRecord]:
        who = owner_address.lower()
        return [r for r in self._orders.values() if r.maker.lower() == who]

    def orders(self) -> list[OrderRecord]:
        return list(self._orders.values())

    # ------------------------------------------------------------ trades

    def trade(self, trade_id: str) -> TradeRecord | None:
        return self._trades.get(trade_id.lower())

    def add_trade(self, trade: TradeRecord, order: OrderRecord) -> None:
        """A new trade and its order's new state, in one transaction."""
        self._seq += 1
        if self.db is not None:
            with immediate(self.db):
                self.db.execute("INSERT INTO trades VALUES (?, ?, ?, ?, ?)",
                                (trade.id, trade.maker.lower(), trade.status, self._seq, _encode(trade)))
                self.db.execute("INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?)",
                                (order.id, order.maker.lower(), order.metadata, self._seq, _encode(order)))
        self._trades[trade.id] = trade
        if order.id in self._orders:
            self._orders[order.id] = order

    def update_trade(self, trade: TradeRecord, **changes: Any) -> TradeRecord:
        new = replace(trade, **changes)
        if "status" in changes and changes["status"] != trade.status:
            new = replace(new, events=(*trade.events, changes["status"]))
        if self.db is not None:
            self._seq += 1
            with immediate(self.db):
                self.db.execute("UPDATE trades SET status = ?, seq = ?, body = ? WHERE id = ?",
                                (new.status, self._seq, _encode(new), new.id))
        self._trades[new.id] = new
        return new

    def trades_of(self, owner_address: str) -> list[TradeRecord]:
        who = owner_address.lower()
        return [t for t in self._trades.values() if t.maker.lower() == who]

    def open_trades(self) -> list[TradeRecord]:
        """Trades whose settlement is not final (what a restart must finish)."""
        return [t for t in self._trades.values() if t.status not in TRADE_DONE]

    def get_stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for t in self._trades.values():
            by_status[t.status] = by_status.get(t.status, 0) + 1
        return {"orders": len(self._orders), "trades": len(self._trades), "trades_by_status": by_status,
                "durable": self.db is not None}
