"""Prometheus metrics and a health check, served by every actor on its own port.

`bus.endpoints.<actor>.metrics` ("host:port", loopback by default; none = off)
names where. The figures are the actor's last stats message (the shell keeps
it): a scrape only renders them, so nothing is counted twice and the actor's
loop computes nothing for it (the executor's stats read its journal). Each
actor declares its series as `Series` specs over its stats
(`Actor.metric_series`), plus any histogram it observes itself
(`Actor.histograms`: latencies, which a stats summary cannot rebuild).

Money is an integer of micro-USDC everywhere in the books; a metric is a
float by the exposition format, so amounts are exported in USDC for display.

`/healthz` answers 200 only when the actor is running and every dependency it
names in `Actor.health()` is reachable, 503 otherwise, with the details as
JSON. A port that cannot be bound is logged and tried again: metrics never
stop trading.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from actors.domain.money import from_micro
from actors.runtime.http import BIND_RETRY_SECONDS, HttpServer

disable_created_metrics()  # no `_created` series beside each histogram: nothing here reads them

_DECIMAL = re.compile(r"^-?[0-9]{1,15}(\.[0-9]{1,9})?$")
BREAKER_STATES = ("CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "UNKNOWN")


@dataclass(frozen=True, slots=True)
class Series:
    """One metric read from the stats dict.

    `path` leads to a number, or with `label` to a mapping {label value: number}
    (or: {label value: mapping}, read at `field`; or a list of mappings, each labelled
    by its "id"). `usdc`: the figure is micro-USDC, exported in USDC."""

    name: str
    kind: str  # "gauge" | "counter"
    help: str
    path: tuple[str, ...]
    label: str | None = None
    field: str | None = None
    usdc: bool = False


def gauge(name: str, help_: str, *path: str, label: str | None = None, field: str | None = None,
          usdc: bool = False) -> Series:
    return Series(name, "gauge", help_, path, label, field, usdc)


def counter(name: str, help_: str, *path: str, label: str | None = None, field: str | None = None,
            usdc: bool = False) -> Series:
    return Series(name, "counter", help_, path, label, field, usdc)


def _at(stats: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(stats, Mapping):
            return None
        stats = stats.get(key)
    return stats


_MAX_EXACT = 2**53  # beyond, a float is not the figure any more


def _number(value: Any, usdc: bool = False) -> float | None:
    """A finite float of a stats figure, or None (left out): never raises on odd stats."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        if abs(value) > _MAX_EXACT:
            return None
        return float(from_micro(value)) if usdc else float(value)  # money: the money module's conversion
    if usdc:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _DECIMAL.match(value):  # figures published as decimal strings
        return float(value)
    return None


def families(series: Iterable[Series], stats: Mapping[str, Any], actor: str) -> Iterator[Metric]:
    """The metric families of `series` over one stats dict; a value missing or not a
    number is left out (an actor not ready yet has no such figure)."""
    for s in series:
        labels = ["actor"] + ([s.label] if s.label else [])
        family: Metric = (CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily)(
            s.name.removesuffix("_total") if s.kind == "counter" else s.name, s.help, labels=labels)
        value = _at(stats, s.path)
        if s.label is None:
            number = _number(value, s.usdc)
            if number is not None:
                family.add_metric([actor], number)
        elif isinstance(value, Mapping | list):
            items = value.items() if isinstance(value, Mapping) else (
                (item["id"], item) for item in value if isinstance(item, Mapping) and "id" in item)
            seen: set[str] = set()
            for key, item in items:
                if s.field:
                    item = item.get(s.field) if isinstance(item, Mapping) else None
                number = _number(item, s.usdc)
                if number is not None and str(key) not in seen:
                    seen.add(str(key))
                    family.add_metric([actor, str(key)], number)
        yield family


def breaker_family(name: str, help_: str, state: str | None, actor: str) -> GaugeMetricFamily:
    """An enum as Prometheus has it: one series per state, 1 for the current one."""
    family = GaugeMetricFamily(name, help_, labels=["actor", "state"])
    for s in BREAKER_STATES:
        family.add_metric([actor, s], 1.0 if state == s else 0.0)
    return family


# Every actor: the shell's figures (runtime, config, the breaker as this actor sees it, bus).
COMMON = (
    gauge("polyarb_uptime_seconds", "seconds since the process started", "runtime", "uptime_seconds"),
    counter("polyarb_config_reloads_total", "config reloads applied", "config", "reloads"),
    counter("polyarb_config_reload_rejections_total", "config reloads rejected (the running config kept)",
            "config", "reload_errors"),
    counter("polyarb_breaker_transitions_seen_total", "breaker transitions this actor heard",
            "breaker", "transitions"),
    gauge("polyarb_breaker_heard_seconds_ago", "seconds since this actor last heard the breaker",
          "breaker", "heard_seconds_ago"),
    counter("polyarb_bus_published_total", "messages published", "bus", "publisher", "sent"),
    counter("polyarb_bus_publish_dropped_total", "messages a full queue dropped", "bus", "publisher", "dropped"),
    counter("polyarb_rpc_requests_total", "RPC requests answered", "bus", "rpc_server", "requests"),
    counter("polyarb_rpc_malformed_total", "RPC requests refused as malformed", "bus", "rpc_server", "malformed"),
    counter("polyarb_rpc_errors_total", "RPC requests answered with an error", "bus", "rpc_server", "errors"),
)


class Latency:
    """A histogram an actor observes itself, in seconds; in no global registry (each
    instance is its own: tests build many), collected by the actor's collector."""

    def __init__(self, name: str, help_: str, buckets: tuple[float, ...], actor: str,
                 labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.buckets, self.labels = name, help_, buckets, labels
        self.histogram = Histogram(name, help_, ["actor", *labels], buckets=buckets, registry=None)
        self._actor = actor
        self._child = self.histogram.labels(actor) if not labels else None

    def observe_ns(self, ns: int, *values: str) -> None:
        """One observation; `values` for the extra labels, in their order."""
        child = self._child if self._child is not None else self.histogram.labels(self._actor, *values)
        child.observe(ns / 1e9)


class ActorCollector:
    """Collects one actor's metrics from its stats message at scrape time."""

    def __init__(self, name: str, stats: Callable[[], Mapping[str, Any]], series: Iterable[Series],
                 histograms: Callable[[], Iterable[Latency]],
                 breaker: Callable[[], str | None] = lambda: None) -> None:
        self.name, self._stats, self._series, self._histograms = name, stats, tuple(series), histograms
        self._breaker = breaker

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield from families(COMMON, stats, self.name)
        yield breaker_family("polyarb_breaker_state", "the trading breaker's state as this actor sees it",
                             self._breaker() or _at(stats, ("breaker", "state")), self.name)
        yield from families(self._series, stats.get(self.name, {}), self.name)
        for latency in self._histograms():
            yield from latency.histogram.collect()


class MetricsServer:
    """`/metrics` and `/healthz` on the actor's loop (aiohttp)."""

    def __init__(self, address: str, registry: CollectorRegistry,
                 health: Callable[[], Mapping[str, Any]]) -> None:
        self.registry, self._health = registry, health
        self.http = HttpServer(address, self._app, "metrics and /healthz")
        self.host, self.port = self.http.host, self.http.port
        self.stats = {"scrapes": 0, "health_checks": 0}

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _metrics(self, _: web.Request) -> web.Response:
        self.stats["scrapes"] += 1
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        self.stats["health_checks"] += 1
        checks = dict(self._health())
        ok = all(v is True for v in checks.values())
        return web.Response(status=200 if ok else 503, content_type="application/json",
                            text=json.dumps({"ok": ok, "checks": checks}, default=str))

    async def serve(self, sleep: Callable[[float], Any], retry_seconds: float = BIND_RETRY_SECONDS) -> None:
        """Bind, trying again while the port is taken (metrics never end the actor); serve until cancelled."""
        await self.http.serve(sleep, retry_seconds)

    async def close(self) -> None:
        await self.http.close()

    def get_stats(self) -> dict[str, Any]:
        return {**self.stats, **self.http.stats}


