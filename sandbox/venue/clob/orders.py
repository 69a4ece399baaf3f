"""Orders: the client's POST /order payload, its EIP-712 hash and signer, its terms.

Pure: no I/O, no clock. What `py_clob_client_v2.utilities.order_to_json_v2`
sends (the body the client HMACs and posts):

    {"order": {"salt": 123, "maker": "0x..", "signer": "0x..", "tokenId": "7132..",
               "makerAmount": "4500000", "takerAmount": "10000000", "side": "BUY",
               "expiration": "0", "signatureType": 0, "timestamp": "1767225600123",
               "metadata": "0x<32 bytes>", "builder": "0x<32 bytes>", "signature": "0x.."},
     "owner": "<api key>", "orderType": "FOK", "deferExec": false, "postOnly": false}

The order id is the EIP-712 hash of the signed V2 struct (domain "Polymarket
CTF Exchange", version "2", chain id, verifyingContract = the V2 exchange, or
the neg-risk V2 exchange for neg-risk markets), computed with the client's own
`ExchangeOrderBuilderV2`. `expiration` is sent but not signed in V2.

Amounts are integers in 1e-6 units. BUY: makerAmount = collateral offered,
takerAmount = shares wanted; SELL: makerAmount = shares offered, takerAmount =
collateral wanted. The signed ratio r = collateral / shares is a limit: a BUY
fills only at ask prices <= r, a SELL only at bid prices >= r. Book prices lie
on the tick grid, so that is exactly "ask <= floor_tick(r)" / "bid >=
ceil_tick(r)": the limit handed to the matcher, with no rounding of money.
Market orders built by the client (`create_market_order`) round their share
amount to a few decimals, so r is a hair off the tick: r within 1% of a tick
of the grid is accepted; further off is the real venue's "breaks minimum tick
size rule" (e.g. an order priced on a stale finer tick).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
from eth_account import Account
from eth_utils import is_hex_address, to_checksum_address
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.order_utils import ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.order_data_v2 import OrderV2

from actors.domain.fees import taker_fee
from actors.domain.money import ONE, micro_to_str
from actors.domain.values import Value
from sandbox.venue.book import BUY, SELL

UINT256 = 2**256
ZERO32 = "0x" + "00" * 32
ORDER_TYPES = ("FOK", "FAK", "GTC", "GTD")
TAKER_TYPES = ("FOK", "FAK")  # the only ones this venue executes (module docstring of routes.py)
EOA = 0  # SignatureTypeV2.EOA: the only signature type an EOA trader uses
OFF_TICK_TOLERANCE = 100  # r may be off the grid by at most tick / 100 (client rounding of amounts)
_HEX32 = re.compile(r"^0x[0-9a-fA-F]{0,64}$")
_SIG = re.compile(r"^0x[0-9a-fA-F]{130}$")
_decode = msgspec.json.Decoder(Value).decode  # bounded depth: a deep body is a decode error

FOK_KILLED = "order couldn't be fully filled. FOK orders are fully filled or killed."
FAK_UNMATCHED = ("no orders found to match with FAK order. FAK orders are partially filled or killed if no "
                 "match is found.")
NOT_ENOUGH = "not enough balance / allowance"


class OrderRejected(Exception):
    """An order the venue refuses: HTTP `status` with {"error": message, **extra}.
    `reason` is the stable label counted in the stats."""

    def __init__(self, message: str, reason: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.message, self.reason, self.status, self.extra = message, reason, status, extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


def invalid(detail: str) -> OrderRejected:
    return OrderRejected(f"Invalid order payload: {detail}", "invalid_payload")


@dataclass(frozen=True, slots=True)
class SignedOrder:
    """One V2 order as signed; integers parsed, hex normalised (lowercase, 32 bytes)."""

    salt: int
    maker: str  # checksummed
    signer: str
    token_id: str  # canonical decimal
    maker_amount: int
    taker_amount: int
    side: str  # BUY / SELL
    signature_type: int
    timestamp: int  # ms
    metadata: str
    builder: str
    expiration: str
    signature: str


@dataclass(frozen=True, slots=True)
class OrderRequest:
    order: SignedOrder
    owner: str  # the api key the order claims to belong to
    order_type: str
    post_only: bool = False
    defer_exec: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _uint(value: Any, name: str, *, positive: bool = False) -> int:
    # JSON ints or decimal strings, as the client sends them; never floats (money).
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(f"`{name}` must be an integer or a decimal string")
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 78:
            raise invalid(f"`{name}` must be a decimal integer string, got {value[:80]!r}")
        value = int(value)
    if not 0 <= value < UINT256 or (positive and value == 0):
        raise invalid(f"`{name}` must be {'a positive' if positive else 'an'} uint256")
    return value


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not is_hex_address(value):
        raise invalid(f"`{name}` must be a 0x address")
    return to_checksum_address(value)


def _bytes32(value: Any, name: str) -> str:
    # The client signs bytes32 fields left-padded (`_hex_to_bytes32` zfills); "" and None are zero.
    if value is None or value == "":
        return ZERO32
    if not isinstance(value, str) or not _HEX32.match(value):
        raise invalid(f"`{name}` must be 0x-prefixed hex of at most 32 bytes")
    return "0x" + value[2:].lower().zfill(64)


def _side(value: Any) -> str:
    if value in ("BUY", 0, "0"):
        return BUY
    if value in ("SELL", 1, "1"):
        return SELL
    raise invalid(f"`side` must be BUY or SELL, got {str(value)[:20]!r}")


MAX_BATCH = 15  # POST /orders takes at most this many orders


def parse_order_request(body: bytes) -> OrderRequest:
    """The POST /order body -> OrderRequest; OrderRejected("Invalid order payload: ...")."""
    try:
        doc = _decode(body)
    except msgspec.DecodeError as exc:
        raise invalid(f"not JSON ({exc})") from None
    return parse_order_object(doc)


def parse_batch(body: bytes) -> list[Any]:
    """The POST /orders body: a JSON list of 1..15 order objects (each parsed on its own later)."""
    try:
        doc = _decode(body)
    except msgspec.DecodeError as exc:
        raise invalid(f"not JSON ({exc})") from None
    if not isinstance(doc, list) or not doc:
        raise invalid("expected a non-empty list of orders")
    if len(doc) > MAX_BATCH:
        raise OrderRejected(f"Too many orders in payload: {len(doc)}, max allowed: {MAX_BATCH}", "batch_too_large")
    return doc


def parse_order_object(doc: Any) -> OrderRequest:
    """One order object ({"order": {...}, "owner", "orderType", ...}) -> OrderRequest."""
    if not isinstance(doc, dict) or not isinstance(doc.get("order"), dict):
        raise invalid('expected {"order": {...}, "owner": ..., "orderType": ...}')
    o = doc["order"]
    missing = [k for k in ("salt", "maker", "signer", "tokenId", "makerAmount", "takerAmount", "side",
                           "signatureType", "timestamp", "signature") if k not in o]
    if missing:
        raise invalid(f"missing order fields {', '.join(missing)}")
    signature = o["signature"]
    if not isinstance(signature, str) or not _SIG.match(signature):
        raise invalid("`signature` must be 0x + 65 bytes of hex")
    sig_type = o["signatureType"]
    if isinstance(sig_type, bool) or not isinstance(sig_type, int) or not 0 <= sig_type <= 3:
        raise invalid("`signatureType` must be 0, 1, 2 or 3")
    order = SignedOrder(
        salt=_uint(o["salt"], "salt"),
        maker=_address(o["maker"], "maker"),
        signer=_address(o["signer"], "signer"),
        token_id=str(_uint(o["tokenId"], "tokenId")),
        maker_amount=_uint(o["makerAmount"], "makerAmount", positive=True),
        taker_amount=_uint(o["takerAmount"], "takerAmount", positive=True),
        side=_side(o["side"]),
        signature_type=sig_type,
        timestamp=_uint(o["timestamp"], "timestamp"),
        metadata=_bytes32(o.get("metadata"), "metadata"),
        builder=_bytes32(o.get("builder"), "builder"),
        expiration=str(o.get("expiration", "0"))[:32],
        signature=signature.lower(),
    )
    owner, order_type = doc.get("owner"), doc.get("orderType", "GTC")
    if not isinstance(owner, str) or not owner:
        raise invalid("`owner` (the api key) is required")
    if order_type not in ORDER_TYPES:
        raise invalid(f"`orderType` must be one of {', '.join(ORDER_TYPES)}, got {str(order_type)[:20]!r}")
    post_only, defer = doc.get("postOnly", False), doc.get("deferExec", False)
    if not isinstance(post_only, bool) or not isinstance(defer, bool):
        raise invalid("`postOnly` and `deferExec` must be booleans")
    return OrderRequest(order, owner, order_type, post_only, defer)


# ---------------------------------------------------------------- hash and signer


class OrderHasher:
    """EIP-712 order hashes with the client's own typed-data builder."""

    def __init__(self, chain_id: int) -> None:
        contracts = get_contract_config(chain_id)
        # build_order_typed_data / build_order_hash never touch the signer.
        self._builders = {neg: ExchangeOrderBuilderV2(addr, chain_id, None)  # type: ignore[arg-type]
                          for neg, addr in ((False, contracts.exchange_v2), (True, contracts.neg_risk_exchange_v2))}

    def order_hash(self, o: SignedOrder, neg_risk: bool = False) -> str:
        builder = self._builders[neg_risk]
        unsigned = OrderV2(
            salt=str(o.salt), maker=o.maker, signer=o.signer, tokenId=o.token_id,
            makerAmount=str(o.maker_amount), takerAmount=str(o.taker_amount), side=0 if o.side == BUY else 1,
            signatureType=o.signature_type, timestamp=str(o.timestamp), metadata=o.metadata, builder=o.builder)  # type: ignore[arg-type]
        return builder.build_order_hash(builder.build_order_typed_data(unsigned))


def recover_signer(order_hash: str, signature: str) -> str | None:
    """The address that signed the order hash, or None for an unusable signature."""
    try:
        return Account._recover_hash(bytes.fromhex(order_hash[2:]), signature=bytes.fromhex(signature[2:]))
    except Exception:  # bad v, s out of range ...: not a signature of anyone
        return None


# ---------------------------------------------------------------- terms and fills


@dataclass(frozen=True, slots=True)
class Terms:
    """What the order asks the matcher for: shares and a limit on the tick grid."""

    side: str
    size: int  # shares (1e-6)
    limit_price: int  # micro, on the tick grid
    collateral: int  # the signed collateral amount: BUY at most, SELL at least


def order_terms(o: SignedOrder, tick: int, order_id: str = "") -> Terms:
    """OrderRejected (reason `tick` / `price_range`) for a price off the grid or outside (0, 1)."""
    if o.side == BUY:
        collateral, shares = o.maker_amount, o.taker_amount
    else:
        collateral, shares = o.taker_amount, o.maker_amount
    num, den = collateral * ONE, shares * tick  # r / tick = num / den
    nearest = (2 * num + den) // (2 * den)
    price_text = micro_to_str(num // shares) if num % shares == 0 else f"~{micro_to_str(num // shares)}"
    if abs(num - nearest * den) * OFF_TICK_TOLERANCE > den:
        raise OrderRejected(f"order {order_id} is invalid. Price ({price_text}) breaks minimum tick size rule: "
                            f"{micro_to_str(tick)}", "tick")
    limit = (num // den if o.side == BUY else -(-num // den)) * tick
    if not 0 < limit < ONE:
        raise OrderRejected(f"invalid price ({price_text}), min: {micro_to_str(tick)} - max: "
                            f"{micro_to_str(ONE - tick)}", "price_range")
    return Terms(o.side, shares, limit, collateral)


def preview_fills(book: Any, side: str, limit: int, size: int, all_or_none: bool) -> list[tuple[int, int]]:
    """The fills `Book.take` would make now, without touching the book."""
    return book.walk(side, limit, size, all_or_none)


def fills_cost(side: str, fills: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> int:
    """Collateral for the shares (Execution.cost): a BUY pays rounded up, a SELL gets rounded down."""
    n = sum(p * s for p, s in fills)
    return -(-n // ONE) if side == BUY else n // ONE


def fills_fee(fills: list[tuple[int, int]] | tuple[tuple[int, int], ...], rate_ppm: int, exponent: int = 1) -> int:
    """The taker fee, level by level, each rounded up (actors.domain.fees, as the router estimates it)."""
    return sum(taker_fee(s, p, rate_ppm, exponent) for p, s in fills)
