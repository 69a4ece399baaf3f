"""One token's order book, in integer micro units, and its Polymarket wire form.

Units: a price is in 1e-6 USDC per share (0 < price < 1_000_000 = 1 USDC); a
size is in 1e-6 shares. No float ever touches a price or size: the wire
strings are produced and parsed with integer arithmetic only.

Sides follow Polymarket's `price_change` convention: BUY is the bid side,
SELL the ask side. A taker BUY consumes asks, a taker SELL consumes bids.
The book does not know about time except the timestamp the owner stamps on
it (`stamp`), which goes on the wire and into the hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from actors.domain.enums import Side
from actors.domain.money import ONE, micro_to_str

BUY = Side.BUY
SELL = Side.SELL
SIDES = (BUY, SELL)
# Tick sizes Polymarket uses; the simulator switches between the market's own
# tick and the fine one near the edges of the price range.
TICK_SIZES = (100_000, 10_000, 1_000, 100)


def is_valid_price(price: int, tick: int) -> bool:
    """A limit price must lie strictly between 0 and 1 and be a multiple of the tick."""
    return 0 < price < ONE and price % tick == 0


def is_valid_tick(tick: int) -> bool:
    return tick in TICK_SIZES


_encode = msgspec.json.Encoder().encode


class Book:
    """Levels per side: {price: size}. Best prices are computed from the levels,
    never from any order, so a stale ordering can never produce a ghost price."""

    __slots__ = ("_cache", "_encoded", "asks", "asset_id", "bids", "last_trade_price", "market", "min_order_size",
                 "neg_risk", "tick_size", "timestamp_ms", "version")

    def __init__(self, asset_id: str, market: str, *, tick_size: int = 10_000, min_order_size: int = 5 * ONE,
                 neg_risk: bool = False, last_trade_price: int = 0) -> None:
        self.asset_id = asset_id
        self.market = market
        self.tick_size = tick_size
        self.min_order_size = min_order_size
        self.neg_risk = neg_risk
        self.last_trade_price = last_trade_price
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.timestamp_ms = 0
        self.version = 0  # bumped on every change: keys the wire/hash cache
        self._cache: tuple[int, dict[str, Any]] | None = None
        self._encoded: tuple[int, bytes] | None = None

    # ------------------------------------------------------------ levels

    def _side(self, side: str) -> dict[int, int]:
        if side == BUY:
            return self.bids
        if side == SELL:
            return self.asks
        raise ValueError(f"side must be BUY or SELL, got {side!r}")

    def set_level(self, side: str, price: int, size: int) -> None:
        """Set the TOTAL size at `price` (the price_change semantics); 0 removes it."""
        if size < 0 or not 0 < price < ONE:
            raise ValueError(f"bad level {side} {price} x {size}")
        levels = self._side(side)
        if size == 0:
            levels.pop(price, None)
        else:
            levels[price] = size
        self.version += 1

    def size_at(self, side: str, price: int) -> int:
        return self._side(side).get(price, 0)

    def best_bid(self) -> int | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> int | None:
        return min(self.asks) if self.asks else None

    def levels(self, side: str) -> list[tuple[int, int]]:
        """[(price, size)] best first (bids descending, asks ascending)."""
        levels = self._side(side)
        return sorted(levels.items(), reverse=side == BUY)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.version += 1

    def stamp(self, timestamp_ms: int) -> None:
        """The owner records when the book last changed (wire `timestamp`)."""
        self.timestamp_ms = timestamp_ms
        self.version += 1

    # ------------------------------------------------------------ taking liquidity

    def available(self, taker_side: str, limit_price: int) -> int:
        """Size a taker could fill at `limit_price` or better."""
        if taker_side == BUY:
            return sum(s for p, s in self.asks.items() if p <= limit_price)
        return sum(s for p, s in self.bids.items() if p >= limit_price)

    def take(self, taker_side: str, limit_price: int, size: int, all_or_none: bool) -> list[tuple[int, int]]:
        """Sweep the opposite side best-first within the limit, removing what fills.

        Returns the fills [(price, size)] best first. all_or_none (FOK): nothing
        changes unless the whole size fills. Otherwise (FAK): fill what there is.
        """
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        fills = self.walk(taker_side, limit_price, size, all_or_none)
        levels = self._side(SELL if taker_side == BUY else BUY)
        for price, n in fills:
            if n == levels[price]:
                del levels[price]
            else:
                levels[price] -= n
        if fills:
            self.version += 1
        return fills

    def walk(self, taker_side: str, limit_price: int, size: int, all_or_none: bool) -> list[tuple[int, int]]:
        """The fills a taker would get now, best first, without touching the book."""
        fills: list[tuple[int, int]] = []
        left = size
        for price, level_size in self.levels(SELL if taker_side == BUY else BUY):
            if left == 0 or (price > limit_price if taker_side == BUY else price < limit_price):
                break
            n = min(left, level_size)
            fills.append((price, n))
            left -= n
        return [] if all_or_none and left else fills

    # ------------------------------------------------------------ wire

    def _wire(self) -> dict[str, Any]:
        if self._cache is not None and self._cache[0] == self.version:
            return self._cache[1]
        # Real data lists bids ascending and asks descending: best price LAST.
        wire: dict[str, Any] = {
            "market": self.market,
            "asset_id": self.asset_id,
            "timestamp": str(self.timestamp_ms),
            "hash": "",
            "bids": [{"price": micro_to_str(p), "size": micro_to_str(s)} for p, s in sorted(self.bids.items())],
            "asks": [{"price": micro_to_str(p), "size": micro_to_str(s)}
                     for p, s in sorted(self.asks.items(), reverse=True)],
            "min_order_size": micro_to_str(self.min_order_size),
            "tick_size": micro_to_str(self.tick_size),
            "neg_risk": self.neg_risk,
            "last_trade_price": micro_to_str(self.last_trade_price),
        }
        # The server-compatible hash that py-clob-client-v2's
        # generate_orderbook_summary_hash reproduces: SHA1 of this compact JSON,
        # in this key order, with "hash" empty.
        wire["hash"] = hashlib.sha1(_encode(wire), usedforsecurity=False).hexdigest()
        self._cache = (self.version, wire)
        return wire

    def hash(self) -> str:
        """Digest of the content (and timestamp): a change marker, not a checksum."""
        return self._wire()["hash"]

    def to_rest(self) -> dict[str, Any]:
        """The REST `GET /book` body. A fresh dict: callers may keep it."""
        wire = self._wire()
        return {**wire, "bids": list(wire["bids"]), "asks": list(wire["asks"])}

    def to_wire(self) -> dict[str, Any]:
        """The market channel's `book` event (all numbers as strings)."""
        return {"event_type": "book", **self.to_rest()}

    def encoded(self) -> bytes:
        """`to_wire()` as JSON bytes, cached until the book changes (fan-out and
        snapshot replies reuse it)."""
        if self._encoded is None or self._encoded[0] != self.version:
            self._encoded = (self.version, _encode({"event_type": "book", **self._wire()}))
        return self._encoded[1]
