"""`polyarb trades` and `polyarb pnl`: the executor's books, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from actors.domain.money import format_usdc, micro_to_str
from actors.executor.history import Group, Trade, find_journal, grouped, open_read_only, trades
from config.schema import Config

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def since_ns(text: str | None, now_ns: int | None = None) -> int | None:
    """"3h", "2d", "30m", or an ISO date/time (UTC unless it says otherwise)."""
    if not text:
        return None
    now_ns = time.time_ns() if now_ns is None else now_ns
    m = _RELATIVE.match(text.strip())
    if m:
        return now_ns - int(m.group(1)) * _UNIT_S[m.group(2)] * 1_000_000_000
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SystemExit(f"polyarb: --since {text!r}: give 30m, 3h, 2d or an ISO date like 2026-12-01") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


def journal_path(cfg: Config, explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    found = find_journal(cfg.executor.state_dir, cfg.chain.chain_id)
    if found is None:
        raise SystemExit(f"polyarb: no executor journal for chain {cfg.chain.chain_id} in {cfg.executor.state_dir} "
                         "(has the executor run with this config?)")
    return found


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _trade_row(t: Trade) -> dict[str, str | int]:
    return {"finished": _when(t.finished_ns), "key": t.key, "strategy": t.strategy, "status": t.status,
            "market": t.market, "sets": micro_to_str(t.size), "legs": t.legs,
            "expected_usdc": format_usdc(t.expected_profit), "pnl_usdc": format_usdc(t.pnl),
            "gas_usdc": format_usdc(t.gas)}


def _group_row(g: Group, by: str) -> dict[str, str | int]:
    return {by: g.name, "executions": g.executions, "successes": g.successes, "pnl_usdc": format_usdc(g.pnl),
            "gas_usdc": format_usdc(g.gas)}


def _table(rows: list[dict[str, str | int]], short: dict[str, int]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    cells = [[str(r[c])[:short[c]] if c in short else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(v.rjust(w) if _NUMBER.match(v) else v.ljust(w) for v, w in zip(row, widths, strict=True))
            for row in cells]
    return "\n".join([line, *body])


def _csv(rows: list[dict[str, str | int]]) -> str:
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return out.getvalue()


def render_trades(cfg: Config, *, journal: str | None, since: str | None, status: list[str], fmt: str,
                  bookkeeping: bool) -> str:
    with closing(open_read_only(journal_path(cfg, journal))) as db:
        # An explicit status asks for those records, book-keeping ones included.
        items = trades(db, since_ns=since_ns(since), statuses=status, bookkeeping=bookkeeping or bool(status))
    rows = [_trade_row(t) for t in items]
    if fmt == "json":
        return json.dumps(rows, indent=1)
    if fmt == "csv":
        return _csv(rows).rstrip("\n")
    total = sum(t.pnl for t in items)
    table = _table(rows, {"key": 12, "market": 12})
    return (table + "\n" if table else "") + f"{len(items)} executions, pnl {format_usdc(total)} USDC"


def render_pnl(cfg: Config, *, journal: str | None, since: str | None, by: str, fmt: str) -> str:
    with closing(open_read_only(journal_path(cfg, journal))) as db:
        items = trades(db, since_ns=since_ns(since), bookkeeping=True)  # their gas is spent money
    groups = grouped(items, by)
    rows = [_group_row(g, by) for g in groups]
    if fmt == "json":
        return json.dumps(rows, indent=1)
    if fmt == "csv":
        return _csv(rows).rstrip("\n")
    total = Group("total", sum(g.executions for g in groups), sum(g.successes for g in groups),
                  sum(g.pnl for g in groups), sum(g.gas for g in groups))
    return _table([*rows, _group_row(total, by)], {"market": 66})
