"""Resolution: a binary market or a whole neg-risk event closes, names its winner on the
market channel (custom features only), stops moving, and reports payouts."""

from decimal import Decimal
from types import SimpleNamespace

import pytest

from actors.domain.money import ONE
from config.schema import VenueEvent, VenueMarket
from sandbox.venue.book import BUY
from sandbox.venue.events import MarketResolved
from sandbox.venue.resolution import Resolver
from sandbox.venue.state import InvalidOrder, VenueError
from tests.unit.sandbox.venue.factories import BINARY, MULTI, make_sim

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def resolver_for(*items, reports=None):
    sim, state, events, clock = make_sim(*items, ups=0)
    cfg = SimpleNamespace(markets=[i for i in items if isinstance(i, VenueMarket)],
                          events=[i for i in items if isinstance(i, VenueEvent)])
    reported = [] if reports is None else reports

    async def report(qid, yes_wins, neg_risk):
        reported.append((qid, yes_wins, neg_risk))

    return Resolver(state, sim, lambda: cfg, report), state, events, sim, clock, reported


async def test_a_binary_market_resolves_to_the_likelier_outcome_and_stops_trading():
    r, state, events, sim, clock, reported = resolver_for(BINARY)  # YES at 0.62
    yes, no = state.markets[0].token_ids

    done = await r.resolve("btc")

    assert done == [{"condition_id": state.markets[0].condition_id, "winning_asset_id": yes, "winning_outcome": "Yes"}]
    (event,) = [e for e in events if isinstance(e, MarketResolved)]
    assert event.to_wire()["winning_asset_id"] == yes and event.to_wire()["event_type"] == "market_resolved"
    assert reported == [(state.markets[0].question_id, True, False)]
    with pytest.raises(InvalidOrder, match="resolved"):
        state.execute_taker(yes, BUY, state.book(yes).best_ask(), ONE, all_or_none=True)
    assert await r.resolve("btc") == []  # once
    before = len(events)
    sim.step()
    assert len(events) == before  # the simulator leaves it alone


async def test_an_event_resolves_every_market_with_exactly_one_yes():
    r, state, _, _, _, reported = resolver_for(MULTI)

    done = await r.resolve("cup", "B")

    assert [d["winning_outcome"] for d in done] == ["No", "Yes", "No", "No"]
    assert [y for _, y, _ in reported] == [False, True, False, False] and all(n for _, _, n in reported)
    with pytest.raises(VenueError, match="not an outcome"):
        await r.resolve("cup", "Z")


async def test_scheduled_resolution_comes_due_after_its_delay():
    timed = VenueMarket(slug="timed", outcomes=["Yes", "No"], initial_prices=[Decimal("0.3"), Decimal("0.7")],
                        resolve_after_seconds=10, winner="Yes")
    r, state, _, _, clock, _ = resolver_for(timed)
    assert r.due(clock.monotonic_ns()) == []

    clock.advance(10)
    assert r.due(clock.monotonic_ns()) == ["timed"]
    done = await r.resolve("timed")

    assert done[0]["winning_outcome"] == "Yes"  # the configured winner, not the likelier one
    assert r.due(clock.monotonic_ns()) == []
