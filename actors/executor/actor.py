"""The executor as a process: signals in, orders and transactions out, the
circuit breaker broadcast to every actor.

Start-up order matters: restore the breaker (a restart never closes an open
breaker), make the one-time approvals, finish every execution a previous
process left IN_PROGRESS, and only then take new signals.

RPC methods:
    halt {reason}  -> FORCED_OPEN (the kill switch); stays until resume
    resume {}      -> reset to CLOSED
    breaker {}     -> the breaker's stats
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.domain.enums import CircuitState, SetKind
from actors.domain.money import format_usdc
from actors.domain.wallet import load_wallet
from actors.executor.circuit_breaker import CircuitBreaker
from actors.executor.idempotency import IdempotencyStore
from actors.executor.journal import Journal
from actors.executor.metrics import SERIES, retry_latency
from actors.executor.onchain import OnChainSender
from actors.executor.outcomes import Execution
from actors.executor.pol_price import PolPrice
from actors.executor.reconciler import Reconciler
from actors.executor.redemption import Redeemer
from actors.executor.retry_policy import RetryPolicy
from actors.executor.tx_sender import TxSender
from actors.executor.web3_chain import Web3Chain
from actors.nonce.client import NonceClient
from actors.runtime.actor import Actor, RpcMethod
from actors.runtime.context import ActorContext
from actors.runtime.metrics import Latency, Series
from actors.runtime.params import opt_str
from actors.runtime.storage import archive_state, inside
from bus import curve, topics, trace
from bus.messages import BreakerState, Signal
from bus.messages import TxResult as TxResultMsg
from bus.sockets import Subscriber
from bus.trace import tracing
from config.schema import Config

log = logging.getLogger(__name__)


class ExecutorActor(Actor):
    name = "executor"

    def __init__(self, rt: ActorContext, venue: Any = None, chain: Any = None, nonces: Any = None) -> None:
        super().__init__(rt)
        self._venue, self._chain, self._nonces = venue, chain, nonces  # injected in tests
        self.ready = False
        self.archived_state: list[str] = []  # books of another chain moved aside at start
        self.reconciled = 0
        self.chain_reachable: bool | None = None  # the last probe's answer (None: none yet)
        self.reconcile_errors = 0
        self.risk_errors = 0  # rounds of the risk limits that could not read the journal or the chain
        self.signals_received = 0
        self.dropped_bodies = 0
        self._queue: asyncio.Queue[tuple[Signal, int, str]] = asyncio.Queue()
        self._last_nonce_stats: dict[str, Any] = {}
        self.paper: Any = None  # the paper world, when the config has a `paper` section

    async def start(self) -> None:
        cfg, rt = self.rt.config, self.rt
        state = Path(cfg.executor.state_dir)
        wallet = None
        if cfg.paper is not None and self._venue is None and self._chain is None and self._nonces is None:
            # Paper trading: the same pipeline against a venue that matches on the live books and a
            # chain in SQLite; no wallet is loaded, nothing is sent (actors/executor/paper/).
            from actors.executor.paper.world import PaperWorld

            self.paper = PaperWorld(rt)
            await self.paper.start()
            self._venue, self._chain, self._nonces = self.paper.venue, self.paper.chain, self.paper.nonces
        if self._chain is None:
            wallet = load_wallet(cfg)
            self._chain = Web3Chain(cfg.chain.url(), wallet, cfg.chain.chain_id,
                                    timeout=cfg.chain.request_timeout_seconds)
        if self._venue is None:
            from actors.executor.clob_venue import ClobVenue

            self._venue = ClobVenue(cfg.executor.clob_url, wallet or load_wallet(cfg), cfg.chain.chain_id,
                                    clock=rt.clock, user_ws_url=cfg.executor.user_ws_url,
                                    settle_timeout_s=cfg.executor.settle_timeout_seconds)
        if self._nonces is None:
            ep = cfg.bus.endpoints["nonce"].rpc
            assert ep is not None, "bus.endpoints.nonce.rpc is required"
            self._nonces = NonceClient(rt.ctx, ep, rt.stamper, timeout_ms=cfg.bus.rpc_timeout_ms,
                                       retries=cfg.bus.rpc_retries, clock=rt.clock)
        tag = f"{cfg.chain.chain_id}-{self._chain.address.lower()}"
        # One file: journal, claims, positions and the breaker snapshot, so each step commits once.
        # `idempotency-<tag>.sqlite` is where the claims lived before; read once, then archived.
        files = (inside(state, f"executor-{tag}.sqlite"), inside(state, f"idempotency-{tag}.sqlite"))
        world = await self._chain_identity()
        self.journal = Journal(files[0], rt.clock)
        recorded = self.journal.get_value("world")
        if recorded is not None and recorded != world:
            # Books of another chain (a reset sandbox, a different node): never applied.
            self.journal.close()
            stamp = datetime.fromtimestamp(rt.clock.time_ns() // 10**9, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
            self.archived_state = [str(archive_state(f, state / "archive", stamp)) for f in files if f.exists()]
            log.warning("the executor's journal and idempotency store belong to another chain (genesis %s, this "
                        "chain %s): moved to %s; starting with empty books", recorded, world,
                        ", ".join(self.archived_state))
            self.journal = Journal(files[0], rt.clock)
        self.journal.put_value("world", world)
        self.idem = IdempotencyStore(files[0], clock=rt.clock, db=self.journal.db,
                                     ttl_seconds=cfg.executor.idempotency_ttl_seconds,
                                     in_progress_ttl_seconds=cfg.executor.in_progress_lease_seconds)
        if files[1].exists():
            self._adopt_claims(files[1], state / "archive")
        # The pipeline tells the breaker each outcome's verdict (market outcomes are released).
        self.breaker = CircuitBreaker.from_config(cfg.circuit_breaker, clock=rt.clock)
        snap = self.journal.get_value("breaker")
        if snap:
            self.breaker.restore(snap)  # never silently closes an open breaker
        self.breaker.add_listener(self._on_transition)
        self.retry = RetryPolicy.from_config(cfg.retry_policy, clock=rt.clock)
        self.retry.latency = retry_latency()
        feed = getattr(self._chain, "price_feed", None)  # a fake chain in tests has none
        self.pol_price = PolPrice((lambda: feed(self.rt.config.executor.pol_price_feed)) if feed else None,
                                  rt.clock, lambda: self.rt.config)
        self.onchain = OnChainSender(self._chain, self._nonces, self.retry, rt.clock, self.journal,
                                     lambda: self.rt.config, self.pol_price.per_pol)
        self.sender = TxSender(venue=self._venue, chain=self._chain, onchain=self.onchain, breaker=self.breaker,
                               retry=self.retry, idempotency=self.idem, journal=self.journal, clock=rt.clock,
                               config=lambda: self.rt.config, nonce_stats=lambda: self._last_nonce_stats)
        self.reconciler = Reconciler(self._chain, self.journal, self.breaker, self.sender)
        self.redeemer = Redeemer(self.sender)
        self._broadcast()

    def _adopt_claims(self, old: Path, archive: Path) -> None:
        """Claims kept in their own file by an older version: copied into the journal's
        file in one transaction (existing keys win), then the old file is archived."""
        db = self.journal.db
        db.execute("ATTACH DATABASE ? AS old", (str(old),))  # not allowed inside a transaction
        try:
            with self.journal.step():
                n = db.execute("INSERT OR IGNORE INTO main.idempotency SELECT * FROM old.idempotency").rowcount
        finally:
            db.execute("DETACH DATABASE old")
        stamp = datetime.fromtimestamp(self.rt.clock.time_ns() // 10**9, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        moved = archive_state(old, archive, stamp)
        log.info("adopted %d idempotency claims from %s (moved to %s)", n, old, moved)

    # -- the breaker broadcast
    def _on_transition(self, old: CircuitState, new: CircuitState, reason: str) -> None:
        log.warning("circuit breaker %s -> %s: %s", old, new, reason)
        self.journal.put_value("breaker", self.breaker.snapshot())
        self._broadcast()

    def _broadcast(self) -> None:
        b = self.breaker
        body = BreakerState(state=b.state, reason=b.reason, since_ns=b.since_ns, until_ns=b.open_until_ns)
        env = self.rt.publisher.publish(topics.breaker_state(), body)
        self.rt.breaker.on_message(env)  # the executor follows its own stream too

    async def _heartbeat(self) -> None:
        while True:
            await self.rt.clock.sleep(self.rt.config.circuit_breaker.heartbeat_interval_seconds)
            self._broadcast()

    async def _chain_identity(self) -> str:
        """The chain's genesis hash, waiting (with backoff) for a chain that is not up yet."""
        delay = 0.2
        while True:
            try:
                return await self._chain.genesis_hash()
            except Exception as exc:  # connection refused, timeout: the chain is starting
                log.debug("chain not answering yet (%s): retry in %.1fs", exc, delay)
                await self.rt.clock.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- start-up work, then signals
    async def run(self) -> None:
        tasks = [asyncio.create_task(self.breaker.run_timer(), name="breaker-timer"),
                 asyncio.create_task(self._heartbeat(), name="breaker-heartbeat"),
                 asyncio.create_task(self._poll_nonce_stats(), name="nonce-stats"),
                 asyncio.create_task(self._warm_fees(), name="fee-quotes"),
                 asyncio.create_task(self._read_pol_price(), name="pol-price")]
        if self.paper is not None:
            tasks += [asyncio.create_task(t, name="paper") for t in self.paper.tasks()]
        try:
            await self._prepare()
            self.ready = True
            tasks.append(asyncio.create_task(self._clear_positions(), name="open-positions"))
            tasks.append(asyncio.create_task(self._reconcile_forever(), name="reconcile"))
            tasks.append(asyncio.create_task(self._watch_risk(), name="risk-limits"))
            workers = [asyncio.create_task(self._worker(i)) for i in range(self.rt.config.trading.max_in_flight)]
            await asyncio.gather(self._intake(), *workers, *tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _prepare(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._approve()
                for result in await self.sender.reconcile():  # executions and reserve moves left unfinished
                    self.reconciled += 1
                    self._publish(result)
                if hasattr(self._chain, "collateral_balance"):
                    await self.reconciler.check()  # the books against the chain before the first trade
                return
            except Exception as exc:  # chain, venue or nonce authority not up yet
                self.reconcile_errors += 1
                log.warning("start-up reconciliation not finished, retrying: %s", exc)
                await self.rt.clock.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _approve(self) -> None:
        """The one-time approvals, through the nonce authority. Approving twice is
        harmless, so each start-up attempt uses a fresh key instead of replaying
        an earlier (possibly reverted) one."""
        # An attempt a killed process left unfinished is over: this one checks the chain anew.
        # (Approvals move no pUSD; their gas is POL, like every transaction's.)
        for stale in self.journal.unfinished("approvals:"):
            self.journal.finish(stale, "SUPERSEDED", 0, 0)
        missing = await self._chain.approvals_missing() if hasattr(self._chain, "approvals_missing") else []
        if not missing:
            return
        calls = dict(self._chain.approval_calls())
        attempt = int(self.journal.get_value("approval_attempt") or 0) + 1
        self.journal.put_value("approval_attempt", attempt)
        key = f"approvals:{self._chain.address.lower()}:{attempt}"
        self.journal.begin(key, _APPROVAL_SIGNAL)
        gas = 0
        for name in missing:
            out = await self.onchain.send(key, name, calls[name], 100_000)
            gas += out.gas_cost
            log.info("approval %s mined in %s", name, out.tx_hash)
        self.journal.finish(key, "APPROVED", -gas, gas)  # done: never left looking in flight

    async def _intake(self) -> None:
        cfg = self.rt.config
        router = cfg.bus.endpoints["router"].pub
        sub = Subscriber(self.rt.ctx, [router], [topics.prefix(topics.SIGNAL)],
                         max_message_bytes=cfg.bus.max_message_bytes)
        try:
            while True:
                for r in await sub.recv_batch():
                    if isinstance(r.env.body, Signal):
                        self.signals_received += 1
                        self._queue.put_nowait((r.env.body, r.env.event_ns, r.env.trace_id))
                    else:
                        self.dropped_bodies += 1
                self.sender.queue_size = self._queue.qsize()
        finally:
            sub.close()

    async def _worker(self, n: int) -> None:
        while True:
            signal, event_ns, trace_id = await self._queue.get()
            self.sender.queue_size = self._queue.qsize()
            with tracing(trace_id):  # every log line of this execution (and of its tasks) carries it
                try:
                    result = await self.sender.execute(signal, event_ns=event_ns)
                except Exception:  # a bug in one execution must not stop the others
                    log.exception("execution of %s crashed", signal.signal_id)
                    continue
                self._publish(result)

    def _publish(self, r: Execution) -> None:
        kind = r.signal.kind if r.signal.kind in _STRATEGIES else None
        body = TxResultMsg(signal_id=r.signal.signal_id, idempotency_key=r.idempotency_key, market=r.signal.market,
                           status=r.status, success=r.success, attempt=r.attempt, tx_hash=r.tx_hash,
                           nonce=r.nonce, error=r.error, realized_pnl=r.realized_pnl, gas_cost=r.gas_cost,
                           kind=SetKind(kind) if kind is not None else None, legs=len(r.signal.legs),
                           latency_us=(self.rt.clock.time_ns() - r.signal.created_ns) // 1000
                           if r.signal.created_ns > 0 else None)
        trace_id = trace.current.get() or self.journal.trace_of(r.idempotency_key)
        self.rt.publisher.publish(topics.tx_result(), body, trace_id=trace_id)

    async def _reconcile_forever(self) -> None:
        """Finish what was left PENDING (a merge that could not be sent, a stuck
        transaction) while running, not only at the next start."""
        while True:
            await self.rt.clock.sleep(self.rt.config.executor.reconcile_seconds)
            await self._probe_chain()
            try:
                for result in await self.sender.reconcile():
                    self.reconciled += 1
                    self._publish(result)
                if hasattr(self._chain, "payouts"):
                    for result in await self.redeemer.redeem_resolved():  # held YES baskets whose event resolved
                        self._publish(result)
                await self.reconciler.check()
                if self.reconciler.suspect:  # seen once: confirmed (or not) a few seconds later
                    await self.rt.clock.sleep(RECONCILE_CONFIRM_S)
                    await self.reconciler.check()
            except Exception as exc:  # the chain or the venue is down: next round
                self.reconcile_errors += 1
                log.warning("reconciliation round failed: %s", exc)

    async def _watch_risk(self) -> None:
        """The standing risk limits each second, from the journal: a breach halts even when no
        signal comes (positions left open), and the breaker the guard opened closes once the
        account is back within (a new day, a deposit, a sale) without waiting for a signal."""
        risk = self.sender.risk
        while True:
            try:
                if risk.collateral is None and risk.limits.min_collateral_balance is not None \
                        and hasattr(self._chain, "collateral_balance"):
                    risk.chain_collateral(await self._chain.collateral_balance())
                risk.refresh()
                risk.evaluate()
            except Exception as exc:  # the chain is down: the reconciler's next read gives the balance
                self.risk_errors += 1
                log.warning("risk limits not evaluated: %s", exc)
            await self.rt.clock.sleep(RISK_EVERY_S)

    async def _probe_chain(self) -> None:
        """`/healthz` says whether the chain answered lately, not only at start-up."""
        try:
            await self._chain.nonce_latest()
            self.chain_reachable = True
        except Exception as exc:
            if self.chain_reachable is not False:
                log.warning("the chain does not answer: %s", exc)
            self.chain_reachable = False

    async def _clear_positions(self) -> None:
        """Keep trying to sell what failed unwinds left open: the system's aim is flat."""
        while True:
            await self.rt.clock.sleep(5.0)
            try:
                await self.sender.clear_positions()
            except Exception as exc:  # the venue is down: try again next round
                log.warning("clearing open positions failed: %s", exc)

    async def _warm_fees(self) -> None:
        while True:
            try:
                await self.onchain.refresh_fees()
            except Exception as exc:  # the node is down: the next quote asks again
                log.debug("fee refresh failed: %s", exc)
            await self.rt.clock.sleep(1.0)

    async def _read_pol_price(self) -> None:
        while True:
            await self.pol_price.refresh()  # never raises: a failed read is counted, the static price serves
            await self.rt.clock.sleep(self.rt.config.executor.pol_price_refresh_seconds)

    async def _poll_nonce_stats(self) -> None:
        while True:
            try:
                self._last_nonce_stats = await self._nonces.get_stats()
            except Exception as exc:  # the authority is down: say so in the stats
                self._last_nonce_stats = {"error": str(exc)}
            await self.rt.clock.sleep(self.rt.config.runtime.stats_interval_seconds)

    async def stop(self) -> None:
        # In-flight executions are cancelled with the tasks: their claims stay
        # IN_PROGRESS and the next start reconciles them from the journal (the
        # sell reserve's top-ups too: each is journaled before its split is sent).
        if hasattr(self, "sender"):
            await self.sender.reserve.close()
        for closer in (getattr(self._venue, "close", None), getattr(self._chain, "close", None)):
            if closer is not None:
                await closer()
        if self.paper is not None:
            await self.paper.close()

    # -- control and reload
    def rpc_methods(self) -> dict[str, RpcMethod]:
        async def halt(p: dict[str, Any]) -> Any:
            if not self.journal.get_value(HALTED_BY):  # the first halt's identity holds until a resume
                self.journal.put_value(HALTED_BY, curve.caller.get())  # who may resume, when that is enforced
            self.breaker.force_open(_by(opt_str(p, "reason") or "operator halt"))
            return {"state": str(self.breaker.state), "reason": self.breaker.reason}

        async def resume(p: dict[str, Any]) -> Any:
            halter, who = self.journal.get_value(HALTED_BY) or "", curve.caller.get()
            if self.rt.config.bus.security.resume_by_halting_identity and halter and who != halter:
                raise PermissionError(f"halted by {halter}: only {halter} may resume (bus.security."
                                      "resume_by_halting_identity)")
            self.journal.put_value(HALTED_BY, "")
            why = _by(opt_str(p, "reason") or "operator resume")
            accepted = self.reconciler.accept(why)  # a trip of the reconciler: the chain is the truth now
            self.breaker.reset(why)
            return {"state": str(self.breaker.state), **({"books_rebased": accepted} if accepted else {})}

        async def breaker(p: dict[str, Any]) -> Any:
            return self.breaker.get_stats()

        return {"halt": halt, "resume": resume, "breaker": breaker}

    def on_config(self, old: Config, new: Config) -> None:
        self.breaker.update_config(new.circuit_breaker)
        self.retry.update_config(new.retry_policy)
        if hasattr(self, "sender"):
            self.sender.risk.evaluate()  # a raised limit releases now, a lowered one halts now
        if hasattr(self._venue, "settle_timeout_s"):
            self._venue.settle_timeout_s = new.executor.settle_timeout_seconds

    def get_stats(self) -> dict[str, Any]:
        if not hasattr(self, "sender"):
            return {"ready": False}
        return {**self.sender.get_stats(), "ready": self.ready, "chain_reachable": self.chain_reachable,
                "reconciled": self.reconciled,
                "archived_state": self.archived_state, "reconciler": self.reconciler.get_stats(),
                "redemptions": self.redeemer.get_stats(),
                "venue": self._venue.get_stats() if hasattr(self._venue, "get_stats") else {},
                "pol_price": self.pol_price.get_stats(),
                **({"paper": self.paper.get_stats()} if self.paper is not None else {}),
                "reconcile_errors": self.reconcile_errors, "risk_errors": self.risk_errors,
                "signals_received": self.signals_received,
                "dropped_bodies": self.dropped_bodies, "idempotency": self.idem.get_stats()}

    def metric_series(self) -> tuple[Series, ...]:
        return SERIES

    def histograms(self) -> tuple[Latency, ...]:
        if not hasattr(self, "sender"):
            return ()
        allocate = getattr(self._nonces, "allocate_latency", None)  # a fake authority in tests has none
        return (self.sender.tick_to_trade_latency, self.sender.signal_to_settled_latency, self.retry.latency,
                *((allocate,) if allocate is not None else ()))

    def breaker_state(self) -> str | None:
        return self.breaker.state.value  # the source of the broadcast: its own state, not a follower's

    def health(self) -> dict[str, Any]:
        """Running; start-up reconciliation done (the chain, the nonce authority and the venue
        answered); the chain answered its last probe (each reconciliation round); the nonce
        authority answered its last poll; the venue's user channel up."""
        channel = getattr(self._venue, "get_stats", dict)().get("user_channel", {})
        return {"running": True, "ready": self.ready,
                **({"chain": self.chain_reachable} if self.chain_reachable is not None else {}),
                **({"nonce_authority": "error" not in self._last_nonce_stats} if self._last_nonce_stats else {}),
                **({"user_channel": bool(channel.get("connected"))} if channel else {})}

    def summary(self) -> dict[str, Any]:
        if not hasattr(self, "sender"):
            return {"ready": False}
        s = self.sender.get_stats()
        # This process's counters, and the durable books since the world began (they survive restarts).
        outcomes = self.journal.outcomes()
        # Per strategy: successes / executions and P&L, e.g. "BUY_SET 3/4 0.120000, NO_BASKET 1/1 0.040000".
        strategies = ", ".join(f"{k} {v['successful']}/{v['executions']} {format_usdc(v['realized_pnl_micro'])}"
                               for k, v in s["by_strategy"].items() if k in _STRATEGIES or k == "REDEMPTION")
        return {"ok": s["successful_executions"], "failed": s["failed_executions"],
                "pnl_usdc": s["realized_pnl_usdc"], "queue": s["queue_size"], "ready": self.ready,
                "world_ok": sum(1 for _, status, _, _ in outcomes if status in ("SUCCESS", "HELD")),
                "world_pnl_usdc": format_usdc(sum(pnl for _, _, pnl, _ in outcomes)),
                **({"by_strategy": strategies} if strategies else {}),
                "gas_price": f"{self.pol_price.source()} {format_usdc(self.pol_price.per_pol())}",  # USDC/POL
                "today_pnl_usdc": format_usdc(s["risk"]["pnl_today_micro"]),  # the risk limits' day (UTC)
                "exposure_usdc": format_usdc(s["risk"]["exposure_micro"]),
                "locked_usdc": s["locked_capital_usdc"],  # in YES baskets until their events resolve
                **({"baskets_held": s["baskets_held"]} if s["baskets_held"] else {}),
                **({"legs_in_flight": s["legs_in_flight"]} if s["legs_in_flight"] else {})}


_STRATEGIES = frozenset(k.value for k in SetKind)
RECONCILE_CONFIRM_S = 5.0  # a difference is read again after this before it trips the breaker
RISK_EVERY_S = 1.0  # the standing risk limits are evaluated this often (and before every signal)

# The journal keys approvals like executions; this placeholder is their "signal".
_APPROVAL_SIGNAL = Signal(signal_id="approvals", market="", kind="APPROVALS", legs=[], size=0, expected_profit=0,
                          book_ts_ms={}, created_ns=0, expires_ns=0)


HALTED_BY = "halted_by"  # journal key: the identity of the last operator halt


def _by(reason: str) -> str:
    """A halt's or resume's reason, with who asked (the caller's bus identity, when known)."""
    who = curve.caller.get()
    return f"{reason} (by {who})" if who else reason
