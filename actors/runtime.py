"""The actor shell: one process, one actor.

`run_actor(name)` creates the ZMQ context inside the process, loads and
watches the config, binds the actor's PUB (and RPC, if configured) endpoint,
follows the breaker broadcast, publishes stats every interval, and handles
SIGTERM/SIGINT: stop hook, sockets closed with a short linger, context
terminated, exit 0. A fault in any of its tasks exits 1 so supervisord
restarts the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from actors.base import Actor, RpcMethod
from actors.breaker_follower import BreakerFollower
from actors.clock import SystemClock
from actors.logs import setup_logging
from actors.registry import actor_class
from bus import topics
from bus.codec import Stamper
from bus.context import destroy, new_context
from bus.messages import Stats
from bus.sockets import Publisher, RpcServer, Subscriber
from config.loader import ConfigError
from config.runtime import ConfigWatcher
from config.schema import Config

log = logging.getLogger("polyarb.runtime")

BREAKER_SOURCE = "executor"


class ActorRuntime:
    """What the shell gives an actor: config, clock, context, publisher, follower."""

    def __init__(self, name: str, watcher: ConfigWatcher, ctx: Any, clock: Any) -> None:
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
                },
                "config": self.watcher.get_stats(),
                "breaker": self.breaker.get_stats(),
                "bus": {
                    "publisher": self.publisher.get_stats(),
                    "rpc_server": self.rpc_server.get_stats() if self.rpc_server else None,
                    "breaker_subscriber": self._breaker_sub.get_stats() if self._breaker_sub else None,
                },
            },
        )

    async def publish_stats(self, actor: Actor) -> None:
        while True:
            self.publisher.publish(topics.stats(self.name), self.stats_message(actor))
            await self.clock.sleep(self.config.runtime.stats_interval_seconds)

    def close(self) -> None:
        linger = self.config.bus.linger_ms
        if self.rpc_server:
            self.rpc_server.close()
        if self._breaker_sub:
            self._breaker_sub.close()
        self.publisher.close(linger)


def rpc_handler(methods: dict[str, RpcMethod]) -> Callable[[str, dict[str, Any]], Awaitable[Any]]:
    """Dispatch an RPC request to the actor's method of that name."""

    async def handle(method: str, params: dict[str, Any]) -> Any:
        fn = methods.get(method)
        if fn is None:
            raise LookupError(f"unknown method {method!r}; known: {', '.join(sorted(methods))}")
        return await fn(params)

    return handle


async def _serve(name: str, config_path: str | None) -> int:
    clock = SystemClock()
    watcher = ConfigWatcher(config_path, clock=clock)
    setup_logging(name, watcher.config.runtime.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ctx = new_context()
    rt = ActorRuntime(name, watcher, ctx, clock)
    actor = actor_class(name)(rt)

    def on_config(old: Config, new: Config) -> None:
        logging.getLogger().setLevel(new.runtime.log_level)
        cb = new.circuit_breaker
        rt.breaker.configure(cb.heartbeat_interval_seconds, cb.unknown_after_missed_heartbeats)
        actor.on_config(old, new)

    watcher.on_change(on_config)
    code = 0
    try:
        await watcher.start()
        await actor.start()
        methods = actor.rpc_methods()
        if rt.rpc_endpoint and methods:
            cfg = rt.config
            rt.rpc_server = RpcServer(
                ctx, rt.rpc_endpoint, rpc_handler(methods), rt.stamper,
                cache_size=getattr(getattr(cfg, name, None), "request_cache_size", 10_000),
                max_message_bytes=cfg.bus.max_message_bytes,
            )
            rt.spawn(rt.rpc_server.serve(), "rpc")
        rt.spawn(rt.follow_breaker(), "breaker")
        rt.spawn(rt.publish_stats(actor), "stats")
        rt.spawn(actor.run(), "run")
        log.info("started", extra={"fields": {"pid": os.getpid(), "boot_id": rt.boot_id}})
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *rt._tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper:
                exc = task.exception() if not task.cancelled() else None
                log.error("task %s ended: %r", task.get_name(), exc, exc_info=exc)
                code = 1
        stopper.cancel()
        await actor.stop()
    except Exception:
        log.exception("fatal error")
        code = 1
    finally:
        for task in rt._tasks:
            task.cancel()
        await asyncio.gather(*rt._tasks, return_exceptions=True)
        await watcher.stop()
        rt.close()
        destroy(ctx, rt.config.bus.linger_ms)
        log.info("stopped", extra={"fields": {"exit_code": code}})
    return code


def run_actor(name: str, config_path: str | None = None) -> int:
    try:
        return asyncio.run(_serve(name, config_path))
    except ConfigError as exc:
        print(f"polyarb: {exc}", flush=True)
        return 2
