"""Market-data REST routes in Polymarket's CLOB formats.

    GET  /book?token_id=T        the book of T (ground truth for tests: never faulted)
         -> {market, asset_id, timestamp, hash, bids: [{price, size}], asks: [...],
             min_order_size, tick_size, neg_risk, last_trade_price}   (bids ascending,
             asks descending, all strings; 400 without token_id, 404 unknown token)
    POST /books  [{"token_id": T}, ...]  -> [book, ...] (unknown tokens left out)
    GET  /markets?next_cursor=C  -> {"limit", "count", "next_cursor", "data": [market]}; the cursor
         is base64 of the offset ("MA==" = start, "" too), "LTE=" (base64 "-1") = no more pages
    GET  /markets/{condition_id} -> the market object (404 unknown)
A market object: condition_id, question_id, question, market_slug, tokens [{token_id,
outcome, price, winner}], minimum_tick_size, minimum_order_size, neg_risk, active,
closed, accepting_orders, maker_base_fee, taker_base_fee (bps) ... Like the real API,
tick, size and price are JSON numbers; they are written from Decimals, never floats.
"""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from typing import Any

import msgspec
from aiohttp import web

from actors.domain.money import micro_to_str

END_CURSOR = "LTE="  # base64("-1")
START_CURSOR = "MA=="  # base64("0")
PAGE_SIZE = 1000
_encode = msgspec.json.Encoder(decimal_format="number").encode


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)


def encode_cursor(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


def decode_cursor(cursor: str) -> int:
    """Offset of a cursor; -1 for the end; ValueError for garbage."""
    if cursor == "":
        return 0
    try:
        offset = int(base64.b64decode(cursor, validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"invalid next_cursor {cursor!r}") from None
    if offset < -1:
        raise ValueError(f"invalid next_cursor {cursor!r}")
    return offset


def market_object(market: Any, price_of: Any, *, closed: bool = False, winner: str = "") -> dict[str, Any]:
    """Polymarket's market object for one MarketInfo (one binary condition); `price_of(token)
    -> micro price`. Neg-risk markets carry their event's `neg_risk_market_id` and their
    question id as `neg_risk_request_id`; a resolved market is closed, not accepting orders,
    and names its winning token."""
    neg_risk = bool(getattr(market, "neg_risk", False))
    return {
        "enable_order_book": True,
        "active": not closed,
        "closed": closed,
        "archived": False,
        "accepting_orders": not closed,
        "minimum_order_size": Decimal(market.min_order_size),
        "minimum_tick_size": Decimal(market.tick_size),
        "condition_id": market.condition_id,
        "question_id": market.question_id,
        "question": market.question,
        "description": "",
        "market_slug": market.slug,
        "end_date_iso": None,
        "maker_base_fee": 0,
        "taker_base_fee": int(market.fee_rate * 10_000),
        "neg_risk": neg_risk,
        "neg_risk_market_id": getattr(market, "neg_risk_market_id", "") if neg_risk else "",
        "neg_risk_request_id": market.question_id if neg_risk else "",
        "is_50_50_outcome": False,
        "tags": ["Placeholder"] if getattr(market, "placeholder", False) else
                ["Other"] if getattr(market, "other", False) else [],
        "tokens": [
            {"token_id": t, "outcome": o, "price": Decimal(micro_to_str(price_of(t))), "winner": t == winner}
            for t, o in zip(market.token_ids, market.outcomes, strict=True)
        ],
    }


def install(app: web.Application, venue: Any) -> None:
    """Add the routes; `venue` has `.state` (VenueState) and `.sim` (Simulator, for prices)."""
    state = venue.state

    async def get_book(request: web.Request) -> web.Response:
        token = request.query.get("token_id", "")
        if not token:
            return _error("Invalid token id", 400)
        if token not in state.books:
            return _error("No orderbook exists for the requested token id", 404)
        return _json(state.books[token].to_rest())

    async def post_books(request: web.Request) -> web.Response:
        try:
            body = msgspec.json.decode(await request.read())
            tokens = [str(item["token_id"]) for item in body]
        except (msgspec.DecodeError, TypeError, KeyError):
            return _error('body must be [{"token_id": "..."}, ...]', 400)
        return _json([state.books[t].to_rest() for t in tokens if t in state.books])

    async def get_markets(request: web.Request) -> web.Response:
        try:
            offset = decode_cursor(request.query.get("next_cursor", ""))
            limit = min(PAGE_SIZE, max(1, int(request.query.get("limit", PAGE_SIZE))))
        except ValueError as exc:
            return _error(str(exc), 400)
        page = state.markets[offset:offset + limit] if offset >= 0 else []
        nxt = offset + len(page)
        return _json({
            "limit": limit,
            "count": len(page),
            "next_cursor": encode_cursor(nxt) if offset >= 0 and nxt < len(state.markets) else END_CURSOR,
            "data": [market_object(m, venue.sim.mid, closed=m.condition_id in state.resolved,
                                   winner=state.resolved.get(m.condition_id, "")) for m in page],
        })

    async def get_market(request: web.Request) -> web.Response:
        market = state.market_by_id.get(request.match_info["condition_id"])
        if market is None:
            return _error("market not found", 404)
        return _json(market_object(market, venue.sim.mid, closed=market.condition_id in state.resolved,
                                   winner=state.resolved.get(market.condition_id, "")))

    app.router.add_get("/book", get_book)
    app.router.add_post("/books", post_books)
    app.router.add_get("/markets", get_markets)
    app.router.add_get("/markets/{condition_id}", get_market)
