"""VenueState: every book of every market, and the one place that changes them.

Every market is one binary condition with a YES and a NO token, and its two
books mirror each other as on Polymarket: a bid for YES at p IS an ask for NO
at 1 - p (one book, two views). Every level set on one token is set on the
other's mirror in the same step, and every event names both tokens' levels.
A taker on YES matches COMPLEMENTARY (the operator's YES order); a taker on NO
matches the operator's YES order from the other side: a BUY of NO crosses a YES
bid by minting a set (MINT), a SELL of NO crosses a YES ask by merging one
(MERGE). So `ask(YES) + ask(NO) < 1` cannot rest on the book. The
`inject_binary_gap` fault opens one on purpose: the simulator suspends a
market's mirror (`suspend_mirror`) and gives each token a book of its own for
the gap's lifetime; takers of its NO then match the operator's own NO orders
(COMPLEMENTARY), and `resume_mirror` makes it one book again.

Pure: no I/O, time from the injected clock. Everything runs on the event
loop's thread and no method awaits, so each call is atomic with respect to
the simulator, the WebSocket fan-out and the REST handlers.

Every change is announced to the listeners (`add_listener`) as events
(`sandbox.venue.events`), which the market channel turns into frames:
    simulator moves        -> price_change (or tick_size_change + book)
    execute_taker (fills)  -> price_change, last_trade_price, book
    revert                 -> price_change, book
Units: prices in 1e-6 USDC per share, sizes in 1e-6 shares, money in 1e-6 USDC.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from actors.domain.money import ONE, to_micro
from actors.runtime.clock import Clock
from sandbox.venue.book import BUY, SELL, Book, is_valid_price
from sandbox.venue.events import (
    BookSnapshot,
    Event,
    LastTradePrice,
    LevelUpdate,
    MarketResolved,
    PriceChange,
    TickSizeChange,
)

log = logging.getLogger(__name__)


COMPLEMENTARY, MINT, MERGE = "COMPLEMENTARY", "MINT", "MERGE"  # ctf-exchange's MatchType


def mirror(side: str, price: int) -> tuple[str, int]:
    """The same order seen from the complement token: a bid at p is an ask at 1 - p."""
    return (SELL if side == BUY else BUY), ONE - price


class VenueError(ValueError):
    """A request the venue refuses; the message says why."""


class UnknownToken(VenueError):
    pass


class InvalidOrder(VenueError):
    pass


@dataclass(frozen=True, slots=True)
class Execution:
    """The result of one taker order against one book.

    fills:   [(price, size)] in the order they matched (best price first).
    changes: [(maker side, price, new total size at that price)] — the levels
             the execution touched, as they are now (0 = level gone).
    An execution with no fills changed nothing (a FOK that could not fill
    completely, or no liquidity within the limit).
    """

    id: int
    token_id: str
    market: str  # condition id
    side: str  # the taker's side: BUY takes asks, SELL takes bids
    limit_price: int
    size: int  # requested size
    all_or_none: bool
    fills: tuple[tuple[int, int], ...]
    changes: tuple[tuple[str, int, int], ...]
    timestamp_ms: int
    match_type: str = COMPLEMENTARY  # how the operator's side settles (MINT / MERGE for takers on NO)

    @property
    def filled(self) -> int:
        """Shares filled (1e-6 shares)."""
        return sum(s for _, s in self.fills)

    @property
    def complete(self) -> bool:
        return self.filled == self.size

    @property
    def notional_e12(self) -> int:
        """Exact sum of price x size, in 1e-12 USDC."""
        return sum(p * s for p, s in self.fills)

    @property
    def cost(self) -> int:
        """Collateral that changes hands, in 1e-6 USDC: what a BUY taker pays
        (rounded up) or a SELL taker receives (rounded down). Exact whenever
        sizes are whole 0.01 shares, as Polymarket requires."""
        n = self.notional_e12
        return -(-n // ONE) if self.side == BUY else n // ONE


Listener = Callable[[Event], None]

TradeListener = Callable[[Execution], None]


class VenueState:
    def __init__(self, markets: Sequence[Any], clock: Clock, *,
                 last_trade_prices: dict[str, int] | None = None) -> None:
        """`markets`: MarketInfo records (sandbox.deploy.MarketInfo). `last_trade_prices`:
        token id -> price shown as `last_trade_price` until the first trade."""
        self.clock = clock
        self.markets = list(markets)
        self.market_by_id = {m.condition_id: m for m in self.markets}
        self.market_of: dict[str, Any] = {}
        self.books: dict[str, Book] = {}
        self.partner: dict[str, str] = {}  # token -> its complement (YES <-> NO)
        self.is_yes: dict[str, bool] = {}
        self.fee_rate_bps: dict[str, int] = {}
        for m in self.markets:
            if len(m.token_ids) != 2:
                raise ValueError(f"market {m.slug} has {len(m.token_ids)} tokens: every market is one binary "
                                 "condition (multi-outcome markets are neg-risk events of binary markets)")
            self.fee_rate_bps[m.condition_id] = int(m.fee_rate * 10_000)
            yes, no = m.token_ids
            self.partner[yes], self.partner[no] = no, yes
            self.is_yes[yes], self.is_yes[no] = True, False
            for token in m.token_ids:
                self.market_of[token] = m
                self.books[token] = Book(
                    token, m.condition_id, tick_size=to_micro(m.tick_size), min_order_size=to_micro(m.min_order_size),
                    neg_risk=bool(m.neg_risk), last_trade_price=(last_trade_prices or {}).get(token, 0))
        self.resolved: dict[str, str] = {}  # condition id -> winning token: closed to trading
        self.unmirrored: set[str] = set()  # markets whose books are independent (an injected fault)
        self._listeners: list[Listener] = []
        self._trade_listeners: list[TradeListener] = []
        self._pending: list[tuple[Book, str, int, int]] | None = None  # a taker's changes, not sent yet
        self._last_ts: dict[str, int] = {}
        self._next_execution = 1
        self._reverted: set[int] = set()
        self.events = Counter[str]()
        self.stats = Counter[str]()

    # ------------------------------------------------------------ plumbing

    def add_listener(self, fn: Listener) -> None:
        """`fn(event)` for every event, synchronously, in order."""
        self._listeners.append(fn)

    def add_trade_listener(self, fn: TradeListener) -> None:
        """`fn(execution)` after each execution with fills, before its events are sent:
        the levels it changes go out in the execution's own price_change."""
        self._trade_listeners.append(fn)

    def _emit(self, event: Event) -> None:
        self.events[event.kind] += 1
        for fn in self._listeners:
            try:
                fn(event)
            except Exception:  # a subscriber's bug must not leave a book half-changed
                self.stats["listener_errors"] += 1
                log.exception("event listener failed on %s", event.kind)

    def now_ms(self, market: str) -> int:
        """Epoch ms for the market's next event: never earlier than its last one."""
        ts = max(self.clock.time_ns() // 1_000_000, self._last_ts.get(market, 0))
        self._last_ts[market] = ts
        return ts

    def book(self, token_id: str) -> Book:
        try:
            return self.books[token_id]
        except KeyError:
            raise UnknownToken(f"unknown token id {token_id}") from None

    # ------------------------------------------------------------ levels, mirrored

    def suspend_mirror(self, condition_id: str) -> None:
        """The fault `inject_binary_gap`: the market's two books stop being one."""
        self.unmirrored.add(condition_id)
        self.stats["mirror_suspensions"] += 1

    def resume_mirror(self, condition_id: str, yes_bids: dict[int, int], yes_asks: dict[int, int]) -> list[PriceChange]:
        """One book again, from these YES levels (the NO book becomes their mirror).

        Sent as ONE price_change naming both tokens' levels, like every other move
        of a binary market: two separate book snapshots would let a client hold
        the new YES book next to the old NO book, a gap that no longer exists."""
        self.unmirrored.discard(condition_id)
        yes, no = self.market_by_id[condition_id].token_ids[:2]
        touched: list[tuple[Book, str, int, int]] = []
        for side, target in ((BUY, yes_bids), (SELL, yes_asks)):
            for price in [p for p, _ in self.books[yes].levels(side) if p not in target]:
                self._set(touched, yes, side, price, 0)
            for price, size in sorted(target.items()):
                self._set(touched, yes, side, price, size)
        for side in (BUY, SELL):  # the NO book's own gap levels that mirror nothing of YES's
            m_side = SELL if side == BUY else BUY
            mirrored = yes_bids if m_side == BUY else yes_asks
            for price in [p for p, _ in self.books[no].levels(side) if ONE - p not in mirrored]:
                self._set(touched, no, side, price, 0)
        return self._emit_changes(touched) if touched else []

    def _set(self, touched: list[tuple[Book, str, int, int]], token: str, side: str, price: int, size: int) -> None:
        """Set one level and its mirror on the complement token; record what changed."""
        b = self.book(token)
        if b.size_at(side, price) != size:
            b.set_level(side, price, size)
            touched.append((b, side, price, size))
        if b.market in self.unmirrored:
            return
        m_side, m_price = mirror(side, price)
        p = self.books[self.partner[token]]
        if p.size_at(m_side, m_price) != size:
            p.set_level(m_side, m_price, size)
            touched.append((p, m_side, m_price, size))

    def _emit_changes(self, touched: list[tuple[Book, str, int, int]]) -> list[PriceChange]:
        """One price_change per market (condition), naming both tokens' levels. During a
        taker's execution the changes join its own (sent once its listeners ran)."""
        if self._pending is not None and touched is not self._pending:
            self._pending.extend(touched)
            return []
        by_market: dict[str, list[tuple[Book, str, int, int]]] = {}
        for t in touched:
            by_market.setdefault(t[0].market, []).append(t)
        return [self._price_change(market, items) for market, items in by_market.items()]

    # ------------------------------------------------------------ market moves (simulator)

    def apply(self, changes: Iterable[tuple[str, str, int, int]]) -> list[PriceChange]:
        """Set levels [(token, side, price, new total size)], each with its mirror;
        one event per market touched; levels already at that size are skipped."""
        touched: list[tuple[Book, str, int, int]] = []
        for token, side, price, size in changes:
            self._set(touched, token, side, price, size)
        return self._emit_changes(touched) if touched else []

    def _price_change(self, market: str, touched: list[tuple[Book, str, int, int]]) -> PriceChange:
        ts = self.now_ms(market)
        after: dict[str, tuple[str, int | None, int | None]] = {}  # per book: hash, best bid, best ask
        for b, *_ in touched:
            if b.asset_id not in after:
                b.stamp(ts)
                after[b.asset_id] = (b.hash(), b.best_bid(), b.best_ask())
        event = PriceChange(market, ts, tuple(
            LevelUpdate(b.asset_id, side, price, size, *after[b.asset_id]) for b, side, price, size in touched))
        self._emit(event)
        return event

    def set_tick(self, token_id: str, tick: int) -> list[TickSizeChange]:
        """Change a market's tick size: both tokens, one tick_size_change each. The caller
        then sends fresh books with `replace_book`: clients drop the book until it arrives."""
        b = self.book(token_id)
        if tick == b.tick_size:
            return []
        ts = self.now_ms(b.market)
        out = []
        for book in (b, self.books[self.partner[token_id]]):
            event = TickSizeChange(book.asset_id, book.market, book.tick_size, tick, ts)
            book.tick_size = tick
            book.stamp(ts)
            self._emit(event)
            out.append(event)
        return out

    def replace_book(self, token_id: str, bids: dict[int, int], asks: dict[int, int], *,
                     emit: bool = True, last_trade_price: int | None = None) -> list[BookSnapshot]:
        """Replace every level of a token's book, and its complement's with the mirror;
        sends a `book` event for each unless `emit` is False (the initial books, before
        anyone can be subscribed). `last_trade_price` is the token's (the complement's is 1 - it)."""
        b = self.book(token_id)
        p = None if b.market in self.unmirrored else self.books[self.partner[token_id]]
        b.clear()
        if p is not None:
            p.clear()
        if last_trade_price is not None:
            b.last_trade_price = last_trade_price
            if p is not None:
                p.last_trade_price = ONE - last_trade_price if 0 < last_trade_price < ONE else 0
        for side, levels in ((BUY, bids), (SELL, asks)):
            for price, size in levels.items():
                if size:
                    b.set_level(side, price, size)
                    if p is not None:
                        p.set_level(*mirror(side, price), size)
        ts = self.now_ms(b.market)
        books = [b] if p is None else [b, p]
        for book in books:
            book.stamp(ts)
        return [self._snapshot(book) for book in books] if emit else []

    def _snapshot(self, b: Book) -> BookSnapshot:
        event = BookSnapshot(b.asset_id, b.market, b.timestamp_ms, b.to_wire(), b.encoded())
        self._emit(event)
        return event

    def resolve(self, condition_id: str, winner: str) -> MarketResolved | None:
        """Close a market for good: no more trading; `market_resolved` names the winner
        (a token id of the market). A second call changes nothing (None)."""
        m = self.market_by_id[condition_id]
        if winner not in m.token_ids:
            raise VenueError(f"{winner} is not a token of market {condition_id}")
        if condition_id in self.resolved:
            return None
        self.resolved[condition_id] = winner
        self.stats["markets_resolved"] += 1
        event = MarketResolved(condition_id, m.question, tuple(m.token_ids), tuple(m.outcomes), winner,
                               m.outcomes[m.token_ids.index(winner)], self.now_ms(condition_id))
        self._emit(event)
        return event

    # ------------------------------------------------------------ takers (the CLOB)

    def execute_taker(self, token_id: str, side: str, limit_price: int, size: int,
                      all_or_none: bool) -> Execution:
        """Match a taker order against the book, atomically.

        side BUY sweeps asks priced <= limit_price, SELL sweeps bids >= limit_price,
        best first. all_or_none=True is FOK (fills all or nothing changes), False
        is FAK (fills what there is, the rest is cancelled). Raises UnknownToken,
        or InvalidOrder for a side other than BUY/SELL, a price outside (0, 1) or
        off the token's CURRENT tick, or a size <= 0. With fills (on both mirrored
        books), notifies trade listeners, then sends ONE price_change (the fills and
        what the listeners changed because of them) + last_trade_price + book (both tokens).
        """
        b = self.book(token_id)
        if b.market in self.resolved:
            raise InvalidOrder(f"market {b.market} is resolved: it no longer trades")
        if side not in (BUY, SELL):
            raise InvalidOrder(f"side must be BUY or SELL, got {side!r}")
        if not is_valid_price(limit_price, b.tick_size):
            raise InvalidOrder(f"price {limit_price}e-6 is outside (0, 1) or not a multiple of the tick size "
                               f"{b.tick_size}e-6")
        if size <= 0:
            raise InvalidOrder(f"size must be positive, got {size}")
        fills = b.walk(side, limit_price, size, all_or_none)
        maker = SELL if side == BUY else BUY
        ex_id = self._next_execution
        self._next_execution += 1
        self.stats["executions"] += 1
        own = self.is_yes[token_id] or b.market in self.unmirrored  # the operator's order for this very token
        match = COMPLEMENTARY if own else (MINT if side == BUY else MERGE)
        if not fills:
            self.stats["executions_unfilled"] += 1
            return Execution(ex_id, token_id, b.market, side, limit_price, size, all_or_none, (), (),
                             self.now_ms(b.market), match)
        touched: list[tuple[Book, str, int, int]] = []
        for price, n in fills:
            self._set(touched, token_id, maker, price, b.size_at(maker, price) - n)
        changes = tuple((maker, p, b.size_at(maker, p)) for p, _ in fills)
        partner = self.books[self.partner[token_id]]
        b.last_trade_price = fills[-1][0]
        if b.market not in self.unmirrored:
            partner.last_trade_price = ONE - fills[-1][0]
        self.stats["fills"] += len(fills)
        self.stats["shares_filled"] += sum(s for _, s in fills)
        self.stats[f"matches_{match.lower()}"] += 1
        ex = Execution(ex_id, token_id, b.market, side, limit_price, size, all_or_none, tuple(fills), changes,
                       self.now_ms(b.market), match)
        # The listeners run before the fill is sent: what they change because of it (the
        # simulator closing the gap it took) goes out in the fill's own price_change. Sent
        # apart, a client held the book between the two (the gap's next level, already gone)
        # and traded on it: one leg filled, the other killed.
        self._pending = touched
        try:
            for fn in self._trade_listeners:
                try:
                    fn(ex)
                except Exception:  # the execution stands; a listener's bug must not undo it
                    self.stats["listener_errors"] += 1
                    log.exception("trade listener failed on execution %d", ex.id)
        finally:
            self._pending = None
        self._emit_changes(touched)
        self._emit(LastTradePrice(token_id, b.market, fills[-1][0], side, ex.filled,
                                  self.fee_rate_bps[b.market], ex.timestamp_ms))
        self._snapshot(b)
        self._snapshot(partner)
        return ex

    def revert(self, execution: Execution) -> tuple[tuple[str, int, int], ...]:
        """Give back the liquidity of an execution whose settlement failed.

        Each fill's size is added back at its price (and mirrored), except where
        that would now cross the book (the market moved on; that liquidity is
        gone). Idempotent: a second call for the same execution restores nothing.
        Returns the restored levels of the taker's token [(maker side, price, new
        total size)] and sends price_change + book (both tokens) for them.
        """
        if execution.id in self._reverted or not execution.fills:
            return ()
        self._reverted.add(execution.id)
        self.stats["reverts"] += 1
        b = self.book(execution.token_id)
        maker = SELL if execution.side == BUY else BUY
        touched: list[tuple[Book, str, int, int]] = []
        restored = []
        for price, size in execution.fills:
            if maker == SELL and (bid := b.best_bid()) is not None and price <= bid:
                continue
            if maker == BUY and (ask := b.best_ask()) is not None and price >= ask:
                continue
            new = b.size_at(maker, price) + size
            self._set(touched, execution.token_id, maker, price, new)
            restored.append((maker, price, new))
        if not touched:
            return ()
        self._emit_changes(touched)
        self._snapshot(b)
        self._snapshot(self.books[self.partner[execution.token_id]])
        return tuple(restored)

    def get_stats(self) -> dict[str, Any]:
        return {**{k: self.stats[k] for k in ("executions", "executions_unfilled", "fills", "shares_filled",
                                              "matches_complementary", "matches_mint", "matches_merge",
                                              "reverts", "listener_errors", "markets_resolved")},
                "events": dict(self.events), "markets": len(self.markets), "tokens": len(self.books)}
