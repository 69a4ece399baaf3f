"""SQLite persistence of the nonce ledger (WAL).

One database per chain and wallet. Every ledger change is one transaction, so
a SIGKILL at any moment leaves either the old or the new state. WAL with
synchronous=NORMAL survives a process crash; after a power loss the chain
reconciliation at start repairs what the last commits lost.
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
"""


@dataclass(slots=True)
class Allocation:
    nonce: int
    request_id: str
    status: str  # 'leased' (handed out, not yet reported sent) or 'sent'
    lease_expires_ns: int | None
    tx_hash: str | None
    allocated_ns: int


class NonceStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = open_wal(path)
        self._db.executescript(SCHEMA)

    def transaction(self) -> AbstractContextManager[None]:
        return immediate(self._db)

    def load(self) -> tuple[dict[str, int], dict[int, Allocation], dict[int, int]]:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        allocs = {
            row[0]: Allocation(*row)
            for row in self._db.execute(
                "SELECT nonce, request_id, status, lease_expires_ns, tx_hash, allocated_ns FROM allocations"
            )
        }
        free = dict(self._db.execute("SELECT nonce, freed_ns FROM free").fetchall())
        return meta, allocs, free

    def set_meta(self, key: str, value: int) -> None:
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

    def add_free(self, nonce: int, freed_ns: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO free VALUES (?, ?)", (nonce, freed_ns))

    def remove_free(self, nonce: int) -> None:
        self._db.execute("DELETE FROM free WHERE nonce=?", (nonce,))

    def close(self) -> None:
        self._db.close()
