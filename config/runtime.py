"""The runtime config: the current validated config, hot-reloaded.

`get_runtime_config()` returns the config in force (attribute access, e.g.
`get_runtime_config().trading.max_position_size`). `ConfigWatcher` watches the
file's DIRECTORY (editors save by writing a temp file and renaming it over the
original), debounces bursts of events, validates the whole file and swaps it
in one step, then calls the registered callbacks with (old, new). A bad file
keeps the running config; the error, of whatever kind, is counted and logged.
Restart-only sections are reported, not applied. The watcher reads and parses
in a worker thread (a hostile file must not freeze the actor's event loop);
the swap and the callbacks run on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from config.loader import ConfigError, load, resolve_path
from config.schema import RESTART_ONLY, Config

log = logging.getLogger(__name__)

_current: Config | None = None

Callback = Callable[[Config, Config], Any]


def get_runtime_config() -> Config:
    """The config in force; loads the default (or $POLYARB_CONFIG) on first use."""
    global _current
    if _current is None:
        _current = load()
    return _current


def set_runtime_config(config: Config) -> None:
    global _current
    _current = config


class ConfigReloader:
    """Validate-and-swap, without any file watching (unit-testable)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, initial: Config | None = None) -> None:
        self.path = resolve_path(path)
        self.config = initial if initial is not None else load(self.path)
        set_runtime_config(self.config)
        self._callbacks: list[Callback] = []
        self._pending: set[asyncio.Future[Any]] = set()
        self.reloads = 0
        self.reload_errors = 0
        self.unchanged = 0
        self.last_error: str | None = None
        self.last_reload_ns: int | None = None
        self.pending_restart: list[str] = []

    def on_change(self, callback: Callback) -> None:
        self._callbacks.append(callback)

    def reload(self, now_ns: int | None = None) -> bool:
        """Re-read the file; True if a new config was applied."""
        try:
            new = load(self.path)
        except Exception as exc:  # a ConfigError, or a loader bug: a rejection all the same
            return self._reject(exc)
        return self._apply(new, now_ns)

    async def reload_async(self, now_ns: int | None = None) -> bool:
        """`reload` with the reading and parsing in a worker thread; the swap stays on the loop."""
        try:
            new = await asyncio.to_thread(load, self.path)
        except Exception as exc:
            return self._reject(exc)
        return self._apply(new, now_ns)

    def _reject(self, exc: Exception) -> bool:
        self.reload_errors += 1
        self.last_error = str(exc) if isinstance(exc, ConfigError) else f"{self.path}: {type(exc).__name__}: {exc}"
        if isinstance(exc, ConfigError):
            log.error("config reload rejected, keeping the running config: %s", exc)
        else:
            log.error("config reload failed, keeping the running config", exc_info=exc)
        return False

    def _apply(self, new: Config, now_ns: int | None) -> bool:
        old = self.config
        held = {s: getattr(old, s) for s in RESTART_ONLY if getattr(new, s) != getattr(old, s)}
        self.pending_restart = sorted(held)
        if held:
            log.warning("config sections changed that need a restart, not applied: %s", ", ".join(held))
            new = msgspec.structs.replace(new, **held)
        if new == old:
            # A valid file equal to the running config: a rejected edit undone by
            # restoring the file is a good reload, and the rejection is over.
            self.unchanged += 1
            self.last_error = None
            return False
        self.config = new
        set_runtime_config(new)
        self.reloads += 1
        self.last_error = None
        self.last_reload_ns = now_ns
        log.info("config reloaded from %s", self.path)
        for cb in self._callbacks:
            try:
                result = cb(old, new)
                if asyncio.iscoroutine(result):
                    task = asyncio.ensure_future(result)
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
            except Exception:  # a callback's bug must not undo the reload
                log.exception("config callback failed")
        return True

    def get_stats(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "unchanged": self.unchanged,
            "last_error": self.last_error,
            "last_reload_ns": self.last_reload_ns,
            "pending_restart": self.pending_restart,
        }


class _DirHandler(FileSystemEventHandler):
    def __init__(self, target: Path, notify: Callable[[], None]) -> None:
        self._target = target.resolve()
        self._notify = notify

    # Reading the file ourselves raises 'opened' / 'closed_no_write': ignore
    # those or every reload would trigger the next.
    _CHANGES = frozenset({"modified", "created", "moved", "closed"})

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in self._CHANGES:
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(p and Path(os.fsdecode(p)).resolve() == self._target for p in paths):
            self._notify()


class ConfigWatcher(ConfigReloader):
    """Hot reload: `await watcher.start()` / `await watcher.stop()`."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        debounce_seconds: float | None = None,
        clock: Any = None,
        initial: Config | None = None,
    ) -> None:
        super().__init__(path, initial)
        self._debounce = (
            debounce_seconds if debounce_seconds is not None else self.config.runtime.config_debounce_ms / 1000
        )
        self._clock = clock
        self._observer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._again = False  # a change arrived while a reload was reading the file
        self.events = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._observer = Observer()
        self._observer.schedule(_DirHandler(self.path, self._from_thread), str(self.path.parent.resolve()))
        self._observer.daemon = True
        self._observer.start()
        # The file may have changed between the first read (at construction) and now: an
        # edit there raised no event we could hear, and the process ran on the older
        # config until the next edit (a venue restarted during a chaos run kept a fault
        # on for 5 minutes). Read it once more, now that every later edit is heard.
        self._schedule()

    async def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
        if self._reloading is not None:
            self._reloading.cancel()
            await asyncio.gather(self._reloading, return_exceptions=True)
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 2.0)
            self._observer = None

    def _from_thread(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        self.events += 1
        if self._timer:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_later(self._debounce, self._fire)

    def _fire(self) -> None:
        self._timer = None
        # One reload at a time, so an older read can never be swapped in after a newer one.
        if self._reloading is not None and not self._reloading.done():
            self._again = True
            return
        assert self._loop is not None
        self._reloading = self._loop.create_task(self._reload_until_current(), name="config-reload")

    async def _reload_until_current(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            await self.reload_async(self._clock.time_ns() if self._clock else None)

    def get_stats(self) -> dict[str, Any]:
        return {**super().get_stats(), "fs_events": self.events}
