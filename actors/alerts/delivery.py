"""POSTing the outbox's deliveries: retried with doubling waits, rate-limited per
webhook, on the alerts program's own loop (trading never waits for a webhook)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp

from actors.alerts.outbox import Delivery, Outbox
from actors.runtime.clock import Clock

log = logging.getLogger(__name__)
NS = 1_000_000_000


def body(d: Delivery) -> dict[str, Any]:
    """What Slack (`text`) and Discord (`content`, at most 2,000 characters) incoming
    webhooks take, and the alert itself for anything else."""
    return {"text": d.text, "content": d.text[:2000], "username": "PolyArb-X",
            "polyarb": {"key": d.key, "kind": d.kind, "severity": d.severity, "created_ns": d.created_ns,
                        "details": d.details}}


class Sender:
    def __init__(self, outbox: Outbox, clock: Clock, settings: Callable[[], Any]) -> None:
        self.outbox, self.clock, self._settings = outbox, clock, settings
        self._sent: dict[str, deque[int]] = {}  # url -> monotonic ns of its sends in the last minute
        self._session: aiohttp.ClientSession | None = None
        self.stats = {"posts": 0, "delivered": 0, "failures": 0, "rate_limited": 0, "last_error": ""}

    def _allowed(self, url: str, per_minute: int) -> bool:
        window = self._sent.setdefault(url, deque())
        now = self.clock.monotonic_ns()
        while window and now - window[0] > 60 * NS:
            window.popleft()
        return len(window) < per_minute

    async def send_due(self) -> int:
        """One pass over what is due; the number delivered."""
        cfg = self._settings()
        urls = list(cfg.webhooks)
        due = self.outbox.due(self.clock.time_ns(), urls)
        if not due:
            return 0
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.timeout_seconds))
        delivered = 0
        for d in due:
            if not self._allowed(d.url, cfg.max_per_minute):
                self.stats["rate_limited"] += 1
                continue  # its turn comes: nothing is dropped
            self._sent[d.url].append(self.clock.monotonic_ns())
            self.stats["posts"] += 1
            wait_s: float | None = None
            try:
                async with self._session.post(d.url, json=body(d)) as r:
                    if 200 <= r.status < 300:
                        self.outbox.sent(d, self.clock.time_ns())
                        self.stats["delivered"] += 1
                        delivered += 1
                        continue
                    error = f"HTTP {r.status}"
                    if r.status == 429:
                        wait_s = _retry_after(r.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            backoff = min(cfg.max_backoff_seconds, 2.0 ** d.attempts)
            wait_s = min(cfg.max_backoff_seconds, wait_s) if wait_s is not None else backoff
            self.outbox.failed(d, self.clock.time_ns() + int(wait_s * NS), error)
            self.stats["failures"] += 1
            self.stats["last_error"] = error[:200]
            if d.attempts == 0:  # the first failure of a delivery is logged; the rest are counted
                log.warning("alert %s to %s not delivered (%s): retried in %.0f s", d.key, _host(d.url), error,
                            wait_s)
        return delivered

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _host(url: str) -> str:
    """A webhook URL carries its secret in the path: logs name the host only."""
    return url.split("/")[2] if url.count("/") >= 2 else "?"
