"""Small builders for venue tests: markets, states, simulators on a TestClock."""

from __future__ import annotations

import random
from decimal import Decimal

from actors.runtime.clock import TestClock
from config.schema import VenueArbitrage, VenueEvent, VenueFaults, VenueMarket
from sandbox.venue.faults import FaultInjector
from sandbox.venue.markets import MarketInfo, event_outcomes
from sandbox.venue.simulator import Simulator
from sandbox.venue.state import VenueState

BINARY = VenueMarket(slug="btc", question="BTC up?", outcomes=["Yes", "No"], initial_prices=[Decimal("0.62"),
                                                                                          Decimal("0.38")])
# A neg-risk event: four binary markets under one market id.
MULTI = VenueEvent(slug="cup", title="Who wins?", outcomes=["A", "B", "C", "D"],
                   initial_prices=[Decimal(p) for p in ("0.22", "0.20", "0.18", "0.40")], fee_rate=Decimal("0.01"))


def info(m: VenueMarket, n: int = 0) -> MarketInfo:
    """A MarketInfo with short readable ids: condition 0x..0n, tokens "<slug>-0" (YES) and "<slug>-1" (NO)."""
    return MarketInfo(
        slug=m.slug, question=m.question, condition_id=f"0x{n:064x}", question_id=f"0x{n + 100:064x}",
        outcomes=list(m.outcomes), token_ids=[f"{m.slug}-{i}" for i in range(len(m.outcomes))],
        fee_rate=m.fee_rate, tick_size=m.tick_size, min_order_size=m.min_order_size)


def event_infos(ev: VenueEvent, n: int = 0) -> list[MarketInfo]:
    """One MarketInfo per outcome i: condition 0x..(n*100+i), tokens "<slug><i>-0" (YES) / "<slug><i>-1" (NO)."""
    market_id = f"0x{n:062x}00"
    return [MarketInfo(
        slug=f"{ev.slug}{i}", question=f"{ev.title}: {name}?", condition_id=f"0x{n * 100 + i:064x}",
        question_id=f"0x{n:062x}{i:02x}", outcomes=["Yes", "No"], token_ids=[f"{ev.slug}{i}-0", f"{ev.slug}{i}-1"],
        fee_rate=ev.fee_rate, tick_size=ev.tick_size, min_order_size=ev.min_order_size, neg_risk=True,
        neg_risk_market_id=market_id, event_slug=ev.slug, outcome=name, placeholder=placeholder, other=other)
        for i, (name, placeholder, other) in enumerate(event_outcomes(ev))]


def infos_of(*items: VenueMarket | VenueEvent) -> list[MarketInfo]:
    out: list[MarketInfo] = []
    for i, item in enumerate(items):
        out += event_infos(item, i + 1) if isinstance(item, VenueEvent) else [info(item, i + 1)]
    return out


def make_state(*markets: VenueMarket | VenueEvent, clock: TestClock | None = None) -> tuple[VenueState, list]:
    """A state over `markets` and events (default: BINARY) and the list every event is appended to."""
    markets = markets or (BINARY,)
    state = VenueState(infos_of(*markets), clock or TestClock())
    events: list = []
    state.add_listener(events.append)
    return state, events


def make_sim(*markets: VenueMarket | VenueEvent, seed: int = 7, ups: float = 20.0, rate: float = 0.0,
             margin: str = "0.04", lifetime: float = 5.0, sell_share: float = 0.3, binary_gaps: bool = True,
             clock: TestClock | None = None) -> tuple[Simulator, VenueState, list, TestClock]:
    markets = markets or (BINARY,)
    clock = clock or TestClock()
    state, events = make_state(*markets, clock=clock)
    sim = Simulator(state, [m for m in markets if isinstance(m, VenueMarket)], random.Random(seed), clock,
                    updates_per_second=ups,
                    arbitrage=VenueArbitrage(rate_per_minute=rate, margin=Decimal(margin), lifetime_seconds=lifetime,
                                             sell_side_share=sell_share),
                    events=[m for m in markets if isinstance(m, VenueEvent)], binary_gaps=binary_gaps)
    sim.init_books()
    return sim, state, events, clock


def make_faults(seed: int = 1, clock: TestClock | None = None, **knobs) -> FaultInjector:
    return FaultInjector(VenueFaults(**knobs), random.Random(seed), clock or TestClock())
