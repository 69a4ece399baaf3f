"""SQLite persistence of the nonce ledger (WAL).

One database per chain and wallet. Every ledger change is one transaction, so
a SIGKILL at any moment leaves either the old or the new state. WAL with
synchronous=NORMAL survives a process crash; after a power loss the chain
reconciliation at start repairs what the last commits lost.

The meta table also holds the identity of the chain the state belongs to
(`chain_id`, `genesis_hash`: the hash of block 0), so the state of a chain that
no longer exists (a restarted anvil) is never applied to a new one. Every hash
reported for a nonce is journaled in `hashes`, with the fees and the signed
raw transaction when the sender gave them (public data: it is broadcast).

`confirmed` keeps the records of the most recently confirmed nonces (their
hashes stay in `hashes`): when the chain loses blocks (a deep reorg, a node
behind, a dev chain restarted on an old state file) those nonces go back to
SENT and their signed transactions are re-broadcast.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from actors.runtime.storage import immediate, open_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS allocations (
    nonce INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('leased', 'sent')),
    lease_expires_ns INTEGER,
    tx_hash TEXT,
    allocated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS free (nonce INTEGER PRIMARY KEY, freed_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (
    nonce INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    max_fee INTEGER,
    tip INTEGER,
    sent_ns INTEGER NOT NULL,
    raw BLOB,
    PRIMARY KEY (nonce, tx_hash)
);
CREATE TABLE IF NOT EXISTS confirmed (
    nonce INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    tx_hash TEXT,
    allocated_ns INTEGER NOT NULL,
    confirmed_ns INTEGER NOT NULL
);
"""


@dataclass(slots=True)
class Allocation:
    nonce: int
    request_id: str
    status: str  # 'leased' (handed out, not yet reported sent) or 'sent'
    lease_expires_ns: int | None
    tx_hash: str | None
    allocated_ns: int


@dataclass(slots=True, frozen=True)
class Attempt:
    """One signed transaction reported for a nonce."""

    tx_hash: str
    max_fee: int | None
    tip: int | None
    sent_ns: int
    raw: bytes | None = None  # the signed transaction, to re-broadcast it (never logged)

    def __repr__(self) -> str:  # the raw bytes are public, but no log needs them in full
        raw = "None" if self.raw is None else f"<{len(self.raw)} bytes>"
        return f"Attempt(tx_hash={self.tx_hash!r}, max_fee={self.max_fee}, tip={self.tip}, raw={raw})"


@dataclass(slots=True, frozen=True)
class Confirmed:
    """What is kept of a confirmed nonce (with its attempts), in case the chain loses its block."""

    nonce: int
    request_id: str
    tx_hash: str | None
    allocated_ns: int
    confirmed_ns: int


class NonceStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = open_wal(path)
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        # A database written before raw transactions were journaled: its `hashes`
        # table has no `raw` column (CREATE TABLE IF NOT EXISTS does not add it).
        with self.transaction():
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(hashes)")}
            if "raw" not in columns:
                self._db.execute("ALTER TABLE hashes ADD COLUMN raw BLOB")

    def transaction(self) -> AbstractContextManager[None]:
        return immediate(self._db)

    def load(self) -> tuple[dict[str, int | str], dict[int, Allocation], dict[int, int]]:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        allocs = {
            row[0]: Allocation(*row)
            for row in self._db.execute(
                "SELECT nonce, request_id, status, lease_expires_ns, tx_hash, allocated_ns FROM allocations"
            )
        }
        free = dict(self._db.execute("SELECT nonce, freed_ns FROM free").fetchall())
        return meta, allocs, free

    def load_attempts(self) -> dict[int, list[Attempt]]:
        out: dict[int, list[Attempt]] = {}
        for nonce, h, fee, tip, ns, raw in self._db.execute(
            "SELECT nonce, tx_hash, max_fee, tip, sent_ns, raw FROM hashes ORDER BY nonce, sent_ns, rowid"
        ):
            out.setdefault(nonce, []).append(Attempt(h, fee, tip, ns, None if raw is None else bytes(raw)))
        return out

    def load_confirmed(self) -> dict[int, Confirmed]:
        return {
            row[0]: Confirmed(*row)
            for row in self._db.execute(
                "SELECT nonce, request_id, tx_hash, allocated_ns, confirmed_ns FROM confirmed"
            )
        }

    def is_empty(self) -> bool:
        row = self._db.execute(
            "SELECT EXISTS(SELECT 1 FROM meta) OR EXISTS(SELECT 1 FROM allocations) OR EXISTS(SELECT 1 FROM free)"
            " OR EXISTS(SELECT 1 FROM confirmed)"
        ).fetchone()
        return not row[0]

    def set_meta(self, key: str, value: int | str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def put_allocation(self, a: Allocation) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO allocations VALUES (?, ?, ?, ?, ?, ?)",
            (a.nonce, a.request_id, a.status, a.lease_expires_ns, a.tx_hash, a.allocated_ns),
        )

    def delete_allocation(self, nonce: int) -> None:
        """The nonce goes back to the pool: its allocation and its hashes are gone."""
        self._db.execute("DELETE FROM allocations WHERE nonce=?", (nonce,))
        self._db.execute("DELETE FROM hashes WHERE nonce=?", (nonce,))

    def confirm(self, record: Confirmed, prune: Iterable[int] = ()) -> None:
        """The allocation becomes a confirmed record (its hashes are kept); the
        records of `prune` (older confirmed nonces) are deleted with their hashes."""
        self._db.execute("DELETE FROM allocations WHERE nonce=?", (record.nonce,))
        self._db.execute(
            "INSERT OR REPLACE INTO confirmed VALUES (?, ?, ?, ?, ?)",
            (record.nonce, record.request_id, record.tx_hash, record.allocated_ns, record.confirmed_ns),
        )
        for n in prune:
            self._db.execute("DELETE FROM confirmed WHERE nonce=?", (n,))
            self._db.execute("DELETE FROM hashes WHERE nonce=?", (n,))

    def reopen(self, a: Allocation) -> None:
        """A confirmed (or adopted) nonce the chain no longer has: live again, its hashes kept."""
        self._db.execute("DELETE FROM confirmed WHERE nonce=?", (a.nonce,))
        self.put_allocation(a)

    def add_attempt(self, nonce: int, at: Attempt) -> None:
        # A repeated report of a hash fills in what the first one lacked (fees, raw).
        self._db.execute(
            "INSERT INTO hashes(nonce, tx_hash, max_fee, tip, sent_ns, raw) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(nonce, tx_hash) DO UPDATE SET max_fee=COALESCE(hashes.max_fee, excluded.max_fee), "
            "tip=COALESCE(hashes.tip, excluded.tip), raw=COALESCE(hashes.raw, excluded.raw)",
            (nonce, at.tx_hash, at.max_fee, at.tip, at.sent_ns, None if at.raw is None else sqlite3.Binary(at.raw)),
        )

    def add_free(self, nonce: int, freed_ns: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO free VALUES (?, ?)", (nonce, freed_ns))

    def remove_free(self, nonce: int) -> None:
        self._db.execute("DELETE FROM free WHERE nonce=?", (nonce,))

    def close(self) -> None:
        self._db.close()
