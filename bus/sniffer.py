"""`polyarb sniff`: print every message on the bus, one line each.

Connects a SUB socket to every publisher named in the config; the operator's
window into the bus.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, TextIO

import msgspec

from bus.context import destroy, new_context
from bus.curve import for_reader
from bus.sockets import Received, Subscriber
from config.schema import Config


def format_line(r: Received, as_json: bool) -> str:
    body = msgspec.to_builtins(r.env.body)
    if as_json:
        return json.dumps(
            {
                "topic": r.topic.decode(errors="replace"),
                "source": r.env.source,
                "boot_id": r.env.boot_id,
                "seq": r.env.seq,
                "event_ns": r.env.event_ns,
                "publish_ns": r.env.publish_ns,
                "trace_id": r.env.trace_id,
                "arrival": r.arrival.value,
                "body": body,
            },
            default=str,
        )
    mark = "" if r.arrival.value in ("in_order", "joined") else f" [{r.arrival.value}]"
    return f"{r.topic.decode(errors='replace')} {r.env.source}#{r.env.seq}{mark} {json.dumps(body, default=str)}"


async def sniff(
    cfg: Config,
    *,
    topic: str = "",
    count: int | None = None,
    seconds: float | None = None,
    as_json: bool = False,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    ctx = new_context(for_reader(cfg))
    endpoints = [e.pub for e in cfg.bus.endpoints.values()]
    sub = Subscriber(ctx, endpoints, [topic.encode()], max_message_bytes=cfg.bus.max_message_bytes)
    seen = 0
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while count is None or seen < count:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            try:
                batch = await asyncio.wait_for(sub.recv_batch(), timeout)
            except TimeoutError:
                break
            for r in batch:
                print(format_line(r, as_json), file=out, flush=True)
                seen += 1
                if count is not None and seen >= count:
                    break
    finally:
        stats = sub.get_stats()
        sub.close()
        destroy(ctx, 0)
    return stats
