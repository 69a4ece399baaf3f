"""One process, one actor: `run_actor(name)`.

Creates the ZMQ context inside the process, loads and watches the config,
builds the shell, binds the RPC server if the actor has methods, follows the
breaker broadcast, publishes stats every interval, and handles SIGTERM/SIGINT:
stop hook, sockets closed with a short linger, context terminated, exit 0. A
fault in any of its tasks exits 1 so supervisord restarts the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

from actors.runtime.actor import RpcMethod
from actors.runtime.clock import SystemClock
from actors.runtime.logs import setup_logging
from actors.runtime.parent import ParentWatch, die_with_parent
from actors.runtime.registry import actor_class
from actors.runtime.shell import ActorRuntime
from bus.context import destroy, new_context
from bus.curve import KeyError_ as CurveKeyError
from bus.curve import for_config, start_authenticator
from bus.sockets import RpcServer
from config.loader import ConfigError
from config.runtime import ConfigWatcher
from config.schema import Config

log = logging.getLogger("polyarb.runtime")


def rpc_handler(methods: dict[str, RpcMethod]) -> Callable[[str, dict[str, Any]], Awaitable[Any]]:
    """Dispatch an RPC request to the actor's method of that name."""

    async def handle(method: str, params: dict[str, Any]) -> Any:
        fn = methods.get(method)
        if fn is None:
            raise LookupError(f"unknown method {method!r}; known: {', '.join(sorted(methods))}")
        return await fn(params)

    return handle


PARENT_POLL_SECONDS = 0.5
# web3's py_ecc raises the recursion limit to 100,000 when it is imported, far past what a
# C stack holds: a deeply nested value then overflows the stack (SIGSEGV) instead of
# raising RecursionError. Our decoders bound depth by type; this bounds everything else
# (a node's or a library's JSON, parsed by code we do not own).
SAFE_RECURSION_LIMIT = 2000


def bound_recursion() -> None:
    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT:
        sys.setrecursionlimit(SAFE_RECURSION_LIMIT)


async def _watch_parent(watch: ParentWatch, clock: SystemClock, stop: asyncio.Event) -> None:
    """Stop when the supervisor is gone (the parent-death signal's fallback)."""
    while not watch.gone():
        await clock.sleep(PARENT_POLL_SECONDS)
    log.warning("the supervisor (pid %d) is gone: stopping", watch.parent)
    stop.set()


async def _until_stopped(coro: Coroutine[Any, Any, Any], stop: asyncio.Event) -> bool:
    """Run `coro` unless SIGTERM (or the supervisor's death) comes first; False if it did."""
    work = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([work, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if work.done():
        work.result()  # raises what start() raised
        return True
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    return False


def _level(cfg: Config, name: str) -> str:
    return cfg.runtime.log_levels.get(name, cfg.runtime.log_level)


async def _serve(name: str, config_path: str | None) -> int:
    clock = SystemClock()
    watch = ParentWatch()
    watcher = ConfigWatcher(config_path, clock=clock)
    setup_logging(name, _level(watcher.config, name))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    die_with_parent(signal.SIGTERM)
    parent_watch = asyncio.create_task(_watch_parent(watch, clock, stop), name="parent")
    try:  # CurveZMQ: this actor's key pair, the keys it admits and pins (None when off)
        security = for_config(watcher.config, name)
    except CurveKeyError as exc:
        raise ConfigError(f"bus.security: {exc}") from None
    ctx = new_context(security)
    zap = start_authenticator(ctx, security) if security is not None else None  # before any bind
    rt = ActorRuntime(name, watcher, ctx, clock)
    rt.security = security
    actor = actor_class(name)(rt)
    bound_recursion()

    def on_config(old: Config, new: Config) -> None:
        logging.getLogger().setLevel(_level(new, name))
        cb = new.circuit_breaker
        rt.breaker.configure(cb.heartbeat_interval_seconds, cb.unknown_after_missed_heartbeats)
        actor.on_config(old, new)

    watcher.on_change(on_config)
    code = 0
    started = False
    try:
        await watcher.start()
        # SIGTERM is answered in every state, also while start() waits for a dependency.
        started = await _until_stopped(actor.start(), stop)
        if not started:
            log.info("stopped while starting")
            return code
        bound_recursion()  # start() may have imported web3
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
        rt.serve_metrics(actor)
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
        parent_watch.cancel()
        for task in rt._tasks:
            task.cancel()
        await asyncio.gather(parent_watch, *rt._tasks, return_exceptions=True)
        await watcher.stop()
        rt.close()
        if zap is not None:
            zap.stop()
        destroy(ctx, rt.config.bus.linger_ms)
        log.info("stopped", extra={"fields": {"exit_code": code}})
    return code


def run_actor(name: str, config_path: str | None = None) -> NoReturn:
    """Serve the actor, then end the process at once: never `return` into an
    interpreter exit that waits for threads. asyncio.run waits for every job queued
    in the default thread pool, and the interpreter joins every pool thread: with
    a backlog of blocking calls whose tasks are gone (the venue under load), an
    actor that had logged "stopped" was still alive 60 s after SIGTERM. Every
    state that must survive is committed by now (SQLite, one transaction per step)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(_serve(name, config_path))  # not asyncio.run: see above
    except ConfigError as exc:
        print(f"polyarb: {exc}", flush=True)
        code = 2
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
