"""The router actor: books in, complete-set arbitrage signals out.

Subscribes to the feed's `book.*` stream and the executor's `tx.*` results.
Keeps the latest `BookUpdate` per token; each update re-evaluates only that
token's market (`arbitrage.evaluate`) and publishes a `Signal` on
`signal.<market>` when there is a trade. An update marked `more` is only
stored: the market is judged at its last book from the same venue message
(one message moves both books of a binary market; judging in between paired
a new book with an old one and signalled gaps that never existed).

Clone pattern: a book stream that JOINS (first message, new feed boot) or
shows a GAP asks the feed for a snapshot of every book; requests are
coalesced and rate-limited, and a failed request (the feed may be down) is
counted and retried with backoff, never fatal.

A signal is suppressed, and counted by reason, when the breaker does not
allow trading (`breaker_<STATE>`: OPEN, FORCED_OPEN or UNKNOWN), when the
same opportunity (market, kind, leg prices) is still being executed
(`duplicate`: until its TxResult arrives or `resignal_after_ms` passes), and
when the books cannot be traded on (`incomplete_set`, `invalid_book`,
`stale_book`, `future_book`, `crossed_book`) or the edge is too thin
(`below_min_size`).

Markets (outcome sets, fee rates, minimum sizes) come from the CLOB listing
(`actors.domain.listing.list_markets`), refreshed periodically.

Neg-risk events (`actors.router.events`): the listing's neg-risk markets are
grouped by `neg_risk_market_id`; an event whose every question is listed,
none a placeholder or "Other", gets its NO basket evaluated
(`arbitrage.evaluate_basket`, signal kind NO_BASKET, `market` = the event's
adapter market id). The adapter's convert fee of each event (`getFeeBips`, fixed
when the adapter market is prepared) is read once from the chain. Every token of
an event's markets maps to its event; a book that ends its market's batch
(`more` false) marks the event, and marked events are judged once, after the
whole batch the router received (a venue message that opens or closes an
event's gap moves all m markets; judging after each one paired new books with
old ones).

YES baskets (`router.yes_baskets`, off by default, read live so a hot reload
turns them on or off): the same complete events also get their YES basket
evaluated (`arbitrage.evaluate_yes_basket`, signal kind YES_BASKET, `market`
= the event): one YES of every question, held until the one winner redeems 1.
It needs no convert fee, so an event still waiting for its `getFeeBips` may
already have one. Every book of an event judges both of its baskets: a market's
last book of a venue message may be its NO book after a deferred YES one (or
the reverse), so the side of the book that ends the batch says nothing about
which basket moved. A NO and a YES basket are different opportunities (the
kind is in the duplicate key), so neither holds the other back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from typing import Any

import aiohttp

from actors.domain.adapter import read_convert_fee_bips
from actors.domain.enums import SetKind
from actors.domain.listing import Market, list_markets, select
from actors.domain.money import format_usdc, from_micro, to_micro
from actors.router import arbitrage as arb
from actors.router import events as ev
from actors.router.arbitrage import BasketParams, Evaluation, Limits, MarketParams, Opportunity
from actors.router.metrics import SERIES
from actors.runtime.actor import Actor
from actors.runtime.context import ActorContext
from actors.runtime.metrics import Series
from bus import topics
from bus.clone import fetch_snapshot
from bus.codec import new_trace_id
from bus.messages import BookUpdate, Envelope, Signal, Snapshot, TxResult
from bus.sequence import Arrival
from bus.sockets import RpcClient, Subscriber
from config.schema import Config

log = logging.getLogger(__name__)

SNAPSHOT_MIN_INTERVAL_S = 1.0  # at most one snapshot request per second...
SNAPSHOT_MAX_BACKOFF_S = 10.0  # ...and slower while the feed does not answer
DISCOVERY_MIN_BACKOFF_S = 0.2
DISCOVERY_MAX_BACKOFF_S = 5.0
DEDUP_PRUNE_AT = 1024  # in-flight entries kept before expired ones are swept
# A book whose venue time is further ahead of our clock than this is not traded on
# (`future_book`): clocks agree within milliseconds, and a stamp from the future
# would otherwise pass the staleness check for as long as it lies.
MAX_BOOK_AHEAD_MS = 5_000




def market_params(m: Market, size_step: int) -> MarketParams:
    return MarketParams(market=m.condition_id, token_ids=m.token_ids, outcomes=len(m.outcomes),
                        fee_rate_ppm=m.fee_rate_bps * 100, min_order_size=m.min_order_size, size_step=size_step)


def signal_id(opp: Opportunity) -> str:
    """Deterministic: the same books and the same trade give the same id, so the
    executor's idempotency key catches a repeat even across router restarts."""
    parts = [opp.market, opp.kind]
    parts += [f"{leg.token_id}:{leg.limit_price}:{leg.size}" for leg in opp.legs]
    parts += [f"{t}@{ts}" for t, ts in sorted(opp.book_ts_ms.items())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def dedup_key(opp: Opportunity) -> tuple[Any, ...]:
    return (opp.market, opp.kind, tuple(leg.limit_price for leg in opp.legs))


class RouterActor(Actor):
    name = "router"

    def __init__(self, rt: ActorContext, lister: Any = None, fee_reader: Any = None) -> None:
        super().__init__(rt)
        self._list_markets = lister or list_markets  # injected in unit tests
        self._read_fee_bips = fee_reader or read_convert_fee_bips  # (session, config, market id) -> bips
        self._listing: list[Market] = []
        self.markets: dict[str, MarketParams] = {}
        self._market_of: dict[str, str] = {}  # token id -> condition id
        self.baskets: dict[str, BasketParams] = {}  # event (adapter market id) -> its NO basket
        # event -> its YES basket; kept whatever `router.yes_baskets` says, so that the
        # switch acts at once, without a new listing
        self.yes_baskets: dict[str, BasketParams] = {}
        self._event_of: dict[str, str] = {}  # token id (YES and NO of each market) -> event
        self._events_skipped: dict[str, str] = {}  # event -> why it has no NO basket
        self._neg_risk_wanted: dict[str, str] = {}  # selected neg-risk market -> its event ("" if none)
        self._fee_bips: dict[str, int] = {}  # event -> the adapter's convert fee (fixed per market)
        self._dirty_events: dict[str, BookUpdate | None] = {}  # judged at the end of the batch
        self.fee_reads = self.fee_read_errors = 0
        self.event_evaluations = self.yes_evaluations = 0  # baskets judged (all kinds), of them YES
        self.books: dict[str, BookUpdate] = {}
        self._book_seq: dict[str, tuple[str, int]] = {}  # token -> (feed boot id, seq) applied
        self._book_trace: dict[str, str] = {}  # token -> the trace id of its latest book
        # dedup: key -> (signal id, monotonic ns sent); signal id -> key
        self._inflight: dict[tuple[Any, ...], tuple[str, int]] = {}
        self._inflight_ids: dict[str, tuple[Any, ...]] = {}
        self._snapshot_wanted = asyncio.Event()
        self._rediscover = asyncio.Event()
        self._book_sub: Subscriber | None = None
        self._tx_sub: Subscriber | None = None
        self._feed_rpc: RpcClient | None = None
        self.suppressed: Counter[str] = Counter()
        self.results: Counter[str] = Counter()
        self.updates = self.deferred = self.unknown_tokens = self.unexpected = self.handler_errors = 0
        self.evaluations = self.opportunities = self.signals = 0
        self.reevaluations = 0  # markets judged again when a result released their opportunity
        self._released = ""  # the signal whose result is being handled (never re-sent as is)
        self._flush_open = False  # the last book said more books of its flush follow
        self._releases: dict[str, str] = {}  # market -> released signal id, re-evaluated after the flush
        self.flushes_split = 0  # reads that ended inside a feed flush (events judged after it)
        self.snapshot_requests = self.snapshot_errors = self.snapshots_applied = 0
        self.discoveries = self.discovery_errors = 0
        self._orphan_neg_risk = 0
        self.signals_by_kind: Counter[str] = Counter()
        self.last_signal: dict[str, Any] | None = None
        self._configure(rt.config)

    def _configure(self, cfg: Config) -> None:
        t, r = cfg.trading, cfg.router
        self._max_position = to_micro(t.max_position_size)
        self._min_profit = to_micro(t.min_profit_threshold)
        self._size_step = max(to_micro(r.size_step), 1)

    # -- lifecycle
    async def start(self) -> None:
        cfg = self.rt.config
        feed = cfg.bus.endpoints["feed"]
        mmb = cfg.bus.max_message_bytes
        self._book_sub = Subscriber(self.rt.ctx, [feed.pub], [topics.prefix(topics.BOOK)], max_message_bytes=mmb)
        executor = cfg.bus.endpoints.get("executor")
        if executor is not None:
            self._tx_sub = Subscriber(self.rt.ctx, [executor.pub], [topics.prefix(topics.TX)], max_message_bytes=mmb)
        if feed.rpc:
            self._feed_rpc = RpcClient(self.rt.ctx, feed.rpc, self.rt.stamper, timeout_ms=cfg.bus.rpc_timeout_ms,
                                       retries=cfg.bus.rpc_retries, max_message_bytes=mmb)

    async def run(self) -> None:
        await asyncio.gather(self._discover_forever(), self._books_forever(), self._results_forever(),
                             self._snapshots_forever())

    async def stop(self) -> None:
        for sock in (self._book_sub, self._tx_sub, self._feed_rpc):
            if sock is not None:
                sock.close()

    def on_config(self, old: Config, new: Config) -> None:
        self._configure(new)
        if new.router.markets != old.router.markets or new.router.size_step != old.router.size_step:
            self._apply_listing(self._listing)  # at once from the last listing...
            self._rediscover.set()  # ...and confirmed by a fresh one
        if new.router.yes_baskets and not old.router.yes_baskets:
            for basket in list(self.yes_baskets.values()):  # judged at once from the books held
                if all(t in self.books for t in basket.token_ids):
                    self._evaluate_basket(basket, trigger=None)

    def _yes_on(self) -> bool:
        return self.rt.config.router.yes_baskets

    # -- discovery: outcome sets and fee rates from the CLOB listing
    async def _discover_forever(self) -> None:
        delay = DISCOVERY_MIN_BACKOFF_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                r = self.rt.config.router
                try:
                    self._apply_listing(list(await self._list_markets(session, r.clob_url)))
                    self.discoveries += 1
                    delay = r.discovery_refresh_seconds
                except Exception as exc:  # the venue is down or answered garbage: retry, never die
                    self.discovery_errors += 1
                    log.warning("market discovery from %s failed: %r", r.clob_url, exc)
                    delay = min(max(delay * 2, DISCOVERY_MIN_BACKOFF_S), DISCOVERY_MAX_BACKOFF_S)
                if not await self._read_fees(session):  # an event waits for its convert fee: ask again soon
                    delay = min(delay, DISCOVERY_MAX_BACKOFF_S)
                await self._sleep_or(self._rediscover, delay)

    async def _read_fees(self, session: aiohttp.ClientSession) -> bool:
        """Read the convert fee of every listed event that lacks it; True if none is missing."""
        missing = [e for e, why in self._events_skipped.items() if why == ev.FEE_UNKNOWN]
        read = 0
        for event in missing:
            try:
                self._fee_bips[event] = int(await self._read_fee_bips(session, self.rt.config, event))
                self.fee_reads += 1
                read += 1
            except Exception as exc:  # the chain is down or not deployed yet: the event waits
                self.fee_read_errors += 1
                log.warning("convert fee of neg-risk event %s not read: %r", event, exc)
        if read:
            self._apply_listing(self._listing)
        return read == len(missing)

    async def _sleep_or(self, event: asyncio.Event, seconds: float) -> None:
        """Sleep on the injected clock, cut short by `event`."""
        sleeper = asyncio.ensure_future(self.rt.clock.sleep(seconds))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([sleeper, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
        event.clear()

    def _apply_listing(self, listing: list[Market]) -> None:
        # Everything is computed before anything is replaced: a listing that
        # fails half-way leaves the previous one in force.
        wanted = set(select(listing, self.rt.config.router.markets).values())
        # A neg-risk market's YES + NO is not a binary set: its positions merge through
        # the NegRiskAdapter. Its edge is the event's NO basket (and YES basket), traded when
        # the event is complete; the markets of other events are skipped, and counted.
        new = {m.condition_id: market_params(m, self._size_step) for m in listing
               if m.condition_id in wanted and not m.neg_risk}
        market_of = {t: c for c, p in new.items() for t in p.token_ids}
        grouped, orphans = ev.group_events(listing)
        baskets: dict[str, BasketParams] = {}
        yes_baskets: dict[str, BasketParams] = {}
        skipped: dict[str, str] = {}
        event_of: dict[str, str] = {}
        for event, listed in grouped.items():
            if not any(m.condition_id in wanted for m in listed.markets):
                continue  # not traded here at all (router.markets, or every market closed)
            yes = ev.yes_basket_params(listed, wanted, self._size_step)
            if not isinstance(yes, str):
                yes_baskets[event] = yes
            found = ev.basket_params(listed, wanted, self._fee_bips, self._size_step)
            if isinstance(found, str):
                skipped[event] = found
            else:
                baskets[event] = found
            if event in baskets or event in yes_baskets:
                event_of.update({t: event for m in listed.markets for t in m.token_ids})
        neg_risk_wanted = {m.condition_id: (m.neg_risk_market_id or "").lower() for m in listing
                           if m.neg_risk and m.condition_id in wanted}
        changed = [c for c, p in new.items() if self.markets.get(c) != p]
        changed_baskets = [b for e, b in baskets.items() if self.baskets.get(e) != b]
        changed_baskets += [b for e, b in yes_baskets.items() if self.yes_baskets.get(e) != b and self._yes_on()]
        self._listing, self.markets, self._market_of = listing, new, market_of
        self.baskets, self.yes_baskets, self._event_of, self._events_skipped = baskets, yes_baskets, event_of, skipped
        self._orphan_neg_risk, self._neg_risk_wanted = orphans, neg_risk_wanted
        for c in changed:  # books that came before the listing: look at once
            if all(t in self.books for t in new[c].token_ids):
                self._evaluate(c, trigger=None)
        for b in changed_baskets:
            if all(t in self.books for t in b.token_ids):
                self._evaluate_basket(b, trigger=None)

    @property
    def neg_risk_skipped(self) -> int:
        """Selected neg-risk markets no basket trades (now: YES baskets count while on)."""
        yes_on = self._yes_on()
        return sum(1 for e in self._neg_risk_wanted.values()
                   if e not in self.baskets and not (yes_on and e in self.yes_baskets))

    # -- books
    async def _books_forever(self) -> None:
        assert self._book_sub is not None, "start() first"
        while True:
            for r in await self._book_sub.recv_batch():
                try:
                    if r.arrival in (Arrival.JOINED, Arrival.GAP):
                        self._snapshot_wanted.set()
                    self.on_book(r.env)
                except Exception:  # a bug on one message must not stop the router
                    self.handler_errors += 1
                    log.exception("book update %s not handled", r.topic)
            self.end_of_batch()

    def on_book(self, env: Envelope) -> None:
        """One book. A binary market is judged at its batch's last book; an event is
        marked then, and judged by `end_of_batch()`."""
        body = env.body
        if not isinstance(body, BookUpdate):
            self.unexpected += 1
            return
        self.updates += 1
        self._flush_open = body.flush_more
        self.books[body.token_id] = body
        self._book_seq[body.token_id] = (env.boot_id, env.seq)
        self._book_trace[body.token_id] = env.trace_id
        market = self._market_of.get(body.token_id)
        event = self._event_of.get(body.token_id)
        if market is None and event is None:
            self.unknown_tokens += 1  # not (yet) a discovered market: kept for when it is
            return
        if body.more:  # the market's other books from the same venue message follow: judge it after them
            self.deferred += 1
            return
        if market is not None:
            self._evaluate(market, trigger=body)
        if event is not None:
            self._dirty_events[event] = body  # its other markets' books of this batch may follow

    def end_of_batch(self) -> None:
        """Judge every event a book of the batch just received marked, once each, unless
        the feed's flush is not all in yet (a read can end in the middle of one): then
        the events wait for its last book, never judged on half-updated books."""
        if self._flush_open:
            self.flushes_split += 1
            return
        releases, self._releases = self._releases, {}
        for market, released in releases.items():
            self._reevaluate(market, released)
        dirty, self._dirty_events = self._dirty_events, {}
        for event, trigger in dirty.items():
            try:
                self._evaluate_event(event, trigger)
            except Exception:  # a bug on one event must not stop the router
                self.handler_errors += 1
                log.exception("event %s not evaluated", event)

    def apply_snapshot(self, snap: Snapshot) -> None:
        touched: set[str] = set()
        for e in snap.entries:
            body = e.body
            if not isinstance(body, BookUpdate):
                self.unexpected += 1
                continue
            have = self._book_seq.get(body.token_id)
            if have is not None and have[0] == snap.boot_id and have[1] >= e.seq:
                continue  # we already hold this update or a newer one
            self.books[body.token_id] = body
            self._book_seq[body.token_id] = (snap.boot_id, e.seq)
            market = self._market_of.get(body.token_id)
            if market is not None:
                touched.add(market)
            event = self._event_of.get(body.token_id)
            if event is not None:
                self._dirty_events.setdefault(event, None)
        self.snapshots_applied += 1
        self._flush_open = False  # a snapshot is every book at once: no flush is half in
        for market in touched:
            self._evaluate(market, trigger=None)
        self.end_of_batch()

    async def _snapshots_forever(self) -> None:
        backoff = SNAPSHOT_MIN_INTERVAL_S
        next_ok = 0  # monotonic ns before which no request is sent
        while True:
            await self._snapshot_wanted.wait()
            wait_ns = next_ok - self.rt.clock.monotonic_ns()
            if wait_ns > 0:
                await self.rt.clock.sleep(wait_ns / 1e9)
            # Requests that came in while we waited are answered by this one.
            self._snapshot_wanted.clear()
            if self._feed_rpc is None or self._book_sub is None:
                continue
            self.snapshot_requests += 1
            try:
                snap = await fetch_snapshot(self._feed_rpc, topics.BOOK, self._book_sub)
            except Exception as exc:  # feed down, error reply, bad reply: retry later
                self.snapshot_errors += 1
                log.warning("book snapshot from the feed failed: %r", exc)
                next_ok = self.rt.clock.monotonic_ns() + int(backoff * 1e9)
                backoff = min(backoff * 2, SNAPSHOT_MAX_BACKOFF_S)
                self._snapshot_wanted.set()
                continue
            backoff = SNAPSHOT_MIN_INTERVAL_S
            next_ok = self.rt.clock.monotonic_ns() + int(SNAPSHOT_MIN_INTERVAL_S * 1e9)
            try:
                self.apply_snapshot(snap)
            except Exception:
                self.handler_errors += 1
                log.exception("snapshot not applied")

    # -- results: the end of an execution releases its opportunity
    async def _results_forever(self) -> None:
        if self._tx_sub is None:
            return
        while True:
            for r in await self._tx_sub.recv_batch():
                self.on_result(r.env)

    def on_result(self, env: Envelope) -> None:
        body = env.body
        if not isinstance(body, TxResult):
            self.unexpected += 1
            return
        self.results[body.status] += 1
        key = self._inflight_ids.pop(body.signal_id, None)
        if key is not None and self._inflight.get(key, ("",))[0] == body.signal_id:
            del self._inflight[key]
            self._reevaluate(body.market, body.signal_id)

    def _reevaluate(self, market: str, released: str) -> None:
        """A released opportunity is judged again on the books we hold: what is left of
        its gap may never bring a new book (the venue does not move a market while it
        has a gap), and was suppressed as in flight until now. The very signal just
        executed (the same books) is not sent again. In the middle of a feed flush it
        waits for the flush's last book, like every other judgement."""
        if self._flush_open:
            self._releases[market] = released
            return
        self.reevaluations += 1
        self._released = released
        try:
            if market in self.markets:
                self._evaluate(market, None)
            elif market in self.baskets or market in self.yes_baskets:
                self._evaluate_event(market, None)
        except Exception:  # a bug on one market must not stop the router (this runs in the results task)
            self.handler_errors += 1
            log.exception("market %s not re-evaluated", market)
        finally:
            self._released = ""

    # -- evaluation and signalling
    def _limits(self, now_ns: int) -> Limits:
        # The venue stamps books with its wall clock (ms): compare with ours, both ways.
        now_ms = now_ns // 1_000_000
        return Limits(max_position=self._max_position, min_profit=self._min_profit,
                      min_book_ts_ms=now_ms - self.rt.config.router.stale_book_ms,
                      max_book_ts_ms=now_ms + MAX_BOOK_AHEAD_MS)

    def _evaluate(self, market: str, trigger: BookUpdate | None) -> None:
        params = self.markets[market]
        self.evaluations += 1
        now_ns = self.rt.clock.time_ns()
        books = [b for t in params.token_ids if (b := self.books.get(t)) is not None]
        self._consider(arb.evaluate(books, params, self._limits(now_ns)), now_ns, trigger)

    def _evaluate_event(self, event: str, trigger: BookUpdate | None) -> None:
        """Judge the event's NO basket and, while `router.yes_baskets` is on, its YES basket."""
        no = self.baskets.get(event)
        if no is not None:
            self._evaluate_basket(no, trigger)
        yes = self.yes_baskets.get(event)
        if yes is not None and self._yes_on():
            self._evaluate_basket(yes, trigger)

    def _evaluate_basket(self, basket: BasketParams, trigger: BookUpdate | None) -> None:
        self.evaluations += 1
        self.event_evaluations += 1
        now_ns = self.rt.clock.time_ns()
        books = [b for t in basket.token_ids if (b := self.books.get(t)) is not None]
        if basket.kind == SetKind.YES_BASKET:
            self.yes_evaluations += 1
            result = arb.evaluate_yes_basket(books, basket, self._limits(now_ns))
        else:
            result = arb.evaluate_basket(books, basket, self._limits(now_ns))
        self._consider(result, now_ns, trigger)

    def _consider(self, result: Evaluation, now_ns: int, trigger: BookUpdate | None) -> None:
        opp = result.opportunity
        if opp is None:
            if result.reason != arb.NO_EDGE and result.reason is not None:
                self.suppressed[result.reason] += 1
            return
        self.opportunities += 1
        breaker = self.rt.breaker
        if not breaker.trading_allowed:
            self.suppressed[f"breaker_{breaker.state}"] += 1
            return
        key = dedup_key(opp)
        mono = self.rt.clock.monotonic_ns()
        window = self.rt.config.router.resignal_after_ms * 1_000_000
        held = self._inflight.get(key)
        if held is not None and mono - held[1] < window:
            self.suppressed["duplicate"] += 1
            return
        self._publish(opp, key, now_ns, mono, trigger)

    def _publish(self, opp: Opportunity, key: tuple[Any, ...], now_ns: int, mono: int,
                 trigger: BookUpdate | None) -> None:
        sid = signal_id(opp)
        if sid == self._released:  # its books have not changed since it was executed
            self.suppressed["executed"] += 1
            return
        ttl_ns = self.rt.config.trading.signal_ttl_ms * 1_000_000
        body = Signal(signal_id=sid, market=opp.market, kind=opp.kind, legs=list(opp.legs), size=opp.size,
                      expected_profit=opp.expected_profit, book_ts_ms=dict(opp.book_ts_ms),
                      created_ns=now_ns, expires_ns=now_ns + ttl_ns, neg_risk_market_id=opp.neg_risk_market_id,
                      convert_fee_bips=opp.convert_fee_bips)
        # event_ns: when the feed received the book that revealed the gap, so
        # the signal's latency can be measured end to end.
        event_ns = trigger.recv_ns if trigger is not None and trigger.recv_ns > 0 else None
        # The trace id of the feed's flush that revealed the gap: one trace from the books to the result.
        trace_id = (self._book_trace.get(trigger.token_id) if trigger is not None else None) or new_trace_id()
        self.rt.publisher.publish(topics.signal(opp.market), body, event_ns=event_ns, trace_id=trace_id)
        log.info("signal %s: %s %s, size %s, expected profit %s USDC", sid[:12], opp.kind, opp.market[:12],
                 from_micro(opp.size), format_usdc(opp.expected_profit), extra={"fields": {"trace_id": trace_id}})
        self.signals += 1
        self.signals_by_kind[opp.kind] += 1
        self._remember(key, sid, mono)
        self.last_signal = {"market": opp.market, "kind": opp.kind, "size": opp.size,
                            "expected_profit": opp.expected_profit, "signal_id": sid, "created_ns": now_ns}

    def _remember(self, key: tuple[Any, ...], sid: str, mono: int) -> None:
        old = self._inflight.get(key)
        if old is not None:
            self._inflight_ids.pop(old[0], None)
        self._inflight[key] = (sid, mono)
        self._inflight_ids[sid] = key
        if len(self._inflight) > DEDUP_PRUNE_AT:  # results that never came: forget expired entries
            window = self.rt.config.router.resignal_after_ms * 1_000_000
            for k, (s, t) in list(self._inflight.items()):
                if mono - t >= window:
                    del self._inflight[k]
                    self._inflight_ids.pop(s, None)

    # -- observability
    def _in_flight(self) -> int:
        """Signals still holding back their opportunity (no result, window open)."""
        mono = self.rt.clock.monotonic_ns()
        window = self.rt.config.router.resignal_after_ms * 1_000_000
        return sum(1 for _, t in self._inflight.values() if mono - t < window)

    def metric_series(self) -> tuple[Series, ...]:
        return SERIES

    def get_stats(self) -> dict[str, Any]:
        def sub(s: Subscriber | None) -> dict[str, int] | None:
            return s.get_stats() if s is not None else None

        return {
            "markets": len(self.markets),
            "tokens": len(self._market_of),
            "tokens_with_books": sum(1 for t in self._market_of if t in self.books),
            "valid_books": sum(1 for t in self._market_of if (b := self.books.get(t)) is not None and b.valid),
            "updates": self.updates,
            "unknown_token_updates": self.unknown_tokens,
            "deferred_updates": self.deferred,
            "unexpected_messages": self.unexpected,
            "handler_errors": self.handler_errors,
            "evaluations": self.evaluations, "reevaluations": self.reevaluations,
            "flushes_split": self.flushes_split,
            "opportunities": self.opportunities,
            "signals_published": self.signals,
            "signals_by_kind": dict(self.signals_by_kind),
            "suppressed": dict(self.suppressed),
            "results_seen": dict(self.results),
            "in_flight": self._in_flight(),
            "snapshot_requests": self.snapshot_requests,
            "snapshot_errors": self.snapshot_errors,
            "snapshots_applied": self.snapshots_applied,
            "discoveries": self.discoveries,
            "discovery_errors": self.discovery_errors,
            "neg_risk_markets_skipped": self.neg_risk_skipped,
            "neg_risk_events": {"baskets": sorted(self.baskets), "skipped": dict(self._events_skipped),
                                "yes_baskets": sorted(self.yes_baskets), "yes_baskets_on": self._yes_on(),
                                "without_market_id": self._orphan_neg_risk, "evaluations": self.event_evaluations,
                                "yes_evaluations": self.yes_evaluations,
                                "fee_reads": self.fee_reads, "fee_read_errors": self.fee_read_errors},
            "last_signal": self.last_signal,
            "bus": {"books": sub(self._book_sub), "results": sub(self._tx_sub),
                    "feed_rpc": self._feed_rpc.get_stats() if self._feed_rpc else None},
        }

    def summary(self) -> dict[str, Any]:
        return {"signals": self.signals, "suppressed": sum(self.suppressed.values()), "markets": len(self.markets),
                "breaker": self.rt.breaker.state}
