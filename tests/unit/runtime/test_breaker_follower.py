import pytest

from actors.domain.enums import UNKNOWN, CircuitState
from actors.runtime.breaker_follower import BreakerFollower
from actors.runtime.clock import TestClock
from bus.codec import Stamper
from bus.messages import BreakerState

pytestmark = pytest.mark.unit


def heartbeat(stamper, state, reason=""):
    return stamper.stamp(b"breaker.state", BreakerState(state=state, reason=reason, since_ns=1))


def test_unknown_until_first_heartbeat_then_follows_and_goes_unknown_when_silent():
    clock = TestClock()
    f = BreakerFollower(clock, heartbeat_interval_seconds=1.0, missed_heartbeats=3)
    ex = Stamper("executor", clock)
    assert f.state == UNKNOWN and not f.trading_allowed

    f.on_message(heartbeat(ex, CircuitState.CLOSED))
    assert f.state == CircuitState.CLOSED and f.trading_allowed

    f.on_message(heartbeat(ex, CircuitState.OPEN, "3 consecutive failures"))
    assert f.state == CircuitState.OPEN and f.reason == "3 consecutive failures" and not f.trading_allowed

    clock.advance(2.9)
    assert f.state == CircuitState.OPEN
    clock.advance(0.2)
    assert f.state == UNKNOWN and "silent" in f.reason
    assert f.get_stats()["transitions"] == 2


def test_half_open_allows_trading_forced_open_does_not():
    clock = TestClock()
    f = BreakerFollower(clock)
    ex = Stamper("executor", clock)
    f.on_message(heartbeat(ex, CircuitState.HALF_OPEN))
    assert f.trading_allowed
    f.on_message(heartbeat(ex, CircuitState.FORCED_OPEN, "operator halt"))
    assert not f.trading_allowed
