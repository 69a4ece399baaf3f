"""SQLite persistence of the nonce ledger (WAL).

One database per chain and wallet. Every ledger change is one transaction, so
a SIGKILL at any moment leaves either the old or the new state. WAL with
synchronous=NORMAL survives a process crash; after a power loss the chain
reconciliation at start repairs what the last commits lost.

The meta table also holds the identity of the chain the state belongs to
(`chain_id`, `genesis_hash`: the hash of block 0), so the state of a chain that
no longer exists (a restarted anvil) is never applied to a new one. Every hash
reported for a nonce is journaled in `hashes`, with the fees when known.
"""

from __future__ import annotations

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
    PRIMARY KEY (nonce, tx_hash)
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


class NonceStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = open_wal(path)
        self._db.executescript(SCHEMA)

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
        for nonce, h, fee, tip, ns in self._db.execute(
            "SELECT nonce, tx_hash, max_fee, tip, sent_ns FROM hashes ORDER BY nonce, sent_ns"
        ):
            out.setdefault(nonce, []).append(Attempt(h, fee, tip, ns))
        return out

    def is_empty(self) -> bool:
        row = self._db.execute(
            "SELECT EXISTS(SELECT 1 FROM meta) OR EXISTS(SELECT 1 FROM allocations) OR EXISTS(SELECT 1 FROM free)"
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
        self._db.execute("DELETE FROM allocations WHERE nonce=?", (nonce,))
        self._db.execute("DELETE FROM hashes WHERE nonce=?", (nonce,))

    def add_attempt(self, nonce: int, at: Attempt) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO hashes VALUES (?, ?, ?, ?, ?)", (nonce, at.tx_hash, at.max_fee, at.tip, at.sent_ns)
        )

    def add_free(self, nonce: int, freed_ns: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO free VALUES (?, ?)", (nonce, freed_ns))

    def remove_free(self, nonce: int) -> None:
        self._db.execute("DELETE FROM free WHERE nonce=?", (nonce,))

    def close(self) -> None:
        self._db.close()
