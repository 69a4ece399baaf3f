"""The account's own trades from the venue's user channel (`/ws/user`).

    channel = UserChannel(url, creds, clock)
    task = asyncio.create_task(channel.run())
    channel.status(trade_id)                 # "MINED", ... or None (not heard)
    await channel.wait(0.5)                  # wakes on any trade event, or after 0.5 s

A trade's status changes (MATCHED -> MINED -> CONFIRMED, RETRYING, FAILED) are
pushed here as they happen, so the executor learns of a settlement at once
instead of polling `GET /data/trades`. The channel is the first word, never
the only one: while it is down, reconnecting, or silent about a trade, the
caller asks REST (`ClobVenue._await_trades`).

Connection: subscribe `{"type": "user", "auth": {apiKey, secret, passphrase},
"markets": []}` (every market of the account); `PING` every `ping_seconds`;
reconnect with capped exponential backoff and full jitter. Frames that do not
decode, oversized frames and events of an unknown type are counted and
dropped, never fatal. The credentials never reach a log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import websockets

from actors.domain.values import Value
from actors.runtime.clock import Clock

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder(Value).decode  # bounded depth: a deep frame is counted malformed

Creds = Callable[[], Awaitable[tuple[str, str, str]]]  # (api key, secret, passphrase)
MAX_FRAME = 1 << 20  # one event is ~1 KB; a frame this large is hostile or broken
KEEP_TRADES = 10_000  # statuses remembered (oldest forgotten first)


class UserChannel:
    def __init__(self, url: str, creds: Creds, clock: Clock, *, ping_seconds: float = 10.0,
                 reconnect_max_seconds: float = 10.0, rng: random.Random | None = None) -> None:
        self.url, self._creds, self._clock = url, creds, clock
        self.ping_seconds, self.reconnect_max_seconds = ping_seconds, reconnect_max_seconds
        self._rng = rng or random.Random()
        self._status: dict[str, str] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self.connected = False
        self.counts = {"connects": 0, "disconnects": 0, "trade_events": 0, "order_events": 0, "malformed": 0,
                       "other_frames": 0, "errors": 0}
        self.last_error = ""

    # -- what the executor reads
    def status(self, trade_id: str) -> str | None:
        return self._status.get(trade_id)

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 - on the injected clock
        """Until the next trade event (of any trade: the caller looks again) or `timeout`."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(woken)
        sleeper = asyncio.ensure_future(self._clock.sleep(timeout))
        try:
            await asyncio.wait({woken, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters.discard(woken)
            sleeper.cancel()

    # -- the connection
    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, closed, timed out, bad credentials: again, later
                failures += 1
                self.counts["errors"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                # The first failure of a streak is a warning (bad credentials, a wrong URL show up).
                (log.warning if failures == 1 else log.debug)("user channel %s: %s", self.url, exc)
            if self.connected:
                self.counts["disconnects"] += 1
            self.connected = False
            ceiling = min(self.reconnect_max_seconds, 0.25 * 2 ** min(failures, 10))
            await self._clock.sleep(self._rng.uniform(0, ceiling))

    async def _session(self) -> None:
        key, secret, passphrase = await self._creds()
        async with websockets.connect(self.url, max_size=MAX_FRAME, ping_interval=None, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "user", "auth": {"apiKey": key, "secret": secret,
                                                               "passphrase": passphrase}, "markets": []}))
            self.connected = True
            self.counts["connects"] += 1
            pinger = asyncio.create_task(self._ping(ws))
            try:
                async for frame in ws:
                    self._on_frame(frame)
            finally:
                pinger.cancel()

    async def _ping(self, ws: Any) -> None:
        while True:
            await self._clock.sleep(self.ping_seconds)
            await ws.send("PING")

    def _on_frame(self, frame: str | bytes) -> None:
        text = frame.decode(errors="replace") if isinstance(frame, bytes) else frame
        if not text.startswith(("{", "[")):
            self.counts["other_frames"] += 1  # PONG, INVALID OPERATION
            return
        try:
            data = _decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):  # incl. nesting beyond the bound
            self.counts["malformed"] += 1
            return
        for event in data if isinstance(data, list) else [data]:
            if not isinstance(event, dict):
                self.counts["malformed"] += 1
                continue
            kind = event.get("event_type")
            if kind == "trade" and isinstance(event.get("id"), str) and isinstance(event.get("status"), str):
                self.counts["trade_events"] += 1
                self._status[event["id"]] = event["status"].upper()
                if len(self._status) > KEEP_TRADES:
                    del self._status[next(iter(self._status))]
                for w in self._waiters:
                    if not w.done():
                        w.set_result(None)
            elif kind == "order":
                self.counts["order_events"] += 1
            else:
                self.counts["malformed"] += 1

    def get_stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "trades_known": len(self._status), "last_error": self.last_error,
                **self.counts}
