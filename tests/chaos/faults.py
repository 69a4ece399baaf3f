"""The faults a chaos run injects, and the seeded schedule of them.

Every kind is injected at least once, in a seeded order, then more at random
until the fault phase ends. A fault either happens at once (a SIGKILL: the
supervisor restarts the program) or lasts a while and is then undone (a venue
fault switched on and off by a live config edit, a chain frozen by SIGSTOP, a
broken config file).
"""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass
from typing import Any

KILLS = ("executor", "nonce", "feed", "router", "venue", "chain")

# Venue faults (hot-reloaded by the venue): each kind's settings while it is on.
VENUE_FAULTS: dict[str, dict[str, Any]] = {
    "ws_disconnects": {"disconnect_every_seconds": 2},
    "duplicates": {"duplicate_rate": 0.2},
    "reorders": {"reorder_rate": 0.2},
    "dropped_price_changes": {"drop_price_change_rate": 0.05},
    "silent_stall": {"stall": True},
    "http_429": {"http_429_rate": 0.3, "retry_after_seconds": 1},
    "http_5xx": {"http_5xx_rate": 0.2, "http_5xx_burst": 3},
    "slow_responses": {"slow_response_rate": 0.3, "slow_response_ms": 400},
    "reject_orders": {"reject_orders": True},  # long enough to trip the breaker
    "trade_failures": {"trade_fail_rate": 0.3, "trade_retry_rate": 0.1},
    "delayed_orders": {"delayed_rate": 0.3},
    # From 1 s on, every cycle is inside its restart window: 425 until switched off.
    "engine_restart": {"engine_restart_every_seconds": 1, "engine_restart_seconds": 5, "post_only_seconds": 1},
}

# Broken config files: each must be refused by every actor, which keeps its last good config.
CONFIG_BREAKS = ("invalid_yaml", "unknown_key", "bad_value")

KINDS = (*(f"kill:{p}" for p in KILLS), "stall:chain", *VENUE_FAULTS, *(f"config:{b}" for b in CONFIG_BREAKS))

DURATIONS: dict[str, tuple[float, float]] = {"reject_orders": (10, 14), "stall:chain": (3, 8)}
DEFAULT_DURATION = (4.0, 8.0)
CONFIG_DURATION = (3.0, 5.0)
SIGKILL, SIGSTOP, SIGCONT = signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT


@dataclass(frozen=True)
class Planned:
    at: float  # seconds after the fault phase began
    kind: str
    duration: float  # 0 for a SIGKILL


def duration_of(kind: str, rnd: random.Random) -> float:
    if kind.startswith("kill:"):
        return 0.0
    low, high = CONFIG_DURATION if kind.startswith("config:") else DURATIONS.get(kind, DEFAULT_DURATION)
    return round(rnd.uniform(low, high), 2)


def schedule(seed: int, seconds: float) -> list[Planned]:
    """Every kind once (seeded order), then random kinds, spread over `seconds`.
    A kind is never started again while it is still on."""
    rnd = random.Random(seed)
    kinds = list(KINDS)
    rnd.shuffle(kinds)
    gap = seconds / max(len(kinds), seconds / 6.0)  # ~6 s apart at least; every kind fits
    plan: list[Planned] = []
    busy_until: dict[str, float] = {}
    t = 0.0
    while True:
        first_pass = bool(kinds)
        if first_pass:
            kind = kinds.pop(0)  # the first pass: each kind once (none can be on yet)
        else:
            free = [k for k in KINDS if busy_until.get(k, -1.0) <= t]
            kind = rnd.choice(free or list(KINDS))
        d = duration_of(kind, rnd)
        if t + d > seconds and not first_pass:
            break
        plan.append(Planned(round(t, 2), kind, d))
        busy_until[kind] = t + d + 0.5
        t += rnd.uniform(0.6, 1.4) * gap
        if t >= seconds and not kinds:
            break
    return plan
