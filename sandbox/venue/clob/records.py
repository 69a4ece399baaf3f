"""What the venue remembers about orders: by id, and by (maker, metadata).

The V2 `metadata` field (bytes32, signed) is the client order id of this
venue: a second order from the same maker with the same NON-ZERO metadata is
refused as a duplicate, naming the first order. An executor that derives
metadata from its idempotency key therefore can never execute an attempt
twice, and can find out what became of it (`by_metadata`) after a timeout.

A metadata is claimed when the order passed validation and the funds check
(before matching): an order refused earlier changed nothing and leaves the
metadata free for a corrected order. Once claimed it stays claimed, whatever
the outcome (matched, killed, settlement failed): one metadata = one attempt.

Records are kept in memory, the newest `max_orders`; beyond that the oldest
are forgotten (and their metadata with them). Pure: times are passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from actors.domain.money import micro_to_str
from sandbox.venue.book import BUY
from sandbox.venue.clob.orders import ZERO32

MATCHED, UNMATCHED, CANCELED, DELAYED = "MATCHED", "UNMATCHED", "CANCELED", "DELAYED"
MAX_ORDERS = 200_000


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order as the venue saw it. Amounts in 1e-6 units.

    status: DELAYED while it is being matched and settled, then MATCHED
    (filled, settled on chain), UNMATCHED (killed, or its settlement failed:
    `error` says why; nothing changed hands) or CANCELED.
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
            "associate_trades": [self.id] if self.status == MATCHED else [],
            "created_at": self.created_ms // 1000,
            # sandbox extensions: what actually happened
            "metadata": self.metadata, "builder": self.builder,
            "avg_price": micro_to_str(self.avg_price), "cost": micro_to_str(self.cost),
            "fee": micro_to_str(self.fee), "making_amount": micro_to_str(self.making),
            "taking_amount": micro_to_str(self.taking), "transaction_hash": self.transaction_hash,
            "error": self.error,
        }

    def trade_wire(self) -> dict[str, Any]:
        """GET /data/trades entry: one trade per matched order, its id = the order id."""
        return {
            "id": self.id, "taker_order_id": self.id, "market": self.market, "asset_id": self.asset_id,
            "side": self.side, "size": micro_to_str(self.size_matched), "price": micro_to_str(self.avg_price),
            "fee_rate_bps": str(self.fee_rate_bps), "fee": micro_to_str(self.fee), "status": "CONFIRMED",
            "match_time": str(self.created_ms // 1000), "outcome": self.outcome, "owner": self.owner,
            "maker_address": self.maker, "transaction_hash": self.transaction_hash, "trader_side": "TAKER",
            "maker_orders": [],
        }


class DuplicateOrder(Exception):
    def __init__(self, first: OrderRecord) -> None:
        super().__init__(first.id)
        self.first = first


class OrderStore:
    def __init__(self, max_orders: int = MAX_ORDERS) -> None:
        self.max_orders = max_orders
        self._by_id: OrderedDict[str, OrderRecord] = OrderedDict()
        self._by_meta: dict[tuple[str, str], str] = {}  # (maker lowercase, metadata) -> order id

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, order_id: str) -> OrderRecord | None:
        return self._by_id.get(order_id.lower())

    def by_metadata(self, maker: str, metadata: str) -> OrderRecord | None:
        order_id = self._by_meta.get((maker.lower(), metadata.lower()))
        return self._by_id.get(order_id) if order_id else None

    def check_new(self, order_id: str, maker: str, metadata: str) -> None:
        """DuplicateOrder if this order, or its non-zero metadata for this maker, was seen."""
        first = self._by_id.get(order_id.lower())
        if first is None and metadata != ZERO32:
            first = self.by_metadata(maker, metadata)
        if first is not None:
            raise DuplicateOrder(first)

    def claim(self, record: OrderRecord) -> None:
        """Record a new order (status DELAYED) and claim its metadata; call check_new first,
        with no await in between, so two concurrent requests cannot both pass."""
        self.check_new(record.id, record.maker, record.metadata)
        self._by_id[record.id] = record
        if record.metadata != ZERO32:
            self._by_meta[(record.maker.lower(), record.metadata)] = record.id
        while len(self._by_id) > self.max_orders:
            _, old = self._by_id.popitem(last=False)
            if self._by_meta.get((old.maker.lower(), old.metadata)) == old.id:
                del self._by_meta[(old.maker.lower(), old.metadata)]

    def update(self, record: OrderRecord, **changes: Any) -> OrderRecord:
        """Replace a record with changed fields (records are frozen); returns the new one."""
        new = replace(record, **changes)
        if new.id in self._by_id:
            self._by_id[new.id] = new
        return new

    def of_owner(self, owner_address: str) -> list[OrderRecord]:
        who = owner_address.lower()
        return [r for r in self._by_id.values() if r.maker.lower() == who]
