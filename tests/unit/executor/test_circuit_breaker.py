import asyncio
import json
from collections import deque
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from actors.domain.enums import CircuitState
from actors.domain.money import format_usdc, usdc_to_micro
from actors.executor.circuit_breaker import CircuitBreaker, CircuitOpenError, iso_utc
from actors.runtime.clock import TestClock
from config.schema import CircuitBreaker as CircuitBreakerConfig

pytestmark = pytest.mark.unit


class Boom(Exception):
    pass


class StaleSignal(Exception):
    pass


def make(clock: TestClock | None = None, **overrides) -> tuple[CircuitBreaker, list[tuple[str, str, str]]]:
    events: list[tuple[str, str, str]] = []
    params = dict(
        consecutive_failures_threshold=3, failure_rate_threshold=0.5, sliding_window_size=10,
        minimum_number_of_calls=4, gas_cost_threshold=Decimal("2"), open_timeout_seconds=60,
        half_open_max_calls=2,
    )  # fmt: skip
    params.update(overrides)
    breaker = CircuitBreaker(
        **params, clock=clock or TestClock(), listeners=[lambda old, new, why: events.append((old, new, why))]
    )
    return breaker, events


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.on_failure(breaker.acquire("trade"), Boom())


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.on_success(breaker.acquire("trade"))


def trip(breaker: CircuitBreaker) -> None:
    fail(breaker, 3)
    assert breaker.state is CircuitState.OPEN


# ----- trip conditions -----


def test_state_values_are_their_upper_case_names():
    assert [s.value for s in CircuitState] == ["CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN"]
    assert isinstance(CircuitState.OPEN, str) and f"{CircuitState.OPEN}" == "OPEN"


def test_trips_on_consecutive_failures_and_rejects_with_reason_and_deadline():
    clock = TestClock()
    breaker, events = make(clock)
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED

    fail(breaker)

    assert breaker.state is CircuitState.OPEN
    assert events == [("CLOSED", "OPEN", "3 consecutive failures")]
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire("trade")
    assert info.value.state is CircuitState.OPEN
    assert info.value.until_ns == clock.time_ns() + 60 * 10**9
    assert "3 consecutive failures" in str(info.value) and iso_utc(info.value.until_ns) in str(info.value)


def test_a_success_resets_the_consecutive_count():
    breaker, _ = make(minimum_number_of_calls=10)
    fail(breaker, 2)
    succeed(breaker)
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_stats()["consecutive_failures"] == 2


def test_failure_rate_trips_only_once_the_minimum_number_of_calls_is_reached():
    breaker, events = make(consecutive_failures_threshold=100, minimum_number_of_calls=4)
    fail(breaker)
    succeed(breaker)
    fail(breaker)
    assert breaker.state is CircuitState.CLOSED  # 2/3 but only 3 calls

    succeed(breaker)  # 2/4 = 0.5 >= 0.5

    assert breaker.state is CircuitState.OPEN
    assert events[-1][2] == "failure rate 2/4 >= 0.5"


def test_failure_rate_window_slides_old_failures_out():
    breaker, _ = make(consecutive_failures_threshold=100, sliding_window_size=4, minimum_number_of_calls=4)
    fail(breaker)
    succeed(breaker, 2)  # F S S -> 1/3
    succeed(breaker)  # 1/4 < 0.5
    succeed(breaker)  # the failure slid out: 0/4
    fail(breaker)  # 1/4
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_stats()["failure_rate"] == 0.25


def test_minimum_number_of_calls_is_capped_at_the_window_size():
    breaker, _ = make(consecutive_failures_threshold=100, sliding_window_size=2, minimum_number_of_calls=50)
    succeed(breaker)
    fail(breaker)
    assert breaker.state is CircuitState.OPEN


def test_gas_burnt_by_failed_transactions_trips_at_the_threshold():
    breaker, events = make(gas_cost_threshold=2.0)
    breaker.record_gas_cost(Decimal("1.5"))
    breaker.record_gas_cost(Decimal("9"), failed=False)  # a successful tx's gas never trips
    assert breaker.state is CircuitState.CLOSED

    breaker.record_gas_cost(500_000)  # int = micro-USDC

    assert breaker.state is CircuitState.OPEN
    assert events[-1][2] == "gas burnt 2.000000 >= 2.000000 USDC"
    stats = breaker.get_stats()
    assert stats["gas_burnt_failed_total_usdc"] == "2.000000"
    assert stats["gas_spent_total_usdc"] == "11.000000"


@pytest.mark.parametrize(("calls_after", "state"), [(3, CircuitState.OPEN), (4, CircuitState.CLOSED)])
def test_gas_slides_out_of_the_window_with_its_calls(calls_after: int, state: CircuitState):
    # Gas recorded during a call belongs to that call: with a window of 3 it stays
    # for that call and the next two, and is gone once a fourth call is counted.
    breaker, _ = make(sliding_window_size=3, consecutive_failures_threshold=100, minimum_number_of_calls=3)
    breaker.record_gas_cost(Decimal("1.5"))
    succeed(breaker, calls_after)

    breaker.record_gas_cost(Decimal("0.5"))

    assert breaker.state is state


def test_zero_gas_threshold_disables_the_gas_trip():
    breaker, _ = make(gas_cost_threshold=Decimal("0"))
    breaker.record_gas_cost(Decimal("1000"))
    assert breaker.state is CircuitState.CLOSED


def test_money_is_never_a_float_inside():
    assert usdc_to_micro(Decimal("2.0")) == 2_000_000
    assert usdc_to_micro(2.0) == 2_000_000
    assert usdc_to_micro(0.1) == 100_000  # through str(): the literal, not the binary value
    assert usdc_to_micro(7) == 7
    assert usdc_to_micro("0.0000005") == 1  # half-up
    assert format_usdc(-1_500_000) == "-1.500000"
    with pytest.raises(TypeError):
        usdc_to_micro(True)
    with pytest.raises(TypeError):
        usdc_to_micro(Decimal("NaN"))
    with pytest.raises(ValueError):
        make()[0].record_gas_cost(Decimal("-1"))


# ----- open -> half-open -> closed -----


def test_open_becomes_half_open_after_the_timeout_on_the_clock():
    clock = TestClock()
    breaker, events = make(clock)
    trip(breaker)
    clock.advance(59.999)
    assert breaker.state is CircuitState.OPEN

    clock.advance(0.001)

    assert breaker.tick() is CircuitState.HALF_OPEN
    assert events[-1] == ("OPEN", "HALF_OPEN", "open timeout elapsed")


async def test_run_timer_fires_listeners_without_a_call():
    clock = TestClock()
    breaker, events = make(clock)
    timer = asyncio.create_task(breaker.run_timer())
    await asyncio.sleep(0)
    trip(breaker)
    await asyncio.sleep(0)  # the timer sees OPEN and sleeps on the clock

    clock.advance(60)
    await asyncio.sleep(0)

    assert events[-1] == ("OPEN", "HALF_OPEN", "open timeout elapsed")
    timer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await timer


async def test_run_timer_follows_repeated_trips():
    clock = TestClock()
    breaker, events = make(clock)
    timer = asyncio.create_task(breaker.run_timer())
    for _ in range(3):
        trip(breaker)
        await asyncio.sleep(0)
        clock.advance(60)
        await asyncio.sleep(0)
        assert events[-1][1] == "HALF_OPEN"
        fail(breaker)  # probe fails: OPEN again
        await asyncio.sleep(0)
        clock.advance(60)
        await asyncio.sleep(0)
        assert events[-1][1] == "HALF_OPEN"
        succeed(breaker, 2)
        assert breaker.state is CircuitState.CLOSED
    timer.cancel()


def test_half_open_closes_after_all_probes_succeed_and_rejects_extra_probes():
    clock = TestClock()
    breaker, events = make(clock)
    trip(breaker)
    clock.advance(60)
    first, second = breaker.acquire(), breaker.acquire()
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.state is CircuitState.HALF_OPEN and "probe" in info.value.reason

    breaker.on_success(first)
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.on_success(second)

    assert breaker.state is CircuitState.CLOSED
    assert events[-1] == ("HALF_OPEN", "CLOSED", "2 probe calls succeeded")
    assert breaker.get_stats()["window_calls"] == 0  # a fresh window


def test_any_probe_failure_reopens():
    clock = TestClock()
    breaker, events = make(clock)
    trip(breaker)
    clock.advance(60)
    probe, other = breaker.acquire(), breaker.acquire()
    breaker.on_success(probe)

    breaker.on_failure(other, Boom())

    assert breaker.state is CircuitState.OPEN
    assert events[-1] == ("HALF_OPEN", "OPEN", "probe call failed: Boom")


async def test_concurrent_calls_beyond_the_probe_limit_are_rejected():
    clock = TestClock()
    breaker, _ = make(clock, half_open_max_calls=3)
    trip(breaker)
    clock.advance(60)
    gate = asyncio.Event()
    inside = 0

    async def call() -> str:
        nonlocal inside
        try:
            async with breaker.execute("trade"):
                inside += 1
                await gate.wait()
            return "ok"
        except CircuitOpenError:
            return "rejected"

    tasks = [asyncio.create_task(call()) for _ in range(10)]
    await asyncio.sleep(0)
    assert inside == 3
    gate.set()
    results = await asyncio.gather(*tasks)

    assert results.count("ok") == 3 and results.count("rejected") == 7
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_stats()["rejected_calls"] == 7


def test_open_timeout_grows_per_trip_in_a_row_and_is_capped():
    clock = TestClock()
    breaker, _ = make(clock, open_timeout_multiplier=2.0, max_open_timeout_seconds=200)
    trip(breaker)
    waits = []
    for _ in range(4):
        waits.append((breaker.open_until_ns - clock.time_ns()) / 1e9)
        clock.advance(waits[-1])
        assert breaker.state is CircuitState.HALF_OPEN
        fail(breaker)
    assert waits == [60, 120, 200, 200]

    clock.advance(200)
    succeed(breaker, 2)
    trip(breaker)
    assert (breaker.open_until_ns - clock.time_ns()) / 1e9 == 60  # closing resets the growth


# ----- what counts -----


async def test_an_exception_inside_execute_is_a_failure_and_propagates():
    breaker, _ = make()
    with pytest.raises(Boom):
        async with breaker.execute("trade"):
            raise Boom("leg rejected")
    stats = breaker.get_stats()
    assert (stats["failure_count"], stats["consecutive_failures"], stats["last_failure_error"]) == (1, 1, "Boom")


async def test_ignored_errors_do_not_count():
    breaker, _ = make(
        ignore_exceptions=(StaleSignal,), ignore_predicate=lambda e: isinstance(e, Boom) and "benign" in str(e)
    )
    for error in (StaleSignal(), Boom("benign"), asyncio.CancelledError()):
        with pytest.raises(type(error)):
            async with breaker.execute("trade"):
                raise error
    stats = breaker.get_stats()
    assert (stats["failure_count"], stats["ignored_count"], stats["window_calls"]) == (0, 3, 0)


def test_an_ignored_probe_gives_its_permit_back():
    clock = TestClock()
    breaker, _ = make(clock, half_open_max_calls=1, ignore_exceptions=(StaleSignal,))
    trip(breaker)
    clock.advance(60)
    breaker.on_error(breaker.acquire(), StaleSignal())

    probe = breaker.acquire()
    breaker.on_success(probe)

    assert breaker.state is CircuitState.CLOSED


async def test_slow_calls_count_as_failures():
    clock = TestClock()
    breaker, _ = make(clock, slow_call_threshold_seconds=2.0, consecutive_failures_threshold=1)
    async with breaker.execute("trade"):
        clock.advance(1.9)
    assert breaker.state is CircuitState.CLOSED

    async with breaker.execute("trade"):
        clock.advance(2.0)

    assert breaker.state is CircuitState.OPEN
    assert breaker.get_stats()["slow_call_count"] == 1


def test_a_call_permitted_before_a_transition_does_not_move_the_new_state():
    clock = TestClock()
    breaker, _ = make(clock)
    old = breaker.acquire()
    trip(breaker)
    clock.advance(60)
    assert breaker.state is CircuitState.HALF_OPEN

    breaker.on_failure(old, Boom())

    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.get_stats()["stale_outcomes"] == 1


def test_a_permit_completes_once():
    breaker, _ = make()
    permit = breaker.acquire()
    breaker.on_success(permit)
    with pytest.raises(RuntimeError):
        breaker.on_failure(permit)


# ----- manual control, listeners -----


def test_force_open_holds_until_reset():
    clock = TestClock()
    breaker, events = make(clock)
    breaker.force_open("operator: venue maintenance")
    clock.advance(10_000)
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.state is CircuitState.FORCED_OPEN and info.value.until_ns is None
    assert breaker.state is CircuitState.FORCED_OPEN

    breaker.reset()

    assert breaker.state is CircuitState.CLOSED
    assert events == [
        ("CLOSED", "FORCED_OPEN", "forced: operator: venue maintenance"),
        ("FORCED_OPEN", "CLOSED", "manual reset"),
    ]


def test_a_failing_listener_is_counted_and_does_not_break_the_breaker():
    breaker, events = make()

    def broken(old: str, new: str, why: str) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    trip(breaker)
    assert events[-1][1] == "OPEN"
    assert breaker.get_stats()["listener_errors"] == 1
    breaker.remove_listener(broken)


def test_stats_have_the_seed_keys_and_iso_utc_times():
    clock = TestClock(start_ns=1_700_000_000_123_000_000)
    breaker, _ = make(clock)
    succeed(breaker)
    fail(breaker)
    stats = breaker.get_stats()
    assert {"state", "call_count", "failure_count", "consecutive_failures", "failure_rate", "last_failure_time",
            "trips", "rejected_calls"} <= stats.keys()  # fmt: skip
    assert stats["last_failure_time"] == "2023-11-14T22:13:20.123Z"
    assert (stats["call_count"], stats["failure_count"], stats["failure_rate"]) == (2, 1, 0.5)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(stats)) == stats


# ----- persistence -----


def test_snapshot_is_plain_data_and_restores_an_open_breaker_open():
    clock = TestClock()
    breaker, _ = make(clock)
    trip(breaker)
    clock.advance(20)
    snap = json.loads(json.dumps(breaker.snapshot()))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(snap)) == snap

    clock.advance(10)  # down for 10 s
    restarted, events = make(clock)
    restarted.restore(snap)

    assert restarted.state is CircuitState.OPEN
    assert events == [("CLOSED", "OPEN", "restored: 3 consecutive failures")]
    clock.advance(29.9)
    assert restarted.state is CircuitState.OPEN
    clock.advance(0.1)
    assert restarted.state is CircuitState.HALF_OPEN


def test_restore_of_an_open_whose_timeout_passed_while_down_is_half_open():
    clock = TestClock()
    breaker, _ = make(clock)
    trip(breaker)
    snap = breaker.snapshot()
    clock.advance(3600)

    restarted, events = make(clock)
    restarted.restore(snap)

    assert restarted.state is CircuitState.HALF_OPEN
    assert events == [("CLOSED", "HALF_OPEN", "restored: open timeout elapsed while down")]


def test_restore_keeps_forced_open_forced_and_a_closed_window():
    clock = TestClock()
    forced, _ = make(clock)
    forced.force_open("kill switch")
    closed, _ = make(clock)
    fail(closed, 2)
    closed.record_gas_cost(Decimal("1.9"))

    a, _ = make(clock)
    a.restore(forced.snapshot())
    b, _ = make(clock)
    b.restore(closed.snapshot())
    clock.advance(1e6)

    assert a.state is CircuitState.FORCED_OPEN
    assert b.state is CircuitState.CLOSED
    fail(b)  # the third failure in a row, across the restart
    assert b.state is CircuitState.OPEN


def test_restore_caps_an_open_deadline_pushed_out_by_a_clock_set_back():
    clock = TestClock()
    breaker, _ = make(clock, max_open_timeout_seconds=120)
    trip(breaker)
    snap = breaker.snapshot() | {"open_until_ns": clock.time_ns() + 10**6 * 10**9}

    restarted, _ = make(clock, max_open_timeout_seconds=120)
    restarted.restore(snap)
    clock.advance(120)

    assert restarted.state is CircuitState.HALF_OPEN


def test_restore_rejects_an_unknown_snapshot_version():
    breaker, _ = make()
    with pytest.raises(ValueError):
        breaker.restore({"version": 99})


# ----- config -----


def test_from_config_and_hot_reload_keep_the_state():
    clock = TestClock()
    section = CircuitBreakerConfig(consecutive_failures_threshold=5, open_timeout_seconds=30)
    breaker = CircuitBreaker.from_config(section, clock=clock, name="exec")
    fail(breaker, 4)
    assert breaker.state is CircuitState.CLOSED

    breaker.update_config(CircuitBreakerConfig(consecutive_failures_threshold=4, open_timeout_seconds=30))

    assert breaker.state is CircuitState.OPEN  # the new threshold holds already
    breaker.update_config(CircuitBreakerConfig(consecutive_failures_threshold=9, open_timeout_seconds=300))
    assert breaker.state is CircuitState.OPEN
    clock.advance(30)
    assert breaker.state is CircuitState.HALF_OPEN  # the running timeout is kept
    assert breaker.get_stats()["name"] == "exec"


def test_invalid_thresholds_are_rejected():
    with pytest.raises(ValueError):
        CircuitBreaker(failure_rate_threshold=1.5)
    with pytest.raises(ValueError):
        CircuitBreaker(half_open_max_calls=0)


# ----- properties -----


OUTCOMES = st.sampled_from(["failure", "success", "ignored"])


class BreakerMachine(RuleBasedStateMachine):
    """A model of the trip conditions, fed the same calls; the breaker must agree with it."""

    @initialize(
        consecutive=st.integers(1, 5),
        rate=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
        window=st.integers(1, 8),
        min_calls=st.integers(1, 8),
        gas_micro=st.integers(0, 8).map(lambda k: k * 250_000),  # coarse: sums hit the threshold exactly
        half=st.integers(1, 3),
    )
    def setup(self, consecutive: int, rate: float, window: int, min_calls: int, gas_micro: int, half: int) -> None:
        self.clock = TestClock()
        self.cfg = (consecutive, Fraction(str(rate)), window, min(min_calls, window), gas_micro, half)
        self.breaker = CircuitBreaker(
            consecutive_failures_threshold=consecutive, failure_rate_threshold=rate, sliding_window_size=window,
            minimum_number_of_calls=min_calls, gas_cost_threshold=gas_micro, open_timeout_seconds=10,
            half_open_max_calls=half, clock=self.clock, listeners=[self.on_transition],
        )  # fmt: skip
        self.epoch = 0
        self.phase = CircuitState.CLOSED
        self.outstanding: list[tuple[object, int]] = []
        self.probes_out = 0
        self.probe_successes = 0
        self.reset_model()

    def reset_model(self) -> None:
        self.window: deque[bool] = deque(maxlen=self.cfg[2])
        self.consecutive = 0
        self.calls_seen = 0
        self.gas_log: list[tuple[int, int]] = []

    def on_transition(self, old: CircuitState, new: CircuitState, reason: str) -> None:
        self.epoch += 1
        self.phase = new
        self.probes_out = self.probe_successes = 0
        if new in (CircuitState.CLOSED, CircuitState.HALF_OPEN):
            self.reset_model()

    def conditions_hold(self) -> bool:
        consecutive, rate, size, min_calls, gas_threshold, _ = self.cfg
        gas = sum(m for tag, m in self.gas_log if tag >= self.calls_seen - size)
        if gas_threshold and gas >= gas_threshold and self.phase is not CircuitState.FORCED_OPEN:
            return True
        if self.phase is not CircuitState.CLOSED:
            return False
        n, failures = len(self.window), sum(self.window)
        return self.consecutive >= consecutive or (n >= min_calls and failures >= rate * n)

    def _acquire(self) -> object | None:
        state = self.breaker.state
        half = self.cfg[5]
        expect = state is CircuitState.CLOSED or (state is CircuitState.HALF_OPEN and self.probes_out < half)
        try:
            permit = self.breaker.acquire()
        except CircuitOpenError:
            assert not expect
            return None
        assert expect and permit.probe == (state is CircuitState.HALF_OPEN)
        self.probes_out += permit.probe
        return permit

    def _complete(self, permit: object, epoch: int, outcome: str) -> None:
        current = epoch == self.epoch
        if current and self.phase is CircuitState.CLOSED and outcome != "ignored":
            self.window.append(outcome == "failure")
            self.consecutive = self.consecutive + 1 if outcome == "failure" else 0
            self.calls_seen += 1
        if current and outcome == "ignored" and permit.probe:
            self.probes_out -= 1
        probing = current and self.phase is CircuitState.HALF_OPEN
        if outcome == "success":
            self.breaker.on_success(permit)
        elif outcome == "failure":
            self.breaker.on_failure(permit, Boom())
        else:
            self.breaker.on_error(permit, asyncio.CancelledError())
        if probing and outcome == "failure":
            assert self.phase is CircuitState.OPEN  # any probe failure re-opens
        if probing and outcome == "success":
            self.probe_successes += 1
            if self.probe_successes == self.cfg[5]:
                assert self.phase is CircuitState.CLOSED  # closes once every probe succeeded

    @rule(outcomes=st.lists(OUTCOMES, min_size=1, max_size=6))
    def calls(self, outcomes: list[str]) -> None:
        for outcome in outcomes:
            permit = self._acquire()
            if permit is not None:
                self._complete(permit, self.epoch, outcome)

    @rule(n=st.integers(1, 4))
    def start_calls(self, n: int) -> None:
        for _ in range(n):
            permit = self._acquire()
            if permit is not None:
                self.outstanding.append((permit, self.epoch))

    @precondition(lambda self: self.outstanding)
    @rule(index=st.integers(0, 100), outcome=OUTCOMES)
    def finish_call(self, index: int, outcome: str) -> None:
        permit, epoch = self.outstanding.pop(index % len(self.outstanding))
        self._complete(permit, epoch, outcome)

    @rule(micro=st.integers(0, 6).map(lambda k: k * 250_000), failed=st.booleans())
    def gas(self, micro: int, failed: bool) -> None:
        if failed and self.phase in (CircuitState.CLOSED, CircuitState.HALF_OPEN):
            self.gas_log.append((self.calls_seen, micro))
        self.breaker.record_gas_cost(micro, failed=failed)

    @rule(seconds=st.sampled_from([0.5, 5, 10, 30]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(["force_open", "reset"]))
    def manual(self, action: str) -> None:
        if action == "force_open":
            self.breaker.force_open("test")
        else:
            self.breaker.reset()

    @invariant()
    def open_whenever_the_trip_conditions_hold(self) -> None:
        state = self.breaker.state
        if self.conditions_hold():
            assert state is CircuitState.OPEN
        if state is CircuitState.CLOSED:
            assert not self.conditions_hold()

    @invariant()
    def never_more_probes_than_allowed(self) -> None:
        probes = sum(1 for p, e in self.outstanding if e == self.epoch and p.probe)
        assert probes <= self.cfg[5]
        assert self.probes_out <= self.cfg[5]


BreakerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
test_breaker_state_machine = BreakerMachine.TestCase
