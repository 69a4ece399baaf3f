"""The idempotency store: claim a key in SQLite BEFORE any side effect.

Keys: `generate(signal)` is the sha256 hex of a canonical encoding of the
signal's content (msgspec builtins with every object's fields sorted, compact
JSON), so the same signal gives the same key in any process and after a
restart. Volatile fields (receive times, ...) are left out by name
(`exclude_fields`, dotted paths reach into nested objects).

Records move IN_PROGRESS -> COMPLETED | FAILED:

- `claim(key, payload_hash)`: exactly one caller gets `owned=True`, also across
  processes (an `INSERT ... ON CONFLICT DO NOTHING`, and `BEGIN IMMEDIATE`
  for the read-then-write cases). The same key with a different payload hash
  raises `IdempotencyConflict` (Stripe: a key is not reused for another request).
- An existing IN_PROGRESS record is never handed out again: past its expiry it
  is reported as stale (`claim(...).needs_reconciliation`,
  `stale_in_progress()`), for the caller to reconcile with the venue / chain
  and then `complete()` or `fail()`. A crash never causes a silent re-run.
- `fail()` means "it did NOT happen": the key may be claimed again. When
  unsure, leave the record IN_PROGRESS.
- COMPLETED and FAILED records expire after `ttl_seconds`; then the key is
  free again and `purge_expired()` deletes them.

SQLite in WAL mode, `synchronous=NORMAL` (a power cut may lose the last
commits, never corrupt), `busy_timeout` so writers wait instead of failing.
Times come from the injected clock (wall ns). Synchronous: a call takes tens
of microseconds.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

import msgspec

from actors.runtime.clock import Clock, SystemClock
from actors.runtime.storage import immediate, open_wal

_NS = 10**9
# Rows are read in the table's column order (`*`), the order `_record()` unpacks.
_INSERT = "INSERT INTO idempotency VALUES (?, ?, 'IN_PROGRESS', NULL, NULL, ?, ?, ?, 1)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    payload_hash TEXT,
    status TEXT NOT NULL,
    result TEXT,
    reason TEXT,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_status_expiry ON idempotency (status, expires_ns);
"""


class Status(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Record:
    """One key's record. result: the decoded JSON given to `complete()`; reason: given to
    `fail()`; expires_ns: end of the IN_PROGRESS lease or of the TTL; attempts: claims won;
    stale: IN_PROGRESS past its expiry (reconcile it)."""

    key: str
    payload_hash: str | None
    status: Status
    result: Any
    reason: str | None
    created_ns: int
    updated_ns: int
    expires_ns: int
    attempts: int
    stale: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """owned: this caller must do the work; otherwise `record` says why not."""

    owned: bool
    record: Record

    @property
    def duplicate(self) -> bool:
        """Already done: return the stored result instead of doing it again."""
        return not self.owned and self.record.status is Status.COMPLETED

    @property
    def needs_reconciliation(self) -> bool:
        return not self.owned and self.record.stale


class IdempotencyConflict(Exception):
    def __init__(self, key: str, stored: str | None, given: str | None) -> None:
        self.key, self.stored, self.given = key, stored, given
        super().__init__(f"idempotency key {key[:16]}... reused with another payload ({stored} != {given})")


class IdempotencyStateError(Exception):
    """complete / fail / touch on a key that is missing or not IN_PROGRESS."""


def canonical_bytes(obj: Any, exclude: Iterable[str] = ()) -> bytes:
    """The canonical encoding: compact JSON of msgspec builtins, every mapping sorted by key."""
    data = msgspec.to_builtins(obj, order="sorted")
    for path in exclude:
        _drop(data, path.split("."))
    return msgspec.json.encode(data, order="sorted")


def content_hash(obj: Any, exclude: Iterable[str] = ()) -> str:
    return hashlib.sha256(canonical_bytes(obj, exclude)).hexdigest()


def _drop(data: Any, path: list[str]) -> None:
    if not isinstance(data, dict):
        return
    if len(path) == 1:
        data.pop(path[0], None)
    else:
        _drop(data.get(path[0]), path[1:])


class IdempotencyStore:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        ttl_seconds: float = 86_400.0,
        in_progress_ttl_seconds: float = 300.0,
        exclude_fields: Iterable[str] = (),
        busy_timeout_ms: int = 5000,
        db: sqlite3.Connection | None = None,
    ) -> None:
        """`db`: a connection to share (the executor keeps its claims in the journal's
        file, so a step that touches both commits once); else `path` is opened."""
        self.path = os.fspath(path)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._ttl_ns = int(ttl_seconds * _NS)
        self._lease_ns = int(in_progress_ttl_seconds * _NS)
        self._exclude = tuple(exclude_fields)
        # Autocommit; transactions are explicit (BEGIN IMMEDIATE) where a read decides a write.
        self._owned = db is None
        self._db = open_wal(self.path, busy_timeout_ms=busy_timeout_ms) if db is None else db
        self._db.executescript(_SCHEMA)
        names = ("claims", "owned", "duplicates", "in_flight", "stale", "conflicts", "purged")
        self._counts = dict.fromkeys(names, 0)

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- keys -----

    def generate(self, signal: Any, exclude: Iterable[str] | None = None) -> str:
        """Deterministic key (sha256 hex) of a Struct / dataclass / dict, without volatile fields."""
        return content_hash(signal, self._exclude if exclude is None else exclude)

    # ----- the state machine -----

    def claim(self, key: str, payload_hash: str | None = None) -> Claim:
        """Move `key` to IN_PROGRESS if it is new, FAILED or expired; exactly one caller owns it."""
        self._counts["claims"] += 1
        now = self._clock.time_ns()
        fresh = (key, payload_hash, now, now, now + self._lease_ns)
        rows = self._db.execute(_INSERT + " ON CONFLICT (key) DO NOTHING RETURNING *", fresh).fetchall()
        # (fetchall: the statement only finishes, and commits, once drained)
        if rows:
            return self._won(rows[0], now)
        with self._immediate():
            row = self._select(key)
            if row is None:  # purged between the two statements
                rows = self._db.execute(_INSERT + " RETURNING *", fresh).fetchall()
                return self._won(rows[0], now)
            record = _record(row, now)
            expired = record.status is not Status.IN_PROGRESS and record.expires_ns <= now
            if not expired and payload_hash is not None and record.payload_hash not in (None, payload_hash):
                self._counts["conflicts"] += 1
                raise IdempotencyConflict(key, record.payload_hash, payload_hash)
            if expired or record.status is Status.FAILED:
                attempts = 1 if expired else record.attempts + 1
                created = now if expired else record.created_ns
                rows = self._db.execute(
                    "UPDATE idempotency SET payload_hash = ?, status = 'IN_PROGRESS', result = NULL, "
                    "reason = NULL, created_ns = ?, updated_ns = ?, expires_ns = ?, attempts = ? "
                    "WHERE key = ? RETURNING *",
                    (payload_hash, created, now, now + self._lease_ns, attempts, key),
                ).fetchall()
                return self._won(rows[0], now)
        if record.status is Status.COMPLETED:
            self._counts["duplicates"] += 1
        else:
            self._counts["stale" if record.stale else "in_flight"] += 1
        return Claim(False, record)

    def complete(self, key: str, result: Any = None) -> Record:
        """IN_PROGRESS -> COMPLETED with a JSON-able result, kept for `ttl_seconds`."""
        return self._finish(key, Status.COMPLETED, msgspec.json.encode(result).decode(), None)

    def fail(self, key: str, reason: str) -> Record:
        """IN_PROGRESS -> FAILED: it did not happen, the key may be claimed again."""
        return self._finish(key, Status.FAILED, None, reason)

    def touch(self, key: str, seconds: float | None = None) -> Record:
        """Extend an IN_PROGRESS lease (a long receipt watch), by `in_progress_ttl_seconds` by default."""
        now = self._clock.time_ns()
        lease = self._lease_ns if seconds is None else int(seconds * _NS)
        rows = self._db.execute(
            "UPDATE idempotency SET updated_ns = ?, expires_ns = ? "
            "WHERE key = ? AND status = 'IN_PROGRESS' RETURNING *",
            (now, now + lease, key),
        ).fetchall()
        if not rows:
            raise IdempotencyStateError(f"touch: {key[:16]}... is not IN_PROGRESS")
        return _record(rows[0], now)

    def _finish(self, key: str, status: Status, result: str | None, reason: str | None) -> Record:
        now = self._clock.time_ns()
        rows = self._db.execute(
            "UPDATE idempotency SET status = ?, result = ?, reason = ?, updated_ns = ?, expires_ns = ? "
            "WHERE key = ? AND status = 'IN_PROGRESS' RETURNING *",
            (status.value, result, reason, now, now + self._ttl_ns, key),
        ).fetchall()
        if not rows:
            found = self.get(key)
            now_is = found.status.value if found else "unknown"
            raise IdempotencyStateError(f"{status.value.lower()}: {key[:16]}... is {now_is}, not IN_PROGRESS")
        return _record(rows[0], now)

    # ----- queries -----

    def get(self, key: str) -> Record | None:
        row = self._select(key)
        return None if row is None else _record(row, self._clock.time_ns())

    def is_seen(self, key: str) -> bool:
        """True while the key is in progress or its COMPLETED / FAILED record has not expired."""
        record = self.get(key)
        if record is None:
            return False
        return record.status is Status.IN_PROGRESS or record.expires_ns > self._clock.time_ns()

    def in_progress(self) -> list[Record]:
        """Every IN_PROGRESS record (reconcile them all at start-up, before new signals)."""
        return self._query("SELECT * FROM idempotency WHERE status = 'IN_PROGRESS' ORDER BY created_ns")

    def stale_in_progress(self) -> list[Record]:
        """IN_PROGRESS records past their expiry: their owner is presumed dead; reconcile."""
        return self._query(
            "SELECT * FROM idempotency WHERE status = 'IN_PROGRESS' AND expires_ns <= ? ORDER BY created_ns",
            self._clock.time_ns(),
        )

    needs_reconciliation = stale_in_progress

    def purge_expired(self) -> int:
        """Delete COMPLETED / FAILED records past their TTL; IN_PROGRESS is never purged."""
        cur = self._db.execute(
            "DELETE FROM idempotency WHERE status != 'IN_PROGRESS' AND expires_ns <= ?",
            (self._clock.time_ns(),),
        )
        self._counts["purged"] += cur.rowcount
        return cur.rowcount

    def get_stats(self) -> dict[str, Any]:
        by_status = dict.fromkeys((s.value for s in Status), 0)
        counted = self._db.execute("SELECT status, COUNT(*) FROM idempotency GROUP BY status")
        by_status.update(counted.fetchall())
        stale = self._db.execute(
            "SELECT COUNT(*) FROM idempotency WHERE status = 'IN_PROGRESS' AND expires_ns <= ?",
            (self._clock.time_ns(),),
        ).fetchone()[0]
        return {"path": self.path, "records": by_status, "stale_in_progress": stale, **self._counts}

    # ----- internals -----

    def _won(self, row: tuple[Any, ...], now: int) -> Claim:
        self._counts["owned"] += 1
        return Claim(True, _record(row, now))

    def _select(self, key: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(
            "SELECT * FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        return row

    def _query(self, sql: str, *params: Any) -> list[Record]:
        now = self._clock.time_ns()
        return [_record(row, now) for row in self._db.execute(sql, params).fetchall()]

    def _immediate(self) -> AbstractContextManager[None]:
        # Takes the write lock up front, so the read below decides for every process.
        return immediate(self._db)


def _record(row: tuple[Any, ...], now: int) -> Record:
    key, payload_hash, status, result, reason, created, updated, expires, attempts = row
    state = Status(status)
    return Record(
        key=key, payload_hash=payload_hash, status=state,
        result=None if result is None else msgspec.json.decode(result), reason=reason,
        created_ns=created, updated_ns=updated, expires_ns=expires, attempts=attempts,
        stale=state is Status.IN_PROGRESS and expires <= now,
    )  # fmt: skip
