"""Polymarket market-channel wire format -> typed events (the edge of the feed).

Frames are JSON objects or arrays of objects; every number is a string and
timestamps are epoch milliseconds. Prices and sizes become integers in 1e-6
units here and nowhere else. Anything malformed raises `WireError` with a
kind, so the caller counts it and drops it: besides bad JSON and wrong types,
numbers of anything but ASCII digits, prices outside (0, 1), sizes of
`MAX_SIZE` or more and JSON nested deeper than `actors.domain.values` allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NoReturn

import msgspec

from actors.domain.money import MICRO, parse_decimal
from actors.domain.values import Value

KNOWN_EVENTS = frozenset({"book", "price_change", "tick_size_change", "last_trade_price",
                          "best_bid_ask", "new_market", "market_resolved"})
BOOK_EVENTS = ("book", "price_change", "tick_size_change")  # the messages that change a book

# A billion shares: beyond any real level, and far inside the bus's int64 (msgpack
# cannot encode 2**64: a larger size made every later flush raise).
MAX_SIZE = 10**15
# Epoch ms have 13 digits until the year 2286; the bound keeps int() cheap and within
# Python's 4,300-digit string limit.
MAX_TS_DIGITS = 15
_MAX_TS = 10**MAX_TS_DIGITS

# Bounded depth: a deeper frame is the decoder's ValidationError (an untyped decoder
# followed ~1,000 levels into a RecursionError, or with a raised recursion limit, a
# C stack overflow).
_decoder = msgspec.json.Decoder(Value)


class WireError(ValueError):
    def __init__(self, kind: str, detail: str, assets: tuple[str, ...] = ()) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind  # broken_json | too_deep_or_too_large | missing_field | bad_value | not_an_object
        self.assets = assets  # the tokens whose books the refused message would have changed


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
    # str.isdigit() accepts '²' and '①', which int() refuses, and Arabic-Indic digits, which it reads.
    if isinstance(text, str):
        if len(text) <= MAX_TS_DIGITS and text.isascii() and text.isdigit():
            return int(text)
    elif isinstance(text, int) and not isinstance(text, bool) and 0 <= text < _MAX_TS:
        return text
    raise WireError("bad_value", f"{what}: {text!r:.40}")


def _bad_level(price: int, size: int) -> NoReturn:
    if not 0 < price < MICRO:
        raise WireError("bad_value", f"price {price}e-6 outside (0, 1)")
    raise WireError("bad_value", f"size {size}e-6 of {MAX_SIZE}e-6 or more")


def _tick(text: object) -> int:
    tick = _decimal(text)
    if not 0 < tick < MICRO:
        raise WireError("bad_value", f"tick size {text!r:.40}")
    return tick


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
            raise WireError("bad_value", f"level {lv!r:.40}")
        price, size = _decimal(_need(lv, "price")), _decimal(_need(lv, "size"))
        if not 0 < price < MICRO or size >= MAX_SIZE:
            _bad_level(price, size)
        out.append((price, size))
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
        raise WireError("bad_value", f"side {side!r:.40}")
    price, size = _decimal(price_text), _decimal(size_text)
    if not 0 < price < MICRO or size >= MAX_SIZE:
        _bad_level(price, size)
    changes.append(LevelChange(asset, price, size, side == "BUY", _best(best_bid), _best(best_ask)))
    ident.append((asset, price, size, side, hash_))


def decode(text: str | bytes) -> list[dict]:
    """JSON object or array of objects -> list of dicts."""
    try:
        data = _decoder.decode(text)
    except msgspec.ValidationError as exc:  # valid JSON, beyond the bounds of `Value`
        raise WireError("too_deep_or_too_large", str(exc)) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise WireError("broken_json", str(exc)) from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(x, dict) for x in data):
        return data
    raise WireError("not_an_object", type(data).__name__)


def parse_event(obj: dict) -> tuple[Event, int]:
    """One message -> (event, number of unknown fields it carried). A refused message
    that changes books names in its WireError the tokens it would have changed."""
    try:
        return _parse_event(obj)
    except WireError as exc:
        if obj.get("event_type") in BOOK_EVENTS:
            exc.assets = _named_assets(obj)
        raise


def _named_assets(obj: dict) -> tuple[str, ...]:
    entries = obj.get("price_changes")
    if isinstance(entries, list):
        return tuple({a for e in entries if isinstance(e, dict) and isinstance(a := e.get("asset_id"), str)})
    return (a,) if isinstance(a := obj.get("asset_id"), str) else ()


def _parse_event(obj: dict) -> tuple[Event, int]:
    et = obj.get("event_type")
    if et == "price_change":
        entries = _need(obj, "price_changes")
        if not isinstance(entries, list):
            raise WireError("bad_value", "price_changes must be a list")
        changes, unknown, ident = [], 0, []
        for e in entries:
            if not isinstance(e, dict):
                raise WireError("bad_value", f"price change entry {e!r:.40}")
            unknown += len(e.keys() - _PC_ENTRY_KEYS)
            hash_ = e.get("hash")
            if hash_ is not None and not isinstance(hash_, str):  # part of the identity: must hash
                raise WireError("bad_value", f"hash {hash_!r:.40}")
            _level_change(changes, ident, str(_need(e, "asset_id")), _need(e, "price"), _need(e, "size"),
                          _need(e, "side"), hash_, e.get("best_bid"), e.get("best_ask"))
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
            _tick(tick) if isinstance(tick, str) else None,
        ), len(obj.keys() - _BOOK_KEYS)
    if et == "tick_size_change":
        return TickSizeChange(
            str(_need(obj, "asset_id")), str(_need(obj, "market")), _tick(_need(obj, "new_tick_size")),
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


# Known events the feed does not use: nothing but a count. Their venue fields are
# declared (bounded by `Value`) and others forbidden, so the fast path never skips a
# value (msgspec's skip recurses on the C stack); anything else takes the generic path.
class _BestBidAsk(msgspec.Struct, tag_field="event_type", tag="best_bid_ask", forbid_unknown_fields=True):
    market: Value = None
    asset_id: Value = None
    best_bid: Value = None
    best_ask: Value = None
    spread: Value = None
    timestamp: Value = None


class _NewMarket(msgspec.Struct, tag_field="event_type", tag="new_market", forbid_unknown_fields=True):
    id: Value = None
    question: Value = None
    market: Value = None
    slug: Value = None
    description: Value = None
    assets_ids: Value = None
    outcomes: Value = None
    event_message: Value = None
    timestamp: Value = None


class _MarketResolved(_NewMarket, tag="market_resolved"):
    winning_asset_id: Value = None
    winning_outcome: Value = None


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
        return TickSizeChange(m.asset_id, m.market, _tick(m.new_tick_size), _int(m.timestamp, "timestamp"))
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
    return BookSnapshot(m.asset_id, m.market, _fast_levels(m.bids), _fast_levels(m.asks),
                        _int(m.timestamp, "timestamp"), m.hash, _tick(m.tick_size) if m.tick_size is not None else None)


def _fast_levels(levels: list[_Level]) -> list[tuple[int, int]]:
    out = [(_decimal(lv.price), _decimal(lv.size)) for lv in levels]
    for price, size in out:
        if not 0 < price < MICRO or size >= MAX_SIZE:
            _bad_level(price, size)
    return out


# msgspec skips, recursing on the C stack, whatever precedes a message's tag and the
# fields of the events ignored: with a raised recursion limit a deep frame overflowed
# the stack. A frame cannot nest deeper than it has brackets; one with more than this
# takes the generic path (bounded by its type). Honest frames have a few per level.
FAST_MAX_BRACKETS = 10_000


def decode_fast(text: str | bytes) -> list[Event] | None:
    """Every message of a frame of the venue's known events as events, or None when
    the frame is anything else (the caller then takes the generic path)."""
    if len(text) > FAST_MAX_BRACKETS and _brackets(text) > FAST_MAX_BRACKETS:
        return None
    try:
        data = _fast.decode(text)
        return [_fast_event(m) for m in data] if isinstance(data, list) else [_fast_event(data)]
    except (msgspec.DecodeError, msgspec.ValidationError, WireError, RecursionError):
        return None


def _brackets(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


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
