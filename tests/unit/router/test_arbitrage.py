"""The complete-set maths on synthetic books: exact integers, no sockets."""

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain.enums import SetKind
from actors.domain.fees import notional, taker_fee
from actors.domain.money import MICRO
from actors.router import arbitrage as arb
from actors.router.arbitrage import Limits, MarketParams, evaluate, find_opportunity

BUY_SET, SELL_SET = SetKind.BUY_SET, SetKind.SELL_SET

pytestmark = pytest.mark.unit

NOW_MS = 1_700_000_000_000
CENT = 10_000  # 0.01 USDC or 0.01 shares


def usd(x: str) -> int:
    return int(Decimal(x) * MICRO)


def lv(*pairs: tuple[str, str]) -> list[tuple[int, int]]:
    """Levels from decimal strings: lv(("0.45", "100")) -> [(450000, 100000000)]."""
    return [(usd(p), usd(s)) for p, s in pairs]


@dataclass(frozen=True)
class Book:
    token_id: str
    bids: list = field(default_factory=list)
    asks: list = field(default_factory=list)
    venue_ts_ms: int = NOW_MS
    valid: bool = True


def market(n: int = 2, fee: str = "0", min_size: str = "0", step: str = "0.01", outcomes: int | None = None):
    return MarketParams(market="0xm", token_ids=tuple(f"t{i}" for i in range(n)),
                        outcomes=n if outcomes is None else outcomes,
                        fee_rate_ppm=int(Decimal(fee) * MICRO), min_order_size=usd(min_size), size_step=usd(step))


def limits(max_pos: str = "1000", min_profit: str = "0.01") -> Limits:
    return Limits(max_position=usd(max_pos), min_profit=usd(min_profit), min_book_ts_ms=NOW_MS - 10_000)


def asks_only(*ladders) -> list[Book]:
    return [Book(f"t{i}", asks=lad) for i, lad in enumerate(ladders)]


def bids_only(*ladders) -> list[Book]:
    return [Book(f"t{i}", bids=lad) for i, lad in enumerate(ladders)]


# -- buy side ----------------------------------------------------------------


def test_binary_buy_set_with_exact_fees():
    # asks 0.45 + 0.50 = 0.95; fees 0.02 * p(1-p): 0.00495 + 0.005 per set
    books = asks_only(lv(("0.45", "100")), lv(("0.50", "100")))
    opp = find_opportunity(books, market(fee="0.02"), limits())

    assert opp is not None and opp.kind == BUY_SET and opp.size == usd("100")
    assert [(leg.token_id, leg.side, leg.limit_price, leg.size, leg.cost, leg.fee) for leg in opp.legs] == [
        ("t0", "BUY", usd("0.45"), usd("100"), usd("45"), usd("0.495")),
        ("t1", "BUY", usd("0.50"), usd("100"), usd("50"), usd("0.5")),
    ]
    assert opp.expected_profit == usd("100") - usd("95") - usd("0.995") == usd("4.005")
    assert opp.book_ts_ms == {"t0": NOW_MS, "t1": NOW_MS}


def test_four_outcome_buy_set():
    books = asks_only(lv(("0.22", "50")), lv(("0.20", "50")), lv(("0.18", "50")), lv(("0.36", "40")))
    opp = find_opportunity(books, market(4, fee="0.01"), limits())

    assert opp is not None and opp.kind == BUY_SET and opp.size == usd("40") and len(opp.legs) == 4
    # fees per set: 0.01 * (0.22*0.78 + 0.20*0.80 + 0.18*0.82 + 0.36*0.64) = 0.007096
    assert sum(leg.fee for leg in opp.legs) == usd("0.28384")
    assert opp.expected_profit == usd("40") - usd("38.4") - usd("0.28384")


def test_depth_limited_sizing_walks_several_levels():
    # 10 @ 0.45+0.50, then 5 @ 0.46+0.50, then 15 @ 0.46+0.51; next 0.50+0.51 > 1
    books = asks_only(lv(("0.45", "10"), ("0.46", "20"), ("0.50", "100")),
                      lv(("0.50", "15"), ("0.51", "100")))
    opp = find_opportunity(books, market(), limits())

    assert opp is not None and opp.size == usd("30")
    yes, no = opp.legs
    assert (yes.limit_price, yes.cost) == (usd("0.46"), usd("4.5") + usd("9.2"))
    assert (no.limit_price, no.cost) == (usd("0.51"), usd("7.5") + usd("7.65"))
    assert opp.expected_profit == usd("30") - usd("28.85")


def test_the_marginal_set_must_still_earn_the_threshold():
    # the second level pair earns exactly 0.005 per set < 0.01: only the first level counts
    books = asks_only(lv(("0.45", "10"), ("0.495", "100")), lv(("0.50", "100")))
    opp = find_opportunity(books, market(), limits(min_profit="0.01"))
    assert opp is not None and opp.size == usd("10") and opp.legs[0].limit_price == usd("0.45")


def test_max_position_caps_the_collateral_committed():
    books = asks_only(lv(("0.45", "1000")), lv(("0.50", "1000")))
    opp = find_opportunity(books, market(), limits(max_pos="100"))
    # 100 / 0.95 = 105.263... sets, rounded down to the 0.01 step
    assert opp is not None and opp.size == usd("105.26")
    assert sum(leg.cost for leg in opp.legs) == usd("99.997") <= usd("100")


def test_size_is_rounded_down_to_the_step():
    books = asks_only(lv(("0.45", "10.009")), lv(("0.50", "100")))
    assert find_opportunity(books, market(step="0.01"), limits()).size == usd("10")
    assert find_opportunity(books, market(step="1"), limits()).size == usd("10")
    assert find_opportunity(books, market(step="0.001"), limits()).size == usd("10.009")


def test_below_the_min_order_size_there_is_no_signal():
    books = asks_only(lv(("0.45", "4.99")), lv(("0.50", "100")))
    result = evaluate(books, market(min_size="5"), limits())
    assert result.opportunity is None and result.reason == arb.BELOW_MIN_SIZE
    assert find_opportunity(asks_only(lv(("0.45", "5")), lv(("0.50", "100"))), market(min_size="5"), limits())


def test_threshold_boundary_exactly_at_and_one_micro_below():
    # fee 0.02: marginal = 1 - 0.95 - 0.00995 = 0.04005 per set
    books = asks_only(lv(("0.45", "10")), lv(("0.50", "10")))
    at = find_opportunity(books, market(fee="0.02"), limits(min_profit="0.04005"))
    assert at is not None and at.expected_profit == usd("0.4005")  # exactly threshold x 10 sets
    assert evaluate(books, market(fee="0.02"), limits(min_profit="0.040051")).reason == arb.NO_EDGE


def test_one_micro_over_the_threshold_price_gives_nothing():
    # 0.49 + 0.50 earns exactly 0.01; 0.490001 + 0.50 earns 0.009999
    assert find_opportunity(asks_only(lv(("0.49", "10")), lv(("0.50", "10"))), market(), limits()) is not None
    assert find_opportunity(asks_only(lv(("0.490001", "10")), lv(("0.50", "10"))), market(), limits()) is None


def test_no_signal_when_the_sum_is_fine():
    books = [Book("t0", bids=lv(("0.48", "100")), asks=lv(("0.50", "100"))),
             Book("t1", bids=lv(("0.49", "100")), asks=lv(("0.51", "100")))]
    assert evaluate(books, market(fee="0.02"), limits()).reason == arb.NO_EDGE
    # a gap smaller than the fees is no gap
    assert find_opportunity(asks_only(lv(("0.49", "10")), lv(("0.50", "10"))), market(fee="0.02"), limits()) is None


# -- sell side ---------------------------------------------------------------


def test_binary_sell_set_with_exact_fees():
    books = bids_only(lv(("0.55", "100"), ("0.54", "100")), lv(("0.50", "150")))
    opp = find_opportunity(books, market(fee="0.02"), limits())

    assert opp is not None and opp.kind == SELL_SET and opp.size == usd("150")
    yes, no = opp.legs
    assert (yes.side, yes.limit_price, yes.cost) == ("SELL", usd("0.54"), usd("55") + usd("27"))
    assert yes.fee == taker_fee(usd("100"), usd("0.55"), 20_000) + taker_fee(usd("50"), usd("0.54"), 20_000)
    assert (no.cost, no.fee) == (usd("75"), usd("0.75"))
    assert opp.expected_profit == yes.cost + no.cost - yes.fee - no.fee - usd("150")


def test_four_outcome_sell_set_is_capped_by_the_split_amount():
    books = bids_only(*[lv((p, "500")) for p in ("0.30", "0.25", "0.25", "0.25")])
    opp = find_opportunity(books, market(4), limits(max_pos="20"))
    assert opp is not None and opp.kind == SELL_SET and opp.size == usd("20")
    assert opp.expected_profit == usd("1")


def test_the_better_side_wins_when_both_pay():
    # crossed across tokens but not within one: asks sum 0.90, bids sum 1.02
    books = [Book("t0", bids=lv(("0.52", "10")), asks=lv(("0.53", "10"))),
             Book("t1", bids=lv(("0.50", "10")), asks=lv(("0.37", "10")))]
    assert evaluate(books, market(), limits()).reason == arb.CROSSED_BOOK  # t1 is crossed
    books = [Book("t0", bids=lv(("0.52", "10")), asks=lv(("0.53", "10"))),
             Book("t1", bids=lv(("0.36", "10")), asks=lv(("0.37", "10")))]
    assert find_opportunity(books, market(), limits()).kind == BUY_SET


# -- what must never signal --------------------------------------------------


def test_incomplete_outcome_sets_never_signal():
    books = asks_only(lv(("0.30", "10")), lv(("0.30", "10")))
    assert evaluate(books[:1], market(), limits()).reason == arb.INCOMPLETE_SET  # a book is missing
    # the listing names three outcomes but only two tokens: cannot be merged
    assert evaluate(books, market(2, outcomes=3), limits()).reason == arb.INCOMPLETE_SET
    dup = MarketParams(market="0xm", token_ids=("t0", "t0"), outcomes=2, fee_rate_ppm=0)
    assert evaluate(books, dup, limits()).reason == arb.INCOMPLETE_SET


def test_invalid_and_stale_books_never_signal():
    good = asks_only(lv(("0.30", "10")), lv(("0.30", "10")))
    invalid = [good[0], Book("t1", asks=lv(("0.30", "10")), valid=False)]
    stale = [good[0], Book("t1", asks=lv(("0.30", "10")), venue_ts_ms=NOW_MS - 10_001)]
    assert find_opportunity(good, market(), limits()) is not None
    assert evaluate(invalid, market(), limits()).reason == arb.INVALID_BOOK
    assert evaluate(stale, market(), limits()).reason == arb.STALE_BOOK


def test_crossed_and_empty_books():
    crossed = [Book("t0", bids=lv(("0.46", "10")), asks=lv(("0.45", "10"))), Book("t1", asks=lv(("0.30", "10")))]
    assert evaluate(crossed, market(), limits()).reason == arb.CROSSED_BOOK
    assert evaluate([Book("t0"), Book("t1")], market(), limits()).reason == arb.NO_EDGE
    one_side_empty = [Book("t0", asks=lv(("0.30", "10"))), Book("t1", bids=lv(("0.60", "10")))]
    assert evaluate(one_side_empty, market(), limits()).reason == arb.NO_EDGE


def test_levels_out_of_range_or_out_of_order_are_handled():
    # a zero-size level and a price of 1 are ignored; mis-ordered asks are sorted
    books = asks_only([(usd("0.50"), usd("10")), (usd("0.40"), 0), (usd("0.45"), usd("10"))],
                      [(MICRO, usd("10")), (usd("0.50"), usd("20"))])
    opp = find_opportunity(books, market(), limits())
    assert opp is not None and opp.size == usd("10") and opp.legs[0].limit_price == usd("0.45")


# -- the property ------------------------------------------------------------


@st.composite
def scenario(draw):
    """Ladders whose top prices sum to about 1 (a few ticks worse up to 0.08
    better), so that gaps, thin edges and no-edge cases all come up."""
    n = draw(st.integers(2, 4))
    tick = draw(st.sampled_from([CENT, 1_000]))
    buy = draw(st.booleans())
    tops = [draw(st.integers(1, MICRO // tick // n)) * tick for _ in range(n - 1)]
    edge = draw(st.integers(-2, 80_000 // tick)) * tick
    last = MICRO - sum(tops) + (-edge if buy else edge)
    tops.append(min(max(last, tick), MICRO - tick))

    def ladder(top: int) -> list[tuple[int, int]]:
        out, price = [], top
        for _ in range(draw(st.integers(1, 4))):
            if not 0 < price < MICRO:
                break
            out.append((price, draw(st.integers(1, 500)) * draw(st.sampled_from([1_000, CENT, MICRO]))))
            price += (1 if buy else -1) * tick * draw(st.integers(1, 3))
        return out

    books = [Book(f"t{i}", **{"asks" if buy else "bids": ladder(top)}) for i, top in enumerate(tops)]
    mkt = market(n, fee=draw(st.sampled_from(["0", "0.01", "0.02", "0.072"])),
                 min_size=draw(st.sampled_from(["0", "1", "5"])), step=draw(st.sampled_from(["0.000001", "0.01", "1"])))
    lim = Limits(max_position=draw(st.integers(1, 200)) * MICRO, min_profit=draw(st.integers(0, 20_000)),
                 min_book_ts_ms=0)
    return books, mkt, lim


def proceeds(size, price):
    return size * price // MICRO


@settings(max_examples=400, deadline=None)
@given(scenario())
def test_an_opportunity_is_exactly_what_its_legs_say(case):
    books, mkt, lim = case
    opp = find_opportunity(books, mkt, lim)
    if opp is None:
        return
    by_token = {b.token_id: b for b in books}
    buy = opp.kind == BUY_SET
    assert opp.size > 0 and opp.size % mkt.size_step == 0 and opp.size >= mkt.min_order_size
    total_cost = total_fee = 0
    for leg in opp.legs:
        levels = sorted(by_token[leg.token_id].asks if buy else by_token[leg.token_id].bids, reverse=not buy)
        within = [(p, s) for p, s in levels if (p <= leg.limit_price if buy else p >= leg.limit_price)]
        assert leg.size == opp.size <= sum(s for _, s in within)  # never beyond the depth at its limit
        need, cost, fee = leg.size, 0, 0
        for p, s in within:
            q = min(need, s)
            if q == 0:
                break
            cost += notional(q, p) if buy else proceeds(q, p)
            fee += taker_fee(q, p, mkt.fee_rate_ppm)
            need -= q
        assert (cost, fee) == (leg.cost, leg.fee)
        total_cost += cost
        total_fee += fee
    profit = opp.size - total_cost - total_fee if buy else total_cost - total_fee - opp.size
    assert profit == opp.expected_profit > 0
    assert profit * MICRO >= lim.min_profit * opp.size  # at least the threshold per set
    assert (total_cost if buy else opp.size) <= lim.max_position


def price_of_share(levels, index):
    """The price of the level that holds the index-th micro-share, or None."""
    depth = 0
    for p, s in levels:
        depth += s
        if depth >= index:
            return p
    return None


@settings(max_examples=400, deadline=None)
@given(scenario())
def test_one_more_step_would_break_a_rule(case):
    # The size is the LARGEST: one more size step runs out of depth on some
    # leg, or its marginal set earns less than the threshold, or it commits
    # more collateral than max_position.
    books, mkt, lim = case
    opp = find_opportunity(books, mkt, lim)
    if opp is None:
        return
    buy = opp.kind == BUY_SET
    bigger = opp.size + mkt.size_step
    ladders = [sorted([lv for lv in (b.asks if buy else b.bids) if lv[1] > 0], reverse=not buy) for b in books]
    prices = [price_of_share(lad, bigger) for lad in ladders]
    if None in prices:
        return
    margin = arb.marginal_profit(opp.kind, prices, mkt.fee_rate_ppm)
    if margin < lim.min_profit or margin <= 0:
        return
    if buy:
        collateral = 0
        for lad in ladders:
            need = bigger
            for p, s in lad:
                q = min(need, s)
                collateral += notional(q, p)
                need -= q
    else:
        collateral = bigger
    assert collateral > lim.max_position


# -- the NO basket of a neg-risk event -----------------------------------------

NO_BASKET = SetKind.NO_BASKET
EVENT = "0x" + "ab" * 31 + "00"
WORLD_CUP_NO = ("0.78", "0.80", "0.82", "0.56")  # sum 2.96: m - 1 - 0.04, the simulator's sell-side gap


def basket(n: int = 4, fee: str = "0.01", convert_fee_bips: int = 0, min_size: str = "0", step: str = "0.01",
           outcomes: int | None = None, tokens: tuple[str, ...] | None = None) -> arb.BasketParams:
    return arb.BasketParams(event=EVENT, token_ids=tokens or tuple(f"no{i}" for i in range(n)),
                            outcomes=n if outcomes is None else outcomes,
                            fee_rates_ppm=(int(Decimal(fee) * MICRO),) * n, convert_fee_bips=convert_fee_bips,
                            min_order_size=usd(min_size), size_step=usd(step))


def no_asks(*ladders) -> list[Book]:
    return [Book(f"no{i}", asks=lad) for i, lad in enumerate(ladders)]


def world_cup_books(depth: str = "100") -> list[Book]:
    # the gap's level, then one tick worse on every NO: 3.00, no edge any more
    return no_asks(*[lv((p, depth), (str(Decimal(p) + Decimal("0.01")), "1000")) for p in WORLD_CUP_NO])


def test_a_no_basket_with_exact_sizes_fees_and_limits():
    result = arb.evaluate_basket(world_cup_books(), basket(), limits())
    opp = result.opportunity

    assert opp is not None and opp.kind == NO_BASKET and opp.size == usd("100")
    assert (opp.market, opp.neg_risk_market_id, opp.convert_fee_bips) == (EVENT, EVENT, 0)
    # fees 0.01 x p(1-p) per share: 0.001716, 0.0016, 0.001476, 0.002464
    assert [(leg.token_id, leg.side, leg.limit_price, leg.size, leg.cost, leg.fee) for leg in opp.legs] == [
        ("no0", "BUY", usd("0.78"), usd("100"), usd("78"), usd("0.1716")),
        ("no1", "BUY", usd("0.80"), usd("100"), usd("80"), usd("0.16")),
        ("no2", "BUY", usd("0.82"), usd("100"), usd("82"), usd("0.1476")),
        ("no3", "BUY", usd("0.56"), usd("100"), usd("56"), usd("0.2464")),
    ]
    # converting 100 NO of each of the 4 questions pays 3 x 100
    assert opp.expected_profit == 3 * usd("100") - usd("296") - usd("0.7256") == usd("3.2744")
    assert opp.book_ts_ms == {f"no{i}": NOW_MS for i in range(4)}


def test_the_convert_fee_is_taken_off_every_converted_set():
    opp = arb.evaluate_basket(world_cup_books(), basket(convert_fee_bips=50), limits()).opportunity
    # 3 x (100 - 0.5): the adapter keeps 0.5% of every NO set
    assert opp is not None and opp.convert_fee_bips == 50 and opp.size == usd("100")
    assert opp.expected_profit == 3 * (usd("100") - usd("0.5")) - usd("296") - usd("0.7256") == usd("1.7744")
    # 1% leaves 3 x 0.99 - 2.96 - 0.007256 = 0.002744 per set: below the 0.01 threshold
    assert arb.evaluate_basket(world_cup_books(), basket(convert_fee_bips=100), limits()).reason == arb.NO_EDGE


def test_the_payout_rounds_the_convert_fee_down_like_the_adapter():
    # floor(333 x 30 / 10_000) = 0 micro kept back; floor(1_000_001 x 30 / 10_000) = 3000
    assert basket(convert_fee_bips=30).payout(333) == 3 * 333
    assert basket(convert_fee_bips=30).payout(1_000_001) == 3 * (1_000_001 - 3_000)


def test_a_no_basket_is_capped_by_max_position_and_rounded_to_the_step():
    books = no_asks(*[lv((p, "1000")) for p in WORLD_CUP_NO])
    opp = arb.evaluate_basket(books, basket(), limits(max_pos="100")).opportunity
    # 100 / 2.96 = 33.7837... sets, rounded down to the 0.01 step
    assert opp is not None and opp.size == usd("33.78")
    assert [leg.cost for leg in opp.legs] == [26_348_400, 27_024_000, 27_699_600, 18_916_800]
    assert [leg.fee for leg in opp.legs] == [57_967, 54_048, 49_860, 83_234]  # each rounded up
    assert sum(leg.cost for leg in opp.legs) == 99_988_800 <= usd("100")
    assert opp.expected_profit == 3 * usd("33.78") - 99_988_800 - 245_109 == 1_106_091


def test_a_no_basket_walks_the_depth_of_every_leg():
    # 10 of every NO at the gap, then the first leg one tick deeper: 3 - 2.97 still earns the threshold
    books = no_asks(lv(("0.78", "10"), ("0.79", "10"), ("0.90", "100")),
                    *[lv((p, "20"), ("0.95", "100")) for p in WORLD_CUP_NO[1:]])
    opp = arb.evaluate_basket(books, basket(fee="0"), limits()).opportunity
    assert opp is not None and opp.size == usd("20")
    assert (opp.legs[0].limit_price, opp.legs[0].cost) == (usd("0.79"), usd("7.8") + usd("7.9"))
    assert opp.expected_profit == 3 * usd("20") - usd("15.7") - usd("16") - usd("16.4") - usd("11.2")


def test_a_thin_no_basket_is_below_the_min_order_size():
    books = no_asks(*[lv((p, "4.99")) for p in WORLD_CUP_NO])
    assert arb.evaluate_basket(books, basket(min_size="5"), limits()).reason == arb.BELOW_MIN_SIZE
    books = no_asks(*[lv((p, "5")) for p in WORLD_CUP_NO])
    assert arb.evaluate_basket(books, basket(min_size="5"), limits()).opportunity.size == usd("5")


def test_no_basket_below_the_threshold_or_without_a_gap():
    # NO asks summing to m - 1 + m ticks: the normal book, no edge
    normal = no_asks(*[lv((str(Decimal(p) + Decimal("0.02")), "100")) for p in WORLD_CUP_NO])
    assert arb.evaluate_basket(normal, basket(), limits()).reason == arb.NO_EDGE
    # 2.99 - fees 0.007 ~ 0.003 per set: an edge, below the 0.01 threshold
    thin = no_asks(*[lv((p, "100")) for p in ("0.79", "0.80", "0.82", "0.58")])
    assert arb.evaluate_basket(thin, basket(), limits()).reason == arb.NO_EDGE
    assert arb.evaluate_basket(thin, basket(), limits(min_profit="0.002")).opportunity is not None


def test_an_incomplete_no_basket_never_signals():
    books = world_cup_books()
    assert arb.evaluate_basket(books[:3], basket(), limits()).reason == arb.INCOMPLETE_SET  # a book is missing
    # the event has five outcomes, the basket four NO: converting them would not pay m - 1
    assert arb.evaluate_basket(books, basket(outcomes=5), limits()).reason == arb.INCOMPLETE_SET
    twice = basket(tokens=("no0", "no1", "no2", "no2"))
    assert arb.evaluate_basket(books, twice, limits()).reason == arb.INCOMPLETE_SET
    assert arb.evaluate_basket(books[:1], basket(1), limits()).reason == arb.INCOMPLETE_SET  # one outcome: no set
    invalid = [*books[:3], Book("no3", asks=lv(("0.56", "100")), valid=False)]
    assert arb.evaluate_basket(invalid, basket(), limits()).reason == arb.INVALID_BOOK


@st.composite
def basket_scenario(draw):
    """NO ladders of an m-outcome event whose best asks sum to about m - 1."""
    n = draw(st.integers(2, 5))
    tick = draw(st.sampled_from([CENT, 1_000]))
    tops = [draw(st.integers(MICRO // 2 // tick, (MICRO - tick) // tick)) * tick for _ in range(n - 1)]
    edge = draw(st.integers(-2, 80_000 // tick)) * tick
    tops.append(min(max((n - 1) * MICRO - sum(tops) - edge, tick), MICRO - tick))

    def ladder(top: int) -> list[tuple[int, int]]:
        out, price = [], top
        for _ in range(draw(st.integers(1, 4))):
            if not 0 < price < MICRO:
                break
            out.append((price, draw(st.integers(1, 500)) * draw(st.sampled_from([1_000, CENT, MICRO]))))
            price += tick * draw(st.integers(1, 3))
        return out

    books = no_asks(*[ladder(top) for top in tops])
    params = basket(n, fee=draw(st.sampled_from(["0", "0.01", "0.02"])), min_size=draw(st.sampled_from(["0", "5"])),
                    convert_fee_bips=draw(st.sampled_from([0, 1, 30, 250])),
                    step=draw(st.sampled_from(["0.000001", "0.01", "1"])))
    lim = Limits(max_position=draw(st.integers(1, 300)) * MICRO, min_profit=draw(st.integers(0, 20_000)),
                 min_book_ts_ms=0)
    return books, params, lim


def exact_basket_legs(opp, books, params) -> tuple[int, int]:
    """Check a basket's size and every leg against the books, priced level by level;
    (total cost, total fee) of the legs."""
    by_token = {b.token_id: b for b in books}
    assert opp.size > 0 and opp.size % params.size_step == 0 and opp.size >= params.min_order_size
    assert [leg.token_id for leg in opp.legs] == list(params.token_ids)
    total_cost = total_fee = 0
    for leg, rate in zip(opp.legs, params.fee_rates_ppm, strict=True):
        within = [(p, s) for p, s in sorted(by_token[leg.token_id].asks) if p <= leg.limit_price]
        assert leg.side == "BUY" and leg.size == opp.size <= sum(s for _, s in within)
        need, cost, fee = leg.size, 0, 0
        for p, s in within:
            q = min(need, s)
            if q == 0:
                break
            cost += notional(q, p)
            fee += taker_fee(q, p, rate)
            need -= q
        assert (cost, fee) == (leg.cost, leg.fee)
        total_cost += cost
        total_fee += fee
    return total_cost, total_fee


@settings(max_examples=300, deadline=None)
@given(basket_scenario())
def test_a_no_basket_is_exactly_what_its_legs_and_the_convert_say(case):
    books, params, lim = case
    opp = arb.evaluate_basket(books, params, lim).opportunity
    if opp is None:
        return
    total_cost, total_fee = exact_basket_legs(opp, books, params)
    m = len(params.token_ids)
    payout = (m - 1) * (opp.size - opp.size * params.convert_fee_bips // 10_000)
    assert payout - total_cost - total_fee == opp.expected_profit > 0
    assert opp.expected_profit * MICRO >= lim.min_profit * opp.size
    assert total_cost <= lim.max_position


# -- the YES basket of a neg-risk event ----------------------------------------

YES_BASKET = SetKind.YES_BASKET
YES_ASKS = ("0.22", "0.20", "0.18", "0.36")  # sum 0.96: one winner redeems 1


def yes_basket(n: int = 4, fee: str = "0.01", min_size: str = "0", step: str = "0.01",
               outcomes: int | None = None, tokens: tuple[str, ...] | None = None) -> arb.BasketParams:
    return arb.BasketParams(event=EVENT, token_ids=tokens or tuple(f"yes{i}" for i in range(n)),
                            outcomes=n if outcomes is None else outcomes,
                            fee_rates_ppm=(int(Decimal(fee) * MICRO),) * n, min_order_size=usd(min_size),
                            size_step=usd(step), kind=YES_BASKET)


def yes_asks(*ladders) -> list[Book]:
    return [Book(f"yes{i}", asks=lad) for i, lad in enumerate(ladders)]


def yes_gap_books(depth: str = "100") -> list[Book]:
    # the gap's level, then four ticks worse on every YES: 1.12, no edge any more
    return yes_asks(*[lv((p, depth), (str(Decimal(p) + Decimal("0.04")), "1000")) for p in YES_ASKS])


def test_a_yes_basket_with_exact_sizes_fees_and_limits():
    opp = arb.evaluate_yes_basket(yes_gap_books(), yes_basket(), limits()).opportunity

    assert opp is not None and opp.kind == YES_BASKET and opp.size == usd("100")
    assert (opp.market, opp.neg_risk_market_id, opp.convert_fee_bips) == (EVENT, EVENT, 0)
    # fees 0.01 x p(1-p) per share: 0.001716, 0.0016, 0.001476, 0.002304
    assert [(leg.token_id, leg.side, leg.limit_price, leg.size, leg.cost, leg.fee) for leg in opp.legs] == [
        ("yes0", "BUY", usd("0.22"), usd("100"), usd("22"), usd("0.1716")),
        ("yes1", "BUY", usd("0.20"), usd("100"), usd("20"), usd("0.16")),
        ("yes2", "BUY", usd("0.18"), usd("100"), usd("18"), usd("0.1476")),
        ("yes3", "BUY", usd("0.36"), usd("100"), usd("36"), usd("0.2304")),
    ]
    # 100 baskets redeem 100 whichever question wins
    assert opp.expected_profit == usd("100") - usd("96") - usd("0.7096") == usd("3.2904")
    assert opp.book_ts_ms == {f"yes{i}": NOW_MS for i in range(4)}


def test_a_yes_basket_pays_its_size_and_ignores_any_convert_fee():
    assert yes_basket().payout(1_000_001) == 1_000_001
    # a convert fee on YES params (never built by the listing) is neither priced nor signalled
    params = dataclasses.replace(yes_basket(), convert_fee_bips=100)
    opp = arb.evaluate_yes_basket(yes_gap_books(), params, limits()).opportunity
    assert opp is not None and opp.convert_fee_bips == 0 and opp.expected_profit == usd("3.2904")


def test_no_yes_basket_when_the_asks_sum_to_one_or_more():
    even = yes_asks(*[lv(("0.25", "100")) for _ in range(4)])  # exactly 1
    assert arb.evaluate_yes_basket(even, yes_basket(fee="0"), limits(min_profit="0")).reason == arb.NO_EDGE
    dear = yes_asks(*[lv((p, "100")) for p in ("0.30", "0.25", "0.25", "0.25")])  # 1.05
    assert arb.evaluate_yes_basket(dear, yes_basket(), limits()).reason == arb.NO_EDGE
    # 0.99 - fees 0.007449 = 0.002551 per basket: an edge below the 0.01 threshold
    thin = yes_asks(*[lv((p, "100")) for p in ("0.24", "0.25", "0.25", "0.25")])
    assert arb.evaluate_yes_basket(thin, yes_basket(), limits()).reason == arb.NO_EDGE
    opp = arb.evaluate_yes_basket(thin, yes_basket(), limits(min_profit="0.002")).opportunity
    assert opp is not None and opp.expected_profit == usd("100") - usd("99") - sum(leg.fee for leg in opp.legs)


def test_a_yes_basket_walks_the_depth_of_every_leg():
    # 10 of every YES at the gap, then the first leg one tick deeper: 1 - 0.97 still earns the threshold
    books = yes_asks(lv(("0.22", "10"), ("0.23", "10"), ("0.40", "100")),
                     *[lv((p, "20"), ("0.50", "100")) for p in YES_ASKS[1:]])
    opp = arb.evaluate_yes_basket(books, yes_basket(fee="0"), limits()).opportunity
    assert opp is not None and opp.size == usd("20")
    assert (opp.legs[0].limit_price, opp.legs[0].cost) == (usd("0.23"), usd("2.2") + usd("2.3"))
    assert [leg.limit_price for leg in opp.legs[1:]] == [usd(p) for p in YES_ASKS[1:]]
    assert opp.expected_profit == usd("20") - usd("4.5") - usd("4") - usd("3.6") - usd("7.2") == usd("0.7")


def test_a_yes_basket_is_capped_by_max_position_and_rounded_to_the_step():
    books = yes_asks(*[lv((p, "1000")) for p in YES_ASKS])
    opp = arb.evaluate_yes_basket(books, yes_basket(fee="0"), limits(max_pos="100")).opportunity
    # 100 / 0.96 = 104.1666... baskets, rounded down to the 0.01 step
    assert opp is not None and opp.size == usd("104.16")
    assert [leg.cost for leg in opp.legs] == [22_915_200, 20_832_000, 18_748_800, 37_497_600]
    assert sum(leg.cost for leg in opp.legs) == 99_993_600 <= usd("100")
    assert opp.expected_profit == usd("104.16") - 99_993_600 == 4_166_400


def test_a_thin_yes_basket_is_below_the_min_order_size():
    books = yes_asks(*[lv((p, "4.99")) for p in YES_ASKS])
    assert arb.evaluate_yes_basket(books, yes_basket(min_size="5"), limits()).reason == arb.BELOW_MIN_SIZE


def test_an_incomplete_or_untrusted_yes_basket_never_signals():
    books = yes_gap_books()
    assert arb.evaluate_yes_basket(books[:3], yes_basket(), limits()).reason == arb.INCOMPLETE_SET
    # five questions, four YES: the missing one may be the winner
    assert arb.evaluate_yes_basket(books, yes_basket(outcomes=5), limits()).reason == arb.INCOMPLETE_SET
    twice = yes_basket(tokens=("yes0", "yes1", "yes2", "yes2"))
    assert arb.evaluate_yes_basket(books, twice, limits()).reason == arb.INCOMPLETE_SET
    invalid = [*books[:3], Book("yes3", asks=lv(("0.36", "100")), valid=False)]
    assert arb.evaluate_yes_basket(invalid, yes_basket(), limits()).reason == arb.INVALID_BOOK
    stale = [*books[:3], Book("yes3", asks=lv(("0.36", "100")), venue_ts_ms=NOW_MS - 10_001)]
    assert arb.evaluate_yes_basket(stale, yes_basket(), limits()).reason == arb.STALE_BOOK
    crossed = [*books[:3], Book("yes3", asks=lv(("0.36", "100")), bids=lv(("0.37", "1")))]
    assert arb.evaluate_yes_basket(crossed, yes_basket(), limits()).reason == arb.CROSSED_BOOK


def test_a_basket_is_evaluated_only_as_its_own_kind():
    with pytest.raises(ValueError, match="YES_BASKET"):
        arb.evaluate_basket(yes_gap_books(), yes_basket(), limits())
    with pytest.raises(ValueError, match="NO_BASKET"):
        arb.evaluate_yes_basket(world_cup_books(), basket(), limits())


@st.composite
def yes_basket_scenario(draw):
    """YES ladders of an m-outcome event whose best asks sum to about 1."""
    n = draw(st.integers(2, 5))
    tick = draw(st.sampled_from([CENT, 1_000]))
    tops = [draw(st.integers(1, MICRO // n // tick)) * tick for _ in range(n - 1)]
    edge = draw(st.integers(-2, 80_000 // tick)) * tick
    tops.append(min(max(MICRO - sum(tops) - edge, tick), MICRO - tick))

    def ladder(top: int) -> list[tuple[int, int]]:
        out, price = [], top
        for _ in range(draw(st.integers(1, 4))):
            if not 0 < price < MICRO:
                break
            out.append((price, draw(st.integers(1, 500)) * draw(st.sampled_from([1_000, CENT, MICRO]))))
            price += tick * draw(st.integers(1, 3))
        return out

    books = yes_asks(*[ladder(top) for top in tops])
    params = yes_basket(n, fee=draw(st.sampled_from(["0", "0.01", "0.02"])),
                        min_size=draw(st.sampled_from(["0", "5"])),
                        step=draw(st.sampled_from(["0.000001", "0.01", "1"])))
    lim = Limits(max_position=draw(st.integers(1, 300)) * MICRO, min_profit=draw(st.integers(0, 20_000)),
                 min_book_ts_ms=0)
    return books, params, lim


@settings(max_examples=200, deadline=None)
@given(yes_basket_scenario())
def test_a_yes_basket_is_exactly_what_its_legs_and_the_redemption_say(case):
    books, params, lim = case
    opp = arb.evaluate_yes_basket(books, params, lim).opportunity
    if opp is None:
        return
    assert opp.kind == YES_BASKET and opp.convert_fee_bips == 0
    total_cost, total_fee = exact_basket_legs(opp, books, params)
    assert opp.size - total_cost - total_fee == opp.expected_profit > 0  # one YES of each redeems 1
    assert opp.expected_profit * MICRO >= lim.min_profit * opp.size
    assert total_cost <= lim.max_position
