"""A book stamped in the future is never traded on: the router bounds a book's
venue time on both sides of its clock (it only checked that books were not too old)."""

import pytest

from actors.domain.money import MICRO
from actors.router import arbitrage as arb
from actors.router.actor import MAX_BOOK_AHEAD_MS
from bus.messages import BookUpdate
from tests.helpers import eventually
from tests.unit.router.test_router_actor import c, make_world  # noqa: F401 - fixture

pytestmark = pytest.mark.unit


async def test_no_signal_from_a_book_stamped_in_the_future(make_world):  # noqa: F811
    w = await make_world()
    w.book("yes", asks=[(c(45), 100 * MICRO)])
    w.book("no", asks=[(c(50), 100 * MICRO)], age_ms=-10**10)  # a venue time 10**10 ms ahead
    await eventually(lambda: w.actor.suppressed[arb.FUTURE_BOOK] >= 1)
    w.book("no", asks=[(c(50), 100 * MICRO)], age_ms=-(MAX_BOOK_AHEAD_MS + 1))
    await eventually(lambda: w.actor.suppressed[arb.FUTURE_BOOK] >= 2)
    assert w.actor.signals == 0

    w.book("no", asks=[(c(50), 100 * MICRO)], age_ms=-MAX_BOOK_AHEAD_MS)  # clocks differ a little: fine
    assert (await w.next_signal())[1].body.kind == "BUY_SET"


def test_the_screen_refuses_books_stamped_after_the_limit():
    books = [BookUpdate(token_id=t, market="m", valid=True, bids=[], asks=[(c(40), MICRO)], venue_ts_ms=1_000,
                        recv_ns=0, tick_size=c(1), reason="") for t in ("yes", "no")]
    market = arb.MarketParams(market="m", token_ids=("yes", "no"), outcomes=2, fee_rate_ppm=0)
    limits = arb.Limits(max_position=100 * MICRO, min_profit=0, max_book_ts_ms=999)
    assert arb.evaluate(books, market, limits).reason == arb.FUTURE_BOOK
    assert arb.evaluate(books, market, arb.Limits(max_position=100 * MICRO, min_profit=0, max_book_ts_ms=1_000)
                        ).opportunity is not None
