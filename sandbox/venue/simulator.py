"""The venue's market maker: books that move, and arbitrage gaps that come and go.

Pure: time comes in as `advance(now_ns)` (monotonic ns from the injected
clock), randomness from the injected seeded `random.Random`; the same seed and
the same calls give the same events. It changes books only through
`VenueState`, which emits the events.

Model. A group is a set of outcomes whose YES prices sum to exactly 1: a
binary market (YES and its NO, whose book is YES's mirror) or a neg-risk event
(the YES token of each of its binary markets; each NO book mirrors its YES).
The simulator writes YES books only; `VenueState` mirrors every level onto
the complement. A YES book's normal form is a ladder of `depth_levels` levels
of `level_size` on each side: best ask = mid + tick, best bid = mid - tick. So
the best YES asks of a group always sum to MORE than 1 and the best bids to
LESS: the random walk never makes accidental arbitrage. An update either moves
one outcome's mid up a tick and another's down a tick (sum kept), or changes
the size of one level. Near the edges (mid > 0.96 or < 0.04) a market's tick
becomes 0.001: a tick_size_change and fresh books, and back again.

Gaps, at `rate_per_minute` (Poisson), where real prices open them: on an
event, a buy-side gap moves the best YES asks of ALL its outcomes down so they
sum to 1 - margin (a YES basket below 1), a sell-side gap (`sell_side_share`)
moves the best YES bids up to 1 + margin (so the NO asks sum to m - 1 - margin:
a NO basket). A binary market's complement gap (ask YES + ask NO < 1) cannot
rest on one mirrored book: matching closes it on the real venue. Binary
markets get gaps only while `inject_binary_gap` is on, which suspends the
market's mirror for the gap's lifetime (each token gets a gap ladder of its
own, the pre-mirror model) and restores one book afterwards. A gap ends when
takers consumed every gap level ("taken") or after `lifetime_seconds`; then
the books return to normal. The walk leaves a group alone during its gap.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actors.domain.money import ONE, to_micro
from actors.runtime.clock import Clock
from config.schema import VenueArbitrage, VenueEvent, VenueMarket
from sandbox.venue.book import BUY, SELL
from sandbox.venue.state import Execution, VenueState, mirror

FINE_TICK = 1_000  # 0.001
EDGE_LOW, EDGE_HIGH = 40_000, 960_000  # the fine tick applies below 0.04 and above 0.96
MOVE_SHARE = 0.6  # of updates that move mids; the rest change a level's size
MAX_BURST_SECONDS = 0.25  # after a pause, catch up at most this much time of updates ...
MAX_BATCH = 500  # ... and never more than this per call (~40 ms of work), so the loop keeps serving
BUY_GAP, SELL_GAP = "buy", "sell"


@dataclass
class Gap:
    side: str  # BUY_GAP: asks sum to 1 - margin; SELL_GAP: bids sum to 1 + margin
    prices: list[int]  # the gap's best YES ask (buy) or best YES bid (sell) per outcome
    opened_ns: int
    expires_ns: int
    levels: list[tuple[str, str, int]]  # (YES token, side, price): the gap is taken when all are gone
    touched: bool = False


@dataclass
class MarketSim:
    """One group: a binary market (tokens = [YES, NO]) or an event (tokens = each YES)."""

    key: str  # the binary market's condition id, or the event's slug
    tokens: list[str]
    conditions: list[str]  # the condition id of each token
    cfg: VenueMarket | VenueEvent
    step: int  # the mid's step: the group's configured tick
    mids: list[int]
    level_size: int  # 1e-6 shares
    binary: bool
    gap: Gap | None = None

    @property
    def yes_indices(self) -> range:
        """The outcomes whose books the simulator writes (a binary NO is YES's mirror,
        except during an injected gap)."""
        return range(1) if self.binary and self.gap is None else range(len(self.tokens))


def outcome_count(cfg: VenueMarket | VenueEvent) -> int:
    if isinstance(cfg, VenueEvent):
        return len(cfg.outcomes) + cfg.placeholders + int(cfg.other)
    return len(cfg.outcomes)


def initial_mids(cfg: VenueMarket | VenueEvent) -> list[int]:
    """The configured mids on the tick grid, summing to exactly 1."""
    n, step = outcome_count(cfg), to_micro(cfg.tick_size)
    prices = cfg.initial_prices
    if prices is None:
        mids = [ONE // n] * n
    elif len(prices) != n:
        raise ValueError(f"sandbox.venue.{_section(cfg)}[{cfg.slug}].initial_prices has {len(prices)} prices "
                         f"for {n} outcomes")
    else:
        mids = [to_micro(p) for p in prices]
    mids = [min(max(step, (m + step // 2) // step * step), ONE - step) for m in mids]
    big = max(range(n), key=lambda i: mids[i])
    mids[big] += ONE - sum(mids)  # rounding remainder to the largest outcome
    if not step <= mids[big] <= ONE - step:
        raise ValueError(f"sandbox.venue.{_section(cfg)}[{cfg.slug}].initial_prices cannot sum to 1 on its tick "
                         "grid")
    return mids


def _section(cfg: VenueMarket | VenueEvent) -> str:
    return "events" if isinstance(cfg, VenueEvent) else "markets"


def ladder(best_bid: int, best_ask: int, tick: int, depth: int, size: int) -> tuple[dict[int, int], dict[int, int]]:
    bids = {p: size for k in range(depth) if (p := best_bid - k * tick) > 0}
    asks = {p: size for k in range(depth) if (p := best_ask + k * tick) < ONE}
    return bids, asks


class Simulator:
    def __init__(self, state: VenueState, markets: Sequence[VenueMarket], rng: random.Random, clock: Clock, *,
                 updates_per_second: float, arbitrage: VenueArbitrage, events: Sequence[VenueEvent] = (),
                 binary_gaps: bool = False) -> None:
        self.state = state
        self.rng = rng
        self.clock = clock
        binary = {m.slug: m for m in markets}
        grouped: dict[str, list[Any]] = {}
        self.markets: list[MarketSim] = []
        for info in state.markets:
            if getattr(info, "event_slug", ""):
                grouped.setdefault(info.event_slug, []).append(info)
            else:
                cfg = binary[info.slug]
                self.markets.append(MarketSim(info.condition_id, list(info.token_ids), [info.condition_id] * 2, cfg,
                                              to_micro(cfg.tick_size), initial_mids(cfg), to_micro(cfg.level_size),
                                              binary=True))
        for ev in events:
            infos = grouped.get(ev.slug, [])
            if len(infos) != outcome_count(ev):
                raise ValueError(f"event {ev.slug}: {len(infos)} markets listed for {outcome_count(ev)} outcomes")
            self.markets.append(MarketSim(ev.slug, [i.token_ids[0] for i in infos], [i.condition_id for i in infos],
                                          ev, to_micro(ev.tick_size), initial_mids(ev), to_micro(ev.level_size),
                                          binary=False))
        self.by_condition = {c: m for m in self.markets for c in m.conditions}
        self.updates_per_second = updates_per_second
        self.arbitrage = arbitrage
        self.binary_gaps = binary_gaps
        self.counters = Counter[str]()
        self._last_ns: int | None = None
        self._budget = 0.0
        self._next_gap_ns: int | None = None
        state.add_trade_listener(self.on_trade)

    # ------------------------------------------------------------ setup and config

    def init_books(self) -> None:
        """Normal books for every market, without events (nobody is subscribed yet)."""
        for ms in self.markets:
            for i in ms.yes_indices:
                token = ms.tokens[i]
                # Set directly: a tick_size_change before anyone can subscribe means nothing.
                tick = self._tick_for(ms, ms.mids[i])
                self.state.book(token).tick_size = tick
                self.state.book(self.state.partner[token]).tick_size = tick
                bids, asks = self._target(ms, i)
                self.state.replace_book(token, bids, asks, emit=False, last_trade_price=ms.mids[i])

    def configure(self, updates_per_second: float, arbitrage: VenueArbitrage, binary_gaps: bool | None = None) -> None:
        """Hot reload: new rates apply from now on."""
        rate_changed = arbitrage.rate_per_minute != self.arbitrage.rate_per_minute
        self.updates_per_second, self.arbitrage = updates_per_second, arbitrage
        if binary_gaps is not None:
            self.binary_gaps = binary_gaps
        if rate_changed and self._last_ns is not None:
            self._schedule_gap(self._last_ns)

    def mid(self, token_id: str) -> int:
        """The simulator's mid of any token (a NO's is 1 - its YES's)."""
        ms = self.by_condition[self.state.market_of[token_id].condition_id]
        if token_id in ms.tokens:
            return ms.mids[ms.tokens.index(token_id)]
        return ONE - ms.mids[ms.tokens.index(self.state.partner[token_id])]

    # ------------------------------------------------------------ time

    def advance(self, now_ns: int | None = None) -> int:
        """Do every update, gap opening and gap expiry due by `now_ns` (monotonic).
        Returns the number of book updates made."""
        now = self.clock.monotonic_ns() if now_ns is None else now_ns
        if self._last_ns is None:
            self._last_ns = now
            self._schedule_gap(now)
            return 0
        elapsed = max(0, now - self._last_ns)
        self._last_ns = now
        self._budget += elapsed * self.updates_per_second / 1e9
        due = int(self._budget)
        self._budget -= due
        n = min(due, MAX_BATCH, max(1, int(self.updates_per_second * MAX_BURST_SECONDS)))
        self.counters["updates_skipped"] += due - n  # a long pause is not replayed; above capacity, shed
        for _ in range(n):
            self.step()
        for ms in self.markets:
            if ms.gap is not None and now >= ms.gap.expires_ns:
                self.close_gap(ms, "taken" if ms.gap.touched else "expired")
        if self._next_gap_ns is not None and now >= self._next_gap_ns:
            side = SELL_GAP if self.rng.random() < self.arbitrage.sell_side_share else BUY_GAP
            candidates = [ms for ms in self.markets
                          if ms.gap is None and self._open(ms) and (self.binary_gaps or not ms.binary)]
            if candidates:
                self.open_gap(self.rng.choice(candidates), side, now)
            else:
                self.counters["gaps_skipped"] += 1
            self._schedule_gap(now)
        return n

    def _schedule_gap(self, now: int) -> None:
        rate = self.arbitrage.rate_per_minute
        self._next_gap_ns = now + int(self.rng.expovariate(rate / 60.0) * 1e9) if rate > 0 else None

    # ------------------------------------------------------------ the walk

    def _tick_for(self, ms: MarketSim, mid: int) -> int:
        return min(ms.step, FINE_TICK) if mid < EDGE_LOW or mid > EDGE_HIGH else ms.step

    def _target(self, ms: MarketSim, i: int) -> tuple[dict[int, int], dict[int, int]]:
        """Outcome i's YES book as it should be now."""
        tick = self.state.book(ms.tokens[i]).tick_size
        size, depth = ms.level_size, ms.cfg.depth_levels
        gap = ms.gap
        if gap is None:
            return ladder(ms.mids[i] - tick, ms.mids[i] + tick, tick, depth, size)
        if gap.side == BUY_GAP:
            return ladder(gap.prices[i] - tick, gap.prices[i], tick, depth, size)
        return ladder(gap.prices[i], gap.prices[i] + tick, tick, depth, size)

    def _diff(self, ms: MarketSim, i: int) -> list[tuple[str, str, int, int]]:
        """The level changes that turn outcome i's YES book into its target ladder."""
        token = ms.tokens[i]
        book = self.state.book(token)
        bids, asks = self._target(ms, i)
        out = []
        for side, target, current in ((BUY, bids, book.bids), (SELL, asks, book.asks)):
            out += [(token, side, p, 0) for p in sorted(current) if p not in target]
            out += [(token, side, p, s) for p, s in sorted(target.items()) if current.get(p) != s]
        return out

    def _open(self, ms: MarketSim) -> bool:
        return not any(c in self.state.resolved for c in ms.conditions)

    def step(self) -> None:
        """One book update on a market without a gap (none if all have gaps)."""
        free = [ms for ms in self.markets if ms.gap is None and self._open(ms)]
        if not free:
            return
        ms = self.rng.choice(free)
        self.counters["updates"] += 1
        if self.rng.random() < MOVE_SHARE and self._move(ms):
            return
        self._resize(ms)

    def _move(self, ms: MarketSim) -> bool:
        up, down = self.rng.sample(range(len(ms.mids)), 2)
        return self.move(ms, up, down) or self.move(ms, down, up)

    def move(self, ms: MarketSim, up: int, down: int) -> bool:
        """Outcome `up` one tick up, `down` one tick down (the sum stays 1), within
        [tick, 1 - tick]; sends the level changes, or tick_size_change + book for a
        token whose tick changes. False (nothing done) if a mid would leave the range."""
        lo, hi = ms.step, ONE - ms.step
        if ms.mids[up] + ms.step > hi or ms.mids[down] - ms.step < lo:
            return False
        ms.mids[up] += ms.step
        ms.mids[down] -= ms.step
        self.counters["moves"] += 1
        changes: list[tuple[str, str, int, int]] = []
        retick: list[int] = []
        for i in (up, down):
            if i not in ms.yes_indices:
                continue  # a binary NO moves as YES's mirror
            token = ms.tokens[i]
            if self._tick_for(ms, ms.mids[i]) != self.state.book(token).tick_size:
                retick.append(i)
            else:
                changes += self._diff(ms, i)
        self.state.apply(changes)
        for i in retick:
            token = ms.tokens[i]
            self.state.set_tick(token, self._tick_for(ms, ms.mids[i]))
            self.counters["tick_size_changes"] += 1
            self.state.replace_book(token, *self._target(ms, i))  # the new epoch's snapshot
        return True

    def _resize(self, ms: MarketSim) -> None:
        i = self.rng.choice(ms.yes_indices)
        side = self.rng.choice((BUY, SELL))
        bids, asks = self._target(ms, i)
        levels = sorted(bids if side == BUY else asks)
        if not levels:
            return
        price = self.rng.choice(levels)
        whole = ms.level_size // ONE  # sizes in whole shares
        size = self.rng.randint(max(1, whole // 2), max(1, whole + whole // 2)) * ONE
        self.counters["resizes"] += 1
        self.state.apply([(ms.tokens[i], side, price, size)])

    # ------------------------------------------------------------ gaps

    def open_gap(self, ms: MarketSim, side: str, now_ns: int) -> Gap:
        """Move every outcome's best ask (BUY_GAP) or bid (SELL_GAP) so they sum to
        1 - margin (1 + margin), the margin rounded up to whole ticks."""
        units = math.ceil(to_micro(self.arbitrage.margin) / ms.step)
        shift = [0] * len(ms.mids)
        for _ in range(units):  # take each tick from the richest (buy) / give to the poorest (sell) outcome
            if side == BUY_GAP:
                i = max(range(len(ms.mids)), key=lambda k: ms.mids[k] - shift[k] * ms.step)
            else:
                i = min(range(len(ms.mids)), key=lambda k: ms.mids[k] + shift[k] * ms.step)
            shift[i] += 1
        sign = -1 if side == BUY_GAP else 1
        prices = [m + sign * d * ms.step for m, d in zip(ms.mids, shift, strict=True)]
        expires = now_ns + int(self.arbitrage.lifetime_seconds * 1e9)
        levels = [(t, SELL if side == BUY_GAP else BUY, p) for t, p in zip(ms.tokens, prices, strict=True)]
        if ms.binary:  # one mirrored book cannot show it: the fault gives each token its own
            self.state.suspend_mirror(ms.conditions[0])
        ms.gap = Gap(side, prices, now_ns, expires, levels)
        self.counters["gaps_opened"] += 1
        self.counters[f"gaps_opened_{side}"] += 1
        self._reprice(ms)
        return ms.gap

    def close_gap(self, ms: MarketSim, reason: str) -> None:
        """End the market's gap ("taken" or "expired") and restore normal books."""
        if ms.gap is None:
            return
        if not ms.gap.touched:
            self.counters["gaps_expired"] += 1
        self.counters["gaps_closed"] += 1
        self.counters[f"gaps_closed_{reason}"] += 1
        ms.gap = None
        if ms.binary:  # one book again
            self.state.resume_mirror(ms.conditions[0], *self._target(ms, 0))
            return
        self._reprice(ms)

    def _reprice(self, ms: MarketSim) -> None:
        changes = [c for i in ms.yes_indices for c in self._diff(ms, i)]
        self.state.apply(changes)

    def on_trade(self, ex: Execution) -> None:
        """A taker hit a gap (from either token of a market: a NO buyer takes a YES
        bid): count it once; once every gap level is consumed the gap is over."""
        ms = self.by_condition.get(ex.market)
        gap = ms.gap if ms else None
        if ms is None or gap is None:
            return
        maker = SELL if ex.side == BUY else BUY
        hit = set()
        for price, _ in ex.fills:  # the maker levels taken, seen on the YES book (or the token's own)
            if self.state.is_yes[ex.token_id] or ex.market in self.state.unmirrored:
                hit.add((ex.token_id, maker, price))
            else:
                hit.add((self.state.partner[ex.token_id], *mirror(maker, price)))
        if not hit.intersection(gap.levels):
            return
        if not gap.touched:
            gap.touched = True
            self.counters["gaps_taken"] += 1
        if all(self.state.book(t).size_at(side, p) == 0 for t, side, p in gap.levels):
            self.close_gap(ms, "taken")

    def get_stats(self) -> dict[str, Any]:
        keys = ("updates", "updates_skipped", "moves", "resizes", "tick_size_changes", "gaps_opened", "gaps_opened_buy",
                "gaps_opened_sell", "gaps_taken", "gaps_expired", "gaps_closed", "gaps_skipped")
        return {**{k: self.counters[k] for k in keys},
                "gaps_open": sum(ms.gap is not None for ms in self.markets),
                "updates_per_second": self.updates_per_second,
                "gap_rate_per_minute": self.arbitrage.rate_per_minute}
