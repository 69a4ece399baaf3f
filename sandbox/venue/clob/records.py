"""What the venue remembers: orders and the trades they made, in Polymarket's forms.

An order is answered when it is MATCHED (or `delayed`, or killed); its trade
then moves on its own: MATCHED -> MINED -> CONFIRMED, or through RETRYING (the
settlement reverted and is resubmitted) to CONFIRMED or FAILED (terminal:
nothing moved). Tokens and collateral move only when the settlement is mined.

The V2 `metadata` field (bytes32, signed) is the client order id of this
venue: a second order from the same maker with the same NON-ZERO metadata is
refused as a duplicate, naming the first order. A metadata is claimed when the
order passed validation and the funds check (before matching): an order
refused earlier changed nothing and leaves the metadata free. Once claimed it
stays claimed, whatever the outcome: one metadata = one attempt.

Pure records: the store (store.py) keeps them, durably.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.domain.money import micro_to_str
from sandbox.venue.book import BUY
from sandbox.venue.clob.orders import ZERO32

# Order statuses (GET /data/order, the user channel).
LIVE, MATCHED, UNMATCHED, CANCELED, DELAYED = "LIVE", "MATCHED", "UNMATCHED", "CANCELED", "DELAYED"
ORDER_DONE = frozenset({MATCHED, UNMATCHED, CANCELED})
# Trade statuses.
T_MATCHED, MINED, CONFIRMED, RETRYING, FAILED = "MATCHED", "MINED", "CONFIRMED", "RETRYING", "FAILED"
TRADE_DONE = frozenset({CONFIRMED, FAILED})
SETTLED = frozenset({MINED, CONFIRMED})  # what moved on chain


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order as the venue saw it. Amounts in 1e-6 units.

    status: DELAYED while it waits for a delayed match, then MATCHED (its trade
    follows on its own), UNMATCHED (killed, or a delayed order that never
    matched: `error` says why) or CANCELED.
    """

    id: str
    owner: str  # api key
    maker: str
    market: str
    asset_id: str
    outcome: str
    side: str
    order_type: str
    original_size: int
    limit_price: int
    metadata: str
    created_ms: int
    status: str = DELAYED
    size_matched: int = 0
    cost: int = 0  # collateral for the shares matched (before fee)
    fee: int = 0
    avg_price: int = 0  # micro; 0 when nothing matched
    transaction_hash: str = ""
    error: str = ""
    builder: str = ZERO32
    fee_rate_bps: int = 0
    trade_ids: tuple[str, ...] = ()

    @property
    def making(self) -> int:
        """What the order gave: BUY collateral (cost + fee), SELL shares."""
        return self.cost + self.fee if self.side == BUY else self.size_matched

    @property
    def taking(self) -> int:
        """What the order got: BUY shares, SELL collateral (cost - fee)."""
        return self.size_matched if self.side == BUY else self.cost - self.fee

    def to_wire(self) -> dict[str, Any]:
        """GET /data/order/{id}: Polymarket's open-order fields plus the execution."""
        return {
            "id": self.id, "status": self.status, "owner": self.owner, "maker_address": self.maker,
            "market": self.market, "asset_id": self.asset_id, "side": self.side, "outcome": self.outcome,
            "original_size": micro_to_str(self.original_size), "size_matched": micro_to_str(self.size_matched),
            "price": micro_to_str(self.limit_price), "order_type": self.order_type, "expiration": "0",
            "associate_trades": list(self.trade_ids),
            "created_at": self.created_ms // 1000,
            # sandbox extensions: what actually happened
            "metadata": self.metadata, "builder": self.builder,
            "avg_price": micro_to_str(self.avg_price), "cost": micro_to_str(self.cost),
            "fee": micro_to_str(self.fee), "making_amount": micro_to_str(self.making),
            "taking_amount": micro_to_str(self.taking), "transaction_hash": self.transaction_hash,
            "error": self.error,
        }

    def user_event(self, kind: str, now_ms: int) -> dict[str, Any]:
        """The user channel's `order` event (`type` PLACEMENT | UPDATE | CANCELLATION)."""
        return {
            "event_type": "order", "type": kind, "id": self.id, "asset_id": self.asset_id, "market": self.market,
            "side": self.side, "price": micro_to_str(self.limit_price),
            "original_size": micro_to_str(self.original_size), "size_matched": micro_to_str(self.size_matched),
            "outcome": self.outcome, "owner": self.owner, "order_owner": self.owner,
            "associate_trades": list(self.trade_ids), "order_type": self.order_type, "status": self.status,
            "timestamp": str(now_ms), "created_at": str(self.created_ms // 1000), "expiration": "0",
        }


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One trade: a taker order against the venue's (operator's) liquidity.

    `fills` are [(price, size)] on the taker's token; `match_type` how the
    operator's side settles (COMPLEMENTARY, MINT, MERGE); the fill id on chain
    is the trade id. `attempts` counts settlement transactions sent.
    """

    id: str
    order_id: str
    owner: str  # api key
    maker: str  # the trader's address
    market: str
    asset_id: str
    outcome: str
    side: str
    size: int
    price: int  # average, micro
    cost: int
    fee: int
    fee_rate_bps: int
    match_type: str
    neg_risk: bool
    match_ms: int
    fills: tuple[tuple[int, int], ...] = ()
    status: str = T_MATCHED
    transaction_hash: str = ""
    error: str = ""
    updated_ms: int = 0
    attempts: int = 0
    operator: str = ""  # the maker side's address
    bucket_index: int = 0
    execution_id: int = 0  # the book execution, to give its liquidity back if the trade fails
    events: tuple[str, ...] = field(default=())  # statuses it went through, in order

    @property
    def done(self) -> bool:
        return self.status in TRADE_DONE

    def _maker_orders(self) -> list[dict[str, Any]]:
        # The venue's own liquidity, one maker order per price level taken.
        return [{"order_id": f"{self.id}:{i}", "asset_id": self.asset_id, "matched_amount": micro_to_str(size),
                 "price": micro_to_str(price), "outcome": self.outcome, "owner": "venue",
                 "maker_address": self.operator, "fee_rate_bps": "0"} for i, (price, size) in enumerate(self.fills)]

    def to_wire(self) -> dict[str, Any]:
        """GET /data/trades entry (Polymarket's field names; numbers as strings)."""
        return {
            "id": self.id, "taker_order_id": self.order_id, "market": self.market, "asset_id": self.asset_id,
            "side": self.side, "size": micro_to_str(self.size), "price": micro_to_str(self.price),
            "fee_rate_bps": str(self.fee_rate_bps), "status": self.status,
            "match_time": str(self.match_ms // 1000), "last_update": str((self.updated_ms or self.match_ms) // 1000),
            "outcome": self.outcome, "owner": self.owner, "maker_address": self.maker,
            "bucket_index": self.bucket_index,
            "transaction_hash": self.transaction_hash, "trader_side": "TAKER", "type": "TRADE",
            "maker_orders": self._maker_orders(),
            # sandbox extensions
            "fee": micro_to_str(self.fee), "cost": micro_to_str(self.cost), "match_type": self.match_type,
            "error": self.error,
        }

    def user_event(self, now_ms: int) -> dict[str, Any]:
        """The user channel's `trade` event, sent on every status change."""
        return {**self.to_wire(), "event_type": "trade", "trade_owner": self.owner, "timestamp": str(now_ms)}
