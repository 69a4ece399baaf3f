"""Retries: backoff with jitter, a retry budget per dependency, and error-driven remedies.

Delay before retry number `attempt` (0 = the first retry), in seconds, with
cap = max_delay and ceiling = min(cap, base * multiplier ** attempt):

- jitter "full" (default, AWS "Exponential Backoff And Jitter"): uniform(0, ceiling);
- jitter off: the ceiling itself;
- jitter "decorrelated": min(cap, uniform(base, 3 * previous delay));
- exponential_backoff off: the ceiling is `base` at every attempt (jitter
  still spreads it when on).

A server's Retry-After raises the delay to at least that value; nothing
exceeds the cap or goes below zero.

`run()` executes an async operation under the policy; what it does after a
failure follows `classify()` (see errors.py):

| classification | run() |
|---|---|
| RETRY, RESYNC_NONCE, BUMP_FEE, REESTIMATE_GAS | sleep; await `remedies[remedy](c, error)` if given; again |
| ALREADY_SENT | raise `AlreadySent` (from the error): the caller watches the receipt |
| GIVE_UP, retries used up, or budget below half | re-raise the original error |
| ambiguous (timeout, connection lost, 5xx) and `idempotent=False` | raise `AmbiguousOutcome`: reconcile |

A remedy without a callback is retried as is (the operation may redo its own
nonce / fee / gas on each call). The retry budget is a token bucket per
dependency (gRPC retryThrottling, Finagle): a retry costs one token, a success
refunds `budget_refund`, and no retry is made while the bucket is below half,
so a failing dependency sees at most a bounded amount of extra load.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from actors.executor.errors import (
    AlreadySent,
    AmbiguousOutcome,
    Classification,
    Classifier,
    Remedy,
    classify,
)
from actors.runtime.clock import Clock, SystemClock

if TYPE_CHECKING:
    from config.schema import RetryPolicy as RetryPolicyConfig

__all__ = [
    "AlreadySent", "AmbiguousOutcome", "Attempt", "Classification", "Remedy", "RetryBudget",
    "RetryBudgets", "RetryPolicy", "classify",
]  # fmt: skip

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
RemedyCallback = Callable[[Classification, BaseException], Awaitable[None]]
Outcome = Literal["success", "retry", "give_up", "exhausted", "throttled", "ambiguous", "already_sent"]
_MILLI = 1000  # budget tokens are kept in integer thousandths: refunds of 0.1 add up exactly


class RetryBudget:
    """A token bucket for one dependency. Starts full; `try_spend()` takes a token for a
    retry unless the bucket is below half; `on_success()` refunds `refund` (capped)."""

    def __init__(self, tokens: float = 10.0, refund: float = 0.1) -> None:
        self.configure(tokens, refund)
        self._milli = self._cap
        self.spent = self.refused = 0

    def configure(self, tokens: float, refund: float) -> None:
        if tokens <= 0 or refund < 0:
            raise ValueError("budget tokens must be > 0 and refund >= 0")
        self._cap = round(tokens * _MILLI)
        self._refund = round(refund * _MILLI)
        self._milli = min(getattr(self, "_milli", self._cap), self._cap)

    @property
    def tokens(self) -> float:
        return self._milli / _MILLI

    @property
    def retry_allowed(self) -> bool:
        return self._milli * 2 >= self._cap

    def try_spend(self) -> bool:
        if not self.retry_allowed:
            self.refused += 1
            return False
        self._milli -= _MILLI
        self.spent += 1
        return True

    def on_success(self) -> None:
        self._milli = min(self._cap, self._milli + self._refund)

    def get_stats(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens, "capacity": self._cap / _MILLI, "refund": self._refund / _MILLI,
            "retry_allowed": self.retry_allowed, "spent": self.spent, "refused": self.refused,
        }  # fmt: skip


class RetryBudgets:
    """The budgets by dependency name ("clob", "rpc", ...); share one registry between
    every policy that calls the same dependencies. A policy sizes it from its config."""

    def __init__(self, tokens: float = 10.0, refund: float = 0.1) -> None:
        self._tokens, self._refund = tokens, refund
        self._budgets: dict[str, RetryBudget] = {}

    def get(self, dependency: str) -> RetryBudget:
        budget = self._budgets.get(dependency)
        if budget is None:
            budget = self._budgets[dependency] = RetryBudget(self._tokens, self._refund)
        return budget

    def configure(self, tokens: float, refund: float) -> None:
        self._tokens, self._refund = tokens, refund
        for budget in self._budgets.values():
            budget.configure(tokens, refund)

    def get_stats(self) -> dict[str, Any]:
        return {name: budget.get_stats() for name, budget in sorted(self._budgets.items())}


@dataclass(frozen=True, slots=True)
class Attempt:
    """What `run()` reports to `on_attempt` after every attempt; number starts at 1."""

    dependency: str
    number: int
    outcome: Outcome
    error_class: str | None = None
    remedy: Remedy | None = None
    delay_seconds: float | None = None


class RetryPolicy:
    def __init__(
        self,
        *,
        max_retries: int = 3,
        base_delay_ms: int = 1000,
        max_delay_ms: int = 30000,
        exponential_backoff: bool = True,
        jitter: bool = True,
        backoff_multiplier: float = 2.0,
        jitter_mode: Literal["full", "decorrelated"] = "full",
        budget_tokens: float = 10.0,
        budget_refund: float = 0.1,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        budgets: RetryBudgets | None = None,
        classifier: Classifier | None = None,
    ) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._sleep: Sleep = sleep if sleep is not None else self._clock.sleep
        self._rng = rng if rng is not None else random.Random()
        self._classifier = classifier
        self.budgets = budgets if budgets is not None else RetryBudgets(budget_tokens, budget_refund)
        self._configure(
            max_retries, base_delay_ms, max_delay_ms, exponential_backoff, jitter,
            backoff_multiplier, jitter_mode, budget_tokens, budget_refund,
        )  # fmt: skip
        names = ("attempts", "successes", "retries", "give_ups", "exhausted", "throttled", "ambiguous")
        self._counts: dict[str, int] = dict.fromkeys((*names, "already_sent"), 0)
        self._by_class: dict[str, dict[str, int]] = {}
        self._by_dependency: dict[str, dict[str, int]] = {}
        # Observes each call's whole time by dependency and outcome (a metrics histogram), if set.
        self.latency: Any = None

    @classmethod
    def from_config(cls, section: RetryPolicyConfig, **kwargs: Any) -> RetryPolicy:
        """Build from the `retry_policy` section; kwargs: rng, clock, sleep, budgets, classifier."""
        return cls(**_config_kwargs(section), **kwargs)

    def update_config(self, section: RetryPolicyConfig) -> None:
        """Hot reload: new delays and budget sizes; counters and budget tokens are kept."""
        self._configure(**_config_kwargs(section))

    def _configure(
        self, max_retries: int, base_delay_ms: int, max_delay_ms: int, exponential_backoff: bool,
        jitter: bool, backoff_multiplier: float, jitter_mode: str, budget_tokens: float,
        budget_refund: float,
    ) -> None:  # fmt: skip
        if max_retries < 0 or base_delay_ms < 0 or max_delay_ms < 0 or backoff_multiplier < 1:
            raise ValueError("retries and delays must be >= 0 and backoff_multiplier >= 1")
        if jitter_mode not in ("full", "decorrelated"):
            raise ValueError(f"unknown jitter_mode {jitter_mode!r}")
        self.max_retries = max_retries
        self._base = base_delay_ms / 1000
        self._cap = max_delay_ms / 1000
        self._exponential = exponential_backoff
        self._jitter = jitter
        self._multiplier = float(backoff_multiplier)
        self._mode = jitter_mode
        self.budgets.configure(budget_tokens, budget_refund)
        self._config = {
            "max_retries": max_retries, "base_delay_ms": base_delay_ms, "max_delay_ms": max_delay_ms,
            "exponential_backoff": exponential_backoff, "jitter": jitter, "jitter_mode": jitter_mode,
            "backoff_multiplier": self._multiplier, "budget_tokens": float(budget_tokens),
            "budget_refund": float(budget_refund),
        }  # fmt: skip

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    # ----- decisions -----

    def classify(self, error: BaseException) -> Classification:
        """The custom classifier's answer if it has one, else `errors.classify`."""
        if self._classifier is not None:
            found = self._classifier(error)
            if found is not None:
                return found
        return classify(error, now_ns=self._clock.time_ns())

    def is_retryable(self, error: BaseException) -> bool:
        """True if a retry can help (possibly after a remedy); False for GIVE_UP and ALREADY_SENT."""
        return self.classify(error).retryable

    def calculate_delay(
        self, attempt: int, previous: float | None = None, retry_after: float | None = None
    ) -> float:
        """Seconds to wait before retry number `attempt` (0-based), in [0, max_delay]."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        cap = self._cap
        base = min(self._base, cap)
        if not self._exponential:
            ceiling = base
        else:
            try:
                ceiling = min(cap, self._base * self._multiplier**attempt)
            except OverflowError:
                ceiling = cap
        if not self._jitter:
            delay = ceiling
        elif self._mode == "decorrelated" and self._exponential:
            last = base if previous is None else previous
            delay = self._rng.uniform(base, max(base, 3 * last))
        else:
            delay = self._rng.uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(cap, max(0.0, delay))

    # ----- running an operation -----

    async def run(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        dependency: str = "default",
        idempotent: bool = True,
        on_attempt: Callable[[Attempt], Any] | None = None,
        remedies: Mapping[Remedy, RemedyCallback] | None = None,
        sleep: Sleep | None = None,
    ) -> T:
        """Await `op()` until it succeeds or the policy gives up (module docstring table).

        `idempotent=False` marks an operation that must not be repeated if it may have
        happened (a send): an ambiguous failure raises AmbiguousOutcome instead of a retry.
        `on_attempt(Attempt)` is called after every attempt (awaited if it returns an awaitable).
        """
        budget = self.budgets.get(dependency)
        pause = sleep if sleep is not None else self._sleep
        previous: float | None = None
        number = 0
        began = self._clock.monotonic_ns() if self.latency is not None else 0
        dep = self._by_dependency.setdefault(dependency, {"calls": 0, "attempts": 0, "retries": 0, "failures": 0})
        dep["calls"] += 1
        while True:
            number += 1
            self._counts["attempts"] += 1
            dep["attempts"] += 1
            try:
                result = await op()
            except Exception as error:
                found = self.classify(error)
                outcome = self._decide(found, number, idempotent, budget)
                delay = None
                if outcome == "retry":
                    delay = self.calculate_delay(number - 1, previous, found.retry_after_seconds)
                    dep["retries"] += 1
                else:
                    dep["failures"] += 1
                    self._observe(began, dependency, "failure")
                self._record(found.error_class, outcome)
                report = Attempt(dependency, number, outcome, found.error_class, found.remedy, delay)
                await _notify(on_attempt, report)
                if outcome == "already_sent":
                    raise AlreadySent(found, number, dependency) from error
                if outcome == "ambiguous":
                    raise AmbiguousOutcome(found, number, dependency) from error
                if delay is None:
                    raise
                await pause(delay)
                previous = delay
                callback = remedies.get(found.remedy) if remedies else None
                if callback is not None:
                    await callback(found, error)
                continue
            budget.on_success()
            self._counts["successes"] += 1
            self._observe(began, dependency, "success")
            if on_attempt is not None:
                await _notify(on_attempt, Attempt(dependency, number, "success"))
            return result

    def _decide(self, found: Classification, number: int, idempotent: bool, budget: RetryBudget) -> Outcome:
        if found.remedy is Remedy.ALREADY_SENT:
            return "already_sent"
        if found.remedy is Remedy.GIVE_UP:
            return "give_up"
        if found.ambiguous and not idempotent:
            return "ambiguous"
        if number > self.max_retries:
            return "exhausted"
        if not budget.try_spend():
            return "throttled"
        return "retry"

    def _observe(self, began: int, dependency: str, outcome: str) -> None:
        """The call's whole time through the policy (its retries and waits too)."""
        if self.latency is not None:
            self.latency.observe_ns(self._clock.monotonic_ns() - began, dependency, outcome)

    def _record(self, error_class: str, outcome: Outcome) -> None:
        row = self._by_class.setdefault(error_class, {"attempts": 0, "retries": 0, "give_ups": 0})
        row["attempts"] += 1
        if outcome == "retry":
            row["retries"] += 1
            self._counts["retries"] += 1
        elif outcome in ("give_up", "exhausted", "throttled"):
            row["give_ups"] += 1
            self._counts["give_ups"] += 1
            if outcome != "give_up":
                self._counts[outcome] += 1
        else:
            self._counts[outcome] += 1

    def get_stats(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "config": dict(self._config),
            **self._counts,
            "by_error_class": {name: dict(row) for name, row in sorted(self._by_class.items())},
            "by_dependency": {name: dict(row) for name, row in sorted(self._by_dependency.items())},
            "budgets": self.budgets.get_stats(),
        }


async def _notify(hook: Callable[[Attempt], Any] | None, attempt: Attempt) -> None:
    if hook is not None:
        result = hook(attempt)
        if inspect.isawaitable(result):
            await result


_CONFIG_FIELDS = (
    "max_retries", "base_delay_ms", "max_delay_ms", "exponential_backoff", "jitter",
    "backoff_multiplier", "jitter_mode", "budget_tokens", "budget_refund",
)  # fmt: skip


def _config_kwargs(section: RetryPolicyConfig) -> dict[str, Any]:
    return {field: getattr(section, field) for field in _CONFIG_FIELDS}
