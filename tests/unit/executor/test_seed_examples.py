"""The seed's usage examples, written the way a user of the seed API writes them.

Only the import paths differ from the seed. No clock is injected here (as in
the seed); nothing below depends on what time it is.
"""

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from actors.domain.enums import CircuitState
from actors.executor.circuit_breaker import CircuitBreaker, CircuitOpenError
from actors.executor.idempotency import IdempotencyStore
from actors.executor.retry_policy import RetryPolicy

pytestmark = pytest.mark.unit


async def test_seed_circuit_breaker_example():
    breaker = CircuitBreaker(
        consecutive_failures_threshold=3,
        failure_rate_threshold=0.5,
        open_timeout_seconds=60,
        half_open_max_calls=3,
        gas_cost_threshold=2.0,
    )

    async with breaker.execute("trade"):
        pass  # execute the trade

    stats = breaker.get_stats()
    assert breaker.state == CircuitState.CLOSED
    assert stats["state"] == "CLOSED"
    assert stats["call_count"] == 1
    assert stats["failure_count"] == 0
    assert stats["consecutive_failures"] == 0
    assert stats["failure_rate"] == 0.0
    assert stats["last_failure_time"] is None


async def test_seed_circuit_breaker_opens_after_three_failures():
    breaker = CircuitBreaker(
        consecutive_failures_threshold=3,
        failure_rate_threshold=0.5,
        open_timeout_seconds=60,
        half_open_max_calls=3,
        gas_cost_threshold=2.0,
    )

    for _ in range(3):
        with pytest.raises(RuntimeError):
            async with breaker.execute("trade"):
                raise RuntimeError("trade failed")

    assert breaker.state == CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        async with breaker.execute("trade"):
            pass
    stats = breaker.get_stats()
    assert stats["failure_count"] == 3 and stats["consecutive_failures"] == 3
    assert stats["trips"] == 1 and stats["rejected_calls"] == 1
    assert datetime.fromisoformat(stats["last_failure_time"]).utcoffset().total_seconds() == 0


async def test_seed_gas_cost_threshold_trips_the_breaker():
    breaker = CircuitBreaker(
        consecutive_failures_threshold=3,
        failure_rate_threshold=0.5,
        open_timeout_seconds=60,
        half_open_max_calls=3,
        gas_cost_threshold=2.0,
    )

    breaker.record_gas_cost(Decimal("1.25"), failed=True)
    breaker.record_gas_cost(Decimal("0.75"), failed=True)

    assert breaker.state == CircuitState.OPEN


def test_seed_retry_policy_example():
    policy = RetryPolicy(
        max_retries=3,
        base_delay_ms=1000,
        max_delay_ms=30000,
        exponential_backoff=True,
        jitter=True,
        backoff_multiplier=2.0,
    )

    assert policy.is_retryable(ConnectionError())
    delay = policy.calculate_delay(2)
    assert 0 <= delay <= 4.0  # full jitter below 1 s * 2**2
    stats = policy.get_stats()
    assert stats["max_attempts"] == 4
    assert stats["config"]["max_retries"] == 3


def test_seed_idempotency_example(tmp_path: Path):
    idempotency = IdempotencyStore(tmp_path / "idempotency.sqlite")
    signal = {"market_id": "0xabc", "yes_price": "0.48", "no_price": "0.50", "size": "100"}

    key = idempotency.generate(signal)
    assert not idempotency.is_seen(key)

    assert idempotency.claim(key).owned
    idempotency.complete(key, {"status": "filled"})

    assert idempotency.is_seen(key)
    assert idempotency.generate(dict(reversed(signal.items()))) == key
    idempotency.close()
