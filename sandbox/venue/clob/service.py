"""The order flow: authenticate, verify, match against the venue's book, settle on chain.

POST /order, step by step (each refusal is counted under its reason):
  1. `reject_orders` fault on -> 503 "Trading is currently disabled ..." (counted by the injector)
  2. L2 auth (auth.py) -> 401; chain not bootstrapped yet -> 503 "the market is not yet ready ..."
  3. payload (orders.py) -> 400 "Invalid order payload: ..."
  4. owner / maker / signer must be the api key's address; EOA signatures only;
     FOK or FAK only (GTC/GTD would rest on a book this venue does not let
     takers rest on: refused, not silently downgraded); known token
  5. EIP-712 signature recovers `signer` -> else 400 "invalid signature"
  6. not seen before, by order hash or by (maker, non-zero metadata) -> else 400
     "order <id> is invalid. Duplicated." with "orderID" = the first order
  7. tick and minimum size on the book's CURRENT tick
  8. the trader's balance and allowance, read from the chain (the only await before matching)
  9. in one synchronous step (atomic w.r.t. the simulator and other requests):
     preview the fills; nothing to fill -> the order is recorded UNMATCHED and
     answered 400 with the real venue's FOK / FAK text; not enough funds for
     cost + fee -> 400 "not enough balance / allowance"; else the order is
     recorded (its metadata claimed) and executed on the book (VenueState)
 10. Settlement.settle(fillId = order hash) by the operator; receipt awaited.
     Failure -> the book execution is reverted, the order recorded UNMATCHED
     with the reason, answered 500. Steps 10+ run shielded: a client that
     hangs up cannot leave a fill unsettled.
Answer 200: {"success": true, "errorMsg": "", "orderID", "status": "matched",
"makingAmount", "takingAmount", "transactionsHashes": [tx], "tradeIDs": [order id],
"cost", "fee"} (decimal strings; BUY making = cost + fee collateral, taking =
shares; SELL making = shares, taking = cost - fee).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from actors.domain.fees import fee_rate_ppm
from actors.domain.money import micro_to_str
from actors.runtime.clock import Clock
from sandbox.venue.book import BUY
from sandbox.venue.clob.auth import ApiCreds, ApiKeys, AuthError
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
    parse_order_request,
    preview_fills,
    recover_signer,
)
from sandbox.venue.clob.records import MATCHED, UNMATCHED, DuplicateOrder, OrderRecord, OrderStore
from sandbox.venue.clob.settlement import ChainUnavailable, SettlementFailed, Settler
from sandbox.venue.state import VenueError

log = logging.getLogger(__name__)

TRADING_DISABLED = "Trading is currently disabled. Check polymarket.com for updates"
NOT_READY = "the market is not yet ready to process new orders (the sandbox chain is still being bootstrapped)"
Reply = tuple[int, dict[str, Any]]


class ClobService:
    """`state`: VenueState; `faults`: the venue's FaultInjector (or None); `settler`: chain I/O."""

    def __init__(self, state: Any, keys: ApiKeys, settler: Settler, clock: Clock, *, chain_id: int,
                 faults: Any = None, store: OrderStore | None = None, ready: Callable[[], bool] = lambda: True) -> None:
        self.state, self.keys, self.settler, self.clock, self.faults = state, keys, settler, clock, faults
        self.ready = ready  # False until the venue has bootstrapped the chain
        self.hasher = OrderHasher(chain_id)
        self.store = store or OrderStore()
        self.counters = Counter[str]()
        self._inflight: set[asyncio.Future[Any]] = set()

    def now_s(self) -> int:
        return self.clock.time_ns() // 1_000_000_000

    def authenticate(self, headers: Mapping[str, str], method: str, path: str, body: bytes) -> ApiCreds:
        try:
            return self.keys.verify_l2(headers, method, path, body, self.now_s())
        except AuthError as exc:
            self.counters[f"auth_rejected_{exc.reason}"] += 1
            raise

    # ------------------------------------------------------------ POST /order

    async def post_order(self, headers: Mapping[str, str], path: str, body: bytes) -> Reply:
        self.counters["orders_received"] += 1
        if self.faults is not None and self.faults.reject_orders:
            self.faults.count("rejected_orders")
            self.counters["orders_rejected_fault"] += 1
            return 503, {"error": TRADING_DISABLED}
        try:
            creds = self.authenticate(headers, "POST", path, body)
        except AuthError as exc:
            return 401, {"error": str(exc)}
        if not self.ready():
            self.counters["orders_rejected_chain_not_ready"] += 1
            return 503, {"error": NOT_READY}
        try:
            return await self._place(creds, parse_order_request(body))
        except OrderRejected as exc:
            self.counters[f"orders_rejected_{exc.reason}"] += 1
            return exc.status, exc.body()

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
        if o.signature_type != EOA:
            raise OrderRejected(f"signatureType {o.signature_type} is not supported by the sandbox venue: EOA (0) "
                                "only", "signature_type")
        market = self.state.market_of.get(o.token_id)
        if market is None:
            raise OrderRejected(f"Invalid order payload: unknown token id {o.token_id}", "unknown_token")
        if getattr(market, "closed", False) or not getattr(market, "accepting_orders", True):
            raise OrderRejected("the market is not yet ready to process new orders", "market_closed")
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
        try:
            funds = await self.settler.funds(o.maker, int(o.token_id), o.side == BUY)
        except ChainUnavailable as exc:
            raise OrderRejected(f"Internal server error: {exc}", "chain_unavailable", status=500) from None

        # ---- one synchronous step from here to execute_taker: nothing else can touch the book
        self._check_new(order_id, o.maker, o.metadata)
        terms = order_terms(o, book.tick_size, order_id)  # the tick may have changed during the await
        fok = req.order_type == "FOK"
        fills = preview_fills(book, o.side, terms.limit_price, terms.size, fok)
        record = OrderRecord(
            id=order_id, owner=creds.api_key, maker=o.maker, market=market.condition_id, asset_id=o.token_id,
            outcome=market.outcomes[market.token_ids.index(o.token_id)], side=o.side, order_type=req.order_type,
            original_size=terms.size, limit_price=terms.limit_price, metadata=o.metadata,
            created_ms=self.clock.time_ns() // 1_000_000, builder=o.builder,
            fee_rate_bps=self.state.fee_rate_bps.get(market.condition_id, 0))
        if not fills:
            self.store.claim(self.store.update(record, status=UNMATCHED, error="killed: no liquidity within the limit"))
            self.counters["orders_killed" if fok else "orders_fak_unmatched"] += 1
            raise OrderRejected(FOK_KILLED if fok else FAK_UNMATCHED, "killed" if fok else "fak_unmatched",
                                orderID=order_id)
        rate = fee_rate_ppm(market.fee_rate)
        cost, fee = fills_cost(o.side, fills), fills_fee(fills, rate)
        need = cost + fee if o.side == BUY else sum(s for _, s in fills)
        if need > min(funds.balance, funds.allowance):
            raise OrderRejected(NOT_ENOUGH, "balance", orderID=order_id)
        self.store.claim(record)
        try:
            execution = self.state.execute_taker(o.token_id, o.side, terms.limit_price, terms.size, fok)
        except VenueError as exc:  # checked above already; kept so a record can never stay DELAYED
            self.store.update(record, status=UNMATCHED, error=str(exc))
            raise OrderRejected(f"order {order_id} is invalid. {exc}", "invalid_order", orderID=order_id) from None
        # ---- end of the synchronous step
        task = asyncio.ensure_future(self._settle(record, execution, rate))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    async def _settle(self, record: OrderRecord, execution: Any, rate: int) -> Reply:
        fills = execution.fills
        shares = execution.filled
        cost, fee = fills_cost(record.side, fills), fills_fee(fills, rate)
        try:
            tx_hash = await self.settler.settle(bytes.fromhex(record.id[2:]), record.maker, int(record.asset_id),
                                                record.side == BUY, shares, cost, fee)
        except Exception as exc:  # SettlementFailed, or a bug: either way nothing may stay half done
            reason = exc.reason if isinstance(exc, SettlementFailed) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, SettlementFailed):
                log.exception("settlement of %s failed unexpectedly", record.id)
            self.state.revert(execution)
            self.store.update(record, status=UNMATCHED, error=f"settlement failed: {reason}",
                              transaction_hash=getattr(exc, "tx_hash", ""))
            self.counters["settlements_failed"] += 1
            return 500, {"error": f"order {record.id} could not be settled: {reason}", "orderID": record.id}
        avg = -(-execution.notional_e12 // shares)
        done = self.store.update(record, status=MATCHED, size_matched=shares, cost=cost, fee=fee, avg_price=avg,
                                 transaction_hash=tx_hash)
        self.counters["orders_matched"] += 1
        self.counters["shares_matched"] += shares
        self.counters["fees_charged"] += fee
        return 200, {"success": True, "errorMsg": "", "orderID": done.id, "status": "matched",
                     "makingAmount": micro_to_str(done.making), "takingAmount": micro_to_str(done.taking),
                     "transactionsHashes": [tx_hash] if tx_hash else [], "tradeIDs": [done.id],
                     "cost": micro_to_str(cost), "fee": micro_to_str(fee)}

    # ------------------------------------------------------------ queries and cancels

    def get_order(self, creds: ApiCreds, order_id: str) -> Reply:
        record = self.store.get(order_id)
        if record is None or record.maker.lower() != creds.address.lower():
            self.counters["requests_rejected_unknown_order"] += 1
            return 404, {"error": f"order {order_id[:80]} not found"}
        return 200, record.to_wire()

    def find(self, creds: ApiCreds, query: Mapping[str, str]) -> list[OrderRecord]:
        """The caller's orders: by `metadata` or `id` whatever their status, else the open
        ones (none: FOK/FAK never rest); `market` / `asset_id` filter further."""
        if meta := query.get("metadata"):
            r = self.store.by_metadata(creds.address, "0x" + meta.lower().removeprefix("0x").zfill(64))
            found = [r] if r else []
        elif oid := query.get("id"):
            r = self.store.get(oid)
            found = [r] if r and r.maker.lower() == creds.address.lower() else []
        else:
            found = [r for r in self.store.of_owner(creds.address) if r.status == "LIVE"]
        return [r for r in found if query.get("market", r.market) == r.market
                and query.get("asset_id", r.asset_id) == r.asset_id]

    def trades(self, creds: ApiCreds, query: Mapping[str, str]) -> list[dict[str, Any]]:
        records = self.find(creds, query) if query.get("id") or query.get("metadata") else [
            r for r in self.store.of_owner(creds.address)
            if query.get("market", r.market) == r.market and query.get("asset_id", r.asset_id) == r.asset_id]
        return [r.trade_wire() for r in records if r.status == MATCHED]

    def cancel(self, creds: ApiCreds, order_ids: list[str]) -> Reply:
        """Nothing rests on this venue: every id is 'not canceled' with the reason."""
        not_canceled: dict[str, str] = {}
        for oid in order_ids:
            r = self.store.get(oid)
            if r is None or r.maker.lower() != creds.address.lower():
                not_canceled[oid] = "order not found"
            else:
                not_canceled[oid] = (f"order can't be canceled: it is {r.status.lower()} "
                                     f"({r.order_type} orders never rest)")
        self.counters["cancel_requests"] += 1
        return 200, {"canceled": [], "not_canceled": not_canceled}

    async def close(self) -> None:
        if self._inflight:  # let settlements in flight finish: their fills are real
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self.settler.close()

    def get_stats(self) -> dict[str, Any]:
        return {**dict(self.counters), "orders_known": len(self.store), "api_keys": len(self.keys),
                "settlements_in_flight": len(self._inflight), "settler": self.settler.get_stats()}

