"""What the dashboard shows, folded from the bus (pure: no I/O, time passed in).

Every actor's latest stats message, the executor's breaker broadcast and its
results: `snapshot()` is the page's whole state as JSON-able data. Money stays
micro-USDC integers here; the page formats them (`*_usdc` strings are made by
the money module for reading, never parsed back).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.domain.money import format_usdc
from actors.executor.history import Trade
from bus.messages import BreakerState, Envelope, Stats, TxResult

NS = 1_000_000_000
EXECUTOR = "executor"  # the breaker's owner, and the results' publisher
MS = NS // 1000  # ns per ms


@dataclass(frozen=True, slots=True)
class Limits:
    silent_after_ns: int  # an actor not heard for this long is shown silent
    pnl_points: int  # points of the P&L chart kept
    executions: int  # latest executions listed
    transitions: int  # latest breaker transitions listed


@dataclass(slots=True)
class _Heard:
    at_ns: int
    boot_id: str
    stats: Mapping[str, Any]


class Board:
    def __init__(self, actors: Iterable[str], started_ns: int, limits: Limits) -> None:
        self.actors = tuple(actors)
        self.started_ns = started_ns
        self.limits = limits
        self.heard: dict[str, _Heard] = {}
        self.breaker: dict[str, Any] | None = None
        self.timeline: deque[dict[str, Any]] = deque(maxlen=limits.transitions)
        self.executions: deque[dict[str, Any]] = deque(maxlen=limits.executions)
        self.pnl: deque[tuple[int, int]] = deque(maxlen=limits.pnl_points)  # (ms, cumulative micro-USDC)
        self.pnl_total = 0
        self.gas_total = 0
        self.by_status: dict[str, int] = {}
        self.results_heard = 0
        self._seen_keys: deque[str] = deque(maxlen=4 * limits.executions)

    # -- what is heard
    def on_envelope(self, env: Envelope, now_ns: int) -> None:
        """Any bus message: stats of their own publisher, the executor's breaker and results."""
        body = env.body
        if isinstance(body, Stats) and body.actor == env.source:
            self.on_stats(body.actor, body.stats, now_ns, env.boot_id)
        elif isinstance(body, BreakerState) and env.source == EXECUTOR:
            self.on_breaker(str(body.state), body.reason, body.since_ns, body.until_ns)
        elif isinstance(body, TxResult) and env.source == EXECUTOR:
            self.on_result(key=body.idempotency_key, strategy=str(body.kind or "?"), market=body.market,
                           status=str(body.status), pnl=body.realized_pnl, gas=body.gas_cost, legs=body.legs,
                           latency_us=body.latency_us, error=body.error, trace_id=env.trace_id, now_ns=now_ns)

    def on_stats(self, actor: str, stats: Mapping[str, Any], now_ns: int, boot_id: str) -> None:
        self.heard[actor] = _Heard(now_ns, boot_id, stats)

    def on_breaker(self, state: str, reason: str, since_ns: int, until_ns: int | None) -> bool:
        """The executor's broadcast (every transition and a heartbeat); True on a change."""
        if self.breaker is not None and (self.breaker["state"], self.breaker["since_ms"]) == (state, since_ns // MS):
            return False
        self.breaker = {"state": state, "reason": reason, "since_ms": since_ns // MS,
                        "until_ms": until_ns // MS if until_ns else None}
        self.timeline.appendleft({"t_ms": since_ns // MS, "state": state, "reason": reason})
        return True

    def on_result(self, *, key: str, strategy: str, market: str, status: str, pnl: int, gas: int, legs: int,
                  latency_us: int | None, error: str | None, trace_id: str, now_ns: int) -> None:
        """One execution's outcome (a TxResult), as it happens."""
        self.results_heard += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.executions.appendleft({
            "t_ms": now_ns // MS, "key": key, "strategy": strategy, "market": market, "legs": legs,
            "status": status, "pnl_micro": pnl, "pnl_usdc": format_usdc(pnl), "gas_usdc": format_usdc(gas),
            "latency_ms": round(latency_us / 1000, 1) if latency_us is not None else None,
            "error": error or "", "trace_id": trace_id})
        if key not in self._seen_keys:  # a replayed key's P&L was booked once
            self._seen_keys.append(key)
            self._add_pnl(now_ns, pnl, gas)

    def seed(self, trades: Iterable[Trade]) -> None:
        """The P&L curve and the latest executions from the executor's durable books
        (a restarted dashboard shows the history, not only what it heard)."""
        for t in trades:
            self._seen_keys.append(t.key)
            self._add_pnl(t.finished_ns, t.pnl, t.gas)
            if t.strategy != "BOOKKEEPING":
                self.executions.appendleft({
                    "t_ms": t.finished_ns // MS, "key": t.key, "strategy": t.strategy, "market": t.market,
                    "legs": t.legs, "status": t.status, "pnl_micro": t.pnl, "pnl_usdc": format_usdc(t.pnl),
                    "gas_usdc": format_usdc(t.gas), "latency_ms": None, "error": "", "trace_id": ""})

    def _add_pnl(self, at_ns: int, pnl: int, gas: int) -> None:
        self.pnl_total += pnl
        self.gas_total += gas
        point = (at_ns // MS, self.pnl_total)
        if self.pnl and self.pnl[-1][0] == point[0]:
            self.pnl[-1] = point
        else:
            self.pnl.append(point)

    # -- what is shown
    def snapshot(self, now_ns: int) -> dict[str, Any]:
        ex = self._own("executor")
        return {
            "now_ms": now_ns // MS,
            "actors": [self._actor(a, now_ns) for a in self.actors],
            "breaker": self.breaker or {"state": "UNKNOWN", "reason": "no broadcast heard from the executor yet",
                                        "since_ms": None, "until_ms": None},
            "timeline": list(self.timeline),
            "pnl": {"t_ms": [t for t, _ in self.pnl], "micro": [v for _, v in self.pnl],
                    "total_usdc": format_usdc(self.pnl_total), "gas_usdc": format_usdc(self.gas_total)},
            "executions": list(self.executions),
            "by_status": dict(sorted(self.by_status.items())),
            "positions": [p for p in ex.get("open_positions", []) if isinstance(p, Mapping)],
            "locked_capital_usdc": ex.get("locked_capital_usdc", "0"),
            "baskets_held": ex.get("baskets_held", 0),
            "sales_in_doubt": ex.get("sales_in_doubt", 0),
            "reconciler": {k: v for k, v in _mapping(ex.get("reconciler")).items()
                           if k in ("checks", "trips", "differences")},
            "feed": self._feed(),
            "nonce": self._nonce(),
        }

    def _own(self, actor: str) -> Mapping[str, Any]:
        h = self.heard.get(actor)
        return _mapping(h.stats.get(actor)) if h else {}

    def _actor(self, name: str, now_ns: int) -> dict[str, Any]:
        h = self.heard.get(name)
        if h is None:
            return {"name": name, "up": False, "heard_s_ago": None, "summary": {}, "breaker": None,
                    "uptime_s": None, "pid": None}
        rt, br = _mapping(h.stats.get("runtime")), _mapping(h.stats.get("breaker"))
        age = now_ns - h.at_ns
        return {"name": name, "up": age < self.limits.silent_after_ns, "heard_s_ago": round(age / NS, 1),
                "summary": _mapping(h.stats.get("summary")), "breaker": br.get("state"),
                "uptime_s": rt.get("uptime_seconds"), "pid": rt.get("pid")}

    def _feed(self) -> dict[str, Any]:
        f = self._own("feed")
        h = self.heard.get("feed")
        summary = _mapping(h.stats.get("summary")) if h else {}
        return {"connections": [c for c in f.get("per_connection", []) if isinstance(c, Mapping)],
                "books": summary.get("books"),
                "messages": f.get("message_count"), "duplicates": f.get("duplicate_count"),
                "gaps": f.get("sequence_gap_count"), "heartbeat_ok": f.get("heartbeat_ok"),
                "reconnects": f.get("disconnect_count")}

    def _nonce(self) -> dict[str, Any]:
        n = self._own("nonce")
        keys = ("next_nonce", "pending_count", "pending_nonces", "chain_latest", "chain_ok", "recoveries",
                "initialized")
        return {k: n.get(k) for k in keys}


def _mapping(value: Any) -> dict[str, Any]:
    """A part of a stats message as a dict; anything else (an older or odd publisher) as empty."""
    return dict(value) if isinstance(value, Mapping) else {}
