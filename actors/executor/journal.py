"""The execution journal: where each execution got to, in SQLite (WAL).

The idempotency store says WHETHER a signal is being executed; the journal
says HOW FAR: the signal itself, the client ids of its orders and what they
filled, the nonce and every hash sent for its transaction. A restarted
executor reads it to reconcile instead of guessing. Each step is one
committed transaction, so a SIGKILL loses at most the step in flight, whose
effects the reconciliation finds on the venue (by client id) or the chain
(by hash and nonce).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from actors.runtime.storage import immediate, open_wal
from bus.messages import Signal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    key TEXT PRIMARY KEY,
    signal BLOB NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    token_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    ref_price INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
"""
_sig_decoder = msgspec.msgpack.Decoder(Signal)


class Journal:
    def __init__(self, path: str | Path, clock: Any) -> None:
        self._db = open_wal(path)
        self._db.executescript(_SCHEMA)
        self._clock = clock

    def begin(self, key: str, signal: Signal) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO executions VALUES (?, ?, 'started', '{}', ?)",
            (key, msgspec.msgpack.encode(signal), self._clock.time_ns()),
        )

    def update(self, key: str, state: str, **data: Any) -> None:
        """Merge `data` into the execution's record and set its state, atomically."""
        with immediate(self._db):
            row = self._db.execute("SELECT data FROM executions WHERE key=?", (key,)).fetchone()
            merged = {**(json.loads(row[0]) if row else {}), **data}
            self._db.execute("UPDATE executions SET state=?, data=?, updated_ns=? WHERE key=?",
                             (state, json.dumps(merged), self._clock.time_ns(), key))

    def finish(self, key: str, status: str, pnl: int, gas: int) -> None:
        """The final outcome, for an execution that got as far as its claim: the
        executor's durable books (the bus stream of results is lossy on a crash)."""
        if self._db.execute("SELECT 1 FROM executions WHERE key=?", (key,)).fetchone():
            self.update(key, "done", status=status, pnl=pnl, gas=gas)

    def outcomes(self) -> list[tuple[str, str, int, int]]:
        """(key, status, pnl, gas) of every finished execution."""
        rows = self._db.execute("SELECT key, data FROM executions WHERE state='done'").fetchall()
        return [(k, d["status"], d.get("pnl", 0), d.get("gas", 0)) for k, d in ((k, json.loads(v)) for k, v in rows)]

    def get(self, key: str) -> tuple[Signal, str, dict[str, Any]] | None:
        row = self._db.execute("SELECT signal, state, data FROM executions WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        return _sig_decoder.decode(row[0]), row[1], json.loads(row[2])

    # -- open positions: tokens an unwind could not sell, until they are sold
    def add_position(self, token_id: str, size: int, ref_price: int) -> None:
        self._db.execute(
            "INSERT INTO positions(token_id, size, ref_price) VALUES (?, ?, ?) "
            "ON CONFLICT(token_id) DO UPDATE SET size = size + excluded.size",
            (token_id, size, ref_price),
        )

    def positions(self) -> list[tuple[str, int, int, int]]:
        """(token_id, size, ref_price, attempts) of every open position."""
        return self._db.execute("SELECT token_id, size, ref_price, attempts FROM positions").fetchall()

    def reduce_position(self, token_id: str, sold: int) -> None:
        with immediate(self._db):
            self._db.execute("UPDATE positions SET size = size - ?, attempts = attempts + 1 WHERE token_id = ?",
                             (sold, token_id))
            self._db.execute("DELETE FROM positions WHERE token_id = ? AND size <= 0", (token_id,))

    def put_value(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))

    def get_value(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        self._db.close()
