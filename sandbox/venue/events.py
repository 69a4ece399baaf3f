"""What the venue tells market-channel subscribers: frozen events and frames.

`VenueState` emits these events; the WebSocket layer encodes each one ONCE
into a `Frame` and hands the same bytes to every subscriber. Prices and sizes
are integer micro units here; `to_wire()` turns them into Polymarket's
strings (docs/polymarket.md, "Event types").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from actors.domain.money import ONE, micro_to_str

PRICE_CHANGE = "price_change"
BOOK = "book"
LAST_TRADE_PRICE = "last_trade_price"
TICK_SIZE_CHANGE = "tick_size_change"
MARKET_RESOLVED = "market_resolved"
EVENT_TYPES = (BOOK, PRICE_CHANGE, LAST_TRADE_PRICE, TICK_SIZE_CHANGE, MARKET_RESOLVED)
CUSTOM_FEATURES = frozenset({MARKET_RESOLVED})  # sent only to connections with custom_feature_enabled

_encode = msgspec.json.Encoder().encode


def _best(price: int | None, empty: int) -> str:
    # An empty side is reported as the edge of the price range, never as "".
    return micro_to_str(empty if price is None else price)


@dataclass(frozen=True, slots=True)
class LevelUpdate:
    """One `price_changes` entry: `size` is the NEW total at `price` (0 removes);
    hash / best_bid / best_ask describe the token's book after the whole event."""

    asset_id: str
    side: str  # BUY = bid level, SELL = ask level
    price: int
    size: int
    hash: str
    best_bid: int | None
    best_ask: int | None


@dataclass(frozen=True, slots=True)
class PriceChange:
    """Every level change of one market event, in one message.

    Example wire: {"market": "0x5f..", "price_changes": [{"asset_id": "7132..",
    "price": "0.63", "size": "200", "side": "SELL", "hash": "2c1e..",
    "best_bid": "0.61", "best_ask": "0.63"}], "timestamp": "1767225600123",
    "event_type": "price_change"}
    """

    kind: ClassVar[str] = PRICE_CHANGE
    market: str
    timestamp_ms: int
    changes: tuple[LevelUpdate, ...]

    @property
    def asset_ids(self) -> frozenset[str]:
        return frozenset(c.asset_id for c in self.changes)

    def to_wire(self) -> dict[str, Any]:
        return {
            "market": self.market,
            "price_changes": [
                {"asset_id": c.asset_id, "price": micro_to_str(c.price), "size": micro_to_str(c.size),
                 "side": c.side, "hash": c.hash, "best_bid": _best(c.best_bid, 0), "best_ask": _best(c.best_ask, ONE)}
                for c in self.changes
            ],
            "timestamp": str(self.timestamp_ms),
            "event_type": PRICE_CHANGE,
        }


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A full `book` of one token (after a trade, a tick size change, a revert).
    `wire` and `encoded` were taken from the book at emission: never mutate."""

    kind: ClassVar[str] = BOOK
    asset_id: str
    market: str
    timestamp_ms: int
    wire: dict[str, Any]
    encoded: bytes

    @property
    def asset_ids(self) -> frozenset[str]:
        return frozenset((self.asset_id,))

    def to_wire(self) -> dict[str, Any]:
        return self.wire


@dataclass(frozen=True, slots=True)
class LastTradePrice:
    """A taker execution: `price` is its last (worst) fill, `size` the total, `side` the taker's."""

    kind: ClassVar[str] = LAST_TRADE_PRICE
    asset_id: str
    market: str
    price: int
    side: str
    size: int
    fee_rate_bps: int
    timestamp_ms: int

    @property
    def asset_ids(self) -> frozenset[str]:
        return frozenset((self.asset_id,))

    def to_wire(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id, "event_type": LAST_TRADE_PRICE, "fee_rate_bps": str(self.fee_rate_bps),
            "market": self.market, "price": micro_to_str(self.price), "side": self.side,
            "size": micro_to_str(self.size), "timestamp": str(self.timestamp_ms),
        }


@dataclass(frozen=True, slots=True)
class TickSizeChange:
    """The token's tick changed: clients drop the book until the next snapshot,
    which the venue sends right after this event."""

    kind: ClassVar[str] = TICK_SIZE_CHANGE
    asset_id: str
    market: str
    old_tick: int
    new_tick: int
    timestamp_ms: int

    @property
    def asset_ids(self) -> frozenset[str]:
        return frozenset((self.asset_id,))

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_type": TICK_SIZE_CHANGE, "asset_id": self.asset_id, "market": self.market,
            "old_tick_size": micro_to_str(self.old_tick), "new_tick_size": micro_to_str(self.new_tick),
            "timestamp": str(self.timestamp_ms),
        }


@dataclass(frozen=True, slots=True)
class MarketResolved:
    """A market resolved: trading is over, its winning token pays 1 (a custom feature:
    only connections that asked for `custom_feature_enabled` get it)."""

    kind: ClassVar[str] = MARKET_RESOLVED
    market: str
    question: str
    token_ids: tuple[str, ...]
    outcomes: tuple[str, ...]
    winning_asset_id: str
    winning_outcome: str
    timestamp_ms: int

    @property
    def asset_ids(self) -> frozenset[str]:
        return frozenset(self.token_ids)

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_type": MARKET_RESOLVED, "id": self.market, "market": self.market, "question": self.question,
            "assets_ids": list(self.token_ids), "outcomes": list(self.outcomes),
            "winning_asset_id": self.winning_asset_id, "winning_outcome": self.winning_outcome,
            "timestamp": str(self.timestamp_ms),
        }


Event = PriceChange | BookSnapshot | LastTradePrice | TickSizeChange | MarketResolved


@dataclass(frozen=True, slots=True)
class Frame:
    """An encoded data frame and what the fault injector needs to know about it."""

    kind: str  # an event type
    assets: frozenset[str]
    timestamp_ms: int
    market: str
    data: bytes


def encode(event: Event) -> Frame:
    data = event.encoded if isinstance(event, BookSnapshot) else _encode(event.to_wire())
    return Frame(event.kind, event.asset_ids, event.timestamp_ms, event.market, data)
