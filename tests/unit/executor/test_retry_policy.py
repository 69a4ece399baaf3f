import asyncio
import errno
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import httpx
import pytest
import requests
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from multidict import CIMultiDict, CIMultiDictProxy
from py_clob_client_v2.exceptions import PolyApiException
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    RequestTimedOut,
    TimeExhausted,
    TooManyRequests,
    Web3RPCError,
)
from yarl import URL

from actors.domain.enums import CircuitState
from actors.executor.circuit_breaker import CircuitOpenError
from actors.executor.retry_policy import (
    AlreadySent,
    AmbiguousOutcome,
    Attempt,
    Classification,
    Remedy,
    RetryBudget,
    RetryBudgets,
    RetryPolicy,
    classify,
)
from actors.runtime.clock import TestClock
from config.schema import RetryPolicy as RetryPolicyConfig

pytestmark = pytest.mark.unit


def rpc_error(message: str, code: int = -32000) -> Web3RPCError:
    """What web3 8 raises for a JSON-RPC error response."""
    error = {"code": code, "message": message}
    return Web3RPCError(repr(error), rpc_response={"jsonrpc": "2.0", "id": 1, "error": error})


def aiohttp_error(status: int, headers: dict[str, str] | None = None) -> aiohttp.ClientResponseError:
    url = URL("http://clob.local/order")
    info = aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(info, (), status=status, message="x", headers=CIMultiDict(headers or {}))


def httpx_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://clob.local/order")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError("bad status", request=request, response=response)


def requests_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError("bad status", response=response)


def poly_error(status: int) -> PolyApiException:
    return PolyApiException(httpx.Response(status, json={"error": "x"}))


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Flaky:
    """An operation that raises the given errors in turn, then returns 'done'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def policy(**overrides) -> RetryPolicy:
    params = dict(max_retries=3, base_delay_ms=100, max_delay_ms=1000, rng=random.Random(7), clock=TestClock())
    params.update(overrides)
    return RetryPolicy(**params)


# ----- classification -----


@pytest.mark.parametrize(
    ("error", "remedy", "error_class", "ambiguous"),
    [
        # node texts, geth and anvil spellings
        (rpc_error("nonce too low"), Remedy.RESYNC_NONCE, "nonce_too_low", False),
        (rpc_error("Nonce too high"), Remedy.RESYNC_NONCE, "nonce_too_high", False),
        (rpc_error("nonce too high"), Remedy.RESYNC_NONCE, "nonce_too_high", False),
        (rpc_error("insufficient funds for gas * price + value"), Remedy.GIVE_UP, "insufficient_funds", False),
        (rpc_error("Insufficient funds for gas * price + value"), Remedy.GIVE_UP, "insufficient_funds", False),
        (rpc_error("already known"), Remedy.ALREADY_SENT, "already_known", False),
        (rpc_error("transaction already imported"), Remedy.ALREADY_SENT, "already_known", False),
        (rpc_error("replacement transaction underpriced"), Remedy.BUMP_FEE, "replacement_underpriced", False),
        (rpc_error("max fee per gas less than block base fee"), Remedy.BUMP_FEE, "fee_below_base_fee", False),
        (rpc_error("intrinsic gas too low"), Remedy.REESTIMATE_GAS, "intrinsic_gas_too_low", False),
        (rpc_error("gas required exceeds allowance (30000000)"), Remedy.REESTIMATE_GAS, "gas_exceeds_allowance",
         False),
        (rpc_error("invalid chain id for signer"), Remedy.GIVE_UP, "invalid_chain_id", False),
        (rpc_error("execution reverted: not enough", code=3), Remedy.GIVE_UP, "execution_reverted", False),
        (rpc_error("limit exceeded", code=-32005), Remedy.RETRY, "rate_limited", False),
        (RequestTimedOut("{'code': -32000, 'message': 'request timed out'}"), Remedy.RETRY, "timeout", True),
        (rpc_error("something the node never said before"), Remedy.GIVE_UP, "Web3RPCError", False),
        (ContractLogicError("execution reverted: Ownable: caller is not the owner"), Remedy.GIVE_UP,
         "execution_reverted", False),
        (ContractCustomError("0x1234", data="0x1234"), Remedy.GIVE_UP, "execution_reverted", False),
        (ValueError({"code": -32000, "message": "nonce too low"}), Remedy.RESYNC_NONCE, "nonce_too_low", False),
        (TooManyRequests("slow down"), Remedy.RETRY, "rate_limited", False),
        (TimeExhausted("receipt not found after 120 s"), Remedy.RETRY, "timeout", True),
        # HTTP, from every client shape
        (poly_error(429), Remedy.RETRY, "http_429", False),
        (poly_error(503), Remedy.RETRY, "http_503", True),
        (poly_error(400), Remedy.GIVE_UP, "http_400", False),
        (PolyApiException(error_msg="Request exception!"), Remedy.RETRY, "transport", True),
        (aiohttp_error(500), Remedy.RETRY, "http_500", True),
        (aiohttp_error(401), Remedy.GIVE_UP, "http_401", False),
        (httpx_error(502), Remedy.RETRY, "http_502", True),
        (httpx_error(404), Remedy.GIVE_UP, "http_404", False),
        (requests_error(429), Remedy.RETRY, "http_429", False),
        (requests_error(403), Remedy.GIVE_UP, "http_403", False),
        # timeouts and connections
        (TimeoutError(), Remedy.RETRY, "timeout", True),  # asyncio.TimeoutError is TimeoutError since 3.11
        (httpx.ReadTimeout("read"), Remedy.RETRY, "timeout", True),
        (requests.ReadTimeout(), Remedy.RETRY, "timeout", True),
        (ConnectionError(), Remedy.RETRY, "connection", True),
        (ConnectionResetError(), Remedy.RETRY, "connection", True),
        (aiohttp.ServerDisconnectedError(), Remedy.RETRY, "connection", True),
        (httpx.RemoteProtocolError("peer closed"), Remedy.RETRY, "connection", True),
        (requests.ConnectionError(), Remedy.RETRY, "connection", True),
        (OSError(errno.ECONNRESET, "reset"), Remedy.RETRY, "connection", True),
        # failed while connecting: nothing was sent
        (ConnectionRefusedError(), Remedy.RETRY, "connect_failed", False),
        (httpx.ConnectError("refused"), Remedy.RETRY, "connect_failed", False),
        (httpx.ConnectTimeout("slow"), Remedy.RETRY, "connect_failed", False),
        (requests.ConnectTimeout(), Remedy.RETRY, "connect_failed", False),
        # never retried
        (FileNotFoundError(errno.ENOENT, "no such file"), Remedy.GIVE_UP, "FileNotFoundError", False),
        (requests.exceptions.InvalidJSONError(), Remedy.GIVE_UP, "bad_response", False),
        (KeyError("bug"), Remedy.GIVE_UP, "KeyError", False),
        (CircuitOpenError("executor", "trade", CircuitState.OPEN, "3 consecutive failures", None), Remedy.GIVE_UP,
         "circuit_open", False),
    ],
)  # fmt: skip
def test_classification_of_the_errors_this_system_sees(error, remedy, error_class, ambiguous):
    found = classify(error)
    assert (found.remedy, found.error_class, found.ambiguous) == (remedy, error_class, ambiguous)


def test_an_unknown_wrapper_is_classified_by_its_cause():
    class LegFailed(Exception):
        pass

    try:
        try:
            raise rpc_error("nonce too low")
        except Web3RPCError as inner:
            raise LegFailed("leg 2") from inner
    except LegFailed as outer:
        assert classify(outer).remedy is Remedy.RESYNC_NONCE


@pytest.mark.parametrize(
    ("text", "remedy"),
    [
        ("nonce too low", Remedy.RESYNC_NONCE),
        ("replacement transaction underpriced", Remedy.BUMP_FEE),
        ("gas required exceeds allowance (1000)", Remedy.REESTIMATE_GAS),
        ("execution reverted: fill already settled", Remedy.GIVE_UP),
    ],
)
def test_a_node_text_names_the_remedy_whatever_the_exception_type(text, remedy):
    # The seed's examples: the node's words reach us as plain exceptions too.
    assert classify(Exception(text)).remedy is remedy
    assert RetryPolicy().is_retryable(Exception(text)) is (remedy is not Remedy.GIVE_UP)
    assert classify(RuntimeError(f"merge failed: {text.upper()}")).remedy is remedy


def test_is_retryable_follows_the_remedy():
    p = policy()
    assert p.is_retryable(ConnectionError())
    assert p.is_retryable(rpc_error("nonce too low"))
    assert not p.is_retryable(rpc_error("already known"))
    assert not p.is_retryable(ContractLogicError("execution reverted"))


def test_a_custom_classifier_comes_first():
    class StaleSignal(Exception):
        pass

    p = policy(classifier=lambda e: Classification(Remedy.GIVE_UP, "stale") if isinstance(e, StaleSignal) else None)
    assert p.classify(StaleSignal()).error_class == "stale"
    assert p.classify(ConnectionError()).error_class == "connection"


# ----- Retry-After -----


def test_retry_after_from_headers_attribute_or_http_date():
    clock = TestClock()
    when = datetime.fromtimestamp(clock.time_ns() // 10**9 + 7, tz=UTC)
    assert classify(aiohttp_error(429, {"Retry-After": "3"})).retry_after_seconds == 3.0
    assert classify(httpx_error(503, {"retry-after": "2.5"})).retry_after_seconds == 2.5
    date_error = httpx_error(429, {"Retry-After": format_datetime(when, usegmt=True)})
    assert classify(date_error, now_ns=clock.time_ns()).retry_after_seconds == 7.0
    assert classify(date_error).retry_after_seconds is None  # a date needs "now"

    error = TooManyRequests("slow down")
    error.retry_after = 4  # type: ignore[attr-defined]
    assert classify(error).retry_after_seconds == 4.0


def test_retry_after_is_honoured_but_bounded_by_the_max_delay():
    p = policy(jitter=False)
    assert p.calculate_delay(0, retry_after=0.5) == 0.5
    assert p.calculate_delay(3, retry_after=0.5) == 0.8  # the backoff is longer already
    assert p.calculate_delay(0, retry_after=3600) == 1.0


# ----- delays -----


def test_no_jitter_is_exponential_up_to_the_cap():
    p = policy(jitter=False)
    assert [p.calculate_delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_full_jitter_is_uniform_below_the_exponential_ceiling():
    p = policy()
    for attempt in range(8):
        ceiling = min(1.0, 0.1 * 2**attempt)
        delays = [p.calculate_delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


def test_same_seed_same_delays():
    a, b = policy(rng=random.Random(42)), policy(rng=random.Random(42))
    assert [a.calculate_delay(n) for n in range(5)] == [b.calculate_delay(n) for n in range(5)]


def test_exponential_off_is_a_constant_delay():
    p = policy(exponential_backoff=False, jitter=False)
    assert {p.calculate_delay(n) for n in range(10)} == {0.1}


def test_decorrelated_jitter_stays_between_base_and_three_times_the_previous():
    p = policy(jitter_mode="decorrelated", max_delay_ms=10_000)
    previous = None
    for attempt in range(20):
        delay = p.calculate_delay(attempt, previous)
        assert 0.1 <= delay <= min(10.0, 3 * (previous or 0.1))
        previous = delay


def test_huge_attempts_do_not_overflow_and_negative_ones_are_refused():
    assert policy(jitter=False).calculate_delay(10_000) == 1.0
    with pytest.raises(ValueError):
        policy().calculate_delay(-1)


# ----- budget -----


def test_budget_stops_retries_below_half_and_refunds_on_success():
    budget = RetryBudget(tokens=4, refund=0.5)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]  # 4 -> 3 -> 2 -> 1 (< half)
    assert budget.tokens == 1.0 and not budget.retry_allowed

    budget.on_success()
    budget.on_success()

    assert budget.retry_allowed
    assert budget.get_stats() == {"tokens": 2.0, "capacity": 4.0, "refund": 0.5, "retry_allowed": True,
                                  "spent": 3, "refused": 1}  # fmt: skip


def test_refunds_add_up_exactly_and_never_above_capacity():
    budget = RetryBudget(tokens=10, refund=0.1)
    budget.try_spend()
    for _ in range(10):
        budget.on_success()
    assert budget.tokens == 10.0
    budget.on_success()
    assert budget.tokens == 10.0


def test_budgets_are_shared_per_dependency():
    budgets = RetryBudgets()
    a, b = policy(budgets=budgets), policy(budgets=budgets)
    assert a.budgets.get("clob") is b.budgets.get("clob")
    assert a.budgets.get("clob") is not a.budgets.get("rpc")


async def test_an_exhausted_budget_stops_retries():
    p = policy(budget_tokens=2, budget_refund=0, max_retries=10)
    sleeps = Sleeps()
    op = Flaky(*[ConnectionError()] * 10)

    with pytest.raises(ConnectionError):
        await p.run(op, dependency="clob", sleep=sleeps)

    assert op.calls == 3  # 2 -> 1 token (half: still allowed) -> 0 (below half: stop)
    stats = p.get_stats()
    assert (stats["throttled"], stats["budgets"]["clob"]["refused"]) == (1, 1)


# ----- run -----


async def test_run_retries_until_success_with_the_computed_delays():
    sleeps, hooks = Sleeps(), []
    p = policy(jitter=False)
    op = Flaky(ConnectionError(), aiohttp_error(503))

    result = await p.run(op, dependency="clob", on_attempt=hooks.append, sleep=sleeps)

    assert result == "done" and op.calls == 3
    assert sleeps.delays == [0.1, 0.2]
    assert hooks == [
        Attempt("clob", 1, "retry", "connection", Remedy.RETRY, 0.1),
        Attempt("clob", 2, "retry", "http_503", Remedy.RETRY, 0.2),
        Attempt("clob", 3, "success"),
    ]
    stats = p.get_stats()
    assert (stats["attempts"], stats["retries"], stats["successes"], stats["give_ups"]) == (3, 2, 1, 0)
    assert stats["by_error_class"]["http_503"] == {"attempts": 1, "retries": 1, "give_ups": 0}


async def test_run_gives_up_at_once_on_a_non_retryable_error():
    sleeps = Sleeps()
    p = policy()
    error = rpc_error("insufficient funds for gas * price + value")

    with pytest.raises(Web3RPCError) as info:
        await p.run(Flaky(error), sleep=sleeps)

    assert info.value is error and sleeps.delays == []
    assert p.get_stats()["by_error_class"]["insufficient_funds"] == {"attempts": 1, "retries": 0, "give_ups": 1}


async def test_run_stops_after_max_attempts():
    sleeps = Sleeps()
    p = policy(max_retries=3)
    op = Flaky(*[TimeoutError()] * 10)

    with pytest.raises(TimeoutError):
        await p.run(op, sleep=sleeps)

    assert op.calls == p.get_stats()["max_attempts"] == 4
    assert len(sleeps.delays) == 3 and p.get_stats()["exhausted"] == 1


async def test_already_known_raises_already_sent_instead_of_retrying():
    hooks: list[Attempt] = []
    op = Flaky(rpc_error("already known"))

    with pytest.raises(AlreadySent) as info:
        await policy().run(op, dependency="rpc", on_attempt=hooks.append, sleep=Sleeps())

    assert op.calls == 1 and info.value.classification.remedy is Remedy.ALREADY_SENT
    assert isinstance(info.value.__cause__, Web3RPCError)
    assert hooks[-1].outcome == "already_sent"


async def test_a_non_idempotent_send_that_may_have_happened_is_never_retried():
    op = Flaky(TimeoutError())
    p = policy()

    with pytest.raises(AmbiguousOutcome) as info:
        await p.run(op, dependency="clob", idempotent=False, sleep=Sleeps())

    assert op.calls == 1
    assert info.value.classification.error_class == "timeout" and info.value.attempts == 1
    assert p.get_stats()["ambiguous"] == 1


async def test_a_non_idempotent_send_is_retried_when_nothing_was_sent():
    op = Flaky(ConnectionRefusedError(), poly_error(429))
    assert await policy().run(op, idempotent=False, sleep=Sleeps()) == "done"


async def test_remedy_callbacks_run_before_the_retry():
    order: list[str] = []

    async def resync(found: Classification, error: BaseException) -> None:
        order.append(f"resync:{found.error_class}")

    async def bump(found: Classification, error: BaseException) -> None:
        order.append("bump")

    async def op() -> str:
        order.append("send")
        if order.count("send") == 1:
            raise rpc_error("nonce too low")
        if order.count("send") == 2:
            raise rpc_error("replacement transaction underpriced")
        return "sent"

    remedies = {Remedy.RESYNC_NONCE: resync, Remedy.BUMP_FEE: bump}
    result = await policy().run(op, dependency="rpc", remedies=remedies, sleep=Sleeps())

    assert result == "sent"
    assert order == ["send", "resync:nonce_too_low", "send", "bump", "send"]


async def test_async_hooks_are_awaited():
    seen: list[str] = []

    async def hook(attempt: Attempt) -> None:
        seen.append(attempt.outcome)

    await policy().run(Flaky(ConnectionError()), on_attempt=hook, sleep=Sleeps())
    assert seen == ["retry", "success"]


async def test_run_sleeps_on_the_clock_by_default():
    clock = TestClock()
    p = policy(clock=clock, jitter=False)
    task = asyncio.create_task(p.run(Flaky(ConnectionError())))
    await asyncio.sleep(0)
    assert clock.sleepers == 1 and not task.done()

    clock.advance(0.1)

    assert await asyncio.wait_for(task, timeout=5) == "done"


async def test_cancellation_is_not_retried():
    op = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await policy().run(op, sleep=Sleeps())
    assert op.calls == 1


# ----- config -----


def test_from_config_and_hot_reload():
    p = RetryPolicy.from_config(RetryPolicyConfig(max_retries=5, jitter=False), clock=TestClock())
    assert p.get_stats()["max_attempts"] == 6
    assert p.get_stats()["config"]["max_retries"] == 5
    p.budgets.get("clob").try_spend()

    p.update_config(RetryPolicyConfig(max_retries=1, base_delay_ms=10, jitter=False, budget_tokens=20))

    assert p.get_stats()["max_attempts"] == 2
    assert p.calculate_delay(0) == 0.01
    assert p.get_stats()["budgets"]["clob"] == {"tokens": 9.0, "capacity": 20.0, "refund": 0.1,
                                                "retry_allowed": False, "spent": 1, "refused": 0}  # fmt: skip


# ----- properties -----


class DelayMachine(RuleBasedStateMachine):
    """Whatever the config (hot-reloaded between calls), a delay is in [0, cap]."""

    @initialize(seed=st.integers(0, 2**32))
    def setup(self, seed: int) -> None:
        self.policy = RetryPolicy(rng=random.Random(seed), clock=TestClock())
        self.cap = 30.0
        self.previous: float | None = None
        self.last: tuple[float, float] = (0.0, 0.0)  # (delay, the cap it was computed under)

    @rule(
        base=st.integers(0, 100_000),
        cap=st.integers(0, 100_000),
        multiplier=st.floats(1, 100),
        exponential=st.booleans(),
        jitter=st.booleans(),
        mode=st.sampled_from(["full", "decorrelated"]),
    )
    def reload(self, base: int, cap: int, multiplier: float, exponential: bool, jitter: bool, mode: str) -> None:
        self.policy.update_config(RetryPolicyConfig(
            base_delay_ms=base, max_delay_ms=cap, backoff_multiplier=multiplier,
            exponential_backoff=exponential, jitter=jitter, jitter_mode=mode,
        ))  # fmt: skip
        self.cap = cap / 1000

    @rule(attempt=st.integers(0, 5000), retry_after=st.none() | st.floats(0, 1e9))
    def delay_for(self, attempt: int, retry_after: float | None) -> None:
        delay = self.policy.calculate_delay(attempt, self.previous, retry_after)
        self.last = (delay, self.cap)
        self.previous = delay

    @invariant()
    def within_bounds(self) -> None:
        delay, cap = self.last
        assert 0.0 <= delay <= cap


DelayMachine.TestCase.settings = settings(max_examples=75, stateful_step_count=30, deadline=None)
test_delay_state_machine = DelayMachine.TestCase


async def test_each_call_is_timed_by_dependency_and_outcome_waits_included():
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import CollectorRegistry

    from actors.executor.metrics import retry_latency

    clock = TestClock()

    async def waited(seconds: float) -> None:  # the wait passes on the test clock
        clock.advance(seconds)

    p = policy(jitter=False, clock=clock, sleep=waited)
    p.latency = retry_latency()
    failures = [ConnectionError("reset"), ConnectionError("reset")]

    async def flaky():
        if failures:
            raise failures.pop()
        return "ok"

    async def down():
        raise ConnectionError("refused")

    assert await p.run(flaky, dependency="clob") == "ok"  # two waits: 0.1 s and 0.2 s
    with pytest.raises(ConnectionError):
        await p.run(down, dependency="rpc")
    registry = CollectorRegistry()
    registry.register(p.latency.histogram)
    samples = {(s.name, s.labels.get("dependency"), s.labels.get("outcome")): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples
               if s.name.endswith(("_sum", "_count"))}
    assert samples[("polyarb_retry_call_seconds_count", "clob", "success")] == 1
    assert samples[("polyarb_retry_call_seconds_sum", "clob", "success")] == pytest.approx(0.3)
    assert samples[("polyarb_retry_call_seconds_count", "rpc", "failure")] == 1
    stats = p.get_stats()["by_dependency"]
    assert stats["clob"] == {"calls": 1, "attempts": 3, "retries": 2, "failures": 0}
    assert stats["rpc"] == {"calls": 1, "attempts": 4, "retries": 3, "failures": 1}
