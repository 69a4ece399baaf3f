"""The executor's circuit breaker: stop trading when execution keeps failing.

States (`CircuitState`, str values go on the bus as they are):

- CLOSED: calls pass. Trips to OPEN on `consecutive_failures_threshold`
  failures in a row, OR a failure rate >= `failure_rate_threshold` over the
  last `sliding_window_size` calls once `minimum_number_of_calls` are in the
  window (resilience4j count-based window), OR gas burnt by failed
  transactions recorded during the window's calls reaching
  `gas_cost_threshold` USDC (0 disables the gas trip).
- OPEN: calls are rejected with `CircuitOpenError` (why, and until when).
  After the open timeout (growing by `open_timeout_multiplier` per trip in a
  row, capped) it moves to HALF_OPEN by itself: `state`, `tick()` and
  `acquire()` evaluate the deadline, and `run_timer()` drives it so listeners
  fire without a call.
- HALF_OPEN: at most `half_open_max_calls` probe permits are handed out (also
  under concurrency, resilience4j #1432); CLOSED once they all succeed, OPEN
  again on any probe failure.
- FORCED_OPEN: the kill switch (`force_open(reason)`), held until `reset()`.

Money is integer micro-USDC inside: a Decimal, float or str is USDC (a float
is read through `str()`, i.e. as the literal the user wrote), an int is
already micro-USDC. Time comes from the injected clock only.

A call's outcome counts only in the state it was permitted in: a call that
started before a transition (a permit of an older generation) updates the
totals but not the state machine, so a slow pre-trip call cannot close or
re-open anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from types import TracebackType
from typing import TYPE_CHECKING, Any

from actors.domain.enums import CircuitState
from actors.domain.money import Money, format_usdc, usdc_to_micro
from actors.runtime.clock import Clock, SystemClock

if TYPE_CHECKING:
    from config.schema import CircuitBreaker as CircuitBreakerConfig

log = logging.getLogger(__name__)

_NS = 10**9
SNAPSHOT_VERSION = 1

Listener = Callable[["CircuitState", "CircuitState", str], None]


def iso_utc(ns: int | None) -> str | None:
    """Epoch ns -> ISO 8601 UTC with a Z, millisecond precision (no float on the way)."""
    if ns is None:
        return None
    dt = datetime.fromtimestamp(ns // _NS, tz=UTC).replace(microsecond=(ns % _NS) // 1000)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CircuitOpenError(Exception):
    """A call was refused: the breaker is OPEN / FORCED_OPEN, or HALF_OPEN with every probe taken."""

    def __init__(self, name: str, operation: str, state: CircuitState, reason: str, until_ns: int | None):
        self.name, self.operation, self.state = name, operation, state
        self.reason, self.until_ns = reason, until_ns
        until = f" until {iso_utc(until_ns)}" if until_ns is not None else ""
        super().__init__(f"circuit {name!r} is {state.value} ({reason}){until}: {operation!r} rejected")


class Permit:
    """One permitted call; hand it back to exactly one of on_success / on_failure / on_error / release."""

    __slots__ = ("done", "generation", "operation", "probe", "started_ns")

    def __init__(self, operation: str, generation: int, started_ns: int, probe: bool) -> None:
        self.operation, self.generation, self.started_ns = operation, generation, started_ns
        self.probe, self.done = probe, False


class _Execution:
    """`async with breaker.execute(op):` — an exception inside is an outcome and propagates."""

    __slots__ = ("_breaker", "_operation", "_permit")

    def __init__(self, breaker: CircuitBreaker, operation: str) -> None:
        self._breaker, self._operation = breaker, operation

    async def __aenter__(self) -> Permit:
        self._permit = self._breaker.acquire(self._operation)
        return self._permit

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if ev is None:
            self._breaker.on_success(self._permit)
        else:
            self._breaker.on_error(self._permit, ev)
        return False


class CircuitBreaker:
    def __init__(
        self,
        *,
        consecutive_failures_threshold: int = 3,
        failure_rate_threshold: float = 0.5,
        sliding_window_size: int = 20,
        minimum_number_of_calls: int = 10,
        gas_cost_threshold: Money = Decimal("2.0"),
        open_timeout_seconds: float = 60.0,
        half_open_max_calls: int = 3,
        slow_call_threshold_seconds: float | None = None,
        open_timeout_multiplier: float = 1.0,
        max_open_timeout_seconds: float = 600.0,
        ignore_exceptions: Iterable[type[BaseException]] = (),
        ignore_predicate: Callable[[BaseException], bool] | None = None,
        listeners: Iterable[Listener] = (),
        clock: Clock | None = None,
        name: str = "executor",
    ) -> None:
        self.name = name
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._ignore_types = tuple(ignore_exceptions)
        self._ignore_predicate = ignore_predicate
        self._listeners: list[Listener] = list(listeners)
        self._window: deque[bool] = deque()
        self._configure(
            consecutive_failures_threshold, failure_rate_threshold, sliding_window_size,
            minimum_number_of_calls, gas_cost_threshold, open_timeout_seconds, half_open_max_calls,
            slow_call_threshold_seconds, open_timeout_multiplier, max_open_timeout_seconds,
        )  # fmt: skip
        self._state = CircuitState.CLOSED
        self._reason = "initial"
        self._since_ns = self._clock.time_ns()
        self._deadline_mono: int | None = None
        self._until_ns: int | None = None
        self._generation = 0
        self._consecutive_trips = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._reset_period()
        self._calls = self._successes = self._failures = self._ignored = self._slow = 0
        self._rejected = self._trips = self._forced = self._stale = self._listener_errors = 0
        self._gas_failed_total = self._gas_total = 0
        self._last_failure_ns: int | None = None
        self._last_failure_error: str | None = None

    @classmethod
    def from_config(
        cls, section: CircuitBreakerConfig, *, clock: Clock | None = None, **kwargs: Any
    ) -> CircuitBreaker:
        """Build from the `circuit_breaker` config section; kwargs: ignore_*, listeners, name."""
        return cls(**_config_kwargs(section), clock=clock, **kwargs)

    def update_config(self, section: CircuitBreakerConfig) -> None:
        """Hot reload: new thresholds apply at once; the state and the open deadline are kept."""
        self._configure(**_config_kwargs(section))
        if self._state is CircuitState.CLOSED:
            self._check_trip()
        elif self._state is CircuitState.HALF_OPEN and self._probe_successes >= self._half_open_max:
            self._transition(CircuitState.CLOSED, "probes succeeded (after config update)")

    def _configure(
        self, consecutive_failures_threshold: int, failure_rate_threshold: float, sliding_window_size: int,
        minimum_number_of_calls: int, gas_cost_threshold: Money, open_timeout_seconds: float,
        half_open_max_calls: int, slow_call_threshold_seconds: float | None,
        open_timeout_multiplier: float, max_open_timeout_seconds: float,
    ) -> None:  # fmt: skip
        counts = (consecutive_failures_threshold, sliding_window_size, minimum_number_of_calls)
        if min(*counts, half_open_max_calls) < 1:
            raise ValueError("counts and thresholds must be >= 1")
        if not 0 < failure_rate_threshold <= 1:
            raise ValueError("failure_rate_threshold must be in (0, 1]")
        if open_timeout_seconds <= 0 or open_timeout_multiplier < 1:
            raise ValueError("open_timeout_seconds must be > 0 and open_timeout_multiplier >= 1")
        gas = usdc_to_micro(gas_cost_threshold)
        if gas < 0:
            raise ValueError("gas_cost_threshold must be >= 0")
        self._consecutive_threshold = consecutive_failures_threshold
        # Exact ratio of the literal written (0.5 -> 1/2), compared in integers: no float edge.
        rate = Fraction(str(failure_rate_threshold))
        self._rate_num, self._rate_den = rate.numerator, rate.denominator
        self._rate_float = float(failure_rate_threshold)
        # resilience4j caps the minimum number of calls at the window size.
        self._min_calls = min(minimum_number_of_calls, sliding_window_size)
        self._gas_threshold = gas
        self._open_ns = int(open_timeout_seconds * _NS)
        self._half_open_max = half_open_max_calls
        self._slow_ns = int(slow_call_threshold_seconds * _NS) if slow_call_threshold_seconds else None
        self._multiplier = float(open_timeout_multiplier)
        self._max_open_ns = max(int(max_open_timeout_seconds * _NS), self._open_ns)
        if self._window.maxlen != sliding_window_size:
            self._window = deque(self._window, maxlen=sliding_window_size)  # keeps the newest
            self._window_failures = sum(self._window)

    # ----- state -----

    @property
    def state(self) -> CircuitState:
        """The current state; an OPEN whose timeout has passed becomes HALF_OPEN here."""
        return self._refresh()

    def tick(self) -> CircuitState:
        """Evaluate the open deadline now (for owners that poll instead of running `run_timer`)."""
        return self._refresh()

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def since_ns(self) -> int:
        """Wall time (epoch ns) of the last transition."""
        return self._since_ns

    @property
    def open_until_ns(self) -> int | None:
        """Wall time (epoch ns) when OPEN ends; None unless OPEN."""
        return self._until_ns

    def add_listener(self, listener: Listener) -> None:
        """`listener(old, new, reason)` is called synchronously on every transition."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    async def run_timer(self) -> None:
        """Move OPEN -> HALF_OPEN when the open timeout passes, on the injected clock.

        Run it as a task for the owner's lifetime and cancel it to stop. With a
        TestClock, `advance()` past the deadline and one loop iteration make the
        listeners fire. A deadline moved earlier while it sleeps (only `restore()`
        does that) is still honoured by `state` / `acquire()`.
        """
        loop = asyncio.get_running_loop()
        while True:
            self._refresh()
            if self._state is CircuitState.OPEN and self._deadline_mono is not None:
                await self._clock.sleep((self._deadline_mono - self._clock.monotonic_ns()) / _NS)
            else:
                self._wakeup = loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None

    def force_open(self, reason: str) -> None:
        """The kill switch: FORCED_OPEN until `reset()`; no timer ends it."""
        self._forced += 1
        self._transition(CircuitState.FORCED_OPEN, f"forced: {reason}")

    def reset(self, reason: str = "manual reset") -> None:
        """Back to CLOSED with an empty window (also ends FORCED_OPEN)."""
        self._transition(CircuitState.CLOSED, reason)

    # ----- the synchronous core that execute() wraps -----

    def execute(self, operation: str = "call") -> _Execution:
        return _Execution(self, operation)

    def acquire(self, operation: str = "call") -> Permit:
        """A permit for one call, or CircuitOpenError. Never awaits, so it is atomic under asyncio."""
        state = self._refresh()
        if state is CircuitState.CLOSED:
            probe = False
        elif state is CircuitState.HALF_OPEN and self._probes_issued < self._half_open_max:
            self._probes_issued += 1
            probe = True
        else:
            self._rejected += 1
            reason = self._reason
            if state is CircuitState.HALF_OPEN:
                reason = f"all {self._half_open_max} probe calls taken"
            raise CircuitOpenError(self.name, operation, state, reason, self._until_ns)
        self._calls += 1
        return Permit(operation, self._generation, self._clock.monotonic_ns(), probe)

    def on_success(self, permit: Permit) -> None:
        """The call succeeded; slower than the slow-call threshold counts as a failure."""
        if self._slow_ns is not None and self._clock.monotonic_ns() - permit.started_ns >= self._slow_ns:
            self._slow += 1
            self.on_failure(permit, "slow_call")
            return
        self._finish(permit)
        self._successes += 1
        if permit.generation != self._generation:
            self._stale += 1
        elif self._state is CircuitState.CLOSED:
            self._push(False)
            self._consecutive = 0
            self._calls_seen += 1
            self._check_trip()  # a success can complete the minimum number of calls (resilience4j)
        elif self._state is CircuitState.HALF_OPEN:
            self._probe_successes += 1
            if self._probe_successes >= self._half_open_max:
                self._transition(CircuitState.CLOSED, f"{self._probe_successes} probe calls succeeded")

    def on_failure(self, permit: Permit, error: BaseException | str | None = None) -> None:
        """The call failed (unconditionally; `on_error` applies the ignore rules first)."""
        self._finish(permit)
        self._failures += 1
        self._last_failure_ns = self._clock.time_ns()
        self._last_failure_error = error if isinstance(error, str | None) else type(error).__name__
        if permit.generation != self._generation:
            self._stale += 1
        elif self._state is CircuitState.CLOSED:
            self._push(True)
            self._consecutive += 1
            self._calls_seen += 1
            self._check_trip()
        elif self._state is CircuitState.HALF_OPEN:
            self._transition(CircuitState.OPEN, f"probe call failed: {self._last_failure_error}")

    def on_error(self, permit: Permit, error: BaseException) -> None:
        """An exception ended the call: ignored (see `is_ignored`) or a failure."""
        if self.is_ignored(error):
            self.release(permit)
        else:
            self.on_failure(permit, error)

    def release(self, permit: Permit) -> None:
        """The call's outcome does not count (ignored error, cancellation): give the permit back."""
        self._finish(permit)
        self._ignored += 1
        if permit.probe and permit.generation == self._generation:
            self._probes_issued -= 1

    def is_ignored(self, error: BaseException) -> bool:
        """Not a dependency failure: cancellation / BaseException, or the configured types / predicate."""
        if not isinstance(error, Exception) or isinstance(error, self._ignore_types):
            return True
        return self._ignore_predicate is not None and bool(self._ignore_predicate(error))

    def record_gas_cost(self, amount: Money, *, failed: bool = True) -> None:
        """Gas paid by a transaction (USDC as Decimal, or int micro-USDC); failed gas can trip."""
        micro = usdc_to_micro(amount)
        if micro < 0:
            raise ValueError("gas cost cannot be negative")
        self._gas_total += micro
        if not failed:
            return
        self._gas_failed_total += micro
        if self._state in (CircuitState.CLOSED, CircuitState.HALF_OPEN):
            # Tagged with the window position so it slides out with the calls it belongs to.
            self._gas.append((self._calls_seen, micro))
            self._gas_window += micro
            self._check_trip()

    # ----- internals -----

    def _push(self, failed: bool) -> None:
        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._window_failures -= 1  # the oldest failure slides out
        window.append(failed)
        self._window_failures += failed

    def _finish(self, permit: Permit) -> None:
        if permit.done:
            raise RuntimeError("permit already completed")
        permit.done = True

    def _trip_reason(self) -> str | None:
        gas = self._gas
        while gas and gas[0][0] < self._calls_seen - (self._window.maxlen or 0):
            self._gas_window -= gas.popleft()[1]
        if self._gas_threshold and self._gas_window >= self._gas_threshold:
            return f"gas burnt {format_usdc(self._gas_window)} >= {format_usdc(self._gas_threshold)} USDC"
        if self._state is not CircuitState.CLOSED:
            return None
        if self._consecutive >= self._consecutive_threshold:
            return f"{self._consecutive} consecutive failures"
        n, failures = len(self._window), self._window_failures
        if n >= self._min_calls and failures * self._rate_den >= self._rate_num * n:
            return f"failure rate {failures}/{n} >= {self._rate_float:g}"
        return None

    def _check_trip(self) -> None:
        reason = self._trip_reason()
        if reason is not None:
            self._transition(CircuitState.OPEN, reason)

    def _refresh(self) -> CircuitState:
        if (
            self._state is CircuitState.OPEN
            and self._deadline_mono is not None
            and self._clock.monotonic_ns() >= self._deadline_mono
        ):
            self._transition(CircuitState.HALF_OPEN, "open timeout elapsed")
        return self._state

    def _reset_period(self) -> None:
        self._window.clear()
        self._window_failures = 0
        self._consecutive = 0
        self._calls_seen = 0
        self._gas: deque[tuple[int, int]] = deque()
        self._gas_window = 0
        self._probes_issued = 0
        self._probe_successes = 0

    def _open_timeout_ns(self) -> int:
        if self._multiplier == 1 or self._consecutive_trips <= 1:
            return self._open_ns
        try:
            grown = self._open_ns * self._multiplier ** (self._consecutive_trips - 1)
        except OverflowError:
            return self._max_open_ns
        return min(int(grown), self._max_open_ns)

    def _transition(self, new: CircuitState, reason: str, open_for_ns: int | None = None) -> None:
        old = self._state
        self._state, self._reason = new, reason
        self._since_ns = self._clock.time_ns()
        self._generation += 1
        self._deadline_mono = self._until_ns = None
        if new is CircuitState.OPEN:
            if open_for_ns is None:
                self._trips += 1
                self._consecutive_trips += 1
                open_for_ns = self._open_timeout_ns()
            self._deadline_mono = self._clock.monotonic_ns() + open_for_ns
            self._until_ns = self._since_ns + open_for_ns
        elif new is CircuitState.CLOSED:
            self._consecutive_trips = 0
        if new in (CircuitState.CLOSED, CircuitState.HALF_OPEN):
            # OPEN keeps the window that tripped it, so the stats show why.
            self._reset_period()
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        for listener in list(self._listeners):
            try:
                listener(old, new, reason)
            except Exception:
                self._listener_errors += 1
                log.exception("circuit breaker listener failed on %s -> %s", old, new)

    # ----- persistence and stats -----

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON/msgpack-safe state; times are wall-clock ns so it survives a restart."""
        self._refresh()
        return {
            "version": SNAPSHOT_VERSION, "name": self.name, "state": self._state.value,
            "reason": self._reason, "since_ns": self._since_ns, "open_until_ns": self._until_ns,
            "consecutive_trips": self._consecutive_trips, "window": [int(f) for f in self._window],
            "consecutive_failures": self._consecutive, "calls_seen": self._calls_seen,
            "gas_window": [[tag, micro] for tag, micro in self._gas],
            "trips": self._trips, "saved_at_ns": self._clock.time_ns(),
        }  # fmt: skip

    def restore(self, snap: dict[str, Any]) -> None:
        """Load a `snapshot()`; a restart never closes an open breaker.

        OPEN stays OPEN for what is left of its timeout (HALF_OPEN if it ran out
        while down); FORCED_OPEN stays forced; HALF_OPEN starts fresh probes;
        CLOSED gets its window back. Listeners fire if the state changes.
        """
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown breaker snapshot version {snap.get('version')!r}")
        state, reason = CircuitState(snap["state"]), str(snap["reason"])
        self._trips = int(snap.get("trips", 0))
        self._consecutive_trips = int(snap["consecutive_trips"])
        if state is CircuitState.OPEN:
            left = (snap["open_until_ns"] or 0) - self._clock.time_ns()
            if left > 0:
                # A wall clock set back while down must not make the wait longer than any timeout.
                self._transition(state, f"restored: {reason}", open_for_ns=min(left, self._max_open_ns))
            else:
                self._transition(CircuitState.HALF_OPEN, "restored: open timeout elapsed while down")
        elif state is CircuitState.CLOSED:
            if self._state is not CircuitState.CLOSED:
                self._transition(state, f"restored: {reason}")
            self._reset_period()
            self._window.extend(bool(f) for f in snap["window"])
            self._window_failures = sum(self._window)
            self._consecutive = int(snap["consecutive_failures"])
            self._calls_seen = int(snap["calls_seen"])
            self._gas.extend((int(t), int(m)) for t, m in snap["gas_window"])
            self._gas_window = sum(m for _, m in self._gas)
            self._check_trip()
        else:
            self._transition(state, f"restored: {reason}")

    def get_stats(self) -> dict[str, Any]:
        state = self._refresh()
        n, failures = len(self._window), self._window_failures
        return {
            "name": self.name, "state": state.value, "reason": self._reason,
            "since": iso_utc(self._since_ns), "open_until": iso_utc(self._until_ns),
            "call_count": self._calls, "success_count": self._successes,
            "failure_count": self._failures, "ignored_count": self._ignored,
            "slow_call_count": self._slow, "rejected_calls": self._rejected,
            "stale_outcomes": self._stale, "consecutive_failures": self._consecutive,
            "failure_rate": failures / n if n else 0.0, "window_calls": n, "window_failures": failures,
            "last_failure_time": iso_utc(self._last_failure_ns), "last_failure_error": self._last_failure_error,
            "trips": self._trips, "forced_opens": self._forced, "consecutive_trips": self._consecutive_trips,
            "open_timeout_seconds": self._open_timeout_ns() / _NS,
            "half_open_probes_in_flight": self._probes_issued - self._probe_successes
            if state is CircuitState.HALF_OPEN else 0,
            "gas_burnt_window_usdc": format_usdc(self._gas_window),
            "gas_cost_threshold_usdc": format_usdc(self._gas_threshold),
            "gas_burnt_failed_total_usdc": format_usdc(self._gas_failed_total),
            "gas_spent_total_usdc": format_usdc(self._gas_total),
            "listener_errors": self._listener_errors,
        }  # fmt: skip


_CONFIG_FIELDS = (
    "consecutive_failures_threshold", "failure_rate_threshold", "sliding_window_size",
    "minimum_number_of_calls", "gas_cost_threshold", "open_timeout_seconds", "half_open_max_calls",
    "slow_call_threshold_seconds", "open_timeout_multiplier", "max_open_timeout_seconds",
)  # heartbeat_* keys belong to the broadcast, not to the breaker.


def _config_kwargs(section: CircuitBreakerConfig) -> dict[str, Any]:
    return {field: getattr(section, field) for field in _CONFIG_FIELDS}
