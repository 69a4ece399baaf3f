"""What is worth waking someone for, read from the bus (pure: no I/O, time passed in).

Each alert has a key that names its occurrence (a breaker transition by its state and
time, an actor's silence by the time it was last heard, ...): the outbox stores an
alert once per key, so a restarted alerts program, hearing the same state again,
never sends it twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.domain.money import format_usdc

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Alert:
    key: str  # one occurrence: stored (and sent) once
    kind: str  # breaker | books_apart | position_open | actor_silent | actor_back | nonce_stuck
    severity: str  # critical | warning | info
    text: str  # one line for people (Slack's `text`, Discord's `content`)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Thresholds:
    actor_silent_ns: int
    position_open_ns: int
    nonce_stuck_ns: int


class Watch:
    """Turns breaker states, stats messages and the passing of time into alerts."""

    def __init__(self, actors: Iterable[str], started_ns: int) -> None:
        self.actors = tuple(actors)
        self.heard_ns: dict[str, int] = {a: started_ns for a in self.actors}  # silence counts from our start
        self.silent: set[str] = set()
        self.breaker: tuple[str, int] | None = None
        self.reconciler_trips: dict[str, int] = {}  # executor boot id -> trips seen
        self.positions_since: dict[str, int] = {}  # token -> first seen open
        self.positions_told: set[str] = set()
        self.nonces_since: dict[int, int] = {}
        self.nonces_told: set[int] = set()

    def on_breaker(self, state: str, reason: str, since_ns: int) -> list[Alert]:
        """The executor's broadcast (every transition, and a heartbeat each second)."""
        if self.breaker == (state, since_ns):
            return []
        before = self.breaker[0] if self.breaker else None
        self.breaker = (state, since_ns)
        if before is None and state == "CLOSED":
            return []  # the state we found at our start, and nothing wrong: nothing to tell
        severity = "info" if state == "CLOSED" else "warning" if state == "HALF_OPEN" else "critical"
        arrow = f"{before} -> {state}" if before else state
        return [Alert(f"breaker:{state}:{since_ns}", "breaker", severity, f"PolyArb-X breaker {arrow}: {reason}",
                      {"state": state, "previous": before, "reason": reason, "since_ns": since_ns})]

    def on_stats(self, actor: str, stats: Mapping[str, Any], now_ns: int, boot_id: str,
                 limits: Thresholds) -> list[Alert]:
        out: list[Alert] = []
        self.heard_ns[actor] = now_ns
        if actor in self.silent:
            self.silent.discard(actor)
            out.append(Alert(f"back:{actor}:{now_ns}", "actor_back", "info",
                             f"PolyArb-X {actor} is publishing again", {"actor": actor}))
        own = stats.get(actor)
        if isinstance(own, Mapping):
            if actor == "executor":
                out += self._executor(own, now_ns, boot_id, limits)
            elif actor == "nonce":
                out += self._nonce(own, now_ns, limits)
        return out

    def _executor(self, s: Mapping[str, Any], now_ns: int, boot_id: str, limits: Thresholds) -> list[Alert]:
        out: list[Alert] = []
        rec = s.get("reconciler")
        if isinstance(rec, Mapping) and isinstance(rec.get("trips"), int):
            seen = self.reconciler_trips.get(boot_id, 0)
            if rec["trips"] > seen:
                diffs = [str(d) for d in rec.get("differences") or []][:10]
                out.append(Alert(f"books:{boot_id}:{rec['trips']}", "books_apart", "critical",
                                 "PolyArb-X books differ from the chain; trading halted: " + "; ".join(diffs),
                                 {"differences": diffs}))
            self.reconciler_trips[boot_id] = rec["trips"]
        positions = s.get("open_positions")
        if isinstance(positions, list):
            open_now = {str(p.get("token_id")): p for p in positions if isinstance(p, Mapping)}
            for token in list(self.positions_since):
                if token not in open_now:
                    del self.positions_since[token]
                    self.positions_told.discard(token)
            for token, p in open_now.items():
                since = self.positions_since.setdefault(token, now_ns)
                if now_ns - since >= limits.position_open_ns and token not in self.positions_told:
                    self.positions_told.add(token)
                    size = p.get("size") if isinstance(p.get("size"), int) else 0
                    out.append(Alert(f"position:{token}:{since}", "position_open", "warning",
                                     f"PolyArb-X position {token[:12]} open for {(now_ns - since) // (60 * NS)} min: "
                                     f"{format_usdc(size)} shares unsold after {p.get('attempts', 0)} attempts",
                                     {"token_id": token, "size": size, "attempts": p.get("attempts")}))
        return out

    def _nonce(self, s: Mapping[str, Any], now_ns: int, limits: Thresholds) -> list[Alert]:
        out: list[Alert] = []
        pending = s.get("pending_nonces")
        if not isinstance(pending, list):
            return out
        now_pending = {n for n in pending if isinstance(n, int) and not isinstance(n, bool)}
        for n in list(self.nonces_since):
            if n not in now_pending:
                del self.nonces_since[n]
                self.nonces_told.discard(n)
        for n in sorted(now_pending):
            since = self.nonces_since.setdefault(n, now_ns)
            if now_ns - since >= limits.nonce_stuck_ns and n not in self.nonces_told:
                self.nonces_told.add(n)
                out.append(Alert(f"nonce:{n}:{since}", "nonce_stuck", "critical",
                                 f"PolyArb-X nonce {n} pending for {(now_ns - since) // NS} s "
                                 f"(chain at {s.get('chain_latest')})", {"nonce": n,
                                                                         "chain_latest": s.get("chain_latest")}))
        return out

    def tick(self, now_ns: int, limits: Thresholds) -> list[Alert]:
        """Silences: an actor not heard for `actor_silent_ns` (once per silence)."""
        out = []
        for actor in self.actors:
            heard = self.heard_ns.get(actor, now_ns)
            if actor not in self.silent and now_ns - heard >= limits.actor_silent_ns:
                self.silent.add(actor)
                out.append(Alert(f"silent:{actor}:{heard}", "actor_silent", "critical",
                                 f"PolyArb-X {actor} silent for {(now_ns - heard) // NS} s (no stats heard)",
                                 {"actor": actor, "last_heard_ns": heard}))
        return out
