"""The fault injector: what the real venue does to its clients, on demand.

Every knob is `sandbox.venue.faults` and hot-reloadable: `configure()` swaps
the section (the actor calls it from on_config) and every decision reads the
current one. Decisions draw from one seeded `random.Random`; a knob at 0 draws
nothing, so turning one knob on leaves the others' sequences alone.

Every injected fault is counted (`get_stats()`), so tests compare what was
injected with what the feed detected.

WebSocket, per connection (`ConnectionFaults.shape`, for each data frame):
    drop_price_change_rate  a price_change is not sent (the client's book silently diverges)
    reorder_rate            a price_change is held back and sent right after the next
                            frame of the same token with a NEWER timestamp
    duplicate_rate          the frame is sent twice
    malformed_rate          an extra frame: truncated JSON, an unknown event_type, or a
                            price_change without `price_changes`
    huge_frame_rate         an extra frame of `huge_frame_bytes`
    stall                   on the change to true, every open connection goes silent (PONG
                            still answered, no data) until it reconnects or stall turns
                            false; like production, a NEW connection is healthy
    disconnect_every_seconds  a connection is closed that long after it opened
HTTP (`middleware`), on every route except the exempt ones (`/book` and `/sandbox/...`: ground truth):
    http_429_rate (+ Retry-After), http_5xx_rate (bursts of http_5xx_burst), slow_response_rate
    (+ slow_response_ms). `reject_orders` is read by the CLOB order routes.
Orders and trades (read by the CLOB):
    delayed_rate (+ delayed_unmatched_share, delay_ms)  an order answered `delayed`, matched later or UNMATCHED
    trade_fail_rate     a matched trade ends FAILED: nothing moves on chain
    trade_retry_rate    a matched trade goes RETRYING before it is mined
    engine_restart_every_seconds (+ engine_restart_seconds, post_only_seconds)  the weekly matching-engine
                        restart: 425 on the order endpoints, then post-only orders only
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from actors.runtime.clock import Clock
from config.schema import VenueFaults
from sandbox.venue.events import PRICE_CHANGE, Frame

COUNTERS = ("duplicates", "reordered", "dropped_price_changes", "disconnects", "stalls_started",
            "malformed_broken_json", "malformed_unknown_event", "malformed_missing_fields", "huge_frames",
            "http_429", "http_5xx", "slow_responses", "rejected_orders", "delayed_orders", "delayed_unmatched",
            "trades_failed", "trades_retried", "engine_restarts", "engine_restart_refusals", "post_only_refusals")
RUNNING, RESTARTING, POST_ONLY = "running", "restarting", "post_only"
MALFORMED = "malformed"
HUGE = "huge"
MAX_HOLD_NS = 1_000_000_000  # a held (reordered) frame with no newer one to follow is sent in order after 1 s
EXEMPT_PATHS = frozenset({"/book", "/ws/market", "/ws/user"})  # the channels have faults of their own
EXEMPT_PREFIX = "/sandbox/"  # sandbox-only diagnostics (not Polymarket routes): ground truth too

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_encode = msgspec.json.Encoder().encode


class FaultInjector:
    def __init__(self, faults: VenueFaults, rng: random.Random, clock: Clock) -> None:
        self.current = faults
        self.rng = rng
        self.clock = clock
        self.counters = Counter[str]()
        self._burst_left = 0
        self._huge: tuple[int, bytes] | None = None
        self._engine_t0 = clock.monotonic_ns()
        self._engine_cycle = 0  # the last restart counted

    def configure(self, faults: VenueFaults) -> tuple[bool, bool]:
        """Swap in a new faults section; returns (stall started, stall ended)."""
        old, self.current = self.current, faults
        if faults.http_5xx_rate == 0:  # 5xx turned off: a burst under way ends too
            self._burst_left = 0
        if faults.engine_restart_every_seconds != old.engine_restart_every_seconds:
            self._engine_t0, self._engine_cycle = self.clock.monotonic_ns(), 0  # the schedule starts now
        return (faults.stall and not old.stall, old.stall and not faults.stall)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    @property
    def reject_orders(self) -> bool:
        return self.current.reject_orders

    # ------------------------------------------------------------ orders and trades

    def order_delayed(self) -> bool:
        """This order is answered `delayed` (counted)."""
        if self.roll(self.current.delayed_rate):
            self.count("delayed_orders")
            return True
        return False

    def delayed_unmatched(self) -> bool:
        """This delayed order ends UNMATCHED instead of matching (counted)."""
        if self.roll(self.current.delayed_unmatched_share):
            self.count("delayed_unmatched")
            return True
        return False

    def trade_fails(self) -> bool:
        """This matched trade ends FAILED (counted)."""
        if self.roll(self.current.trade_fail_rate):
            self.count("trades_failed")
            return True
        return False

    def trade_retries(self) -> bool:
        """This matched trade goes RETRYING first (counted)."""
        if self.roll(self.current.trade_retry_rate):
            self.count("trades_retried")
            return True
        return False

    def engine_phase(self, now_ns: int | None = None) -> str:
        """RUNNING, RESTARTING (order endpoints answer 425) or POST_ONLY; restarts counted."""
        f = self.current
        every = f.engine_restart_every_seconds
        if every is None:
            return RUNNING
        elapsed = (self.clock.monotonic_ns() if now_ns is None else now_ns) - self._engine_t0
        period = int(every * 1e9)
        cycle, into = divmod(elapsed, period)
        if cycle == 0:
            return RUNNING
        if into < f.engine_restart_seconds * 1e9:
            if cycle > self._engine_cycle:
                self._engine_cycle = cycle
                self.count("engine_restarts")
            return RESTARTING
        return POST_ONLY if into < (f.engine_restart_seconds + f.post_only_seconds) * 1e9 else RUNNING

    # ------------------------------------------------------------ WebSocket

    def connection(self) -> ConnectionFaults:
        return ConnectionFaults(self)

    def malformed_frame(self, frame: Frame) -> bytes:
        kind = self.rng.randrange(3)
        if kind == 0:
            self.count("malformed_broken_json")
            return frame.data[: max(1, len(frame.data) // 2)]  # a prefix of an object is never valid JSON
        ts = str(frame.timestamp_ms)
        if kind == 1:
            self.count("malformed_unknown_event")
            return _encode({"event_type": "mystery", "market": frame.market, "timestamp": ts})
        self.count("malformed_missing_fields")
        return _encode({"event_type": "price_change", "market": frame.market, "timestamp": ts})

    def huge_frame(self) -> bytes:
        """Valid JSON of an unknown event type, exactly huge_frame_bytes long (cached)."""
        size = self.current.huge_frame_bytes
        if self._huge is None or self._huge[0] != size:
            head, tail = b'{"event_type":"padding","padding":"', b'"}'
            self._huge = (size, head + b"x" * max(0, size - len(head) - len(tail)) + tail)
        self.count("huge_frames")
        return self._huge[1]

    def disconnect_due(self, connected_ns: int, now_ns: int) -> bool:
        every = self.current.disconnect_every_seconds
        return every is not None and now_ns - connected_ns >= every * 1e9

    # ------------------------------------------------------------ HTTP

    def http_fault(self) -> web.Response | None:
        """The injected error response for this request, if any (counted)."""
        f = self.current
        if self._burst_left > 0:
            self._burst_left -= 1
            return self._5xx()
        if self.roll(f.http_429_rate):
            self.count("http_429")
            return web.json_response({"error": "Too Many Requests (injected)"}, status=429,
                                     headers={"Retry-After": str(f.retry_after_seconds)})
        if self.roll(f.http_5xx_rate):
            self._burst_left = f.http_5xx_burst - 1
            return self._5xx()
        return None

    def _5xx(self) -> web.Response:
        self.count("http_5xx")
        status = self.rng.choice((500, 502, 503))
        return web.json_response({"error": f"injected fault: HTTP {status}"}, status=status)

    def slow_delay(self) -> float:
        f = self.current
        if f.slow_response_ms > 0 and self.roll(f.slow_response_rate):
            self.count("slow_responses")
            return f.slow_response_ms / 1000
        return 0.0

    def middleware(self, exempt: frozenset[str] = EXEMPT_PATHS) -> Any:
        """aiohttp middleware applying the HTTP faults to every path not in `exempt`."""

        @web.middleware
        async def faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in exempt or request.path.startswith(EXEMPT_PREFIX):
                return await handler(request)
            response = self.http_fault()
            if response is not None:
                return response
            delay = self.slow_delay()
            if delay:
                await self.clock.sleep(delay)
            return await handler(request)

        return faults_middleware

    def get_stats(self) -> dict[str, Any]:
        f = self.current
        return {**{k: self.counters[k] for k in COUNTERS}, "engine_phase": self.engine_phase(),
                "config": msgspec.to_builtins(f)}


class ConnectionFaults:
    """One connection's fault state: its reorder slot and whether it is stalled."""

    def __init__(self, injector: FaultInjector) -> None:
        self.inj = injector
        self.stalled = False
        self.held: Frame | None = None
        self.held_ns = 0

    def shape(self, frame: Frame, now_ns: int) -> list[tuple[str, bytes]]:
        """The (kind, bytes) to send now for `frame`, faults applied."""
        if self.stalled:
            return []
        inj, f = self.inj, self.inj.current
        if frame.kind == PRICE_CHANGE and inj.roll(f.drop_price_change_rate):
            inj.count("dropped_price_changes")
            return []
        out: list[tuple[str, bytes]] = []
        if inj.roll(f.malformed_rate):
            out.append((MALFORMED, inj.malformed_frame(frame)))
        if inj.roll(f.huge_frame_rate):
            out.append((HUGE, inj.huge_frame()))
        held = self.held
        if held is not None and held.assets & frame.assets:
            if frame.timestamp_ms > held.timestamp_ms:
                out += [(frame.kind, frame.data), (held.kind, held.data)]  # the older one arrives last
                inj.count("reordered")
            else:
                # Same millisecond: no client could tell the order, so a reorder
                # here would be an undetectable corruption, not a fault: keep order.
                out += [(held.kind, held.data), (frame.kind, frame.data)]
            self.held = None
        elif held is None and frame.kind == PRICE_CHANGE and inj.roll(f.reorder_rate):
            self.held, self.held_ns = frame, now_ns
            return out
        else:
            out.append((frame.kind, frame.data))
        if inj.roll(f.duplicate_rate):
            out.append((frame.kind, frame.data))
            inj.count("duplicates")
        return out

    def release_held(self, now_ns: int, force: bool = False) -> Frame | None:
        """The held frame, if it waited too long for a newer one (then sent in order)."""
        if self.held is not None and (force or now_ns - self.held_ns >= MAX_HOLD_NS):
            held, self.held = self.held, None
            return held
        return None

    def stall(self) -> None:
        if not self.stalled:
            self.stalled = True
            self.held = None
            self.inj.count("stalls_started")
