"""Neg-risk events from the CLOB listing: which ones have a basket the router may trade.

Pure: a listing in, baskets (or why not) out. A neg-risk event is the binary
markets grouped under one `neg_risk_market_id` (the NegRiskAdapter's market
id); each market is one question, whose id is the market id with the
question's index in the last byte. Two baskets per event:

- NO basket: the NO of every question, converted through the adapter into
  m - 1 collateral;
- YES basket: the YES of every question, held to the resolution, when exactly
  one of them redeems 1 (no convert, so the adapter's fee plays no part).

Both pay only if they hold EVERY question (a missing one is the one that may
win, or breaks the convert), so an event is traded only when the listing
shows all of it:

- every market of the event is listed, active and selected by `router.markets`;
- the question indices are exactly 0 .. m-1, m >= 2 (none missing, none twice);
- every market has one YES and one NO token;
- no market is a placeholder or "Other" (an augmented event: their meaning
  changes when placeholders get named, docs/polymarket.md section 8.2): the
  whole event is skipped, never traded without them;
- NO basket only: the adapter's convert fee (`getFeeBips`) of the market is known.

The legs are in question order, so the convert's index set is all m bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from actors.domain.enums import SetKind
from actors.domain.listing import Market
from actors.router.arbitrage import BasketParams

# Why an event has no basket (the router's stats show them per event).
NOT_NEG_RISK_EVENT = "no_market_id"  # neg_risk without a neg_risk_market_id: nothing to convert in
AUGMENTED = "augmented"  # placeholder or "Other" outcomes
INCOMPLETE_EVENT = "incomplete_set"  # a question missing, closed, not selected, or without a YES/NO pair
FEE_UNKNOWN = "convert_fee_unknown"  # the adapter's feeBips not read yet (NO basket only)


@dataclass(frozen=True, slots=True)
class EventListing:
    """Everything the listing says about one event, whether tradable or not."""

    event: str  # the NegRiskAdapter market id
    markets: tuple[Market, ...]  # by question index when known


def group_events(listing: Iterable[Market]) -> tuple[dict[str, EventListing], int]:
    """Neg-risk markets by event id, and how many neg-risk markets name no event."""
    grouped: dict[str, list[Market]] = {}
    orphans = 0
    for m in listing:
        if not m.neg_risk:
            continue
        if not m.neg_risk_market_id:
            orphans += 1
            continue
        grouped.setdefault(m.neg_risk_market_id.lower(), []).append(m)
    out = {}
    for event, ms in grouped.items():
        ms.sort(key=lambda m: (m.question_index is None, m.question_index or 0, m.condition_id))
        out[event] = EventListing(event, tuple(ms))
    return out, orphans


def _token(m: Market, label: str) -> str | None:
    labels = [o.strip().lower() for o in m.outcomes]
    if len(m.token_ids) != 2 or sorted(labels) != ["no", "yes"] or not all(m.token_ids):
        return None
    return m.token_ids[labels.index(label)]


def no_token(m: Market) -> str | None:
    """The NO token of a binary YES/NO market, or None if it is not one."""
    return _token(m, "no")


def yes_token(m: Market) -> str | None:
    """The YES token of a binary YES/NO market, or None if it is not one."""
    return _token(m, "yes")


def _legs(ev: EventListing, wanted: set[str], token: Callable[[Market], str | None]) -> tuple[str, ...] | str:
    """The event's `token` of every question in question order, or why the event is not complete."""
    ms = ev.markets
    if any(m.augmented for m in ms):
        return AUGMENTED
    indices = [m.question_index for m in ms]
    if len(ms) < 2 or indices != list(range(len(ms))):
        return INCOMPLETE_EVENT
    if any(not m.active or m.condition_id not in wanted for m in ms):
        return INCOMPLETE_EVENT
    tokens = [token(m) for m in ms]  # None for a market without its YES / NO pair
    if any(t is None for t in tokens):
        return INCOMPLETE_EVENT
    return tuple(t for t in tokens if t is not None)


def _params(ev: EventListing, tokens: tuple[str, ...], kind: SetKind, bips: int, size_step: int) -> BasketParams:
    ms = ev.markets
    return BasketParams(event=ev.event, token_ids=tokens, outcomes=len(ms),
                        fee_rates_ppm=tuple(m.fee_rate_bps * 100 for m in ms), convert_fee_bips=bips,
                        min_order_size=max(m.min_order_size for m in ms), size_step=size_step, kind=kind)


def basket_params(ev: EventListing, wanted: set[str], fee_bips: Mapping[str, int], size_step: int,
                  ) -> BasketParams | str:
    """The event's NO basket, or the reason (one of the constants above) it has none."""
    tokens = _legs(ev, wanted, no_token)
    if isinstance(tokens, str):
        return tokens
    bips = fee_bips.get(ev.event)
    if bips is None:
        return FEE_UNKNOWN
    return _params(ev, tokens, SetKind.NO_BASKET, bips, size_step)


def yes_basket_params(ev: EventListing, wanted: set[str], size_step: int) -> BasketParams | str:
    """The event's YES basket, or the reason it has none: the same completeness as the
    NO basket's, but no convert fee (the YES are redeemed, never converted)."""
    tokens = _legs(ev, wanted, yes_token)
    if isinstance(tokens, str):
        return tokens
    return _params(ev, tokens, SetKind.YES_BASKET, 0, size_step)
