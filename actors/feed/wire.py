"""Polymarket market-channel wire format -> typed events (the edge of the feed).

Frames are JSON objects or arrays of objects; every number is a string and
timestamps are epoch milliseconds. Prices and sizes become integers in 1e-6
units here and nowhere else. Anything malformed raises `WireError` with a
kind, so the caller counts it and drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import msgspec

from actors.domain.money import MICRO, parse_decimal

KNOWN_EVENTS = frozenset({"book", "price_change", "tick_size_change", "last_trade_price",
                          "best_bid_ask", "new_market", "market_resolved"})

_decoder = msgspec.json.Decoder()


class WireError(ValueError):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind  # broken_json | missing_field | bad_value | not_an_object


# Prices come from a small grid and sizes repeat: most strings were parsed before. Bounded,
# so hostile unique strings only evict; errors are never cached.
_parse_decimal = lru_cache(maxsize=65_536)(parse_decimal)


def _decimal(text: object) -> int:
    """'0.62' -> 620000 exactly (`actors.domain.money.parse_decimal`), or a WireError."""
    if not isinstance(text, str) or not text:
        raise WireError("bad_value", f"expected a decimal string, got {text!r}")
    try:
        return _parse_decimal(text)
    except ValueError as exc:
        raise WireError("bad_value", str(exc)) from None


def _int(text: object, what: str) -> int:
    if isinstance(text, str) and text.isdigit():
        return int(text)
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    raise WireError("bad_value", f"{what}: {text!r}")


@dataclass(slots=True, frozen=True)
class BookSnapshot:
    asset_id: str
    market: str
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    timestamp_ms: int
    hash: str
    tick_size: int | None


@dataclass(slots=True, frozen=True)
class LevelChange:
    asset_id: str
    price: int
    size: int
    is_bid: bool
    best_bid: int | None
    best_ask: int | None


@dataclass(slots=True, frozen=True)
class PriceChange:
    market: str
    timestamp_ms: int
    changes: list[LevelChange]
    identity: tuple


@dataclass(slots=True, frozen=True)
class TickSizeChange:
    asset_id: str
    market: str
    new_tick_size: int
    timestamp_ms: int


@dataclass(slots=True, frozen=True)
class LastTrade:
    asset_id: str
    market: str
    price: int
    size: int
    timestamp_ms: int
    side: str | None = None


@dataclass(slots=True, frozen=True)
class Ignored:
    event_type: str  # a known event we do not use, or an unknown one


Event = BookSnapshot | PriceChange | TickSizeChange | LastTrade | Ignored


def _need(obj: dict, key: str) -> object:
    try:
        return obj[key]
    except KeyError:
        raise WireError("missing_field", f"{obj.get('event_type')!r} without {key!r}") from None


def _levels(raw: object) -> list[tuple[int, int]]:
    if not isinstance(raw, list):
        raise WireError("bad_value", "levels must be a list")
    out = []
    for lv in raw:
        if not isinstance(lv, dict):
            raise WireError("bad_value", f"level {lv!r}")
        out.append((_decimal(_need(lv, "price")), _decimal(_need(lv, "size"))))
    return out


def _best(text: object) -> int | None:
    # Missing, empty or out-of-range best prices mean "no such side".
    if not isinstance(text, str) or not text:
        return None
    try:
        v = _decimal(text)
    except WireError:
        return None
    return v if 0 < v < MICRO else None


def _level_change(changes: list[LevelChange], ident: list[tuple], asset: str, price_text: object,
                  size_text: object, side: object, hash_: object, best_bid: object, best_ask: object) -> None:
    """One entry of a price_change, read the same way by both paths: the change and
    its part of the message's identity."""
    if side not in ("BUY", "SELL"):
        raise WireError("bad_value", f"side {side!r}")
    price, size = _decimal(price_text), _decimal(size_text)
    changes.append(LevelChange(asset, price, size, side == "BUY", _best(best_bid), _best(best_ask)))
    ident.append((asset, price, size, side, hash_))


def decode(text: str | bytes) -> list[dict]:
    """JSON object or array of objects -> list of dicts."""
    try:
        data = _decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise WireError("broken_json", str(exc)) from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(x, dict) for x in data):
        return data
    raise WireError("not_an_object", type(data).__name__)


def parse_event(obj: dict) -> tuple[Event, int]:
    """One message -> (event, number of unknown fields it carried)."""
    et = obj.get("event_type")
    if et == "price_change":
        entries = _need(obj, "price_changes")
        if not isinstance(entries, list):
            raise WireError("bad_value", "price_changes must be a list")
        changes, unknown, ident = [], 0, []
        for e in entries:
            if not isinstance(e, dict):
                raise WireError("bad_value", f"price change entry {e!r}")
            unknown += len(e.keys() - _PC_ENTRY_KEYS)
            _level_change(changes, ident, str(_need(e, "asset_id")), _need(e, "price"), _need(e, "size"),
                          _need(e, "side"), e.get("hash"), e.get("best_bid"), e.get("best_ask"))
        market = str(_need(obj, "market"))
        ts = _int(_need(obj, "timestamp"), "timestamp")
        return PriceChange(market, ts, changes, ("pc", market, ts, tuple(ident))), unknown + len(obj.keys() - _PC_KEYS)
    if et == "book":
        bids = obj.get("bids", obj.get("buys"))
        asks = obj.get("asks", obj.get("sells"))
        if bids is None or asks is None:
            raise WireError("missing_field", "book without bids/asks")
        tick = obj.get("tick_size")
        return BookSnapshot(
            str(_need(obj, "asset_id")), str(_need(obj, "market")), _levels(bids), _levels(asks),
            _int(_need(obj, "timestamp"), "timestamp"), str(obj.get("hash", "")),
            _decimal(tick) if isinstance(tick, str) else None,
        ), len(obj.keys() - _BOOK_KEYS)
    if et == "tick_size_change":
        return TickSizeChange(
            str(_need(obj, "asset_id")), str(_need(obj, "market")), _decimal(_need(obj, "new_tick_size")),
            _int(_need(obj, "timestamp"), "timestamp"),
        ), len(obj.keys() - _TICK_KEYS)
    if et == "last_trade_price":
        return LastTrade(
            str(_need(obj, "asset_id")), str(_need(obj, "market")), _decimal(_need(obj, "price")),
            _decimal(_need(obj, "size")), _int(_need(obj, "timestamp"), "timestamp"),
            side if isinstance(side := obj.get("side"), str) else None,
        ), len(obj.keys() - _TRADE_KEYS)
    if et is None:
        raise WireError("missing_field", "message without event_type")
    return Ignored(str(et)), 0


# -- the fast path: the venue's known events decoded by msgspec straight into typed
# Structs (in C, no dicts). A frame with anything else (an unknown event type or field,
# an unexpected type, a bad number) fails here and is read by the generic path above,
# which counts and drops exactly as before.


class _Level(msgspec.Struct, forbid_unknown_fields=True):
    price: str
    size: str


class _Book(msgspec.Struct, tag_field="event_type", tag="book", forbid_unknown_fields=True):
    asset_id: str
    market: str
    timestamp: str
    bids: list[_Level]
    asks: list[_Level]
    hash: str = ""
    tick_size: str | None = None
    min_order_size: str | None = None
    neg_risk: bool | None = None
    last_trade_price: str | None = None


class _Change(msgspec.Struct, forbid_unknown_fields=True):
    asset_id: str
    price: str
    size: str
    side: str
    hash: str | None = None
    best_bid: str | None = None
    best_ask: str | None = None


class _PriceChange(msgspec.Struct, tag_field="event_type", tag="price_change", forbid_unknown_fields=True):
    market: str
    timestamp: str
    price_changes: list[_Change]


class _TickSizeChange(msgspec.Struct, tag_field="event_type", tag="tick_size_change", forbid_unknown_fields=True):
    asset_id: str
    market: str
    new_tick_size: str
    timestamp: str
    old_tick_size: str | None = None


class _LastTrade(msgspec.Struct, tag_field="event_type", tag="last_trade_price", forbid_unknown_fields=True):
    asset_id: str
    market: str
    price: str
    size: str
    timestamp: str
    side: str | None = None
    fee_rate_bps: str | None = None
    transaction_hash: str | None = None


# Known events the feed does not use: whatever their fields, nothing but a count.
class _BestBidAsk(msgspec.Struct, tag_field="event_type", tag="best_bid_ask"):
    pass


class _NewMarket(msgspec.Struct, tag_field="event_type", tag="new_market"):
    pass


class _MarketResolved(msgspec.Struct, tag_field="event_type", tag="market_resolved"):
    pass


# The fields the generic path knows (anything else is counted as unknown): the fast path's
# Structs, so the two paths can never disagree on what the venue sends.
_BOOK_KEYS = frozenset(_Book.__struct_fields__) | {"event_type", "buys", "sells"}
_PC_KEYS = frozenset(_PriceChange.__struct_fields__) | {"event_type"}
_PC_ENTRY_KEYS = frozenset(_Change.__struct_fields__)
_TICK_KEYS = frozenset(_TickSizeChange.__struct_fields__) | {"event_type"}
_TRADE_KEYS = frozenset(_LastTrade.__struct_fields__) | {"event_type"}

_Msg = _Book | _PriceChange | _TickSizeChange | _LastTrade | _BestBidAsk | _NewMarket | _MarketResolved
_fast = msgspec.json.Decoder(list[_Msg] | _Msg)


def _fast_event(m: _Msg) -> Event:
    if isinstance(m, _TickSizeChange):
        return TickSizeChange(m.asset_id, m.market, _decimal(m.new_tick_size), _int(m.timestamp, "timestamp"))
    if isinstance(m, _LastTrade):
        return LastTrade(m.asset_id, m.market, _decimal(m.price), _decimal(m.size), _int(m.timestamp, "timestamp"),
                         m.side)
    if isinstance(m, _BestBidAsk | _NewMarket | _MarketResolved):
        return Ignored(m.__struct_config__.tag)  # type: ignore[arg-type]
    if isinstance(m, _PriceChange):
        changes, ident = [], []
        for e in m.price_changes:
            _level_change(changes, ident, e.asset_id, e.price, e.size, e.side, e.hash, e.best_bid, e.best_ask)
        ts = _int(m.timestamp, "timestamp")
        return PriceChange(m.market, ts, changes, ("pc", m.market, ts, tuple(ident)))
    return BookSnapshot(m.asset_id, m.market, [(_decimal(lv.price), _decimal(lv.size)) for lv in m.bids],
                        [(_decimal(lv.price), _decimal(lv.size)) for lv in m.asks], _int(m.timestamp, "timestamp"),
                        m.hash, _decimal(m.tick_size) if m.tick_size is not None else None)


def decode_fast(text: str | bytes) -> list[Event] | None:
    """Every message of a frame of the venue's known events as events, or None when
    the frame is anything else (the caller then takes the generic path)."""
    try:
        data = _fast.decode(text)
        return [_fast_event(m) for m in data] if isinstance(data, list) else [_fast_event(data)]
    except (msgspec.DecodeError, msgspec.ValidationError, WireError):
        return None


def identity(event: Event) -> tuple:
    """What makes two messages the same message (for the dedup cache)."""
    if isinstance(event, PriceChange):
        return event.identity
    if isinstance(event, BookSnapshot):
        return ("book", event.asset_id, event.timestamp_ms, event.hash)
    if isinstance(event, TickSizeChange):
        return ("tick", event.asset_id, event.timestamp_ms, event.new_tick_size)
    if isinstance(event, LastTrade):
        return ("trade", event.asset_id, event.timestamp_ms, event.price, event.size, event.side)
    raise TypeError(f"no identity for {type(event).__name__}: only book events are delivered")
