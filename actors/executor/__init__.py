"""The executor: signals -> CLOB orders and on-chain transactions, behind a breaker, retries and idempotency."""
