"""The order flow: authenticate, verify, match against the venue's book; settlement follows.

POST /order, step by step (each refusal is counted under its reason):
  1. `reject_orders` fault on -> 503 "Trading is currently disabled ..."; matching engine
     restarting -> 425; just restarted -> only post-only orders (400 for a taker order)
  2. L2 auth (auth.py) -> 401; chain not bootstrapped yet -> 503 "the market is not yet ready ..."
  3. payload (orders.py) -> 400 "Invalid order payload: ..."
  4. owner / maker / signer must be the api key's address; EOA signatures only;
     FOK or FAK only (GTC/GTD would rest on a book this venue does not let
     takers rest on: refused, not silently downgraded); known token
  5. EIP-712 signature for the token's exchange (the neg-risk exchange for neg-risk
     tokens) recovers `signer` -> else 400 "invalid signature"
  6. not seen before, by order hash or by (maker, non-zero metadata) -> else 400
     "order <id> is invalid. Duplicated." with "orderID" = the first order
  7. tick and minimum size on the book's CURRENT tick
  8. the trader's balance and allowance on chain, less what its unsettled trades
     reserve (the only await before matching)
  9. `delayed_rate`: the order is recorded DELAYED and answered `delayed`; after
     `delay_ms` it matches (10) or ends UNMATCHED
 10. in one synchronous step (atomic w.r.t. the simulator and other requests):
     preview the fills; nothing to fill -> the order is recorded UNMATCHED and
     answered 400 with the real venue's FOK / FAK text; not enough funds for
     cost + fee -> 400 "not enough balance / allowance"; else the order is
     recorded, executed on the book (VenueState) and its trade stored MATCHED
Answer 200: {"success": true, "errorMsg": "", "orderID", "status": "matched",
"makingAmount", "takingAmount", "transactionsHashes": [], "tradeIDs": [trade id],
"cost", "fee"} (decimal strings; BUY making = cost + fee collateral, taking =
shares; SELL making = shares, taking = cost - fee). Nothing has moved yet: the
trade settles on chain afterwards (lifecycle.py) and GET /data/trades shows it
MATCHED -> MINED -> CONFIRMED (or RETRYING, FAILED).

POST /orders: at most 15 orders, each answered on its own in a list (a refused
order is one entry with `success: false` and its error, never a failed request).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from eth_utils import keccak

from actors.domain.fees import fee_rate_ppm
from actors.domain.money import micro_to_str
from actors.runtime.clock import Clock
from sandbox.venue.book import BUY
from sandbox.venue.clob.auth import ApiCreds, ApiKeys, AuthError
from sandbox.venue.clob.lifecycle import TradeLifecycle
from sandbox.venue.clob.orders import (
    EOA,
    FAK_UNMATCHED,
    FOK_KILLED,
    NOT_ENOUGH,
    TAKER_TYPES,
    OrderHasher,
    OrderRejected,
    OrderRequest,
    fills_cost,
    fills_fee,
    order_terms,
    parse_batch,
    parse_order_object,
    parse_order_request,
    recover_signer,
)
from sandbox.venue.clob.records import (
    CANCELED,
    DELAYED,
    LIVE,
    MATCHED,
    ORDER_DONE,
    UNMATCHED,
    OrderRecord,
    TradeRecord,
)
from sandbox.venue.clob.settlement import ChainUnavailable, Settler
from sandbox.venue.clob.store import DuplicateOrder, VenueStore
from sandbox.venue.faults import POST_ONLY, RESTARTING
from sandbox.venue.state import VenueError

log = logging.getLogger(__name__)

TRADING_DISABLED = "Trading is currently disabled. Check polymarket.com for updates"
NOT_READY = "the market is not yet ready to process new orders (the sandbox chain is still being bootstrapped)"
ENGINE_RESTARTING = "the matching engine is restarting; try again shortly"
POST_ONLY_WINDOW = "the matching engine just restarted: only post-only orders are accepted for now"
Reply = tuple[int, dict[str, Any]]
OrderListener = Callable[[OrderRecord, str], None]  # (record, PLACEMENT | UPDATE | CANCELLATION)


def trade_id(order_id: str, bucket: int = 0) -> str:
    """A trade's id, also its fill id on chain (bytes32): one per order and bucket."""
    return "0x" + keccak(text=f"{order_id}:{bucket}").hex()


class ClobService:
    """`state`: VenueState; `faults`: the venue's FaultInjector (or None); `settler`: chain I/O;
    `store`: orders, trades and client ids (durable when it has a path)."""

    def __init__(self, state: Any, keys: ApiKeys, settler: Settler, clock: Clock, *, chain_id: int,
                 faults: Any = None, store: VenueStore | None = None, ready: Callable[[], bool] = lambda: True,
                 settlement_latency_ms: Callable[[], int] | None = None, delay_ms: Callable[[], int] | None = None,
                 heartbeat_timeout_s: Callable[[], float] = lambda: 10.0) -> None:
        self.state, self.keys, self.settler, self.clock, self.faults = state, keys, settler, clock, faults
        self.ready = ready  # False until the venue has bootstrapped the chain
        self.hasher = OrderHasher(chain_id)
        self.store = store if store is not None else VenueStore()  # (an empty store is falsy)
        self.counters = Counter[str]()
        if settlement_latency_ms is None:
            settlement_latency_ms = (lambda: faults.current.settlement_latency_ms) if faults is not None else (
                lambda: 0)
        if delay_ms is None:
            delay_ms = (lambda: faults.current.delay_ms) if faults is not None else (lambda: 0)
        self.delay_ms = delay_ms
        self.trades_flow = TradeLifecycle(self.store, settler, state, clock, faults=faults,
                                          latency_ms=settlement_latency_ms)
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._heartbeats: dict[str, int] = {}  # api key -> monotonic ns of its last heartbeat
        self._order_listeners: list[OrderListener] = []
        self._delayed: set[asyncio.Task[Any]] = set()

    def now_s(self) -> int:
        return self.clock.time_ns() // 1_000_000_000

    def _now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    def add_order_listener(self, fn: OrderListener) -> None:
        self._order_listeners.append(fn)

    def add_trade_listener(self, fn: Callable[[TradeRecord], None]) -> None:
        self.trades_flow.add_listener(fn)

    def _order_event(self, record: OrderRecord, kind: str) -> None:
        for fn in self._order_listeners:
            try:
                fn(record, kind)
            except Exception:
                self.counters["listener_errors"] += 1
                log.exception("order listener failed on %s", record.id)

    def authenticate(self, headers: Mapping[str, str], method: str, path: str, body: bytes) -> ApiCreds:
        try:
            return self.keys.verify_l2(headers, method, path, body, self.now_s())
        except AuthError as exc:
            self.counters[f"auth_rejected_{exc.reason}"] += 1
            raise

    # ------------------------------------------------------------ POST /order, POST /orders

    def _gate(self) -> Reply | None:
        """The venue-wide refusals before anything is read: faults and the engine's phase."""
        if self.faults is None:
            return None
        if self.faults.reject_orders:
            self.faults.count("rejected_orders")
            self.counters["orders_rejected_fault"] += 1
            return 503, {"error": TRADING_DISABLED}
        if self.faults.engine_phase() == RESTARTING:
            self.faults.count("engine_restart_refusals")
            self.counters["orders_rejected_engine_restart"] += 1
            return 425, {"error": ENGINE_RESTARTING}
        return None

    def _admit(self, headers: Mapping[str, str], path: str, body: bytes) -> ApiCreds | Reply:
        """What every order POST passes first: faults, the engine, L2 auth, a ready chain."""
        refused = self._gate()
        if refused is not None:
            return refused
        try:
            creds = self.authenticate(headers, "POST", path, body)
        except AuthError as exc:
            return 401, {"error": str(exc)}
        if not self.ready():
            self.counters["orders_rejected_chain_not_ready"] += 1
            return 503, {"error": NOT_READY}
        return creds

    async def post_order(self, headers: Mapping[str, str], path: str, body: bytes) -> Reply:
        self.counters["orders_received"] += 1
        creds = self._admit(headers, path, body)
        if not isinstance(creds, ApiCreds):
            return creds
        try:
            return await self._place(creds, parse_order_request(body))
        except OrderRejected as exc:
            self.counters[f"orders_rejected_{exc.reason}"] += 1
            return exc.status, exc.body()

    async def post_orders(self, headers: Mapping[str, str], path: str, body: bytes) -> Reply:
        """A batch: each order placed in turn and answered on its own."""
        self.counters["batches_received"] += 1
        creds = self._admit(headers, path, body)
        if not isinstance(creds, ApiCreds):
            return creds
        try:
            docs = parse_batch(body)
        except OrderRejected as exc:
            self.counters[f"batches_rejected_{exc.reason}"] += 1
            return exc.status, exc.body()
        answers: list[dict[str, Any]] = []
        for doc in docs:
            self.counters["orders_received"] += 1
            try:
                _, answer = await self._place(creds, parse_order_object(doc))
            except OrderRejected as exc:
                self.counters[f"orders_rejected_{exc.reason}"] += 1
                answer = {"success": False, "errorMsg": exc.args[0], "orderID": exc.extra.get("orderID", ""),
                          "status": "", "makingAmount": "", "takingAmount": "", "transactionsHashes": [],
                          "tradeIDs": []}
            answers.append(answer)
        return 200, answers  # type: ignore[return-value]

    def _validate(self, creds: ApiCreds, req: OrderRequest) -> tuple[Any, str]:
        """Steps 4-6: (market, order id) or OrderRejected."""
        o = req.order
        if req.owner != creds.api_key or o.maker.lower() != creds.address.lower():
            raise OrderRejected("the order owner has to be the owner of the API KEY", "owner")
        if o.signer.lower() != creds.address.lower():
            raise OrderRejected("the order signer address has to be the address of the API KEY", "signer")
        if req.order_type not in TAKER_TYPES:
            raise OrderRejected(f"order type {req.order_type} is not supported by the sandbox venue: only FOK and "
                                "FAK (orders never rest on its book)", "unsupported_order_type")
        if req.post_only:
            raise OrderRejected("post_only is not supported for FOK/FAK orders", "post_only")
        if self.faults is not None and self.faults.engine_phase() == POST_ONLY:
            self.faults.count("post_only_refusals")
            raise OrderRejected(POST_ONLY_WINDOW, "post_only_window")
        if o.signature_type != EOA:
            raise OrderRejected(f"signatureType {o.signature_type} is not supported by the sandbox venue: EOA (0) "
                                "only", "signature_type")
        market = self.state.market_of.get(o.token_id)
        if market is None:
            raise OrderRejected(f"Invalid order payload: unknown token id {o.token_id}", "unknown_token")
        if market.condition_id in self.state.resolved:
            raise OrderRejected("the market is closed: it has resolved and no longer accepts orders", "market_closed")
        order_id = self.hasher.order_hash(o, bool(market.neg_risk))
        if (recover_signer(order_id, o.signature) or "").lower() != o.signer.lower():
            raise OrderRejected("invalid signature", "signature", orderID=order_id)
        self._check_new(order_id, o.maker, o.metadata)
        return market, order_id

    def _check_new(self, order_id: str, maker: str, metadata: str) -> None:
        try:
            self.store.check_new(order_id, maker, metadata)
        except DuplicateOrder as dup:
            first = dup.first.id
            detail = "" if first == order_id else f" (metadata {metadata} was used by order {first})"
            raise OrderRejected(f"order {order_id} is invalid. Duplicated.{detail}", "duplicate", orderID=first,
                                status_of_first=dup.first.status) from None

    async def _place(self, creds: ApiCreds, req: OrderRequest) -> Reply:
        o = req.order
        market, order_id = self._validate(creds, req)
        book = self.state.book(o.token_id)
        terms = order_terms(o, book.tick_size, order_id)
        if terms.size < book.min_order_size:
            raise OrderRejected(f"order {order_id} is invalid. Size ({micro_to_str(terms.size)}) lower than the "
                                f"minimum: {micro_to_str(book.min_order_size)}", "min_size")
        neg_risk = bool(market.neg_risk)
        try:
            funds = await self.settler.funds(o.maker, int(o.token_id), o.side == BUY, neg_risk)
        except ChainUnavailable as exc:
            raise OrderRejected(f"Internal server error: {exc}", "chain_unavailable", status=500) from None

        # ---- one synchronous step from here to the match: nothing else can touch the book
        self._check_new(order_id, o.maker, o.metadata)
        record = OrderRecord(
            id=order_id, owner=creds.api_key, maker=o.maker, market=market.condition_id, asset_id=o.token_id,
            outcome=market.outcomes[market.token_ids.index(o.token_id)], side=o.side, order_type=req.order_type,
            original_size=terms.size, limit_price=terms.limit_price, metadata=o.metadata,
            created_ms=self._now_ms(), builder=o.builder,
            fee_rate_bps=self.state.fee_rate_bps.get(market.condition_id, 0))
        if self.faults is not None and self.faults.order_delayed():
            self.store.claim(record)
            self._order_event(record, "PLACEMENT")
            self.counters["orders_delayed"] += 1
            task = asyncio.ensure_future(self._delayed_match(record, market, req, funds))
            self._delayed.add(task)
            task.add_done_callback(self._delayed.discard)
            return 200, {"success": True, "errorMsg": "", "orderID": order_id, "status": "delayed",
                         "makingAmount": "0", "takingAmount": "0", "transactionsHashes": [], "tradeIDs": []}
        return self._match(record, market, req, funds, claim=True)

    async def _delayed_match(self, record: OrderRecord, market: Any, req: OrderRequest, funds: Any) -> None:
        await self.clock.sleep(self.delay_ms() / 1000)
        current = self.store.get(record.id)
        if current is None or current.status != DELAYED:
            return  # cancelled meanwhile
        if self.faults is not None and self.faults.delayed_unmatched():
            self._finish(current, UNMATCHED, "the delayed order was not matched")
            return
        try:
            self._match(current, market, req, funds, claim=False)
        except OrderRejected as exc:
            self.counters[f"delayed_orders_{exc.reason}"] += 1
            latest = self.store.get(record.id) or current
            if latest.status == DELAYED:
                self._finish(latest, UNMATCHED, exc.args[0])

    def _finish(self, record: OrderRecord, status: str, error: str) -> OrderRecord:
        done = self.store.update(record, status=status, error=error)
        self._order_event(done, "CANCELLATION")
        return done

    def _match(self, record: OrderRecord, market: Any, req: OrderRequest, funds: Any, *, claim: bool) -> Reply:
        """Step 10, synchronous: match on the book and store the trade, or OrderRejected."""
        o = req.order
        book = self.state.book(o.token_id)
        terms = order_terms(o, book.tick_size, record.id)  # the tick may have changed during the await
        fok = req.order_type == "FOK"
        fills = book.walk(o.side, terms.limit_price, terms.size, fok)
        if not fills:
            killed = self.store.update(record, status=UNMATCHED, error="killed: no liquidity within the limit")
            if claim:
                self.store.claim(killed)
            self._order_event(killed, "CANCELLATION")
            self.counters["orders_killed" if fok else "orders_fak_unmatched"] += 1
            raise OrderRejected(FOK_KILLED if fok else FAK_UNMATCHED, "killed" if fok else "fak_unmatched",
                                orderID=record.id)
        rate = fee_rate_ppm(market.fee_rate)
        exponent = getattr(market, "fee_exponent", 1)
        cost, fee = fills_cost(o.side, fills), fills_fee(fills, rate, exponent)
        if o.side == BUY:
            need, have = cost + fee, min(funds.balance - self.trades_flow.reserved(o.maker), funds.allowance)
        else:
            need = sum(s for _, s in fills)
            have = min(funds.balance - self.trades_flow.reserved(o.maker, o.token_id), funds.allowance)
        if need > have:  # refused: an immediate order's metadata stays free for a corrected one
            raise OrderRejected(NOT_ENOUGH, "balance", orderID=record.id)
        try:
            execution = self.state.execute_taker(o.token_id, o.side, terms.limit_price, terms.size, fok)
        except VenueError as exc:  # checked above already
            raise OrderRejected(f"order {record.id} is invalid. {exc}", "invalid_order", orderID=record.id) from None
        shares = execution.filled
        tid = trade_id(record.id)
        now = self._now_ms()
        avg = -(-execution.notional_e12 // shares)
        trade = TradeRecord(
            id=tid, order_id=record.id, owner=record.owner, maker=record.maker, market=record.market,
            asset_id=record.asset_id, outcome=record.outcome, side=record.side, size=shares, price=avg, cost=cost,
            fee=fee, fee_rate_bps=record.fee_rate_bps, match_type=execution.match_type, neg_risk=bool(market.neg_risk),
            match_ms=now, fills=tuple(execution.fills), updated_ms=now, operator=self.settler.operator,
            execution_id=execution.id, events=("MATCHED",))
        matched = OrderRecord(**{**_fields(record), "status": MATCHED, "size_matched": shares, "cost": cost,
                                 "fee": fee, "avg_price": avg, "trade_ids": (tid,)})
        if claim:
            self.store.claim(record)
            self._order_event(OrderRecord(**{**_fields(record), "status": LIVE}), "PLACEMENT")
        self.store.add_trade(trade, matched)
        self._order_event(matched, "UPDATE")
        self.counters["orders_matched"] += 1
        self.counters["shares_matched"] += shares
        self.counters["fees_charged"] += fee
        self.trades_flow.matched(trade, execution)
        return 200, {"success": True, "errorMsg": "", "orderID": record.id, "status": "matched",
                     "makingAmount": micro_to_str(matched.making), "takingAmount": micro_to_str(matched.taking),
                     "transactionsHashes": [], "tradeIDs": [tid], "cost": micro_to_str(cost), "fee": micro_to_str(fee)}

    # ------------------------------------------------------------ queries and cancels

    def get_order(self, creds: ApiCreds, order_id: str) -> Reply:
        record = self.store.get(order_id)
        if record is None or record.maker.lower() != creds.address.lower():
            self.counters["requests_rejected_unknown_order"] += 1
            return 404, {"error": f"order {order_id[:80]} not found"}
        return 200, record.to_wire()

    def find(self, creds: ApiCreds, query: Mapping[str, str]) -> list[OrderRecord]:
        """The caller's orders: by `metadata` or `id` whatever their status, else the open
        ones (DELAYED; FOK/FAK never rest); `market` / `asset_id` filter further."""
        if meta := query.get("metadata"):
            r = self.store.by_metadata(creds.address, "0x" + meta.lower().removeprefix("0x").zfill(64))
            found = [r] if r else []
        elif oid := query.get("id"):
            r = self.store.get(oid)
            found = [r] if r and r.maker.lower() == creds.address.lower() else []
        else:
            found = [r for r in self.store.of_owner(creds.address) if r.status not in ORDER_DONE]
        return [r for r in found if query.get("market", r.market) == r.market
                and query.get("asset_id", r.asset_id) == r.asset_id]

    def trades(self, creds: ApiCreds, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """The caller's trades (`id` = trade id; `metadata` = its order's client id), newest last."""
        if tid := query.get("id"):
            t = self.store.trade(tid)
            found = [t] if t and t.maker.lower() == creds.address.lower() else []
        elif query.get("metadata"):
            ids = {i for r in self.find(creds, query) for i in r.trade_ids}
            found = [t for i in ids if (t := self.store.trade(i)) is not None]
        else:
            found = self.store.trades_of(creds.address)
        return [t.to_wire() for t in found if query.get("market", t.market) == t.market
                and query.get("asset_id", t.asset_id) == t.asset_id]

    def cancel(self, creds: ApiCreds, order_ids: list[str] | None) -> Reply:
        """Cancel the caller's open (DELAYED) orders: these ids, or all of them (None)."""
        if order_ids is None:
            order_ids = [r.id for r in self.store.of_owner(creds.address) if r.status == DELAYED]
        canceled: list[str] = []
        not_canceled: dict[str, str] = {}
        for oid in order_ids:
            r = self.store.get(oid)
            if r is None or r.maker.lower() != creds.address.lower():
                not_canceled[oid] = "order not found"
            elif r.status != DELAYED:
                not_canceled[oid] = f"order can't be canceled: it is {r.status.lower()}"
            else:
                self._finish(r, CANCELED, "canceled by its owner")
                canceled.append(r.id)
        self.counters["cancel_requests"] += 1
        self.counters["orders_canceled"] += len(canceled)
        return 200, {"canceled": canceled, "not_canceled": not_canceled}

    # ------------------------------------------------------------ heartbeats (the dead-man switch)

    def heartbeat(self, creds: ApiCreds, heartbeat_id: str) -> Reply:
        self._heartbeats[creds.api_key] = self.clock.monotonic_ns()
        self.counters["heartbeats"] += 1
        return 200, {"heartbeat_id": heartbeat_id or "0x" + keccak(text=f"{creds.api_key}:hb").hex()[:32],
                     "error": ""}

    def expire_heartbeats(self) -> int:
        """Cancel the open orders of every account whose heartbeats stopped; the count."""
        now, window = self.clock.monotonic_ns(), int(self.heartbeat_timeout_s() * 1e9)
        cancelled = 0
        for key, last in list(self._heartbeats.items()):
            if now - last <= window:
                continue
            del self._heartbeats[key]
            self.counters["heartbeat_expirations"] += 1
            for r in self.store.orders():
                if r.owner == key and r.status == DELAYED:
                    self._finish(r, CANCELED, "canceled: heartbeats stopped")
                    cancelled += 1
        self.counters["heartbeat_cancellations"] += cancelled
        return cancelled

    # ------------------------------------------------------------ lifecycle

    async def on_chain_ready(self) -> None:
        """Bind the store to this chain (a new world clears the old one's records), then
        finish the trades a previous run left open."""
        try:
            world = await self.settler.genesis_hash()
        except Exception as exc:  # the chain answered the bootstrap a moment ago: retry later
            log.warning("could not read the chain's genesis hash: %s", exc)
            return
        if self.store.adopt_world(world):
            self.counters["stale_world_cleared"] += 1
            log.warning("the venue store held another chain's orders and trades: cleared")
        self.trades_flow.resume()

    async def close(self) -> None:
        for task in list(self._delayed):
            task.cancel()
        await asyncio.gather(*self._delayed, return_exceptions=True)
        await self.trades_flow.close()
        await self.settler.close()
        self.store.close()

    def get_stats(self) -> dict[str, Any]:
        return {**dict(self.counters), "orders_known": len(self.store), "api_keys": len(self.keys),
                "trades": self.trades_flow.get_stats(), "store": self.store.get_stats(),
                "heartbeating_accounts": len(self._heartbeats), "settler": self.settler.get_stats()}


def _fields(record: OrderRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}  # type: ignore[attr-defined]
