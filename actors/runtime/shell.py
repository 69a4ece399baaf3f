"""The process shell an actor runs in: the concrete `ActorContext`.

It owns the actor's PUB socket, the breaker-broadcast subscriber and its
follower, the stats loop, the RPC server once started and the background
tasks; `actors.runtime.launcher` drives its lifecycle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from actors.runtime.actor import Actor
from actors.runtime.breaker_follower import BreakerFollower
from actors.runtime.clock import Clock
from actors.runtime.metrics import ActorCollector, MetricsServer
from bus import topics
from bus.codec import Stamper
from bus.messages import Stats
from bus.sockets import Publisher, RpcServer, Subscriber
from config.loader import ConfigError
from config.runtime import ConfigWatcher
from config.schema import Config
from config.world import world

BREAKER_SOURCE = "executor"


class ActorRuntime:
    """What the shell gives an actor: config, clock, context, publisher, follower."""

    def __init__(self, name: str, watcher: ConfigWatcher, ctx: Any, clock: Clock) -> None:
        cfg = watcher.config
        self.name = name
        self.watcher = watcher
        self.ctx = ctx
        self.clock = clock
        self.stamper = Stamper(name, clock)
        self.boot_id = self.stamper.boot_id
        self.started_ns = clock.time_ns()
        endpoints = cfg.bus.endpoints.get(name)
        if endpoints is None:
            raise ConfigError(f"{watcher.path}: key 'bus.endpoints.{name}' is missing")
        self.publisher = Publisher(ctx, endpoints.pub, self.stamper, hwm=cfg.bus.send_hwm, linger_ms=cfg.bus.linger_ms)
        self.rpc_endpoint = endpoints.rpc
        self.metrics_address = endpoints.metrics
        self.security: Any = None  # bus.curve.BusSecurity when bus.security is on (set by the launcher)
        self.metrics_server: MetricsServer | None = None
        self.last_stats: Mapping[str, Any] = {}  # what the last stats message carried (the metrics read it)
        cb = cfg.circuit_breaker
        self.breaker = BreakerFollower(clock, cb.heartbeat_interval_seconds, cb.unknown_after_missed_heartbeats)
        self._breaker_sub: Subscriber | None = None
        executor = cfg.bus.endpoints.get(BREAKER_SOURCE)
        if executor is not None and name != BREAKER_SOURCE:
            self._breaker_sub = Subscriber(
                ctx, [executor.pub], [topics.breaker_state()], max_message_bytes=cfg.bus.max_message_bytes
            )
        self.rpc_server: RpcServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def config(self) -> Config:
        return self.watcher.config

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task whose failure ends the process (supervisord restarts it)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def follow_breaker(self) -> None:
        if self._breaker_sub is None:
            return await asyncio.Event().wait()
        while True:
            for r in await self._breaker_sub.recv_batch():
                self.breaker.on_message(r.env)

    def stats_message(self, actor: Actor) -> Stats:
        return Stats(
            actor=self.name,
            stats={
                "summary": actor.summary(),
                self.name: actor.get_stats(),
                "runtime": {
                    "pid": os.getpid(),
                    "boot_id": self.boot_id,
                    "started_ns": self.started_ns,
                    "uptime_seconds": round((self.clock.time_ns() - self.started_ns) / 1e9, 1),
                    "metrics": self.metrics_server.get_stats() if self.metrics_server else None,
                },
                "config": self.watcher.get_stats(),
                "world": world(self.config, self.watcher.path),
                "breaker": self.breaker.get_stats(),
                "bus": {
                    "security": self.security.get_stats() if self.security is not None else {"enabled": False},
                    "publisher": self.publisher.get_stats(),
                    "rpc_server": self.rpc_server.get_stats() if self.rpc_server else None,
                    "breaker_subscriber": self._breaker_sub.get_stats() if self._breaker_sub else None,
                },
            },
        )

    def serve_metrics(self, actor: Actor) -> None:
        """`/metrics` and `/healthz` on `bus.endpoints.<name>.metrics`, when configured."""
        if not self.metrics_address:
            return
        registry = CollectorRegistry(auto_describe=False)
        # The stats the last stats message carried: a scrape does no work on the actor's loop
        # (the executor's stats read its journal), and matches what `polyarb status` saw.
        registry.register(ActorCollector(self.name, lambda: self.last_stats, actor.metric_series(),
                                         actor.histograms, actor.breaker_state))
        self.metrics_server = MetricsServer(self.metrics_address, registry, actor.health)
        self.spawn(self.metrics_server.serve(self.clock.sleep), "metrics")

    async def publish_stats(self, actor: Actor) -> None:
        while True:
            message = self.stats_message(actor)
            self.last_stats = message.stats
            self.publisher.publish(topics.stats(self.name), message)
            await self.clock.sleep(self.config.runtime.stats_interval_seconds)

    def close(self) -> None:
        linger = self.config.bus.linger_ms
        if self.rpc_server:
            self.rpc_server.close()
        if self._breaker_sub:
            self._breaker_sub.close()
        self.publisher.close(linger)
