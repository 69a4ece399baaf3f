"""The CLOB REST routes py-clob-client-v2 calls, in the shapes it parses.

Public:
    GET /, /ok                          -> "OK"
    GET /time                           -> 1767225600 (epoch seconds, a bare JSON number)
    GET /version                        -> {"version": 2}
    GET /tick-size?token_id=T           -> {"minimum_tick_size": 0.01}  (the book's CURRENT tick)
    GET /neg-risk?token_id=T            -> {"neg_risk": false}
    GET /fee-rate?token_id=T            -> {"base_fee": 200}  (taker fee rate in bps)
    GET /clob-markets/{condition_id}    -> {"c": cid, "t": [{"t": token, "o": outcome}], "mts": 0.01,
                                            "mos": 5, "nr": false, "fd": {"r": 0.02, "e": 1, "to": true},
                                            "mbf": 0, "tbf": 200, "ao": true}   (the client's compact form)
    GET /markets-by-token/{token_id}    -> {"condition_id": cid, "primary_token_id": .., "secondary_token_id": ..}
L1 (EIP-712 ClobAuth headers):
    POST /auth/api-key, GET /auth/derive-api-key -> {"apiKey", "secret", "passphrase"} (the same for
         the same address and POLY_NONCE)
L2 (HMAC headers):
    POST /order                         -> see service.py
    POST /orders [order, ...] (<= 15)   -> [answer, ...], one per order (a refused one: success false + errorMsg)
    POST /v1/heartbeats {"heartbeat_id"} -> {"heartbeat_id", "error": ""}: the dead-man switch; when an
         account's heartbeats stop for sandbox.venue.heartbeat_timeout_seconds its open orders are cancelled
    GET  /data/order/{id}               -> the order (records.py) or 404
    GET  /data/orders?metadata=0x..|id=0x..|market=|asset_id=  -> {"data": [order], "next_cursor": "LTE=",
         "limit", "count"}: by metadata or id whatever its status (sandbox extension for reconciliation),
         else the open orders (none: FOK/FAK never rest)
    GET  /data/trades?id=|metadata=|market=|asset_id=  -> {"data": [trade], ...} with the trade's status
         (MATCHED, MINED, CONFIRMED, RETRYING, FAILED), bucket_index, match_time, transaction_hash
    DELETE /order {"orderID"}, DELETE /orders [ids], DELETE /cancel-all -> {"canceled": [ids],
         "not_canceled": {id: why}}: open (delayed) orders only; FOK/FAK never rest
    GET  /auth/api-keys                 -> {"apiKeys": [key]}
Sandbox only (not Polymarket): GET /sandbox/clob -> {"chain_ready", "clob": stats, "faults": stats}.

Errors are {"error": "..."} with Polymarket's texts. Numbers that the client
parses as numbers (tick, rates) are JSON numbers written from Decimals, never
floats. HTTP faults come from the venue's middleware (faults.py); `reject_orders`
is applied in POST /order. Routes another installer already added are skipped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from aiohttp import web

from actors.domain.money import micro_to_str
from actors.domain.values import Value
from sandbox.venue.clob.auth import AuthError, verify_l1
from sandbox.venue.clob.service import ClobService

END_CURSOR = "LTE="
_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode = msgspec.json.Decoder(Value).decode  # bounded depth: a deep body is a decode error


def reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _page(items: list[Any]) -> dict[str, Any]:
    return {"data": items, "next_cursor": END_CURSOR, "limit": max(1, len(items)), "count": len(items)}


def add_routes(app: web.Application, clob: ClobService, venue: Any) -> None:
    state, clock = clob.state, clob.clock

    def refuse(exc_class: type[web.HTTPError], message: str, reason: str) -> web.HTTPError:
        clob.counters[f"requests_rejected_{reason}"] += 1
        return exc_class(text=_encode({"error": message}).decode(), content_type="application/json")

    def token_book(request: web.Request) -> Any:
        token = request.query.get("token_id", "")
        if not token.isdigit():
            raise refuse(web.HTTPBadRequest, "Invalid token id", "bad_token_id")
        if token not in state.books:
            raise refuse(web.HTTPNotFound, "market not found", "unknown_token")
        return state.books[token]

    async def ok(request: web.Request) -> web.Response:
        return reply("OK")

    async def server_time(request: web.Request) -> web.Response:
        return reply(clock.time_ns() // 1_000_000_000)

    async def version(request: web.Request) -> web.Response:
        return reply({"version": 2})

    async def tick_size(request: web.Request) -> web.Response:
        return reply({"minimum_tick_size": Decimal(micro_to_str(token_book(request).tick_size))})

    async def neg_risk(request: web.Request) -> web.Response:
        return reply({"neg_risk": bool(token_book(request).neg_risk)})

    async def fee_rate(request: web.Request) -> web.Response:
        book = token_book(request)
        return reply({"base_fee": state.fee_rate_bps.get(book.market, 0)})

    async def clob_market(request: web.Request) -> web.Response:
        m = state.market_by_id.get(request.match_info["condition_id"])
        if m is None:
            raise refuse(web.HTTPNotFound, "market not found", "unknown_market")
        first = state.books[m.token_ids[0]]
        return reply({
            "c": m.condition_id, "t": [{"t": t, "o": o} for t, o in zip(m.token_ids, m.outcomes, strict=True)],
            "mts": Decimal(micro_to_str(first.tick_size)), "mos": Decimal(m.min_order_size), "nr": bool(m.neg_risk),
            "fd": {"r": Decimal(m.fee_rate), "e": getattr(m, "fee_exponent", 1), "to": True}, "mbf": 0,
            "tbf": state.fee_rate_bps[m.condition_id], "ao": m.condition_id not in state.resolved,
        })

    async def market_by_token(request: web.Request) -> web.Response:
        m = state.market_of.get(request.match_info["token_id"])
        if m is None:
            raise refuse(web.HTTPNotFound, "market not found", "unknown_token")
        other = [t for t in m.token_ids if t != m.token_ids[0]]
        return reply({"condition_id": m.condition_id, "primary_token_id": m.token_ids[0],
                      "secondary_token_id": other[0] if other else ""})

    async def api_key(request: web.Request) -> web.Response:
        try:
            address, nonce = verify_l1(request.headers, clob.keys.chain_id, clob.now_s())
        except AuthError as exc:
            clob.counters[f"auth_rejected_{exc.reason}"] += 1
            return reply({"error": str(exc)}, 401)
        clob.counters["api_keys_issued"] += 1
        return reply(clob.keys.issue(address, nonce).to_wire())

    async def l2(request: web.Request, body: bytes = b"") -> Any:
        try:
            return clob.authenticate(request.headers, request.method, request.path, body)  # counts refusals
        except AuthError as exc:
            raise web.HTTPUnauthorized(text=_encode({"error": str(exc)}).decode(),
                                       content_type="application/json") from None

    async def post_order(request: web.Request) -> web.Response:
        status, body = await clob.post_order(request.headers, request.path, await request.read())
        return reply(body, status)

    async def get_order(request: web.Request) -> web.Response:
        status, body = clob.get_order(await l2(request), request.match_info["order_id"])
        return reply(body, status)

    async def get_orders(request: web.Request) -> web.Response:
        creds = await l2(request)
        return reply(_page([r.to_wire() for r in clob.find(creds, request.query)]))

    async def get_trades(request: web.Request) -> web.Response:
        creds = await l2(request)
        return reply(_page(clob.trades(creds, request.query)))

    async def cancel(request: web.Request) -> web.Response:
        raw = await request.read()
        creds = await l2(request, raw)
        try:
            doc = _decode(raw) if raw else {}
        except msgspec.DecodeError:
            raise refuse(web.HTTPBadRequest, "Invalid order payload", "bad_cancel") from None
        if request.path == "/order":
            ids = [doc.get("orderID")] if isinstance(doc, dict) and isinstance(doc.get("orderID"), str) else None
        elif request.path == "/orders":
            ids = doc if isinstance(doc, list) and all(isinstance(i, str) for i in doc) else None
        else:  # /cancel-all
            ids = []
        if ids is None:
            raise refuse(web.HTTPBadRequest, "Invalid order payload", "bad_cancel")
        status, body = clob.cancel(creds, ids if request.path != "/cancel-all" else None)
        return reply(body, status)

    async def post_orders(request: web.Request) -> web.Response:
        status, body = await clob.post_orders(request.headers, request.path, await request.read())
        return reply(body, status)

    async def heartbeat(request: web.Request) -> web.Response:
        raw = await request.read()
        creds = await l2(request, raw)
        try:
            doc = _decode(raw) if raw else {}
        except msgspec.DecodeError:
            raise refuse(web.HTTPBadRequest, "Invalid heartbeat payload", "bad_heartbeat") from None
        hb = doc.get("heartbeat_id", "") if isinstance(doc, dict) else None
        if not isinstance(hb, str):
            raise refuse(web.HTTPBadRequest, "Invalid heartbeat payload", "bad_heartbeat")
        status, body = clob.heartbeat(creds, hb[:100])
        return reply(body, status)

    async def api_keys(request: web.Request) -> web.Response:
        creds = await l2(request)
        return reply({"apiKeys": [creds.api_key]})

    async def sandbox_status(request: web.Request) -> web.Response:
        faults = getattr(venue, "faults", None)
        return reply({"chain_ready": bool(getattr(venue, "chain_ready", True)), "clob": clob.get_stats(),
                      "faults": faults.get_stats() if faults is not None else None})

    routes = [
        ("GET", "/", ok), ("GET", "/ok", ok), ("GET", "/time", server_time), ("GET", "/version", version),
        ("GET", "/tick-size", tick_size), ("GET", "/neg-risk", neg_risk), ("GET", "/fee-rate", fee_rate),
        ("GET", "/clob-markets/{condition_id}", clob_market), ("GET", "/markets-by-token/{token_id}", market_by_token),
        ("POST", "/auth/api-key", api_key), ("GET", "/auth/derive-api-key", api_key),
        ("GET", "/auth/api-keys", api_keys),
        ("POST", "/order", post_order), ("POST", "/orders", post_orders), ("POST", "/v1/heartbeats", heartbeat),
        ("GET", "/data/order/{order_id}", get_order),
        ("GET", "/data/orders", get_orders), ("GET", "/data/trades", get_trades),
        ("DELETE", "/order", cancel), ("DELETE", "/orders", cancel), ("DELETE", "/cancel-all", cancel),
        ("GET", "/sandbox/clob", sandbox_status),
    ]
    taken = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    for method, path, handler in routes:
        if (method, path) not in taken:
            app.router.add_route(method, path, handler)
