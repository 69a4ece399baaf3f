"""Typed messages of the bus: the envelope and every body type.

Frozen msgspec Structs; a body is a tagged union member whose tag (`type`) is
the message type, so decoding validates the type and the fields in one pass.
A message is never mutated after publishing: build a new one.

Wire form: multipart `[topic, envelope]`, the envelope msgspec-encoded msgpack.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from actors.domain.enums import CircuitState, SetKind, Side, TxStatus
from actors.domain.values import Mapping, Value

SCHEMA_VERSION = 1

# A per-topic sequence number: a publisher counts from 1 per boot and never gets near
# 2^53; a forged 2^64 - 1 once overflowed a subscriber's stats (its gap count).
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
# What the server's reply cache is keyed by: bounded, so its memory is.
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class _Body(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class Stats(_Body, tag="stats"):
    """An actor's statistics: the `get_stats()` dicts of its components.

    Example body: {"type": "stats", "actor": "nonce", "stats": {"nonce": {...}}}
    """

    actor: str
    stats: Mapping


class BreakerState(_Body, tag="breaker_state"):
    """The executor's circuit-breaker state, on every transition and each second.

    state: CLOSED | OPEN | HALF_OPEN | FORCED_OPEN
    since_ns: wall time of the last transition; until_ns: when OPEN ends, if known.
    """

    state: CircuitState
    reason: str
    since_ns: int
    until_ns: int | None = None


class SnapshotRequest(_Body, tag="snapshot_request"):
    """Clone pattern: ask a publisher for the current value of every key under a prefix."""

    prefix: str


class SnapshotEntry(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    seq: Seq  # the sequence number this value was published with
    body: EntryBody  # never a snapshot: a snapshot in a snapshot would nest without bound


class Snapshot(_Body, tag="snapshot"):
    """Clone pattern reply: the latest value of every topic under a prefix.

    After applying it, a subscriber discards updates of a topic whose seq is at
    or below that entry's `seq` (same source and boot id).
    """

    source: str
    boot_id: str
    entries: list[SnapshotEntry]


class RpcRequest(_Body, tag="rpc_request"):
    """A request: `request_id` makes retries idempotent (server replays its reply)."""

    request_id: RequestId
    method: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    params: Mapping = {}


class RpcReply(_Body, tag="rpc_reply"):
    request_id: str
    ok: bool
    result: Value = None
    error: str | None = None


class BookUpdate(_Body, tag="book"):
    """One token's order book as the feed knows it (prices and sizes in 1e-6 units).

    bids / asks: [[price, size], ...] best first, up to the configured depth.
    valid=False means "do not trade on this": the feed lost continuity
    (disconnect, tick-size change, inconsistency) and awaits a fresh snapshot;
    `reason` says why. venue_ts_ms: the venue's timestamp of the last change
    applied; recv_ns: when the feed received it.
    more=True: another book of the same market, changed by the same venue
    messages, follows at once (one venue message moves both books of a binary
    market): a consumer that looks at the market as a whole waits for the
    last one, or it sees a new book next to an old one, a pair that never
    existed on the venue.
    flush_more=True: another book of the same flush follows (any market); the
    last book of a flush has it false. A neg-risk event's m markets move in
    one venue message, and a flush can reach a subscriber split across its
    reads: an event is judged only once the flush's last book is in. Defaults
    false, so an older feed's books each end their flush.
    Example: {"type": "book", "token_id": "7132...", "market": "0x5f...", "valid": true,
              "bids": [[610000, 200000000]], "asks": [[630000, 150000000]], ...}
    """

    token_id: str
    market: str
    valid: bool
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    venue_ts_ms: int
    recv_ns: int
    tick_size: int
    reason: str = ""
    more: bool = False
    flush_more: bool = False


class FeedStatus(_Body, tag="feed_status"):
    """The feed's connection state: published on every change and each second."""

    connections: int
    connected: int
    assets: int
    valid_books: int
    heartbeat_ok: bool


class Leg(msgspec.Struct, frozen=True, kw_only=True):
    """One order of a complete-set trade (1e-6 units).

    side: BUY or SELL; limit_price: the worst price the leg may fill at (the
    deepest level the router counted on); size: shares; cost: expected
    notional of the fill (price * size summed over levels); fee: expected taker fee.
    """

    token_id: str
    side: Side
    limit_price: int
    size: int
    cost: int
    fee: int


class Signal(_Body, tag="signal"):
    """A complete-set arbitrage opportunity, from the router to the executor.

    kind: BUY_SET (buy every outcome, merge the set into collateral),
    SELL_SET (split collateral into a set, sell every outcome) or NO_BASKET
    (buy one NO of every outcome of a neg-risk event, legs in question order,
    and convert them through the NegRiskAdapter into m - 1 collateral).
    size: sets (1e-6 shares). expected_profit: micro-USDC after fees, before gas.
    book_ts_ms: the venue timestamp of each book used; expires_ns: after this
    wall time the executor drops it unexecuted.
    market: the condition id of a binary set; the event (its adapter market id)
    of a NO_BASKET.
    neg_risk_market_id: NO_BASKET only: the NegRiskAdapter market id (bytes32
    hex) the legs convert in; convert_fee_bips: the adapter's feeBips of that
    market the router priced in. Both default, so older messages still decode.
    """

    signal_id: str
    market: str
    kind: SetKind
    legs: list[Leg]
    size: int
    expected_profit: int
    book_ts_ms: dict[str, int]
    created_ns: int
    expires_ns: int
    neg_risk_market_id: str = ""
    convert_fee_bips: int = 0


class TxResult(_Body, tag="tx_result"):
    """The outcome of one signal's execution, published by the executor.

    status: a TxStatus (SUCCESS, REJECTED, EXPIRED, STALE, FAILED, PARTIAL_UNWOUND,
    DUPLICATE, PENDING). realized_pnl and gas_cost in micro-USDC.
    kind: the signal's strategy (BUY_SET, SELL_SET, NO_BASKET); None from an
    executor that did not say. legs: the signal's leg count; latency_us: from the
    signal's creation to this result (wall clocks of two processes), None if unknown.
    Both default, so older messages still decode.
    """

    signal_id: str
    idempotency_key: str
    market: str
    status: TxStatus
    success: bool
    attempt: int
    tx_hash: str | None = None
    nonce: int | None = None
    error: str | None = None
    realized_pnl: int = 0
    gas_cost: int = 0
    kind: SetKind | None = None
    legs: int = 0
    latency_us: int | None = None


# The values a snapshot entry can carry (what publishers keep the latest of).
EntryBody = Stats | BreakerState | BookUpdate | FeedStatus | Signal | TxResult

Body = (Stats | BreakerState | SnapshotRequest | Snapshot | RpcRequest | RpcReply | BookUpdate | FeedStatus
        | Signal | TxResult)


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """Header and body of every bus message.

    v: schema version; source: actor name; boot_id: random per process start
    (a new boot id resets sequence tracking); seq: per-topic sequence number
    from 1; event_ns / publish_ns: when the event happened and when it was
    sent (wall ns); trace_id: follows one opportunity through the actors.
    """

    v: int
    source: str
    boot_id: str
    seq: Seq
    event_ns: int
    publish_ns: int
    trace_id: str
    body: Body

    @property
    def type(self) -> str:
        return type(self.body).__struct_config__.tag  # type: ignore[return-value]

