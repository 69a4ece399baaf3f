"""`polyarb top`: the dashboard's facts in a terminal (rich), for an operator on SSH.

It listens to the bus itself (every actor's stats, the executor's breaker broadcast
and results) and folds them as the dashboard does (actors.dashboard.board); the
P&L history comes from the executor's books when they are on this host.
`--once` listens a few seconds and prints one frame (for scripts and tests).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import closing
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from actors.dashboard.board import NS, Board, Limits
from actors.executor.history import find_journal, open_read_only, trades
from bus import topics
from bus.context import destroy, new_context
from bus.curve import for_reader
from bus.sockets import Subscriber
from config.schema import Config

STYLE = {"CLOSED": "bold white on green", "HALF_OPEN": "bold black on yellow", "OPEN": "bold white on red",
         "FORCED_OPEN": "bold white on red", "UNKNOWN": "bold white on grey35"}


def _state_text(state: str | None) -> Text:
    return Text(f" {state} ", style=STYLE.get(state or "", "")) if state else Text("-")


def render(s: dict[str, Any], world: str) -> Group:
    """One frame of the board's snapshot."""
    b = s["breaker"]
    head = Text.assemble(("PolyArb-X ", "bold"), (f"{world}  ", "dim"), _state_text(b["state"]), f"  {b['reason']}")

    actors = Table(expand=True, box=None, pad_edge=False)
    for col in ("actor", "state", "heard", "breaker", "figures"):
        actors.add_column(col, overflow="fold" if col == "figures" else "ellipsis", no_wrap=col != "figures")
    for a in s["actors"]:
        actors.add_row(a["name"], Text("up", style="green") if a["up"] else Text("SILENT", style="bold red"),
                       "never" if a["heard_s_ago"] is None else f"{a['heard_s_ago']} s",
                       _state_text(a["breaker"]), " ".join(f"{k}={v}" for k, v in a["summary"].items()))

    pnl = s["pnl"]
    money = Text.assemble("realized P&L ", (f"{pnl['total_usdc']} USDC", "bold"), f"  gas {pnl['gas_usdc']}",
                          f"  locked {s['locked_capital_usdc']} USDC  baskets {s['baskets_held']}",
                          f"  sales in doubt {s['sales_in_doubt']}",
                          f"  reconciler {s['reconciler'].get('checks', '-')} checks "
                          f"{s['reconciler'].get('trips', '-')} trips")

    ex = Table(expand=True, box=None, pad_edge=False)
    for col in ("time", "strategy", "legs", "status", "P&L", "latency", "key", "why"):
        ex.add_column(col, no_wrap=True, overflow="ellipsis")
    for e in s["executions"][:12]:
        ex.add_row(time.strftime("%H:%M:%S", time.gmtime(e["t_ms"] / 1000)), e["strategy"], str(e["legs"]),
                   e["status"], Text(e["pnl_usdc"], style="green" if e["pnl_micro"] > 0 else
                                     "red" if e["pnl_micro"] < 0 else ""),
                   "-" if e["latency_ms"] is None else f"{e['latency_ms']} ms", e["key"][:12], e["error"])

    timeline = Table(expand=True, box=None, pad_edge=False)
    for col in ("since", "state", "reason"):
        timeline.add_column(col, no_wrap=True, overflow="ellipsis")
    for t in s["timeline"][:6]:
        timeline.add_row(time.strftime("%H:%M:%S", time.gmtime(t["t_ms"] / 1000)), _state_text(t["state"]),
                         t["reason"])

    f, n = s["feed"], s["nonce"]
    feed = Text(f"feed: books {f['books']}  messages {f['messages']}  duplicates {f['duplicates']}  gaps {f['gaps']}"
                f"  heartbeat {'ok' if f['heartbeat_ok'] else 'NO' if f['heartbeat_ok'] is False else '-'}  "
                + "  ".join(f"conn {c.get('id')}: {'up' if c.get('connected') else 'DOWN'}" for c in f["connections"]))
    nonce = Text(f"nonce: next {n['next_nonce']}  pending {n['pending_count']} {n['pending_nonces'] or ''}  "
                 f"chain latest {n['chain_latest']}  chain ok {n['chain_ok']}  recoveries {n['recoveries']}")
    positions = Text("open positions: " + (", ".join(f"{p.get('token_id', '')[:12]}.. {p.get('size', 0) / 1e6:.2f}"
                                                      for p in s["positions"]) or "none"))
    return Group(head, Panel(actors, title="actors"), money, positions,
                 Panel(ex, title=f"executions  {' '.join(f'{k}={v}' for k, v in s['by_status'].items())}"),
                 Panel(timeline, title="breaker"), feed, nonce)


def _board(cfg: Config) -> Board:
    d = cfg.dashboard
    board = Board(list(cfg.bus.endpoints), time.time_ns(),
                  Limits(int(d.silent_seconds * NS), d.pnl_points, d.executions_shown, d.transitions_shown))
    path = find_journal(cfg.executor.state_dir, cfg.chain.chain_id)
    if path is not None:
        try:
            with closing(open_read_only(path)) as db:
                board.seed(trades(db, bookkeeping=True))
        except Exception:  # noqa: S110 - unreadable books: the live results still come
            pass
    return board


async def run(cfg: Config, *, once: bool, seconds: float, refresh: float, console: Console | None = None) -> None:
    console = console or Console()
    board = _board(cfg)
    world = f"{'sandbox' if cfg.sandbox is not None else 'live'} · chain {cfg.chain.chain_id} · {cfg.executor.clob_url}"
    ctx = new_context(for_reader(cfg))
    sub = Subscriber(ctx, [e.pub for e in cfg.bus.endpoints.values()],
                     [topics.prefix(topics.STATS), topics.breaker_state(), topics.tx_result()],
                     max_message_bytes=cfg.bus.max_message_bytes)

    async def hear(until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            try:
                batch = await asyncio.wait_for(sub.recv_batch(), left)
            except TimeoutError:
                return
            for r in batch:
                board.on_envelope(r.env, time.time_ns())

    try:
        if once:
            await hear(time.monotonic() + seconds)
            console.print(render(board.snapshot(time.time_ns()), world))
            return
        with Live(render(board.snapshot(time.time_ns()), world), console=console, screen=False,
                  auto_refresh=False) as live:
            while True:
                await hear(time.monotonic() + refresh)
                live.update(render(board.snapshot(time.time_ns()), world), refresh=True)
    finally:
        sub.close()
        destroy(ctx, 0)
