"""The router actor over fake sockets and a test clock: a fake feed (PUB +
snapshot RPC) and a fake executor (breaker heartbeats, tx results)."""

import asyncio
from dataclasses import dataclass, field

import aiohttp
import msgspec
import pytest

from actors.domain.enums import UNKNOWN, CircuitState
from actors.domain.listing import Market
from actors.domain.money import MICRO
from actors.router.actor import RouterActor
from actors.runtime.clock import TestClock
from actors.runtime.shell import ActorRuntime
from bus import topics
from bus.clone import CloneStore, snapshot_reply
from bus.codec import Stamper
from bus.fakes import FakeContext
from bus.messages import BookUpdate, BreakerState, FeedStatus, Signal, Snapshot, SnapshotEntry, TxResult
from bus.sockets import Publisher, RpcServer, Subscriber
from config.runtime import ConfigReloader
from tests.helpers import eventually

pytestmark = pytest.mark.unit

M = "0xmarket"
BINARY = Market(M, "q", ("yes", "no"), ("Yes", "No"), True, fee_rate_bps=0, min_order_size=5 * MICRO)
FOUR = Market("0xfour", "q4", ("a", "b", "c", "d"), ("A", "B", "C", "D"), True, fee_rate_bps=100)
OTHER = Market("0xother", "q2", ("x1", "x2"), ("Yes", "No"), True)


def c(cents: int) -> int:
    return cents * 10_000


@dataclass
class World:
    actor: RouterActor
    rt: ActorRuntime
    ctx: FakeContext
    clock: TestClock
    cfg: object
    feed: Stamper
    feed_pub: Publisher
    store: CloneStore
    executor: Publisher
    signals: Subscriber
    listing: list = field(default_factory=lambda: [BINARY, FOUR, OTHER])
    snapshot_calls: int = 0
    rpc: RpcServer | None = None

    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    def book(self, token, *, asks=(), bids=(), valid=True, age_ms=0, market=M, send=True, more=False):
        """Publish (or, send=False, lose on the way) a book of the fake feed."""
        body = BookUpdate(token_id=token, market=market, valid=valid, bids=list(bids), asks=list(asks),
                          venue_ts_ms=self.now_ms() - age_ms, recv_ns=self.clock.time_ns(), tick_size=c(1),
                          reason="" if valid else "disconnected", more=more)
        topic = topics.book(token)
        env = self.feed_pub.publish(topic, body) if send else self.feed.stamp(topic, body)
        self.store.record(topic, env)
        return env

    def arbitrage(self, yes=45, no=50, size=100):
        """Asks summing below 1: a BUY_SET gap on the binary market."""
        self.book("yes", asks=[(c(yes), size * MICRO)], bids=[(c(yes - 2), MICRO)])
        self.book("no", asks=[(c(no), size * MICRO)], bids=[(c(no - 2), MICRO)])

    def breaker(self, state, reason=""):
        self.executor.publish(topics.breaker_state(), BreakerState(state=state, reason=reason, since_ns=1))

    def result(self, signal_id, status="SUCCESS"):
        self.executor.publish(topics.tx_result(), TxResult(
            signal_id=signal_id, idempotency_key="k", market=M, status=status, success=status == "SUCCESS",
            attempt=1))

    def serve_snapshots(self):
        async def handler(method, params):
            self.snapshot_calls += 1
            return snapshot_reply(self.store, params)

        self.rpc = RpcServer(self.ctx, self.cfg.bus.endpoints["feed"].rpc, handler, Stamper("feed", self.clock))
        return asyncio.create_task(self.rpc.serve())

    async def next_signal(self) -> tuple[bytes, object]:
        batch = await self.signals.recv_batch()
        assert len(batch) == 1, batch
        return batch[0].topic, batch[0].env


def config(sandbox_config, **router):
    bus = msgspec.structs.replace(sandbox_config.bus, rpc_timeout_ms=50, rpc_retries=0)
    return msgspec.structs.replace(sandbox_config, bus=bus,
                                   router=msgspec.structs.replace(sandbox_config.router, **router))


@pytest.fixture
async def make_world(sandbox_config):
    tasks: list[asyncio.Task] = []
    actors: list[RouterActor] = []

    async def make(*, serve=True, closed=True, lister=None, fee_reader=None, **router):
        cfg = config(sandbox_config, **router)
        ctx, clock = FakeContext(), TestClock()
        rt = ActorRuntime("router", ConfigReloader(initial=cfg), ctx, clock)
        ep = cfg.bus.endpoints
        feed = Stamper("feed", clock)
        w = World(actor=None, rt=rt, ctx=ctx, clock=clock, cfg=cfg, feed=feed,
                  feed_pub=Publisher(ctx, ep["feed"].pub, feed), store=CloneStore("feed", feed.boot_id),
                  executor=Publisher(ctx, ep["executor"].pub, Stamper("executor", clock)),
                  signals=Subscriber(ctx, [ep["router"].pub], [topics.prefix(topics.SIGNAL)]))

        async def listing(session, url):
            return w.listing

        async def no_convert_fee(session, cfg, market_id):
            return 0

        w.actor = RouterActor(rt, lister=lister or listing, fee_reader=fee_reader or no_convert_fee)
        actors.append(w.actor)
        if serve:
            tasks.append(w.serve_snapshots())
        tasks.append(asyncio.create_task(rt.follow_breaker()))
        await w.actor.start()
        tasks.append(asyncio.create_task(w.actor.run()))
        if closed:
            w.breaker(CircuitState.CLOSED)
            await eventually(lambda: rt.breaker.state == CircuitState.CLOSED)
        if lister is None:
            await eventually(lambda: w.actor.discoveries >= 1)
        return w

    yield make
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for a in actors:
        await a.stop()


async def test_an_arbitrage_is_signalled(make_world):
    w = await make_world()
    w.arbitrage(yes=45, no=50, size=100)

    topic, env = await w.next_signal()
    sig = env.body
    assert topic == topics.signal(M) and isinstance(sig, Signal) and env.trace_id
    assert (sig.market, sig.kind, sig.size) == (M, "BUY_SET", 100 * MICRO)
    assert [(leg.token_id, leg.side, leg.limit_price, leg.cost) for leg in sig.legs] == [
        ("yes", "BUY", c(45), 45 * MICRO), ("no", "BUY", c(50), 50 * MICRO)]
    assert sig.expected_profit == 5 * MICRO  # fee-free market
    assert len(sig.signal_id) == 32 and int(sig.signal_id, 16) >= 0
    assert sig.created_ns == w.clock.time_ns() and sig.expires_ns == sig.created_ns + 2000 * 1_000_000
    assert sig.book_ts_ms == {"yes": w.now_ms(), "no": w.now_ms()}
    last = w.actor.get_stats()["last_signal"]
    assert (last["market"], last["kind"], last["size"], last["expected_profit"]) == (M, "BUY_SET", 100 * MICRO,
                                                                                    5 * MICRO)


async def test_a_market_is_judged_only_once_all_books_of_one_venue_message_are_in(make_world):
    # The venue's gap closed: one message moved both books. The NO book comes
    # first (more=True); next to the old YES book it shows a gap that never
    # existed (45 + 50). Judged at the YES book, the market has no edge.
    w = await make_world()
    w.book("yes", asks=[(c(45), 100 * MICRO)], bids=[(c(43), MICRO)])
    w.book("no", asks=[(c(60), 100 * MICRO)], bids=[(c(53), MICRO)])
    await eventually(lambda: w.actor.get_stats()["evaluations"] >= 2)
    w.book("no", asks=[(c(50), 100 * MICRO)], bids=[(c(38), MICRO)], more=True)
    w.book("yes", asks=[(c(63), 100 * MICRO)], bids=[(c(49), MICRO)])
    await eventually(lambda: w.actor.get_stats()["updates"] >= 4)

    assert w.actor.get_stats()["deferred_updates"] == 1
    assert w.actor.get_stats()["signals_published"] == 0
    w.arbitrage(yes=45, no=50)  # a real gap is still signalled
    _, env = await w.next_signal()
    assert env.body.kind == "BUY_SET"


async def test_the_signal_id_is_deterministic(make_world):
    a = await make_world()
    b = await make_world()
    for w in (a, b):
        w.arbitrage()
    ids = [(await w.next_signal())[1].body.signal_id for w in (a, b)]
    assert ids[0] == ids[1]


async def test_no_signal_while_the_breaker_is_open_or_unknown(make_world):
    w = await make_world()
    w.breaker(CircuitState.OPEN, "3 consecutive failures")
    await eventually(lambda: w.rt.breaker.state == CircuitState.OPEN)
    w.arbitrage()
    await eventually(lambda: w.actor.suppressed["breaker_OPEN"] >= 1)

    w.breaker(CircuitState.FORCED_OPEN, "operator")
    await eventually(lambda: w.rt.breaker.state == CircuitState.FORCED_OPEN)
    w.arbitrage(yes=44)
    await eventually(lambda: w.actor.suppressed["breaker_FORCED_OPEN"] >= 1)

    w.clock.advance(3.5)  # heartbeats stopped: UNKNOWN is handled like OPEN
    assert w.rt.breaker.state == UNKNOWN
    w.arbitrage(yes=43)
    await eventually(lambda: w.actor.suppressed["breaker_UNKNOWN"] >= 1)
    assert w.actor.signals == 0 and w.rt.publisher.sent == 0

    w.breaker(CircuitState.HALF_OPEN)  # probing again: signals flow
    await eventually(lambda: w.rt.breaker.state == CircuitState.HALF_OPEN)
    w.arbitrage(yes=42)
    assert (await w.next_signal())[1].body.legs[0].limit_price == c(42)
    assert w.actor.summary()["breaker"] == CircuitState.HALF_OPEN


async def test_no_signal_before_any_breaker_heartbeat(make_world):
    w = await make_world(closed=False)
    w.arbitrage()
    await eventually(lambda: w.actor.suppressed["breaker_UNKNOWN"] >= 1)
    assert w.actor.signals == 0


async def test_no_signal_from_invalid_or_stale_books(make_world):
    w = await make_world()
    w.book("yes", asks=[(c(45), 100 * MICRO)])
    w.book("no", asks=[(c(50), 100 * MICRO)], valid=False)
    await eventually(lambda: w.actor.suppressed["invalid_book"] >= 1)

    w.book("no", asks=[(c(50), 100 * MICRO)], age_ms=10_001)  # venue time older than stale_book_ms
    await eventually(lambda: w.actor.suppressed["stale_book"] >= 1)
    assert w.actor.signals == 0

    w.book("no", asks=[(c(50), 100 * MICRO)], age_ms=9_000)
    assert (await w.next_signal())[1].body.kind == "BUY_SET"


async def test_incomplete_outcome_sets_never_signal(make_world):
    w = await make_world()
    for token, price in (("a", 20), ("b", 20), ("c", 20)):  # "d" has no book yet
        w.book(token, asks=[(c(price), 10 * MICRO)], market="0xfour")
    await eventually(lambda: w.actor.suppressed["incomplete_set"] >= 3)
    w.book("d", asks=[(c(20), 10 * MICRO)], market="0xfour")
    sig = (await w.next_signal())[1].body
    assert sig.market == "0xfour" and len(sig.legs) == 4 and sig.size == 10 * MICRO


async def test_a_listing_with_a_missing_token_never_signals(make_world):
    broken = Market("0xbroken", "q", ("p", "q"), ("P", "Q", "R"), True)  # three outcomes, two tokens
    w = await make_world()
    w.listing = [broken]
    w.actor._rediscover.set()
    await eventually(lambda: "0xbroken" in w.actor.markets)
    w.book("p", asks=[(c(10), 10 * MICRO)], market="0xbroken")
    w.book("q", asks=[(c(10), 10 * MICRO)], market="0xbroken")
    await eventually(lambda: w.actor.suppressed["incomplete_set"] >= 2)
    assert w.actor.signals == 0


async def test_below_the_min_order_size_is_counted(make_world):
    w = await make_world()
    w.book("yes", asks=[(c(45), 4 * MICRO)])
    w.book("no", asks=[(c(50), 100 * MICRO)])
    await eventually(lambda: w.actor.suppressed["below_min_size"] >= 1)
    assert w.actor.signals == 0


async def test_the_same_opportunity_waits_for_its_result_or_the_window(make_world):
    w = await make_world()
    w.arbitrage()
    first = (await w.next_signal())[1].body

    w.arbitrage()  # same prices, newer books: still being executed
    await eventually(lambda: w.actor.suppressed["duplicate"] >= 1)

    # Its result releases it, and the market is judged again at once on the books held:
    # what is left of a gap may never bring a new book (issue 13). The books have not
    # changed since the executed signal: nothing is sent again.
    w.result(first.signal_id, "SUCCESS")
    await eventually(lambda: w.actor.suppressed["executed"] == 1)
    assert w.actor.results["SUCCESS"] == 1 and w.actor.get_stats()["reevaluations"] == 1
    w.clock.advance(0.01)
    w.arbitrage()
    second = (await w.next_signal())[1].body
    assert second.signal_id != first.signal_id  # newer book timestamps

    w.arbitrage()
    await eventually(lambda: w.actor.suppressed["duplicate"] >= 2)
    w.clock.advance(3.0)  # resignal_after_ms
    w.breaker(CircuitState.CLOSED)
    await eventually(lambda: w.rt.breaker.get_stats()["messages"] >= 2)
    w.arbitrage()
    assert (await w.next_signal())[1].body.kind == "BUY_SET"
    assert w.actor.get_stats()["results_seen"] == {"SUCCESS": 1}


async def test_what_is_left_of_a_gap_is_signalled_when_the_result_releases_it(make_world):
    # The venue's books after our trade (newer, same prices) arrive while the first
    # execution is in flight: suppressed as a duplicate, then sent once it is released.
    w = await make_world()
    w.arbitrage()
    first = (await w.next_signal())[1].body
    w.clock.advance(0.01)
    w.arbitrage(size=40)
    await eventually(lambda: w.actor.suppressed["duplicate"] >= 1)
    w.result(first.signal_id, "SUCCESS")
    second = (await w.next_signal())[1].body
    assert second.signal_id != first.signal_id and second.size < first.size


async def test_a_result_without_a_gap_left_signals_nothing(make_world):
    w = await make_world()
    w.arbitrage()
    first = (await w.next_signal())[1].body
    updates = w.actor.updates
    w.book("yes", asks=[(c(60), 100 * MICRO)])  # the gap closed
    await eventually(lambda: w.actor.updates > updates)  # held before the result comes
    w.result(first.signal_id, "SUCCESS")
    await eventually(lambda: w.actor.get_stats()["reevaluations"] == 1)
    # Judged on the closed gap: no edge at all (not merely "the same signal again").
    assert w.actor.signals == 1 and w.actor.suppressed["executed"] == 0


async def test_a_different_price_is_a_different_opportunity(make_world):
    w = await make_world()
    w.arbitrage(yes=45)
    await w.next_signal()
    w.arbitrage(yes=44)
    assert (await w.next_signal())[1].body.legs[0].limit_price == c(44)


async def test_a_late_joiner_gets_the_books_it_missed_from_a_snapshot(make_world):
    w = await make_world()
    # Published before the router listened: lost for it, but in the feed's store.
    w.book("no", asks=[(c(50), 100 * MICRO)], send=False)
    w.book("yes", asks=[(c(45), 100 * MICRO)])  # JOINED -> snapshot -> "no" arrives

    sig = (await w.next_signal())[1].body
    assert sig.kind == "BUY_SET" and w.snapshot_calls == 1
    assert w.actor.get_stats()["snapshots_applied"] == 1


async def test_a_gap_asks_for_a_snapshot_rate_limited(make_world):
    w = await make_world()
    w.book("yes", asks=[(c(60), MICRO)])
    await eventually(lambda: w.actor.snapshots_applied == 1)

    w.book("yes", asks=[(c(61), MICRO)], send=False)  # lost
    w.book("yes", asks=[(c(62), MICRO)])  # GAP
    await eventually(lambda: w.actor.updates == 2 and w.clock.sleepers >= 2)  # discovery + rate limit
    assert w.snapshot_calls == 1  # not within a second of the last one
    w.clock.advance(1.0)
    await eventually(lambda: w.actor.snapshots_applied == 2)
    assert w.snapshot_calls == 2 and w.actor.books["yes"].asks == [(c(62), MICRO)]


async def test_a_snapshot_never_replaces_a_newer_book(make_world):
    w = await make_world()
    env = w.book("yes", asks=[(c(60), MICRO)])
    await eventually(lambda: w.actor.snapshots_applied == 1)
    older = msgspec.structs.replace(env.body, asks=[(c(99), MICRO)], venue_ts_ms=1)
    w.actor.apply_snapshot(Snapshot(source="feed", boot_id=env.boot_id,
                                    entries=[SnapshotEntry(topic=topics.book("yes").decode(), seq=env.seq,
                                                           body=older)]))
    assert w.actor.books["yes"].asks == [(c(60), MICRO)]


async def test_the_feed_being_down_is_counted_and_retried(make_world):
    w = await make_world(serve=False)
    w.book("yes", asks=[(c(60), MICRO)])
    await eventually(lambda: w.actor.snapshot_errors >= 1)

    serving = w.serve_snapshots()
    try:
        def tick():
            w.clock.advance(1.0)
            return w.actor.snapshots_applied >= 1

        await eventually(tick)
        assert w.actor.get_stats()["snapshot_requests"] >= 2
    finally:
        serving.cancel()
        w.rpc.close()


async def test_discovery_retries_while_the_venue_is_down(make_world):
    calls = []

    async def flaky(session, url):
        calls.append(url)
        if len(calls) < 3:
            raise aiohttp.ClientConnectionError("connection refused")
        return [BINARY]

    w = await make_world(lister=flaky)
    await eventually(lambda: w.actor.discovery_errors >= 1)

    def tick():
        w.clock.advance(1.0)
        return w.actor.discoveries >= 1

    await eventually(tick)
    assert w.actor.discovery_errors == 2 and list(w.actor.markets) == [M]
    assert calls[0] == w.cfg.router.clob_url


async def test_only_configured_markets_are_traded(make_world):
    w = await make_world(markets=[M])
    assert list(w.actor.markets) == [M]
    w.book("x1", asks=[(c(10), 10 * MICRO)], market="0xother")
    w.book("x2", asks=[(c(10), 10 * MICRO)], market="0xother")
    await eventually(lambda: w.actor.get_stats()["unknown_token_updates"] == 2)
    assert w.actor.evaluations == 0


async def test_books_that_arrive_before_discovery_are_used_once_it_completes(make_world):
    gate = asyncio.Event()

    async def slow(session, url):
        await gate.wait()
        return [BINARY]

    w = await make_world(lister=slow)
    w.arbitrage()
    await eventually(lambda: w.actor.unknown_tokens == 2)
    gate.set()
    assert (await w.next_signal())[1].body.market == M


async def test_unexpected_messages_are_counted_not_fatal(make_world):
    w = await make_world()
    w.feed_pub.publish(topics.book("yes"), FeedStatus(connections=1, connected=1, assets=2, valid_books=2,
                                                      heartbeat_ok=True))
    w.result("unknown-signal", "FAILED")
    await eventually(lambda: w.actor.unexpected == 1 and w.actor.results["FAILED"] == 1)
    w.arbitrage()
    assert (await w.next_signal())[1].body.kind == "BUY_SET"


async def test_a_hot_reload_changes_the_threshold(make_world):
    w = await make_world()
    old = w.rt.config
    new = msgspec.structs.replace(old, trading=msgspec.structs.replace(old.trading, min_profit_threshold="0.06"))
    w.rt.watcher.config = new
    w.actor.on_config(old, new)
    w.arbitrage(yes=45, no=50)  # earns 0.05 per set
    await eventually(lambda: w.actor.evaluations >= 2)
    assert w.actor.signals == 0


async def test_stats_and_summary(make_world):
    w = await make_world()
    w.arbitrage()
    await w.next_signal()
    s = w.actor.get_stats()
    assert {"markets", "tokens_with_books", "evaluations", "signals_published", "suppressed", "results_seen",
            "snapshot_requests", "snapshot_errors", "discovery_errors", "last_signal"} <= set(s)
    assert (s["markets"], s["tokens_with_books"], s["signals_published"]) == (3, 2, 1)
    assert s["suppressed"] == {"incomplete_set": 1}  # "yes" came before "no"
    assert w.actor.summary() == {"signals": 1, "suppressed": 1, "markets": 3, "breaker": CircuitState.CLOSED}
    msgspec.msgpack.encode(w.rt.stats_message(w.actor))  # publishable as is


async def test_neg_risk_markets_are_not_traded_as_binary_sets(make_world):
    # A neg-risk market's YES + NO merges through the NegRiskAdapter, not the CTF: not a set here.
    w = await make_world()
    neg = Market("0xneg", "q", ("ny", "nn"), ("Yes", "No"), True, neg_risk=True)
    w.listing = [BINARY, neg]
    w.actor._apply_listing(w.listing)

    assert set(w.actor.markets) == {M} and w.actor.get_stats()["neg_risk_markets_skipped"] == 1


# -- neg-risk events: the NO basket ----------------------------------------------

EVENT = "0x" + "ab" * 31 + "00"


def outcome(i: int, *, tags=(), index=None, event=EVENT) -> Market:
    """Outcome i of a neg-risk event: YES y<i>, NO n<i>, 1% taker fee, question i."""
    return Market(f"0xc{i}", f"outcome {i}", (f"y{i}", f"n{i}"), ("Yes", "No"), True, fee_rate_bps=100,
                  min_order_size=5 * MICRO, neg_risk=True, neg_risk_market_id=event,
                  neg_risk_request_id=event[:-2] + f"{i if index is None else index:02x}", tags=tuple(tags))


THREE = [outcome(0), outcome(1), outcome(2)]


async def with_listing(w, listing, *, wait=lambda a: EVENT in a.baskets):
    w.listing = listing
    w.actor._rediscover.set()
    await eventually(lambda: wait(w.actor), what="the listing applied")


def event_books(w, no_asks, *, size=10, send=True):
    """One venue message that moved every outcome of the event: per market its YES
    (more) and NO book, like the feed publishes them; the NO ask mirrors the YES bid."""
    for i, ask in enumerate(no_asks):
        w.book(f"y{i}", bids=[(c(100 - ask), size * MICRO)], asks=[(c(102 - ask), size * MICRO)],
               market=f"0xc{i}", more=True, send=send)
        w.book(f"n{i}", asks=[(c(ask), size * MICRO)], bids=[(c(ask - 2), size * MICRO)], market=f"0xc{i}",
               send=send)


async def test_a_no_basket_is_signalled_with_exact_legs(make_world):
    w = await make_world()
    await with_listing(w, [BINARY, *THREE])
    event_books(w, [62, 66, 68])  # NO asks sum 1.96 < m - 1 = 2

    topic, env = await w.next_signal()
    sig = env.body
    assert topic == topics.signal(EVENT) and isinstance(sig, Signal)
    assert (sig.market, sig.kind, sig.size, sig.neg_risk_market_id, sig.convert_fee_bips) == (
        EVENT, "NO_BASKET", 10 * MICRO, EVENT, 0)
    # fees 0.01 x p(1-p) x 10 shares: 0.02356, 0.02244, 0.02176
    assert [(leg.token_id, leg.side, leg.limit_price, leg.size, leg.cost, leg.fee) for leg in sig.legs] == [
        ("n0", "BUY", c(62), 10 * MICRO, 6_200_000, 23_560),
        ("n1", "BUY", c(66), 10 * MICRO, 6_600_000, 22_440),
        ("n2", "BUY", c(68), 10 * MICRO, 6_800_000, 21_760)]
    assert sig.expected_profit == 2 * 10 * MICRO - 19_600_000 - 67_760 == 332_240
    assert sig.book_ts_ms == {f"n{i}": w.now_ms() for i in range(3)}
    events = w.actor.get_stats()["neg_risk_events"]
    assert events["baskets"] == [EVENT] and events["skipped"] == {}
    assert w.actor.get_stats()["neg_risk_markets_skipped"] == 0


async def test_the_adapters_convert_fee_is_read_once_and_priced_in(make_world):
    reads = []

    async def fee(session, cfg, market_id):
        reads.append(market_id)
        if len(reads) == 1:
            raise ConnectionError("chain not up yet")
        return 100  # 1%

    w = await make_world(fee_reader=fee)
    await with_listing(w, [BINARY, *THREE], wait=lambda a: a.get_stats()["neg_risk_events"]["skipped"])
    assert w.actor.get_stats()["neg_risk_events"]["skipped"] == {EVENT: "convert_fee_unknown"}
    event_books(w, [62, 66, 68])
    await eventually(lambda: w.actor.get_stats()["updates"] >= 6)
    assert w.actor.signals == 0  # not without the fee

    def tick():
        w.clock.advance(1.0)
        return EVENT in w.actor.baskets

    await eventually(tick, what="the fee read again")
    assert w.actor.get_stats()["neg_risk_events"]["fee_read_errors"] == 1
    w.breaker(CircuitState.CLOSED)  # heartbeats again after the clock jumped
    await eventually(lambda: w.rt.breaker.state == CircuitState.CLOSED)
    event_books(w, [62, 66, 68])
    sig = (await w.next_signal())[1].body
    # converting 10 of each pays 2 x (10 - 0.1)
    assert sig.convert_fee_bips == 100 and sig.expected_profit == 2 * 9_900_000 - 19_600_000 - 67_760
    await with_listing(w, [BINARY, *THREE, outcome(9, index=0, event="0x" + "cd" * 31 + "00")],
                       wait=lambda a: a.discoveries >= 3)
    assert reads.count(EVENT) == 2  # read until known, then never again


async def test_an_event_is_judged_once_per_batch_of_books(make_world):
    w = await make_world()
    await with_listing(w, [BINARY, *THREE])
    before = w.actor.get_stats()["neg_risk_events"]["evaluations"]
    event_books(w, [62, 66, 68])  # six books, three markets, one batch
    await w.next_signal()
    await eventually(lambda: w.actor.get_stats()["updates"] >= 6)
    stats = w.actor.get_stats()
    assert stats["neg_risk_events"]["evaluations"] == before + 1
    assert stats["deferred_updates"] == 3 and stats["signals_published"] == 1


async def test_a_gap_that_closes_is_not_signalled_from_half_updated_books(make_world):
    # The gap closes: one venue message raises every NO ask again. Judged market by
    # market, the first ones' new books next to the others' old gap books would
    # still show a basket. Judged once the batch is in, there is none.
    w = await make_world()
    await with_listing(w, [BINARY, *THREE])
    event_books(w, [62, 66, 68])
    first = (await w.next_signal())[1].body
    w.result(first.signal_id)
    await eventually(lambda: w.actor.results["SUCCESS"] == 1)
    w.clock.advance(0.01)
    event_books(w, [64, 69, 69])  # 2.02: no edge (market 0's new book next to the old others: 1.98, a basket)
    await eventually(lambda: w.actor.get_stats()["updates"] >= 12)
    assert w.actor.signals == 1


async def test_an_event_is_judged_only_once_its_flush_is_all_in_even_across_reads(make_world):
    # A read of the bus can end in the middle of a feed flush: the first markets' new
    # books next to the others' old ones were judged (issue 13 review).
    w = await make_world()
    await with_listing(w, [BINARY, *THREE])
    event_books(w, [62, 66, 68])
    first = (await w.next_signal())[1].body
    w.result(first.signal_id)
    await eventually(lambda: w.actor.results["SUCCESS"] == 1)
    w.clock.advance(0.01)
    judged = w.actor.get_stats()["neg_risk_events"]["evaluations"]
    # The gap closes: [61, 66, 75] sums 2.02. The first two markets are read, the third is
    # not yet: next to its old book (68) they would be a basket (1.95).
    def read(i, ask, last=False):
        for token, bids, asks, more in ((f"y{i}", [(c(100 - ask), 10 * MICRO)], [(c(102 - ask), 10 * MICRO)], True),
                                        (f"n{i}", [(c(ask - 2), 10 * MICRO)], [(c(ask), 10 * MICRO)], False)):
            body = BookUpdate(token_id=token, market=f"0xc{i}", valid=True, bids=bids, asks=asks,
                              venue_ts_ms=w.now_ms(), recv_ns=w.clock.time_ns(), tick_size=c(1), more=more,
                              flush_more=not (last and not more))
            w.actor.on_book(w.feed.stamp(topics.book(token), body))

    read(0, 61)
    read(1, 66)
    w.actor.end_of_batch()
    stats = w.actor.get_stats()
    assert stats["flushes_split"] == 1 and stats["neg_risk_events"]["evaluations"] == judged
    read(2, 75, last=True)  # the rest of the flush, in the next read
    w.actor.end_of_batch()
    assert w.actor.get_stats()["neg_risk_events"]["evaluations"] == judged + 1
    assert w.actor.signals == 1  # judged once, on the whole flush: no basket


async def test_a_result_in_the_middle_of_a_flush_is_judged_after_its_last_book(make_world):
    # Review: the re-evaluation a result triggers ran at once, between two reads of one
    # feed flush, on the new YES book next to the old NO book: the gap the flush closes.
    w = await make_world()
    w.arbitrage()
    first = (await w.next_signal())[1].body
    w.clock.advance(0.01)

    def read(token, asks, more, flush_more):
        body = BookUpdate(token_id=token, market=M, valid=True, bids=[(c(40), MICRO)], asks=asks,
                          venue_ts_ms=w.now_ms(), recv_ns=w.clock.time_ns(), tick_size=c(1), more=more,
                          flush_more=flush_more)
        w.actor.on_book(w.feed.stamp(topics.book(token), body))

    read("yes", [(c(45), 40 * MICRO)], more=True, flush_more=True)  # the read ends here
    w.actor.on_result(w.executor.stamper.stamp(topics.tx_result(), TxResult(
        signal_id=first.signal_id, idempotency_key="k", market=M, status="SUCCESS", success=True, attempt=1)))
    assert w.actor.get_stats()["reevaluations"] == 0  # waits for the flush
    read("no", [(c(60), 100 * MICRO)], more=False, flush_more=False)  # 1.05: the gap is gone
    w.actor.end_of_batch()
    assert w.actor.get_stats()["reevaluations"] == 1 and w.actor.signals == 1


async def test_an_augmented_event_never_signals(make_world):
    w = await make_world()
    augmented = [outcome(0), outcome(1), outcome(2, tags=["Placeholder"]), outcome(3, tags=["Other"])]
    await with_listing(w, [BINARY, *augmented], wait=lambda a: a.get_stats()["neg_risk_events"]["skipped"])
    assert w.actor.get_stats()["neg_risk_events"]["skipped"] == {EVENT: "augmented"}
    assert w.actor.get_stats()["neg_risk_markets_skipped"] == 4
    event_books(w, [40, 40, 40, 40])  # the NO asks sum 1.6, far below m - 1 = 3 (or 1 for the named two)
    await eventually(lambda: w.actor.get_stats()["updates"] >= 8)
    assert w.actor.signals == 0 and w.actor.get_stats()["unknown_token_updates"] == 8


async def test_an_event_with_a_question_missing_never_signals(make_world):
    w = await make_world()
    await with_listing(w, [BINARY, outcome(0), outcome(2)],
                       wait=lambda a: a.get_stats()["neg_risk_events"]["skipped"])
    assert w.actor.get_stats()["neg_risk_events"]["skipped"] == {EVENT: "incomplete_set"}
    w.book("n0", asks=[(c(30), 10 * MICRO)], market="0xc0")
    w.book("n2", asks=[(c(30), 10 * MICRO)], market="0xc2")
    await eventually(lambda: w.actor.get_stats()["updates"] >= 2)
    assert w.actor.signals == 0


async def test_an_event_whose_books_are_not_all_in_never_signals(make_world):
    w = await make_world()
    await with_listing(w, [BINARY, *THREE])
    w.book("n0", asks=[(c(62), 10 * MICRO)], market="0xc0")
    w.book("n1", asks=[(c(66), 10 * MICRO)], market="0xc1")
    await eventually(lambda: w.actor.suppressed["incomplete_set"] >= 1)
    assert w.actor.signals == 0
    w.book("n2", asks=[(c(68), 10 * MICRO)], market="0xc2")
    assert (await w.next_signal())[1].body.kind == "NO_BASKET"


async def test_a_no_basket_below_the_threshold_is_not_signalled(make_world):
    w = await make_world()
    await with_listing(w, [BINARY, *THREE])
    event_books(w, [65, 66, 68])  # 1.99: earns 0.01 - fees 0.0067 per set, below 0.01
    await eventually(lambda: w.actor.get_stats()["neg_risk_events"]["evaluations"] >= 1
                     and w.actor.get_stats()["updates"] >= 6)
    assert w.actor.signals == 0 and "no_edge" not in w.actor.suppressed
    w.clock.advance(0.01)
    event_books(w, [64, 66, 68])  # 1.98: 0.0133 per set
    assert (await w.next_signal())[1].body.kind == "NO_BASKET"


# -- neg-risk events: the YES basket (router.yes_baskets) ----------------------------


def basket_books(w, no_asks, yes_asks, *, size=10):
    """One venue message that moved every outcome: per market its YES (more) then its NO book."""
    for i, (no, yes) in enumerate(zip(no_asks, yes_asks, strict=True)):
        w.book(f"y{i}", asks=[(c(yes), size * MICRO)], bids=[(c(yes - 2), size * MICRO)], market=f"0xc{i}",
               more=True)
        w.book(f"n{i}", asks=[(c(no), size * MICRO)], bids=[(c(no - 2), size * MICRO)], market=f"0xc{i}")


NO_EDGE_NO = [64, 69, 69]  # 2.02 > m - 1: no NO basket
YES_GAP = [30, 31, 32]  # 0.93 < 1: a YES basket


async def signals(w, n: int) -> list:
    async def collect():
        got = []
        while len(got) < n:
            got += [r.env for r in await w.signals.recv_batch()]
        return got

    got = await asyncio.wait_for(collect(), 10)
    assert len(got) == n, got
    return got


def switch_yes_baskets(w, on: bool) -> None:
    """A hot reload of router.yes_baskets, as the config watcher does it."""
    old = w.rt.config
    new = msgspec.structs.replace(old, router=msgspec.structs.replace(old.router, yes_baskets=on))
    w.rt.watcher.config = new
    w.actor.on_config(old, new)


async def test_a_yes_basket_is_signalled_with_exact_legs_when_on(make_world):
    w = await make_world(yes_baskets=True)
    await with_listing(w, [BINARY, *THREE])
    basket_books(w, NO_EDGE_NO, YES_GAP)

    topic, env = await w.next_signal()
    sig = env.body
    assert topic == topics.signal(EVENT) and isinstance(sig, Signal)
    assert (sig.market, sig.kind, sig.size, sig.neg_risk_market_id, sig.convert_fee_bips) == (
        EVENT, "YES_BASKET", 10 * MICRO, EVENT, 0)
    # fees 0.01 x p(1-p) x 10 shares: 0.021, 0.02139, 0.02176
    assert [(leg.token_id, leg.side, leg.limit_price, leg.size, leg.cost, leg.fee) for leg in sig.legs] == [
        ("y0", "BUY", c(30), 10 * MICRO, 3_000_000, 21_000),
        ("y1", "BUY", c(31), 10 * MICRO, 3_100_000, 21_390),
        ("y2", "BUY", c(32), 10 * MICRO, 3_200_000, 21_760)]
    assert sig.expected_profit == 10 * MICRO - 9_300_000 - 64_150 == 635_850  # the winner redeems 10
    assert sig.book_ts_ms == {f"y{i}": w.now_ms() for i in range(3)}
    stats = w.actor.get_stats()
    assert stats["signals_by_kind"] == {"YES_BASKET": 1}
    events = stats["neg_risk_events"]
    assert (events["baskets"], events["yes_baskets"], events["yes_baskets_on"]) == ([EVENT], [EVENT], True)
    assert events["yes_evaluations"] == 1 and events["evaluations"] == 2  # one batch: the NO and the YES basket


async def test_no_yes_basket_is_signalled_while_off(make_world):
    w = await make_world()  # router.yes_baskets defaults to false
    await with_listing(w, [BINARY, *THREE])
    basket_books(w, NO_EDGE_NO, YES_GAP)
    await eventually(lambda: w.actor.get_stats()["neg_risk_events"]["evaluations"] >= 1
                     and w.actor.get_stats()["updates"] >= 6)
    events = w.actor.get_stats()["neg_risk_events"]
    assert w.actor.signals == 0 and events["yes_evaluations"] == 0
    assert (events["yes_baskets"], events["yes_baskets_on"]) == ([EVENT], False)
    basket_books(w, [62, 66, 68], YES_GAP)  # the NO basket is still signalled
    assert (await w.next_signal())[1].body.kind == "NO_BASKET"
    assert w.actor.get_stats()["signals_by_kind"] == {"NO_BASKET": 1}


async def test_a_hot_reload_turns_yes_baskets_on_and_off(make_world):
    w = await make_world()
    await with_listing(w, [BINARY, *THREE])
    basket_books(w, NO_EDGE_NO, YES_GAP)
    await eventually(lambda: w.actor.get_stats()["updates"] >= 6)
    assert w.actor.signals == 0

    switch_yes_baskets(w, True)  # judged at once from the books held
    sig = (await w.next_signal())[1].body
    assert sig.kind == "YES_BASKET" and [leg.limit_price for leg in sig.legs] == [c(p) for p in YES_GAP]

    switch_yes_baskets(w, False)
    w.clock.advance(0.01)
    basket_books(w, NO_EDGE_NO, [29, 31, 32])  # a new YES basket price: not signalled while off
    await eventually(lambda: w.actor.get_stats()["updates"] >= 12)
    assert w.actor.signals == 1 and w.actor.get_stats()["neg_risk_events"]["yes_evaluations"] == 1


async def test_the_no_and_the_yes_basket_of_one_event_do_not_hold_each_other_back(make_world):
    w = await make_world(yes_baskets=True)
    await with_listing(w, [BINARY, *THREE])
    basket_books(w, [62, 66, 68], YES_GAP)  # both baskets at once
    no, yes = (env.body for env in await signals(w, 2))
    assert (no.kind, yes.kind) == ("NO_BASKET", "YES_BASKET") and no.market == yes.market == EVENT

    basket_books(w, [62, 66, 68], YES_GAP)  # the same prices again: both still being executed
    await eventually(lambda: w.actor.suppressed["duplicate"] >= 2)
    w.result(yes.signal_id)  # the YES basket's result releases it, not the NO basket
    await eventually(lambda: w.actor.results["SUCCESS"] == 1)
    w.clock.advance(0.01)
    basket_books(w, [62, 66, 68], YES_GAP)
    again = (await w.next_signal())[1].body
    assert again.kind == "YES_BASKET" and again.signal_id != yes.signal_id
    await eventually(lambda: w.actor.suppressed["duplicate"] >= 3)
    assert w.actor.get_stats()["signals_by_kind"] == {"NO_BASKET": 1, "YES_BASKET": 2}


async def test_an_event_without_its_convert_fee_still_has_a_yes_basket(make_world):
    async def chain_down(session, cfg, market_id):
        raise ConnectionError("chain not up yet")

    w = await make_world(fee_reader=chain_down, yes_baskets=True)
    await with_listing(w, [BINARY, *THREE], wait=lambda a: EVENT in a.yes_baskets)
    stats = w.actor.get_stats()
    assert stats["neg_risk_events"]["skipped"] == {EVENT: "convert_fee_unknown"}
    assert stats["neg_risk_events"]["baskets"] == [] and stats["neg_risk_markets_skipped"] == 0
    basket_books(w, [62, 66, 68], YES_GAP)  # a NO gap too, but not without the fee
    sig = (await w.next_signal())[1].body
    assert sig.kind == "YES_BASKET" and sig.convert_fee_bips == 0
    await eventually(lambda: w.actor.get_stats()["updates"] >= 6)
    assert w.actor.signals == 1
    switch_yes_baskets(w, False)
    assert w.actor.get_stats()["neg_risk_markets_skipped"] == 3  # no basket trades them now


async def test_a_yes_gap_that_closes_is_not_signalled_from_half_updated_books(make_world):
    w = await make_world(yes_baskets=True)
    await with_listing(w, [BINARY, *THREE])
    basket_books(w, NO_EDGE_NO, YES_GAP)
    first = (await w.next_signal())[1].body
    w.result(first.signal_id)
    await eventually(lambda: w.actor.results["SUCCESS"] == 1)
    w.clock.advance(0.01)
    # 1.02: no edge; market 0's new YES book next to the old others (0.98) would be a basket.
    # Every YES book is deferred (more), the batch is judged once at its end.
    basket_books(w, NO_EDGE_NO, [35, 33, 34])
    await eventually(lambda: w.actor.get_stats()["updates"] >= 12)
    stats = w.actor.get_stats()
    assert w.actor.signals == 1 and stats["deferred_updates"] == 6
    assert stats["neg_risk_events"]["yes_evaluations"] == 2  # once per batch


async def test_augmented_or_incomplete_events_have_no_yes_basket(make_world):
    w = await make_world(yes_baskets=True)
    augmented = [outcome(0), outcome(1), outcome(2, tags=["Other"])]
    await with_listing(w, [BINARY, *augmented], wait=lambda a: a.get_stats()["neg_risk_events"]["skipped"])
    assert w.actor.yes_baskets == {} and w.actor.get_stats()["neg_risk_events"]["yes_baskets"] == []
    basket_books(w, [30, 30, 30], [10, 10, 10])  # YES asks summing to 0.3
    await eventually(lambda: w.actor.get_stats()["updates"] >= 6)
    assert w.actor.signals == 0 and w.actor.get_stats()["unknown_token_updates"] == 6

    await with_listing(w, [BINARY, outcome(0), outcome(2)], wait=lambda a: a.discoveries >= 3)
    assert w.actor.get_stats()["neg_risk_events"]["skipped"] == {EVENT: "incomplete_set"}
    assert w.actor.yes_baskets == {}
    w.book("y0", asks=[(c(10), 10 * MICRO)], market="0xc0")
    w.book("y2", asks=[(c(10), 10 * MICRO)], market="0xc2")
    await eventually(lambda: w.actor.get_stats()["updates"] >= 8)
    assert w.actor.signals == 0
