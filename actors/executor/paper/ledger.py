"""The paper world's state, in SQLite (WAL): balances, every order with the book it met
(the decision log a replay recomputes), every transaction and its effects.

Each step is one transaction, so a SIGKILL loses at most the step in flight: an order
recorded MATCHED is mined (its balances moved) by whichever process comes next, once its
settlement is due; a transaction is either in the pool or mined with its effects.
Amounts are integers in 1e-6 units; the asset "pUSD" is the collateral, any other asset
a token id.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.runtime.storage import immediate, open_wal

PUSD = "pUSD"
MATCHED, MINED, FAILED, KILLED, REJECTED = "MATCHED", "MINED", "FAILED", "KILLED", "REJECTED"
POOL, REVERTED = "POOL", "REVERTED"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS balances (asset TEXT PRIMARY KEY, amount INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    token_id TEXT NOT NULL,
    side TEXT NOT NULL,
    limit_price INTEGER NOT NULL,
    size INTEGER NOT NULL,
    fak INTEGER NOT NULL,
    fee_rate_ppm INTEGER NOT NULL,
    levels TEXT NOT NULL,          -- JSON [[price, size], ...]: what the order could take, ours taken off
    book_ts_ms INTEGER NOT NULL,   -- the venue's time of that book (0: no book)
    status TEXT NOT NULL,          -- MATCHED, MINED, FAILED, KILLED, REJECTED
    filled INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    fee INTEGER NOT NULL,
    fills TEXT NOT NULL,           -- JSON [[price, size], ...] taken
    reason TEXT NOT NULL,
    placed_ns INTEGER NOT NULL,
    due_ns INTEGER NOT NULL,       -- when the match settles (MATCHED -> MINED)
    settled_ns INTEGER
);
CREATE INDEX IF NOT EXISTS orders_due ON orders (status, due_ns);
CREATE TABLE IF NOT EXISTS txs (
    hash TEXT PRIMARY KEY,
    nonce INTEGER NOT NULL,
    op TEXT NOT NULL,
    args TEXT NOT NULL,            -- JSON
    max_fee INTEGER NOT NULL,
    tip INTEGER NOT NULL,
    gas INTEGER NOT NULL,
    status TEXT NOT NULL,          -- POOL, MINED, REVERTED (a replaced one is deleted)
    gas_used INTEGER NOT NULL DEFAULT 0,
    gas_price INTEGER NOT NULL DEFAULT 0,
    block INTEGER NOT NULL DEFAULT 0,
    effects TEXT NOT NULL DEFAULT '[]',  -- JSON [[asset, delta], ...] applied when mined
    reason TEXT NOT NULL DEFAULT '',
    sent_ns INTEGER NOT NULL,
    mined_ns INTEGER
);
CREATE INDEX IF NOT EXISTS txs_by_nonce ON txs (nonce);
"""


@dataclass(frozen=True, slots=True)
class Order:
    client_id: str
    order_id: str
    token_id: str
    side: str
    limit_price: int
    size: int
    fak: bool
    fee_rate_ppm: int
    levels: tuple[tuple[int, int], ...]
    book_ts_ms: int
    status: str
    filled: int
    cost: int
    fee: int
    fills: tuple[tuple[int, int], ...]
    reason: str
    placed_ns: int
    due_ns: int
    settled_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Tx:
    hash: str
    nonce: int
    op: str
    args: dict[str, Any]
    max_fee: int
    tip: int
    gas: int
    status: str
    gas_used: int
    gas_price: int
    block: int
    effects: tuple[tuple[str, int], ...]
    reason: str
    sent_ns: int
    mined_ns: int | None


_ORDER_COLS = ("client_id, order_id, token_id, side, limit_price, size, fak, fee_rate_ppm, levels, book_ts_ms, "
               "status, filled, cost, fee, fills, reason, placed_ns, due_ns, settled_ns")
_TX_COLS = "hash, nonce, op, args, max_fee, tip, gas, status, gas_used, gas_price, block, effects, reason, sent_ns, " \
           "mined_ns"

# Fixed column lists, never input: the queries are built once here.
_SELECT_ORDERS = f"SELECT {_ORDER_COLS} FROM orders"  # noqa: S608
_INSERT_ORDER = f"INSERT INTO orders ({_ORDER_COLS}) VALUES ({', '.join('?' * 19)})"  # noqa: S608
_SELECT_TXS = f"SELECT {_TX_COLS} FROM txs"  # noqa: S608
_INSERT_TX = f"INSERT INTO txs ({_TX_COLS}) VALUES ({', '.join('?' * 15)})"  # noqa: S608


def _levels(text: str) -> tuple[tuple[int, int], ...]:
    return tuple((int(p), int(s)) for p, s in json.loads(text))


def _order(row: tuple[Any, ...]) -> Order:
    (cid, oid, token, side, limit, size, fak, rate, levels, ts, status, filled, cost, fee, fills, reason, placed,
     due, settled) = row
    return Order(cid, oid, token, side, limit, size, bool(fak), rate, _levels(levels), ts, status, filled, cost, fee,
                 _levels(fills), reason, placed, due, settled)


def _tx(row: tuple[Any, ...]) -> Tx:
    (h, nonce, op, args, max_fee, tip, gas, status, used, price, block, effects, reason, sent, mined) = row
    return Tx(h, nonce, op, json.loads(args), max_fee, tip, gas, status, used, price, block,
              tuple((str(a), int(d)) for a, d in json.loads(effects)), reason, sent, mined)


class InsufficientBalance(Exception):
    """A step would take more of an asset than the paper wallet holds: it does not happen."""


class PaperLedger:
    def __init__(self, path: str | Path, clock: Any, funding: int) -> None:
        self._db = open_wal(path)
        self._db.executescript(_SCHEMA)
        self._clock = clock
        with immediate(self._db):
            if self._meta("world") is None:  # a new paper world: its id and its funding
                self._put_meta("world", "paper:" + os.urandom(16).hex())
                self._put_meta("created_ns", str(clock.time_ns()))
                self._put_meta("funding", str(funding))
                self._db.execute("INSERT INTO balances VALUES (?, ?)", (PUSD, funding))

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _put_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def now_ns(self) -> int:
        return int(self._clock.time_ns())

    @property
    def world(self) -> str:
        return str(self._meta("world"))

    @property
    def funding(self) -> int:
        return int(self._meta("funding") or 0)

    @property
    def address(self) -> str:
        """The paper wallet's address, named by its world (so each world has its own journal)."""
        return "0x" + hashlib.sha256(self.world.encode()).hexdigest()[:40]

    # -- balances
    def balance(self, asset: str) -> int:
        row = self._db.execute("SELECT amount FROM balances WHERE asset = ?", (asset,)).fetchone()
        return int(row[0]) if row else 0

    def balances(self) -> dict[str, int]:
        return {a: int(n) for a, n in self._db.execute("SELECT asset, amount FROM balances WHERE amount != 0")}

    def _apply(self, effects: Iterable[tuple[str, int]]) -> None:
        """Inside a transaction: every delta, or none (InsufficientBalance)."""
        net: dict[str, int] = {}
        for asset, delta in effects:
            net[asset] = net.get(asset, 0) + delta
        for asset, delta in net.items():
            if delta < 0 and self.balance(asset) + delta < 0:
                raise InsufficientBalance(f"{asset[:18]}: {self.balance(asset)} held, {-delta} needed")
        for asset, delta in net.items():
            self._db.execute("INSERT INTO balances VALUES (?, ?) ON CONFLICT(asset) DO UPDATE SET amount = "
                             "amount + excluded.amount", (asset, delta))

    def reserved(self, asset: str) -> int:
        """What matched orders not settled yet will take of `asset` (pUSD for buys, the token for sells)."""
        if asset == PUSD:
            q = "SELECT COALESCE(SUM(cost + fee), 0) FROM orders WHERE status = ? AND side = 'BUY'"
            return int(self._db.execute(q, (MATCHED,)).fetchone()[0])
        q = "SELECT COALESCE(SUM(filled), 0) FROM orders WHERE status = ? AND side = 'SELL' AND token_id = ?"
        return int(self._db.execute(q, (MATCHED, asset)).fetchone()[0])

    # -- orders
    def order(self, client_id: str) -> Order | None:
        row = self._db.execute(_SELECT_ORDERS + " WHERE client_id = ?", (client_id,)).fetchone()
        return _order(row) if row else None

    def orders(self) -> list[Order]:
        return [_order(r) for r in self._db.execute(_SELECT_ORDERS + " ORDER BY seq")]

    def record_order(self, o: Order) -> Order:
        """The order as decided (one transaction); the first record of a client id wins."""
        with immediate(self._db):
            held = self.order(o.client_id)
            if held is not None:
                return held
            self._db.execute(_INSERT_ORDER, (
                o.client_id, o.order_id, o.token_id, o.side, o.limit_price, o.size, int(o.fak), o.fee_rate_ppm,
                json.dumps(o.levels), o.book_ts_ms, o.status, o.filled, o.cost, o.fee, json.dumps(o.fills),
                o.reason, o.placed_ns, o.due_ns, o.settled_ns))
        return o

    def due(self, now_ns: int) -> list[str]:
        q = "SELECT client_id FROM orders WHERE status = ? AND due_ns <= ? ORDER BY due_ns"
        return [r[0] for r in self._db.execute(q, (MATCHED, now_ns))]

    def settle(self, client_id: str, now_ns: int) -> Order | None:
        """A matched order's trade mined: its tokens and pUSD move (one transaction). If the
        wallet no longer holds what it needs (a merge took the tokens a sale matched), the
        trade FAILS, as the operator's settlement would on chain: nothing moves."""
        with immediate(self._db):
            o = self.order(client_id)
            if o is None or o.status != MATCHED:
                return o
            status = MINED
            try:
                self._apply(trade_effects(o.token_id, o.side, o.filled, o.cost, o.fee))
            except InsufficientBalance:
                status = FAILED
            self._db.execute("UPDATE orders SET status = ?, settled_ns = ? WHERE client_id = ?",
                             (status, now_ns, client_id))
        return self.order(client_id)

    # -- transactions
    def tx(self, tx_hash: str) -> Tx | None:
        row = self._db.execute(_SELECT_TXS + " WHERE hash = ?", (tx_hash,)).fetchone()
        return _tx(row) if row else None

    def txs(self) -> list[Tx]:
        return [_tx(r) for r in self._db.execute(_SELECT_TXS + " ORDER BY nonce, sent_ns")]

    def latest_nonce(self) -> int:
        """Transactions mined (reverted ones too: they use their nonce)."""
        q = "SELECT COUNT(*) FROM txs WHERE status != ?"
        return int(self._db.execute(q, (POOL,)).fetchone()[0])

    def pooled(self) -> list[Tx]:
        return [_tx(r) for r in self._db.execute(_SELECT_TXS + " WHERE status = ? ORDER BY nonce",
                                                 (POOL,))]

    def pool(self, t: Tx, replaces: str | None = None) -> None:
        with immediate(self._db):
            if replaces is not None:
                self._db.execute("DELETE FROM txs WHERE hash = ? AND status = ?", (replaces, POOL))
            self._db.execute(_INSERT_TX, (
                t.hash, t.nonce, t.op, json.dumps(t.args), t.max_fee, t.tip, t.gas, POOL, 0, 0, 0, "[]", "",
                t.sent_ns, None))

    def mine(self, tx_hash: str, effects: list[tuple[str, int]], gas_used: int, gas_price: int,
             reason: str = "", args: dict[str, Any] | None = None) -> Tx:
        """A pooled transaction mined with its effects, or REVERTED (nothing moves) when they
        cannot apply or `reason` says why it fails; one transaction either way."""
        with immediate(self._db):
            status = MINED
            if reason:
                status, effects = REVERTED, []
            else:
                try:
                    self._apply(effects)
                except InsufficientBalance as exc:
                    status, effects, reason = REVERTED, [], str(exc)
            block = self.latest_nonce() + 1
            self._db.execute("UPDATE txs SET status = ?, gas_used = ?, gas_price = ?, block = ?, effects = ?, "
                             "reason = ?, mined_ns = ? WHERE hash = ?",
                             (status, gas_used, gas_price, block, json.dumps(effects), reason,
                              self._clock.time_ns(), tx_hash))
            if args is not None:
                self._db.execute("UPDATE txs SET args = ? WHERE hash = ?", (json.dumps(args), tx_hash))
        found = self.tx(tx_hash)
        assert found is not None
        return found

    def close(self) -> None:
        self._db.close()


def trade_effects(token_id: str, side: str, filled: int, cost: int, fee: int) -> list[tuple[str, int]]:
    """A settled trade's balance changes: a BUY pays cost and fee for the shares; a SELL
    gives the shares for the proceeds less the fee."""
    if side == "BUY":
        return [(PUSD, -(cost + fee)), (token_id, filled)]
    return [(token_id, -filled), (PUSD, cost - fee)]
