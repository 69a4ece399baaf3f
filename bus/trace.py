"""The trace id of what a task is working on, for every log line it writes.

Born with the feed's flush of book updates (the envelope's `trace_id`), carried by
the router's signal, the executor's execution (its orders, its transactions, the
nonce authority's calls made for it) and its result: `polyarb trace ID` finds every
log line of every actor about one execution. A context variable, so the tasks an
execution starts carry it too; an envelope stamped inside it carries it (an RPC
call made for the execution), and an RPC server runs the call's handler inside
the caller's trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current: ContextVar[str] = ContextVar("trace_id", default="")


@contextmanager
def tracing(trace_id: str) -> Iterator[None]:
    token = current.set(trace_id)
    try:
        yield
    finally:
        current.reset(token)
