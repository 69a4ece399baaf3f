"""SQLite for state that must survive SIGKILL: one way to open it.

WAL with synchronous=NORMAL survives a process crash at any moment (a power
loss may lose the last commits, which the chain/venue reconciliation at
start repairs). Autocommit mode: callers write explicit `BEGIN IMMEDIATE`
transactions where a read decides a write.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StorageError(RuntimeError):
    """A state file that would live outside its configured folder."""


def inside(folder: str | os.PathLike[str], name: str) -> Path:
    """`folder/name`, resolved, and refused unless it stays inside `folder` (a name built
    from outside data, or a state file that is a symlink to elsewhere, never writes out of it)."""
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if root != path.parent and root not in path.parents:
        raise StorageError(f"{Path(folder) / name} resolves to {path}, outside {root}: refused")
    return path


def open_wal(path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(os.fspath(path), isolation_level=None, timeout=busy_timeout_ms / 1000)
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # first, so the rest waits for locks
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the lock up front, so a read inside it
    decides for every process; rolled back on any error. Inside another one on
    the same connection it joins it: a step that writes to several stores of
    one file commits once, or not at all."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def archive_state(path: str | os.PathLike[str], archive_root: str | os.PathLike[str], stamp: str) -> Path:
    """Move a (closed) SQLite database and its WAL files to `<archive_root>/<stamp>/`: state
    of another world is kept for a person to look at, never applied."""
    src = Path(path)
    dest = Path(archive_root) / stamp
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        f = Path(str(src) + suffix)
        if f.exists():
            shutil.move(str(f), str(dest / f.name))
    return dest / src.name
