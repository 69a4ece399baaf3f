"""One aiohttp application served on the actor's loop: bound, and bound again while
the port is taken, never ending the actor (metrics, /healthz, the dashboard)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

BIND_RETRY_SECONDS = 10.0
SHUTDOWN_SECONDS = 1.0  # open requests (a page's event stream) get this long at a stop, then are cut


def loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.")


class HttpServer:
    def __init__(self, address: str, app: Callable[[], web.Application], what: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.what = host, int(port), what
        self._app = app
        self._runner: web.AppRunner | None = None
        self.stats: dict[str, Any] = {"bind_errors": 0, "bound": False, "last_error": ""}

    async def serve(self, sleep: Callable[[float], Any], retry_seconds: float = BIND_RETRY_SECONDS) -> None:
        """Bind, trying again while the port is taken (or anything else fails); then
        serve until cancelled."""
        if not loopback(self.host):
            log.warning("%s served on %s: not loopback, anyone who reaches it reads the figures (P&L, "
                        "capital); no authentication", self.what, self.host)
        while self._runner is None:
            runner = web.AppRunner(self._app(), access_log=None, handle_signals=False,
                                   shutdown_timeout=SHUTDOWN_SECONDS)
            try:
                await runner.setup()
                await web.TCPSite(runner, self.host, self.port).start()
            except Exception as exc:
                await runner.cleanup()
                self.stats["bind_errors"] += 1
                self.stats["last_error"] = str(exc)[:200]
                if self.stats["bind_errors"] == 1:
                    log.error("%s not served on %s:%d: %s; trying again every %.0f s", self.what, self.host,
                              self.port, exc, retry_seconds)
                await sleep(retry_seconds)
                continue
            self._runner = runner
            self.stats["bound"] = True
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
