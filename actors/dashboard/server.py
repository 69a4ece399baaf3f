"""The dashboard's web page: one HTML page, its script, the chart library installed
from npm at `make install` (nothing fetched at run time), and the state as JSON,
pushed to the page as server-sent events.

    GET /             the page
    GET /static/...   its script and style (this package's static/ folder)
    GET /vendor/...   uPlot, from the npm install (.tools/node_modules/uplot/dist)
    GET /api/state    the state, once (JSON)
    GET /api/events   the state every `dashboard.push_interval_seconds` (text/event-stream)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
ROOT = Path(__file__).resolve().parents[2]
VENDOR = Path(os.environ.get("POLYARB_TOOLS", ROOT / ".tools")) / "node_modules" / "uplot" / "dist"
VENDOR_FILES = {"uPlot.iife.min.js": "application/javascript", "uPlot.min.css": "text/css"}
STATIC_FILES = {"app.js": "application/javascript", "app.css": "text/css"}
# The page loads only its own files and talks only to its own origin.
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


class Page:
    def __init__(self, state: Callable[[], dict[str, Any]], interval: Callable[[], float],
                 sleep: Callable[[float], Any]) -> None:
        self._state, self._interval, self._sleep = state, interval, sleep
        self.stats = {"pages": 0, "state_reads": 0, "streams": 0, "streams_open": 0, "pushes": 0,
                      "vendor_missing": 0}
        self._streams: set[asyncio.Task[Any]] = set()
        if not (VENDOR / "uPlot.iife.min.js").is_file():
            log.warning("the chart library is not installed at %s (run `make install`): the page shows no chart",
                        VENDOR)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/vendor/{name}", self._vendor)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_get("/api/events", self._events)
        return app

    async def _index(self, _: web.Request) -> web.Response:
        self.stats["pages"] += 1
        return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html", headers=HEADERS)

    async def _static(self, request: web.Request) -> web.Response:
        return _file(STATIC, STATIC_FILES, request.match_info["name"])

    async def _vendor(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in VENDOR_FILES and not (VENDOR / name).is_file():
            self.stats["vendor_missing"] += 1
        return _file(VENDOR, VENDOR_FILES, name)

    async def _api_state(self, _: web.Request) -> web.Response:
        self.stats["state_reads"] += 1
        return web.Response(text=json.dumps(self._state()), content_type="application/json", headers=HEADERS)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.stats["streams"] += 1
        self.stats["streams_open"] += 1
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            while True:
                await resp.write(f"data: {json.dumps(self._state())}\n\n".encode())
                self.stats["pushes"] += 1
                await self._sleep(self._interval())
        except (ConnectionError, asyncio.CancelledError):  # the page went away, or we stop
            pass
        finally:
            self.stats["streams_open"] -= 1
            self._streams.discard(task)  # type: ignore[arg-type]
        return resp

    def close(self) -> None:
        """End every open event stream (they would hold a stop until the shutdown timeout)."""
        for task in list(self._streams):
            task.cancel()


def _file(folder: Path, allowed: dict[str, str], name: str) -> web.Response:
    """Only the named files: no path from the request reaches the file system."""
    kind = allowed.get(name)
    path = folder / name
    if kind is None or not path.is_file():
        raise web.HTTPNotFound(text=f"{name}: not here")
    return web.Response(body=path.read_bytes(), content_type=kind, headers=HEADERS)
