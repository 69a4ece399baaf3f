"""docs/metrics.md, generated from every actor's series: each Prometheus metric, its
type, its labels, which actor serves it, and what it counts.

    python -m actors.cli.metrics_doc            # print the document
    python -m actors.cli.metrics_doc --write    # (re)write docs/metrics.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from actors.executor.metrics import SERIES as EXECUTOR
from actors.executor.metrics import latencies, retry_latency
from actors.feed.metrics import SERIES as FEED
from actors.nonce.client import allocate_latency
from actors.nonce.metrics import SERIES as NONCE
from actors.router.metrics import SERIES as ROUTER
from actors.runtime.metrics import BREAKER_STATES, COMMON, Series

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

HEAD = """# Metrics

Generated from the actors' series by `python -m actors.cli.metrics_doc --write`
(`make docs`); a unit test fails when this file is out of date.

Every actor serves Prometheus metrics and a health check over HTTP on
`bus.endpoints.<actor>.metrics` (`host:port`, loopback in the shipped configs;
unset = off): `GET /metrics` (the text exposition format) and `GET /healthz`
(200 when the actor runs and every dependency it checks answers, 503
otherwise, with a JSON body naming each check). In the sandbox:
`http://127.0.0.1:7103` (nonce), `7113` (executor), `7123` (feed), `7133`
(router), `7143` (venue).

Figures are those of the actor's last stats message (at most
`runtime.stats_interval_seconds` old, the same `polyarb status` shows): a
scrape only renders them, it computes nothing on the actor's loop. Only the
latency histograms are observed as events happen (`bench/metrics_cost.py`
measures both costs). A metrics port that cannot be bound is logged and tried
again every 10 s; it never stops an actor. A non-loopback address is served
with a warning in the log: the figures (P&L, capital) are not authenticated.
Every series carries the label `actor`. Amounts are in USDC: the books keep
integer micro-USDC, a metric is a float by the exposition format. Counters
restart from zero when their process restarts (Prometheus' `rate()` and
`increase()` handle that); the executor's books since the world began are in
`polyarb status`.

"""


def _kind(s: Series) -> str:
    return "counter" if s.kind == "counter" else "gauge"


def _name(s: Series) -> str:
    return s.name if s.kind != "counter" or s.name.endswith("_total") else s.name + "_total"


def _table(title: str, series: tuple[Series, ...]) -> list[str]:
    rows = [f"## {title}", "", "| metric | type | labels | what |", "|---|---|---|---|"]
    for s in series:
        labels = ", ".join(["actor"] + ([s.label] if s.label else []))
        rows.append(f"| `{_name(s)}` | {_kind(s)} | {labels} | {s.help} |")
    return [*rows, ""]


def render() -> str:
    lines = _table("Every actor", COMMON)
    lines.insert(-1, f"| `polyarb_breaker_state` | gauge (enum) | actor, state | the trading breaker's state as "
                     f"this actor sees it: 1 for the current state of {', '.join(BREAKER_STATES)} (the executor: "
                     f"its own) |")
    lines += _table("Executor", EXECUTOR)
    for h in (*latencies(), retry_latency(), allocate_latency("executor")):
        labels = ", ".join(("actor", *h.labels, "le"))
        lines.insert(-1, f"| `{h.name}` | histogram | {labels} | {h.help} (seconds; buckets "
                         f"{', '.join(f'{b:g}' for b in h.buckets)}) |")
    lines += _table("Nonce authority", NONCE)
    lines += _table("Feed", FEED)
    lines += _table("Router", ROUTER)
    return HEAD + "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH.name}")
    if parser.parse_args().write:
        DOC_PATH.write_text(render())
    else:
        print(render(), end="")


if __name__ == "__main__":
    main()
