"""Resilience overhead: what the breaker, the retry policy and the idempotency store
add per call, next to raw baselines measured in the same run.

- `async with breaker.execute()` vs an empty `async with` (a trivial class-based
  async context manager, the same shape as the breaker's);
- `policy.run(op)` on the success path vs `await op()`;
- a `claim` + `complete` pair on a temp SQLite file vs a bare autocommit INSERT
  with the same settings (WAL, synchronous=NORMAL, busy_timeout); a duplicate
  claim (the read-then-decide path under BEGIN IMMEDIATE); key generation.

Each figure is the median over `repeats` runs of the mean per-call time, in µs.

    python bench/bench_resilience.py --out FILE.json    (or: python -m bench)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.executor.circuit_breaker import CircuitBreaker
from actors.executor.idempotency import IdempotencyStore
from actors.executor.retry_policy import RetryPolicy


class _Empty:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> bool:
        return False


def _median_us(samples: list[float]) -> float:
    return round(statistics.median(samples), 3)


async def _async_loop(make_cm: Callable[[], Any], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        async with make_cm():
            pass
    return (time.perf_counter_ns() - start) / n / 1000


async def _await_loop(call: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        await call()
    return (time.perf_counter_ns() - start) / n / 1000


def _sync_loop(call: Callable[[int], Any], n: int) -> float:
    start = time.perf_counter_ns()
    for i in range(n):
        call(i)
    return (time.perf_counter_ns() - start) / n / 1000


def _insert(db: sqlite3.Connection, i: int) -> None:
    db.execute("INSERT INTO t VALUES (?, 'IN_PROGRESS', ?)", (f"k{i}", i))


def _insert_update(db: sqlite3.Connection, i: int) -> None:
    # The same two autocommit writes as claim + complete, with no logic around them.
    db.execute("INSERT INTO t VALUES (?, 'IN_PROGRESS', ?)", (f"p{i}", i))
    db.execute("UPDATE t SET status = 'COMPLETED' WHERE key = ?", (f"p{i}",))


def _bare_sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE t (key TEXT PRIMARY KEY, status TEXT NOT NULL, created_ns INTEGER NOT NULL)")
    return db


async def _measure_async(n: int, repeats: int) -> dict[str, float]:
    breaker = CircuitBreaker(consecutive_failures_threshold=10**9)  # never trips: the happy path
    policy = RetryPolicy()

    async def op() -> int:
        return 1

    samples: dict[str, list[float]] = {k: [] for k in ("empty", "breaker", "direct", "retry")}
    for _ in range(repeats):
        samples["empty"].append(await _async_loop(_Empty, n))
        samples["breaker"].append(await _async_loop(lambda: breaker.execute("trade"), n))
        samples["direct"].append(await _await_loop(op, n))
        samples["retry"].append(await _await_loop(lambda: policy.run(op, dependency="bench"), n))
    return {k: _median_us(v) for k, v in samples.items()}


def _measure_sqlite(n: int, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in ("insert", "raw_pair", "pair", "duplicate", "generate")}
    signal = {"market": "0x" + "ab" * 32, "side": "buy", "size": 10_000_000,
              "legs": [{"token": str(10**76 + i), "price": Decimal("0.48")} for i in range(2)]}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            db = _bare_sqlite(Path(tmp) / f"bare{r}.sqlite")
            samples["insert"].append(_sync_loop(partial(_insert, db), n))
            samples["raw_pair"].append(_sync_loop(partial(_insert_update, db), n))
            db.close()
            with IdempotencyStore(Path(tmp) / f"store{r}.sqlite") as store:
                samples["pair"].append(_sync_loop(lambda i: store.complete(store.claim(f"k{i}", "h").record.key), n))
                samples["duplicate"].append(_sync_loop(lambda i: store.claim(f"k{i}", "h"), n))
                samples["generate"].append(_sync_loop(lambda i: store.generate(signal), n))
    return {k: _median_us(v) for k, v in samples.items()}


def run(n_async: int = 100_000, n_sqlite: int = 3_000, repeats: int = 5) -> dict[str, Any]:
    a = asyncio.run(_measure_async(n_async, repeats))
    s = _measure_sqlite(n_sqlite, repeats)
    return {
        "name": "resilience",
        "results": {
            "empty_async_with_us": a["empty"],
            "breaker_execute_us": a["breaker"],
            "breaker_overhead_us": round(a["breaker"] - a["empty"], 3),
            "direct_await_us": a["direct"],
            "retry_run_success_us": a["retry"],
            "sqlite_bare_insert_us": s["insert"],
            "sqlite_bare_insert_then_update_us": s["raw_pair"],
            "idempotency_claim_complete_us": s["pair"],
            "idempotency_duplicate_claim_us": s["duplicate"],
            "idempotency_generate_key_us": s["generate"],
        },
        "ratios": {
            "breaker_execute_over_empty_async_with": round(a["breaker"] / a["empty"], 2),
            "retry_run_over_direct_await": round(a["retry"] / a["direct"], 2),
            "claim_complete_over_bare_insert": round(s["pair"] / s["insert"], 2),
            "claim_complete_over_bare_insert_then_update": round(s["pair"] / s["raw_pair"], 2),
            "duplicate_claim_over_bare_insert": round(s["duplicate"] / s["insert"], 2),
        },
        "notes": f"median of {repeats} runs; {n_async} async calls, {n_sqlite} SQLite calls per run; "
        "claim+complete = 2 write transactions (INSERT .. ON CONFLICT RETURNING, UPDATE .. RETURNING)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the JSON result here")
    ap.add_argument("--n-async", type=int, default=100_000)
    ap.add_argument("--n-sqlite", type=int, default=3_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    result = run(args.n_async, args.n_sqlite, args.repeats)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
