"""Complete-set arbitrage on one market: pure integer maths, no sockets, no clock.

BUY_SET: buy one share of every outcome (sweeping each outcome's asks best
first) and merge the set into 1 USDC. SELL_SET: split 1 USDC into a set and
sell every outcome (sweeping bids best first).

Sizing walks all legs' ladders together. At every step each leg sits on one
level; the MARGINAL set (one share on every leg at those prices) earns

    BUY:  1 - sum(ask_i) - sum(fee_i)        SELL: sum(bid_i) - sum(fee_i) - 1

where fee_i is `taker_fee` of one share at that price (rounded up, so the
estimate is never better than the venue's charge). While that is at least the
threshold (and positive), the walk takes as many sets as the thinnest current
level (and the collateral budget) allows, then moves the exhausted legs one
level deeper. The result is rounded DOWN to the size step, checked against the
market's minimum order size, and then priced exactly level by level: a leg's
cost is its notional, its fee the sum of per-level taker fees, its limit price
the deepest level it reaches. Cost is proportional to the market's outcomes
times the book depth, nothing else.

NO_BASKET (a neg-risk event of m outcomes, `evaluate_basket`): buy one NO of
every outcome (sweeping each NO's asks) and convert the m NO through the
NegRiskAdapter (`convertPositions`, every question in the index set), which
pays m - 1 collateral per set less the adapter's convert fee and no YES. The
marginal set earns

    (m - 1) x (1 - feeBips / 10_000) - sum(ask_i) - sum(fee_i)

and is sized by the same walk; the exact total pays
(m - 1) x (size - floor(size x feeBips / 10_000)), as the adapter computes it.

YES_BASKET (the same event, `evaluate_yes_basket`): buy one YES of every
outcome and hold the m YES to the resolution. Exactly one question resolves
YES, so a set redeems 1 collateral whichever wins, with no convert and so no
convert fee: the arithmetic of a binary BUY_SET with m legs,
1 - sum(ask_i) - sum(fee_i) per set. The capital stays locked until then
(the executor redeems), which is why the router signals them only when
`router.yes_baskets` is on.

All amounts are integers in 1e-6 units: prices micro-USDC per share, sizes
micro-shares, money micro-USDC. One set of `size` micro-shares merges into
`size` micro-USDC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from actors.domain.enums import SetKind, Side
from actors.domain.fees import notional, proceeds, taker_fee
from actors.domain.money import MICRO
from bus.messages import Leg

# Why a market produced no opportunity (the router counts these).
INCOMPLETE_SET = "incomplete_set"
INVALID_BOOK = "invalid_book"
STALE_BOOK = "stale_book"
FUTURE_BOOK = "future_book"  # stamped ahead of our clock: a venue or feed that lies about time
CROSSED_BOOK = "crossed_book"
BELOW_MIN_SIZE = "below_min_size"
NO_EDGE = "no_edge"

Level = tuple[int, int]  # (price, size)
BIPS = 10_000  # the NegRiskAdapter's fee denominator


class BookView(Protocol):
    """What the router needs of one token's book; `bus.messages.BookUpdate` fits.

    bids / asks best first; venue_ts_ms: the venue's time of its last change."""

    @property
    def token_id(self) -> str: ...
    @property
    def valid(self) -> bool: ...
    @property
    def bids(self) -> Sequence[Level]: ...
    @property
    def asks(self) -> Sequence[Level]: ...
    @property
    def venue_ts_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MarketParams:
    """One market's complete outcome set and trading rules.

    outcomes: how many outcomes the listing names; a set is complete only if
    there is one distinct token per outcome (a listing with a missing token
    cannot be merged, so it must never signal)."""

    market: str
    token_ids: tuple[str, ...]
    outcomes: int
    fee_rate_ppm: int
    min_order_size: int = 0  # micro-shares per order
    size_step: int = 10_000  # micro-shares; order sizes are multiples of it

    @property
    def complete(self) -> bool:
        ids = self.token_ids
        return self.outcomes >= 2 and len(ids) == self.outcomes and len(set(ids)) == len(ids) and all(ids)


@dataclass(frozen=True, slots=True)
class BasketParams:
    """A neg-risk event's basket: the NO (kind NO_BASKET) or the YES (YES_BASKET)
    token of every outcome, in question order.

    event: the NegRiskAdapter market id (bytes32 hex) the NO convert in;
    outcomes: how many outcomes the event has (the caller checked that the listing
    names every one of its questions and none is a placeholder or "Other");
    fee_rates_ppm: each outcome market's taker fee rate; convert_fee_bips: the
    adapter's feeBips of the market (NO_BASKET only: a YES basket never converts);
    min_order_size: the largest of the markets'."""

    event: str
    token_ids: tuple[str, ...]
    outcomes: int
    fee_rates_ppm: tuple[int, ...]
    convert_fee_bips: int = 0
    min_order_size: int = 0
    size_step: int = 10_000
    kind: SetKind = SetKind.NO_BASKET

    @property
    def complete(self) -> bool:
        ids = self.token_ids
        return (self.outcomes >= 2 and len(ids) == self.outcomes and len(set(ids)) == len(ids) and all(ids)
                and len(self.fee_rates_ppm) == len(ids) and 0 <= self.convert_fee_bips < BIPS
                and self.kind in (SetKind.NO_BASKET, SetKind.YES_BASKET))

    def payout(self, size: int) -> int:
        """Collateral `size` baskets pay. NO: converting them, as the adapter computes
        it, (m - 1) x (size - fee), fee = floor(size x feeBips / 10_000). YES: `size`,
        the one winning YES of each basket redeemed at the resolution."""
        if self.kind == SetKind.YES_BASKET:
            return size
        return (len(self.token_ids) - 1) * (size - size * self.convert_fee_bips // BIPS)


@dataclass(frozen=True, slots=True)
class Limits:
    """max_position: collateral one trade may commit (micro-USDC); min_profit:
    required profit per set after fees (micro-USDC); min_book_ts_ms: books whose
    last venue change is older are stale; max_book_ts_ms: books whose last venue
    change is later are from the future (the caller computes both from its clock)."""

    max_position: int
    min_profit: int
    min_book_ts_ms: int = 0
    max_book_ts_ms: int = 1 << 62


@dataclass(frozen=True, slots=True)
class Opportunity:
    market: str
    kind: SetKind
    size: int  # sets, micro-shares
    legs: tuple[Leg, ...]
    expected_profit: int  # micro-USDC after fees, before gas
    book_ts_ms: dict[str, int]
    neg_risk_market_id: str = ""  # NO_BASKET / YES_BASKET: the event's adapter market id
    convert_fee_bips: int = 0  # NO_BASKET: the adapter's fee priced in (0 for a YES basket)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The opportunity, or why there is none (one of the reason constants)."""

    opportunity: Opportunity | None
    reason: str | None = None


def find_opportunity(books: Sequence[BookView], market: MarketParams, limits: Limits) -> Opportunity | None:
    """The best complete-set trade on `market` now, or None."""
    return evaluate(books, market, limits).opportunity


# One token's usable (bids, asks), best first: built once per evaluation, by the screen.
Ladders = dict[str, tuple[list[Level], list[Level]]]


def _screen(books: Sequence[BookView], market: MarketParams | BasketParams, limits: Limits,
            ) -> tuple[str | None, Ladders, dict[str, int]]:
    """Why these books must not be traded on at all (or None), the ladders built to
    judge crossed books (the evaluation sweeps the same ladders instead of building
    them again) and each book's venue time (the signal's `book_ts_ms`)."""
    if not market.complete:
        return INCOMPLETE_SET, {}, {}
    by_token = {b.token_id: b for b in books}
    if any(t not in by_token for t in market.token_ids):
        return INCOMPLETE_SET, {}, {}
    chosen = [by_token[t] for t in market.token_ids]
    if not all(b.valid for b in chosen):
        return INVALID_BOOK, {}, {}
    if any(b.venue_ts_ms < limits.min_book_ts_ms for b in chosen):
        return STALE_BOOK, {}, {}
    if any(b.venue_ts_ms > limits.max_book_ts_ms for b in chosen):
        return FUTURE_BOOK, {}, {}
    ladders: Ladders = {}
    for b in chosen:
        bids, asks = _ladder(b.bids, Side.SELL), _ladder(b.asks, Side.BUY)
        if bids and asks and bids[0][0] >= asks[0][0]:
            # A crossed book is a local book that missed a change: do not trust it.
            return CROSSED_BOOK, {}, {}
        ladders[b.token_id] = (bids, asks)
    return None, ladders, {b.token_id: b.venue_ts_ms for b in chosen}


def evaluate(books: Sequence[BookView], market: MarketParams, limits: Limits) -> Evaluation:
    reason, built, book_ts = _screen(books, market, limits)
    if reason is not None:
        return Evaluation(None, reason)
    best: Opportunity | None = None
    reasons: list[str] = []
    for kind in (SetKind.BUY_SET, SetKind.SELL_SET):
        side = Side.BUY if kind == SetKind.BUY_SET else Side.SELL
        ladders = [built[t][1] if side == Side.BUY else built[t][0] for t in market.token_ids]
        terms = _Terms(kind, side, market.token_ids, (market.fee_rate_ppm,) * len(market.token_ids),
                       market.min_order_size, market.size_step)
        found = _plan(terms, ladders, limits)
        if isinstance(found, str):
            reasons.append(found)
            continue
        opp = Opportunity(
            market=market.market, kind=kind, size=found[0], legs=found[1], expected_profit=found[2],
            book_ts_ms=book_ts,
        )
        if best is None or opp.expected_profit > best.expected_profit:
            best = opp
    if best is not None:
        return Evaluation(best)
    return Evaluation(None, BELOW_MIN_SIZE if BELOW_MIN_SIZE in reasons else NO_EDGE)


def evaluate_basket(books: Sequence[BookView], basket: BasketParams, limits: Limits) -> Evaluation:
    """The NO basket of a neg-risk event now, or why there is none. `books` must
    hold the NO book of every outcome; the same screens as a binary set apply."""
    return _evaluate_basket(books, basket, SetKind.NO_BASKET, limits)


def evaluate_yes_basket(books: Sequence[BookView], basket: BasketParams, limits: Limits) -> Evaluation:
    """The YES basket of a neg-risk event now, or why there is none. `books` must
    hold the YES book of every outcome; the same screens as a binary set apply."""
    return _evaluate_basket(books, basket, SetKind.YES_BASKET, limits)


def _evaluate_basket(books: Sequence[BookView], basket: BasketParams, kind: SetKind, limits: Limits) -> Evaluation:
    if basket.kind != kind:  # a caller's bug: the other side's tokens would be priced with this payout
        raise ValueError(f"{basket.kind} params evaluated as a {kind}")
    reason, built, book_ts = _screen(books, basket, limits)
    if reason is not None:
        return Evaluation(None, reason)
    ladders = [built[t][1] for t in basket.token_ids]
    terms = _Terms(kind, Side.BUY, basket.token_ids, basket.fee_rates_ppm, basket.min_order_size,
                   basket.size_step, basket)
    found = _plan(terms, ladders, limits)
    if isinstance(found, str):
        return Evaluation(None, found)
    return Evaluation(Opportunity(
        market=basket.event, kind=kind, size=found[0], legs=found[1], expected_profit=found[2],
        book_ts_ms=book_ts, neg_risk_market_id=basket.event,
        convert_fee_bips=basket.convert_fee_bips if kind == SetKind.NO_BASKET else 0))


# -- one side -----------------------------------------------------------------


def _ladder(levels: Sequence[Level], side: Side) -> list[Level]:
    """Usable levels best first: prices strictly inside (0, 1), positive sizes.
    Sorted here rather than trusted, so a mis-ordered book cannot make the
    sweep skip a better level."""
    usable = [(int(p), int(s)) for p, s in levels if 0 < p < MICRO and s > 0]
    usable.sort(key=lambda lv: lv[0], reverse=(side == Side.SELL))
    return usable


def marginal_profit(kind: SetKind, prices: Sequence[int], fee_rate_ppm: int) -> int:
    """Profit in micro-USDC of one binary set at these per-leg prices, fees rounded up."""
    return _one_set(kind != SetKind.SELL_SET, prices, (fee_rate_ppm,) * len(prices), MICRO)


def _one_set(buying: bool, prices: Sequence[int], rates: Sequence[int], payout: int) -> int:
    """Profit of one set: what it pays (`payout` when bought, the bids when sold) less
    what it costs (the asks when bought, the split's 1 when sold) and its taker fees."""
    fees = sum(taker_fee(MICRO, p, r) for p, r in zip(prices, rates, strict=True))
    return payout - sum(prices) - fees if buying else sum(prices) - fees - MICRO


@dataclass(frozen=True, slots=True)
class _Terms:
    """What one kind of trade pays and commits: the walk and the pricing are the
    same for every kind, only these differ."""

    kind: SetKind
    side: Side
    token_ids: tuple[str, ...]
    rates: tuple[int, ...]  # each leg's taker fee rate (ppm)
    min_order_size: int
    size_step: int
    basket: BasketParams | None = None  # NO_BASKET / YES_BASKET: what a basket pays (`payout`)

    def marginal(self, prices: Sequence[int]) -> int:
        """Profit in micro-USDC of one set at these per-leg prices, fees rounded up."""
        payout = self.basket.payout(MICRO) if self.basket is not None else MICRO
        return _one_set(self.side == Side.BUY, prices, self.rates, payout)

    def per_set(self, prices: Sequence[int]) -> int:
        """Collateral one share of a set commits: its asks when buying, the split when selling."""
        return sum(prices) if self.side == Side.BUY else MICRO

    def collateral(self, size: int, total_cost: int) -> int:
        return total_cost if self.side == Side.BUY else size

    def profit(self, size: int, total_cost: int, total_fee: int) -> int:
        if self.basket is not None:
            return self.basket.payout(size) - total_cost - total_fee
        if self.kind == SetKind.BUY_SET:
            return size - total_cost - total_fee
        return total_cost - total_fee - size


def _sweep_size(terms: _Terms, ladders: list[list[Level]], limits: Limits) -> int:
    """The most sets whose marginal set still earns the threshold, within depth
    and the collateral budget (before rounding to the size step)."""
    if not ladders or any(not lad for lad in ladders):
        return 0
    idx = [0] * len(ladders)
    left = [lad[0][1] for lad in ladders]
    # Collateral in micro-USDC x MICRO, so that the budget check is exact.
    budget = limits.max_position * MICRO
    committed = 0
    size = 0
    while True:
        prices = [lad[i][0] for lad, i in zip(ladders, idx, strict=True)]
        m = terms.marginal(prices)
        if m < limits.min_profit or m <= 0:
            return size
        per_set = terms.per_set(prices)  # collateral per share of a set
        room = (budget - committed) // per_set
        q = min(*left, room)
        if q <= 0:
            return size
        size += q
        committed += q * per_set
        if q == room:  # the budget, not the depth, stopped us
            return size
        for k in range(len(ladders)):
            left[k] -= q
            if left[k] == 0:
                idx[k] += 1
                if idx[k] == len(ladders[k]):
                    return size  # a leg ran out of depth
                left[k] = ladders[k][idx[k]][1]


def _fill(ladder: list[Level], size: int, rate: int, side: Side) -> tuple[int, int, int]:
    """(limit price, cost, fee) of taking `size` from a ladder, level by level."""
    cost = fee = 0
    limit = 0
    need = size
    for price, avail in ladder:
        if need == 0:
            break
        q = min(need, avail)
        cost += notional(q, price) if side == Side.BUY else proceeds(q, price)
        fee += taker_fee(q, price, rate)
        limit = price
        need -= q
    if need:
        raise ValueError("size exceeds the ladder's depth")  # _sweep_size never allows it
    return limit, cost, fee


def _plan(terms: _Terms, ladders: list[list[Level]], limits: Limits) -> tuple[int, tuple[Leg, ...], int] | str:
    """(size, legs, expected profit) for one side, or the reason there is none."""
    step = max(terms.size_step, 1)
    raw = _sweep_size(terms, ladders, limits)
    if raw == 0:
        return NO_EDGE
    size = raw // step * step
    side = terms.side
    while True:
        if size <= 0 or size < terms.min_order_size:
            return BELOW_MIN_SIZE  # an edge, but too thin (or too capped) to trade
        fills = [_fill(lad, size, rate, side) for lad, rate in zip(ladders, terms.rates, strict=True)]
        total_cost = sum(c for _, c, _ in fills)
        total_fee = sum(f for _, _, f in fills)
        if terms.collateral(size, total_cost) <= limits.max_position:
            break
        size -= step  # per-level rounding up pushed the total a few micro over the cap
    profit = terms.profit(size, total_cost, total_fee)
    # The marginal walk used per-share fees; the exact per-level rounding can
    # cost a few micro more, so the threshold is checked again on the totals.
    if profit <= 0 or profit * MICRO < limits.min_profit * size:
        return NO_EDGE
    legs = tuple(
        Leg(token_id=t, side=side, limit_price=lim, size=size, cost=cost, fee=fee)
        for t, (lim, cost, fee) in zip(terms.token_ids, fills, strict=True)
    )
    return size, legs, profit
