"""`polyarb status`: the latest stats of every actor, collected from the bus."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bus import topics
from bus.context import destroy, new_context
from bus.curve import for_reader
from bus.messages import Stats
from bus.sockets import Subscriber
from config.schema import Config
from config.world import line, same_world


async def collect(cfg: Config, seconds: float) -> dict[str, dict[str, Any]]:
    """Listen to every stats topic for `seconds`; the last message per actor wins."""
    ctx = new_context(for_reader(cfg))
    sub = Subscriber(ctx, [e.pub for e in cfg.bus.endpoints.values()], [topics.prefix(topics.STATS)])
    latest: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                batch = await asyncio.wait_for(sub.recv_batch(), left)
            except TimeoutError:
                break
            for r in batch:
                if isinstance(r.env.body, Stats):
                    latest[r.env.body.actor] = {
                        "stats": r.env.body.stats,
                        "publish_ns": r.env.publish_ns,
                        "seq": r.env.seq,
                        "boot_id": r.env.boot_id,
                    }
    finally:
        sub.close()
        destroy(ctx, 0)
    return latest


def report(cfg: Config, latest: dict[str, dict[str, Any]], now_ns: int,
           here: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per actor: up or silent, its breaker and figures; `here` (config.world) marks an actor
    that reports another world than this config's (another profile's actors on these ports)."""
    silent_after = 3 * cfg.runtime.stats_interval_seconds
    out: dict[str, Any] = {}
    for name in cfg.bus.endpoints:
        entry = latest.get(name)
        if entry is None:
            out[name] = {"up": False, "last_seen_seconds": None}
            continue
        age = (now_ns - entry["publish_ns"]) / 1e9
        s = entry["stats"]
        out[name] = {
            "up": age <= silent_after,
            "last_seen_seconds": round(age, 2),
            "boot_id": entry["boot_id"],
            "breaker": s.get("breaker", {}).get("state"),
            "breaker_reason": s.get("breaker", {}).get("reason"),
            "summary": s.get("summary", {}),
            "config": {k: s.get("config", {}).get(k) for k in ("reloads", "reload_errors", "last_error")},
            "world": s.get("world"),
            "other_world": bool(here and s.get("world") and not same_world(here, s["world"])),
            "stats": s,
        }
    return out


def render(rep: dict[str, Any], here: dict[str, Any] | None = None) -> str:
    lines = [line(here)] if here else []
    lines.append(f"{'actor':<10} {'state':<7} {'seen':>6}  {'breaker':<11} key figures")
    for name, r in rep.items():
        if r["last_seen_seconds"] is None:
            lines.append(f"{name:<10} {'silent':<7} {'-':>6}  {'-':<11} (no stats received)")
            continue
        state = "up" if r["up"] else "silent"
        figures = " ".join(f"{k}={v}" for k, v in r["summary"].items())
        cfg = r["config"]
        if cfg.get("reload_errors"):
            figures += f" config_errors={cfg['reload_errors']}"
        lines.append(f"{name:<10} {state:<7} {r['last_seen_seconds']:>5}s  {r['breaker'] or '-':<11} {figures}")
        if cfg.get("last_error"):
            lines.append(f"{'':<10} config rejected: {cfg['last_error']}")
        if name == "executor" and r["breaker"] not in (None, "CLOSED") and r.get("breaker_reason"):
            lines.append(f"{'':<10} breaker {r['breaker']}: {r['breaker_reason']}")
        if r.get("other_world"):
            lines.append(f"{'':<10} ANOTHER WORLD: {line(r['world'])}")
    return "\n".join(lines)


def to_json(rep: dict[str, Any]) -> str:
    return json.dumps(rep, default=str, indent=None)
