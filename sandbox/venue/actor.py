"""The venue as a process: `polyarb actor venue`.

start() builds the markets, books, simulator and fault injector, serves one
aiohttp app (market channel + REST) on sandbox.venue.host:port (port 0 = any
free port: see `ws_url` / `http_url` in the stats), and bootstraps the chain
in the BACKGROUND: market data never waits for anvil; `chain_ready` in the
stats says when settlement can work. run() drives the simulator on the
runtime's clock. A hot reload applies faults, update rate and arbitrage at
once; markets, seed, host and port are restart-only (reported, not applied).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import random
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.runtime.actor import Actor
from config.schema import READ_AT_START, Config
from sandbox.venue import rest_market
from sandbox.venue.faults import FaultInjector
from sandbox.venue.market_ws import MarketHub
from sandbox.venue.markets import deploy_module, market_infos
from sandbox.venue.resolution import Resolver
from sandbox.venue.simulator import Simulator
from sandbox.venue.state import VenueState

if TYPE_CHECKING:
    from actors.runtime.context import ActorContext

log = logging.getLogger(__name__)

CLOB_PACKAGE = "sandbox.venue.clob"
HOUSEKEEPING_NS = 100_000_000  # disconnect faults and held frames are checked every 100 ms
HEAL_INTERVAL_S = 1.0  # how often the operator's lost settlements are looked for
CHAIN_PROBE_TIMEOUT = 2.0  # seconds: a chain that does not answer is retried later, with backoff
RESTART_ONLY_KEYS = READ_AT_START["sandbox.venue"]

Installer = Callable[[web.Application, "VenueActor"], None]
VENUE_KEY = web.AppKey("venue", object)


def discover_installers() -> list[Installer]:
    """Route installers of the CLOB order routes: `sandbox.venue.clob.install`, a
    function `install(app, venue)` (or a list of them, or a module `install`
    defining such a function). None if the package does not exist."""
    try:
        pkg = importlib.import_module(CLOB_PACKAGE)
    except ModuleNotFoundError as exc:
        if exc.name == CLOB_PACKAGE:
            return []
        raise
    install: Any = getattr(pkg, "install", None)
    if install is None:
        try:
            install = importlib.import_module(f"{CLOB_PACKAGE}.install")
        except ModuleNotFoundError as exc:
            if exc.name != f"{CLOB_PACKAGE}.install":
                raise
            log.warning("%s has no `install`: no CLOB routes", CLOB_PACKAGE)
            return []
    if isinstance(install, ModuleType):
        install = getattr(install, "install", None)
    if callable(install):
        return [install]
    if isinstance(install, list | tuple):
        return list(install)
    raise TypeError(f"{CLOB_PACKAGE}.install is neither an installer function nor a list of them")


def build_app(venue: VenueActor, extra: list[Installer] | None = None) -> web.Application:
    """The venue's one aiohttp app: HTTP faults middleware, market REST routes,
    `/ws/market`, then the installers: `extra` if given, else the discovered
    ones (`discover_installers`). Each is called as `install(app, venue)`;
    `app[VENUE_KEY]` is the venue too."""
    app = web.Application(middlewares=[venue.faults.middleware()], client_max_size=1 << 20)
    app[VENUE_KEY] = venue
    rest_market.install(app, venue)
    app.router.add_get("/ws/market", venue.hub.handle)
    if getattr(venue, "resolver", None) is not None:
        async def resolve(request: web.Request) -> web.Response:
            return await _resolve(venue, request)

        app.router.add_post("/sandbox/resolve", resolve)
    for install in discover_installers() if extra is None else extra:
        install(app, venue)
    return app


async def _resolve(venue: Any, request: web.Request) -> web.Response:
    """POST /sandbox/resolve {"market": slug or condition id | "event": slug, "outcome": name?} (sandbox
    only): resolve now; the winner is `outcome`, else the configured one, else the likelier."""
    try:
        doc = await request.json()
        key = str(doc.get("event") or doc.get("market") or "")
        outcome = doc.get("outcome")
        resolved = await venue.resolver.resolve(key, str(outcome) if outcome is not None else None)
    except (ValueError, AttributeError, TypeError) as exc:  # bad JSON, unknown market or outcome
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"resolved": resolved})


async def in_daemon_thread(fn: Callable[[], Any]) -> Any:
    """Run blocking web3 work off the loop in a DAEMON thread: unlike
    asyncio.to_thread, a node that hangs cannot hold up the process's exit."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if fut.done():  # the awaiting task was cancelled meanwhile
            return
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn()
        except Exception as exc:  # handed to the awaiting task
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: the process is exiting
            pass

    threading.Thread(target=work, name="venue-chain", daemon=True).start()
    return await fut


class VenueActor(Actor):
    name = "venue"

    def __init__(self, rt: ActorContext, installers: list[Installer] | None = None) -> None:
        super().__init__(rt)
        self.installers = installers  # None: discover sandbox.venue.clob
        self.deployment: Any = None  # sandbox.deploy.Deployment once the chain is bootstrapped
        self.clob: Any = None  # set by the CLOB installer; its get_stats() goes under "clob"
        self.chain_ready = False
        self.chain_status = "pending"
        self.chain_error = ""
        self.chain_attempts = 0
        self.ws_url = ""
        self.http_url = ""
        self.restart_only_changes = 0
        self._runner: web.AppRunner | None = None
        self._chain_task: asyncio.Task[None] | None = None
        self._resolving: set[str] = set()

    async def start(self) -> None:
        cfg = self.rt.config
        if cfg.sandbox is None:
            raise SystemExit("the venue needs a `sandbox.venue` section in the config")
        v, clock = cfg.sandbox.venue, self.rt.clock
        self.markets = market_infos(cfg)
        self.state = VenueState(self.markets, clock)
        self.faults = FaultInjector(v.faults, random.Random(f"{v.seed}:faults"), clock)
        self.sim = Simulator(self.state, v.markets, random.Random(v.seed), clock,
                             updates_per_second=v.updates_per_second, arbitrage=v.arbitrage, events=v.events,
                             binary_gaps=v.faults.inject_binary_gap)
        self.sim.init_books()
        self.hub = MarketHub(self.state, self.faults, clock)
        self.resolver = Resolver(self.state, self.sim, lambda: self.rt.config.sandbox.venue, self._report_payout)
        self._runner = web.AppRunner(build_app(self, self.installers), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, v.host, v.port).start()
        port = self._runner.addresses[0][1]
        self.http_url = f"http://{v.host}:{port}"
        self.ws_url = f"ws://{v.host}:{port}/ws/market"
        log.info("serving %s and %s: %d markets, %d tokens", self.ws_url, self.http_url, len(self.markets),
                 len(self.state.books))
        self._chain_task = asyncio.create_task(self._bootstrap_chain(), name="venue-chain")

    async def run(self) -> None:
        clock, last_housekeeping = self.rt.clock, 0
        while True:
            now = clock.monotonic_ns()
            self.sim.advance(now)
            if now - last_housekeeping >= HOUSEKEEPING_NS:
                self.hub.housekeeping(now)
                if self.clob is not None:
                    self.clob.expire_heartbeats()
                    if (user_hub := getattr(self.clob, "user_hub", None)) is not None:
                        user_hub.housekeeping(now)
                for key in self.resolver.due(now):
                    self._spawn_resolution(key)
                last_housekeeping = now
            ups = self.sim.updates_per_second
            # About one update per wake-up at low rates; batches of them above 500/s.
            await clock.sleep(0.05 if ups <= 0 else min(0.05, max(0.002, 1 / ups)))

    async def stop(self) -> None:
        if self._chain_task is not None:
            self._chain_task.cancel()
            await asyncio.gather(self._chain_task, return_exceptions=True)
        if self._runner is not None:
            await self.hub.close_all()
            await self._runner.cleanup()

    # ------------------------------------------------------------ resolution

    def _spawn_resolution(self, key: str) -> None:
        if key in self._resolving:
            return
        self._resolving.add(key)
        task = asyncio.create_task(self.resolver.resolve(key), name=f"resolve-{key}")
        task.add_done_callback(lambda t, k=key: self._resolved(k, t))

    def _resolved(self, key: str, task: asyncio.Task[Any]) -> None:
        self._resolving.discard(key)
        if not task.cancelled() and task.exception() is not None:
            log.warning("resolving %s failed: %s", key, task.exception())

    async def _report_payout(self, question_id: str, yes_wins: bool, neg_risk: bool) -> None:
        if self.clob is None or not self.chain_ready:
            raise RuntimeError("no chain: the payout is not reported")
        await self.clob.settler.report_payout(question_id, yes_wins, neg_risk)

    # ------------------------------------------------------------ chain

    async def _bootstrap_chain(self) -> None:
        """Bring the chain to the configured world, retrying with backoff while it is
        down; a missing sandbox.deploy only disables settlement (logged)."""
        try:
            deploy = deploy_module()
        except Exception as exc:  # a broken deploy module: market data still works
            self._chain_failed("error", exc)
            log.exception("cannot import sandbox.deploy: no settlement")
            return
        if deploy is None:
            self.chain_status = "skipped: sandbox.deploy not found"
            log.warning("sandbox.deploy not found: serving market data without a chain")
            return
        cfg, delay = self.rt.config, 0.2
        while True:
            self.chain_attempts += 1
            try:
                self.deployment = await in_daemon_thread(lambda: self._bootstrap_once(deploy, cfg))
            except Exception as exc:
                self._chain_failed("waiting for the chain", exc)
                # Warn on the first failure and every tenth: a down chain must not flood the log.
                level = logging.WARNING if self.chain_attempts % 10 == 1 else logging.DEBUG
                log.log(level, "chain bootstrap attempt %d failed (retry in %.1fs): %s", self.chain_attempts, delay,
                        self.chain_error)
                await self.rt.clock.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.clob is not None:  # before any order is taken: this world's store, open trades resumed
                await self.clob.on_chain_ready()
            self.chain_ready, self.chain_status, self.chain_error = True, "ready", ""
            log.info("chain bootstrapped at %s", cfg.chain.rpc_url)
            if self.clob is not None:
                await self._heal_settlements()
            return

    async def _heal_settlements(self) -> None:
        """Every second: give the chain back the settlements it lost (Settler.heal)."""
        assert self.clob is not None
        while True:
            await self.rt.clock.sleep(HEAL_INTERVAL_S)
            try:
                await self.clob.settler.heal()
            except Exception as exc:  # the node is down or restarting: next round
                log.debug("settlement heal skipped: %s", exc)

    def _bootstrap_once(self, deploy: ModuleType, cfg: Config) -> Any:
        self.chain_probe(cfg)  # a down chain fails fast here, not after bootstrap's own long wait
        params = list(inspect.signature(deploy.bootstrap).parameters)
        if params and params[0] == "w3":  # bootstrap(w3, cfg), as first specified
            from web3 import HTTPProvider, Web3

            w3 = Web3(HTTPProvider(cfg.chain.rpc_url, request_kwargs={"timeout": cfg.chain.request_timeout_seconds}))
            return deploy.bootstrap(w3, cfg)
        return deploy.bootstrap(cfg)  # bootstrap(cfg, rpc_url=None, ...)

    @staticmethod
    def chain_probe(cfg: Config) -> None:
        """Raise unless the node answers eth_chainId within CHAIN_PROBE_TIMEOUT (replaceable in tests)."""
        from web3 import HTTPProvider, Web3

        Web3(HTTPProvider(cfg.chain.rpc_url, request_kwargs={"timeout": CHAIN_PROBE_TIMEOUT})).eth.chain_id  # noqa: B018

    def _chain_failed(self, status: str, exc: BaseException) -> None:
        self.chain_status = status
        self.chain_error = f"{type(exc).__name__}: {exc}"[:300]

    # ------------------------------------------------------------ runtime hooks

    def on_config(self, old: Config, new: Config) -> None:
        if new.sandbox is None:
            log.warning("the new config has no `sandbox` section: venue settings unchanged")
            return
        v = new.sandbox.venue
        started, ended = self.faults.configure(v.faults)
        self.hub.set_stall(started, ended)
        if (user_hub := getattr(self.clob, "user_hub", None)) is not None:
            user_hub.set_stall(started, ended)
        self.sim.configure(v.updates_per_second, v.arbitrage, v.faults.inject_binary_gap)
        if old.sandbox is not None:
            changed = [k for k in RESTART_ONLY_KEYS if getattr(old.sandbox.venue, k) != getattr(v, k)]
            if changed:
                self.restart_only_changes += 1
                log.warning("sandbox.venue keys %s are restart-only: not applied", ", ".join(changed))

    def get_stats(self) -> dict[str, Any]:
        ws = self.hub.get_stats()
        return {
            "ws_url": self.ws_url,
            "http_url": self.http_url,
            "chain_ready": self.chain_ready,
            "chain_status": self.chain_status,
            "chain_error": self.chain_error,
            "chain_attempts": self.chain_attempts,
            "connections": ws["connections"],
            "subscribers": ws["subscribers"],
            "frames_sent": ws["frames_sent"],
            "restart_only_changes": self.restart_only_changes,
            "ws": ws,
            "simulator": self.sim.get_stats(),
            "faults": self.faults.get_stats(),
            "books": self.state.get_stats(),
            "resolution": self.resolver.get_stats(),
            "clob": self.clob.get_stats() if self.clob is not None else None,
            "user_ws": user_hub.get_stats() if (user_hub := getattr(self.clob, "user_hub", None)) else None,
        }

    def health(self) -> dict[str, Any]:
        """Running, and its chain side ready (contracts found, the operator funded)."""
        return {"running": True, "chain": bool(self.chain_ready)}

    def summary(self) -> dict[str, Any]:
        ws, sim = self.hub.get_stats(), self.sim.get_stats()
        return {
            "conns": ws["connections"],
            "frames": ws["frames_sent"],
            "gaps": sim["gaps_opened"],
            "taken": sim["gaps_taken"],
            "faults": sum(v for k, v in self.faults.get_stats().items() if isinstance(v, int)),
            "chain": "ready" if self.chain_ready else self.chain_status.split(":")[0],
        }
