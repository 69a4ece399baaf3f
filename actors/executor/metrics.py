"""The executor's Prometheus series (actors.runtime.metrics), read from its stats."""

from __future__ import annotations

from actors.runtime.metrics import Latency, counter, gauge

# Tick-to-trade: the book update that made the signal, to the orders on the wire (~5-20 ms here).
TICK_TO_TRADE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Signal to settled: through the venue's matching and the chain's settlement (~2 s blocks).
SIGNAL_TO_SETTLED_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


# A call through the retry policy, its retries and waits included (the venue's REST, the chain's RPC).
RETRY_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def latencies() -> tuple[Latency, Latency]:
    return (Latency("polyarb_tick_to_trade_seconds", "from the book update to the orders sent",
                    TICK_TO_TRADE_BUCKETS, "executor"),
            Latency("polyarb_signal_to_settled_seconds", "from the signal to a SUCCESS settled",
                    SIGNAL_TO_SETTLED_BUCKETS, "executor"))


def retry_latency() -> Latency:
    return Latency("polyarb_retry_call_seconds", "a call through the retry policy, its retries and waits "
                   "included, by dependency and outcome (success or failure)", RETRY_CALL_BUCKETS, "executor",
                   labels=("dependency", "outcome"))


SERIES = (
    counter("polyarb_executions_total", "executions finished, by status", "by_status", label="status"),
    counter("polyarb_strategy_executions_total", "executions, by strategy", "by_strategy", label="strategy",
            field="executions"),
    counter("polyarb_strategy_successes_total", "successful executions, by strategy", "by_strategy",
            label="strategy", field="successful"),
    gauge("polyarb_strategy_realized_pnl_usdc", "realized P&L by strategy (USDC; the books are micro-USDC)",
          "by_strategy", label="strategy", field="realized_pnl_micro", usdc=True),
    gauge("polyarb_realized_pnl_usdc", "realized P&L (USDC)", "realized_pnl_micro", usdc=True),
    counter("polyarb_gas_spent_usdc", "gas spent, priced in USDC", "gas_spent_micro", usdc=True),
    counter("polyarb_unwind_loss_usdc", "what unwinding unhedged legs cost, since the process started (USDC)",
            "unwind_loss_micro", usdc=True),
    gauge("polyarb_locked_capital_usdc", "capital in held YES baskets and the sell reserve (USDC)",
          "locked_capital_micro", usdc=True),
    counter("polyarb_unwinds_incomplete_total", "unwinds that did not sell every unhedged leg (a position left open)",
            "unhedged_legs"),
    gauge("polyarb_open_positions", "tokens held outside a complete set, for sale (unhedged legs not sold yet)",
          "open_positions_count"),
    gauge("polyarb_open_position_shares", "shares held in those open positions, all tokens together",
          "open_position_micro_shares", usdc=True),
    gauge("polyarb_sales_in_doubt", "position sales the venue has not confirmed either way (the reconciler waits)",
          "sales_in_doubt"),
    counter("polyarb_sale_lookup_errors_total", "lookups of sales in doubt the venue did not answer",
            "sale_lookup_errors"),
    gauge("polyarb_queue_size", "signals waiting", "queue_size"),
    gauge("polyarb_in_flight", "executions running", "in_flight"),
    gauge("polyarb_legs_in_flight", "legs by venue state", "legs_in_flight", label="state"),
    counter("polyarb_breaker_trips_total", "times the executor's breaker opened", "circuit_breaker_trips"),
    counter("polyarb_breaker_forced_opens_total", "forced opens (operator halt, reconciler, limits)",
            "circuit_breaker_stats", "forced_opens"),
    counter("polyarb_breaker_rejected_calls_total", "executions refused while the breaker was open",
            "circuit_breaker_stats", "rejected_calls"),
    counter("polyarb_retry_attempts_total", "calls through the retry policy", "retry_policy", "attempts"),
    counter("polyarb_retries_total", "retries", "retry_policy", "retries"),
    counter("polyarb_retry_give_ups_total", "calls the retry policy gave up", "retry_policy", "give_ups"),
    counter("polyarb_retry_calls_by_dependency_total", "calls through the retry policy, by dependency",
            "retry_policy", "by_dependency", label="dependency", field="calls"),
    counter("polyarb_retry_attempts_by_dependency_total", "attempts (first tries and retries), by dependency",
            "retry_policy", "by_dependency", label="dependency", field="attempts"),
    counter("polyarb_retry_failures_by_dependency_total", "calls that failed after their retries, by dependency",
            "retry_policy", "by_dependency", label="dependency", field="failures"),
    counter("polyarb_retry_errors_total", "retries, by the error class retried", "retry_policy", "by_error_class",
            label="error_class", field="retries"),
    counter("polyarb_orders_placed_total", "orders placed", "venue", "placed"),
    counter("polyarb_orders_filled_total", "orders filled", "venue", "filled"),
    counter("polyarb_orders_killed_total", "orders killed by the book (FOK/FAK)", "venue", "killed"),
    counter("polyarb_orders_rejected_total", "orders the venue refused", "venue", "rejected"),
    counter("polyarb_venue_http_errors_total", "venue HTTP errors", "venue", "http_errors"),
    counter("polyarb_trades_failed_total", "trades that failed after they matched", "venue", "trades_failed"),
    gauge("polyarb_user_channel_connected", "the venue's user channel is connected", "venue", "user_channel",
          "connected"),
    counter("polyarb_onchain_sent_total", "on-chain steps sent (split, merge, convert, redeem)", "onchain", "sent"),
    counter("polyarb_onchain_reverted_total", "on-chain steps reverted", "onchain", "reverted"),
    counter("polyarb_reconciler_checks_total", "books-against-chain checks", "reconciler", "checks"),
    counter("polyarb_reconciler_trips_total", "times the books and the chain were found apart",
            "reconciler", "trips"),
    gauge("polyarb_executor_nonce_pending", "the authority's pending nonces, as the executor last polled them",
          "nonce_manager_stats", "pending_count"),
    gauge("polyarb_ready", "start-up reconciliation done: trading may run", "ready"),
    gauge("polyarb_risk_pnl_today_usdc", "realized P&L since 00:00 UTC, gas included (risk.daily_loss_limit)",
          "risk", "pnl_today_micro", usdc=True),
    gauge("polyarb_risk_unwind_loss_today_usdc", "what today's unwinds lost (risk.max_unwind_loss.day)",
          "risk", "unwind_loss_today_micro", usdc=True),
    gauge("polyarb_risk_exposure_usdc", "open positions plus the legs of running executions (risk.max_exposure)",
          "risk", "exposure_micro", usdc=True),
    gauge("polyarb_risk_executions_last_minute", "executions started in the last 60 s "
          "(risk.max_executions_per_minute)", "risk", "executions_last_minute"),
    counter("polyarb_risk_trips_total", "times a risk limit halted trading, by limit", "risk", "trips_by_limit",
            label="limit"),
    counter("polyarb_risk_refused_total", "signals refused because their cost would pass risk.max_exposure",
            "risk", "refused"),
)
