"""`polyarb trace ID`: every log line of every actor about one execution, in time order.

ID is a trace id (the feed's flush that revealed the gap: its signal, the execution,
its orders and transactions, the nonce authority's calls for it and its result carry
it), or an execution's idempotency key or a prefix of it (12 characters, as the logs
and `polyarb trades` show them): the key's trace id is read from the executor's books.
A line is the trace's when it carries the trace id, or names the key.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from actors.executor.history import find_journal, open_read_only
from config.schema import Config

KEY_CHARS = 12  # the key prefix the executor's log lines name


def trace_of(db: sqlite3.Connection, ident: str) -> tuple[str, str] | None:
    """(key, trace id) of the execution whose key starts with `ident`, if one does."""
    if len(ident) < 8:
        return None
    row = db.execute("SELECT key, json_extract(data, '$.trace_id') FROM executions WHERE key >= ? AND key < ? "
                     "ORDER BY key LIMIT 2", (ident, ident + "\uffff")).fetchall()
    if len(row) != 1:
        return None
    return str(row[0][0]), str(row[0][1] or "")


def lines(files: Iterable[Path], trace_id: str, key: str = "") -> Iterator[dict[str, Any]]:
    """The JSON log lines of `files` that carry `trace_id`, or name `key` (by its prefix)."""
    short = key[:KEY_CHARS]
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for raw in text.splitlines():
            if not ((trace_id and trace_id in raw) or (short and short in raw)):
                continue  # cheap before parsing
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # not one of ours (supervisord's own lines)
            if not isinstance(entry, dict):
                continue
            if (trace_id and entry.get("trace_id") == trace_id) or (short and short in str(entry.get("msg", ""))):
                entry.setdefault("actor", path.stem)
                yield entry


def log_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.log*") if p.is_file())


def render(cfg: Config, ident: str, *, logs: str, journal: str | None, as_json: bool) -> tuple[str, int]:
    key, trace_id = "", ident
    path = Path(journal) if journal else find_journal(cfg.executor.state_dir, cfg.chain.chain_id)
    if path is not None and path.is_file():
        with closing(open_read_only(path)) as db:
            found = trace_of(db, ident)
        if found is not None:
            key, trace_id = found
    found_lines = sorted(lines(log_files(Path(logs)), trace_id, key), key=lambda e: str(e.get("ts", "")))
    if as_json:
        return "\n".join(json.dumps(e) for e in found_lines), 0 if found_lines else 1
    head = f"trace {trace_id or '-'}" + (f" (execution {key})" if key else "")
    if not found_lines:
        return f"{head}: no log line in {logs}", 1
    body = [f"{e.get('ts', '')}  {e.get('actor', ''):<9} {e.get('level', ''):<7} {e.get('msg', '')}"
            for e in found_lines]
    actors = sorted({str(e.get("actor", "")) for e in found_lines})
    return "\n".join([f"{head}: {len(found_lines)} lines from {', '.join(actors)}", *body]), 0
