"""The executor's durable books, read back for people: every finished execution and
the P&L grouped by day, market or strategy (`polyarb trades`, `polyarb pnl`).

Read-only over the journal's SQLite file (WAL: safe while the executor runs).
`pnl` is net (after fees and gas, gas priced in USDC); `gas` is that gas cost.
Book-keeping records that are not trades (the approvals at start, the sell
reserve's splits and merges, keyed `approvals:` and `reserve:`) are left out
of `trades` unless asked for; their gas is in every P&L total (strategy
BOOKKEEPING). A redemption (`redeem:`) is its own strategy, REDEMPTION, and
not a second success of the basket it redeems.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from bus.messages import Signal

BOOKKEEPING_PREFIXES = ("approvals:", "reserve:")
SUCCESSES = frozenset({"SUCCESS", "HELD"})  # as `polyarb status` counts them (REDEEMED ends a HELD basket)
_PREFIX_STRATEGY = {"redeem:": "REDEMPTION", "position:": "POSITION"}
_decoder = msgspec.msgpack.Decoder(Signal)


@dataclass(frozen=True, slots=True)
class Trade:
    key: str
    finished_ns: int
    status: str
    strategy: str
    market: str
    size: int  # sets, micro-shares
    legs: int
    expected_profit: int  # micro-USDC, as signalled
    pnl: int  # micro-USDC, net
    gas: int  # micro-USDC


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    executions: int
    successes: int
    pnl: int
    gas: int


def find_journal(state_dir: str | Path, chain_id: int) -> Path | None:
    """The executor's journal of this chain in `state_dir` (the newest if several wallets)."""
    found = sorted(Path(state_dir).glob(f"executor-{chain_id}-*.sqlite"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def open_read_only(path: str | Path) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no journal at {path}")
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=10)


def is_bookkeeping(key: str) -> bool:
    return key.startswith(BOOKKEEPING_PREFIXES)


def trades(db: sqlite3.Connection, *, since_ns: int | None = None, statuses: Iterable[str] = (),
           bookkeeping: bool = False) -> list[Trade]:
    """Finished executions, oldest first (book-keeping records too with `bookkeeping`)."""
    wanted = {s.upper() for s in statuses}
    rows = db.execute("SELECT key, signal, data, updated_ns FROM executions WHERE state='done' AND updated_ns >= ? "
                      "ORDER BY updated_ns, key", (since_ns or 0,)).fetchall()
    out = []
    for key, blob, data, finished in rows:
        d = json.loads(data)
        status = str(d.get("status", ""))
        if (wanted and status not in wanted) or (not bookkeeping and is_bookkeeping(key)):
            continue
        try:
            s = _decoder.decode(blob)
            strategy, market, size, legs, expected = s.kind, s.market, s.size, len(s.legs), s.expected_profit
        except msgspec.DecodeError:  # a placeholder signal (a position's sale) or an older record
            strategy, market, size, legs, expected = "?", "", 0, 0, 0
        if is_bookkeeping(key):
            strategy = "BOOKKEEPING"
        strategy = next((v for p, v in _PREFIX_STRATEGY.items() if key.startswith(p)), strategy)
        out.append(Trade(key, finished, status, strategy, market, size, legs, expected,
                         int(d.get("pnl", 0)), int(d.get("gas", 0))))
    return out


def day(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d")


def grouped(items: Iterable[Trade], by: str) -> list[Group]:
    """P&L by "day" (UTC), "market" or "strategy", in key order."""
    key = {"day": lambda t: day(t.finished_ns), "market": lambda t: t.market or "-",
           "strategy": lambda t: t.strategy}[by]
    groups: dict[str, list[int]] = {}
    for t in items:
        g = groups.setdefault(key(t), [0, 0, 0, 0])
        g[0] += 1
        g[1] += t.status in SUCCESSES
        g[2] += t.pnl
        g[3] += t.gas
    return [Group(name, *g) for name, g in sorted(groups.items())]
