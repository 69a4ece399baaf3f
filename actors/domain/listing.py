"""Token ids from the CLOB's market listing (`GET /markets`, cursor-paginated),
exactly as the feed would discover them live.

The listing is the venue's answer, not ours: a page that is not the paged
object, a market whose tokens or fee are not what they should be, raises
`ListingError` (a ValueError) for the whole listing, so the caller counts it,
keeps the previous listing and asks again; never a TypeError that kills the
actor (a crash loop, live).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN
from typing import Any

import aiohttp
import msgspec

from actors.domain.money import to_micro_or
from actors.domain.values import Mapping

END_CURSOR = "LTE="  # Polymarket's "no more pages"
MAX_PAGE_BYTES = 64 * 1024 * 1024  # a page of 500 markets is about 1 MB
MAX_FEE_BPS = 10_000

_page_decoder = msgspec.json.Decoder(Mapping)  # bounded depth: a deep answer is a DecodeError


class ListingError(ValueError):
    """The market listing is malformed: refused as a whole."""


@dataclass(frozen=True, slots=True)
class Market:
    condition_id: str
    question: str
    token_ids: tuple[str, ...]
    outcomes: tuple[str, ...]
    active: bool
    fee_rate_bps: int = 0  # taker fee rate in basis points (Polymarket's taker_base_fee)
    tick_size: int = 10_000  # micro-USDC
    min_order_size: int = 0  # micro-shares
    neg_risk: bool = False
    neg_risk_market_id: str = ""  # the event's NegRiskAdapter market id (bytes32 hex), neg risk only
    neg_risk_request_id: str = ""  # the outcome's question id: the market id, question index in the last byte
    tags: tuple[str, ...] = ()

    @property
    def augmented(self) -> bool:
        """A placeholder or "Other" outcome of an augmented neg-risk event: its meaning
        changes when placeholders get named, so it is never part of a basket."""
        return any(t.strip().lower() in AUGMENTED_TAGS for t in self.tags)

    @property
    def question_index(self) -> int | None:
        """The outcome's question index within its event (the question id's last byte,
        the rest being the market id), or None if the ids do not say."""
        market, question = self.neg_risk_market_id.lower(), self.neg_risk_request_id.lower()
        if len(market) != 66 or len(question) != 66 or market[:64] != question[:64] or market[64:] != "00":
            return None
        try:
            return int(question[64:], 16)
        except ValueError:
            return None


AUGMENTED_TAGS = frozenset({"placeholder", "other"})


def parse_market(m: dict[str, Any]) -> Market:
    cid = m.get("condition_id")
    tokens = m.get("tokens") or []
    if not isinstance(cid, str) or not cid:
        raise ListingError(f"condition_id {cid!r:.80}")
    if not isinstance(tokens, list) or not all(
            isinstance(t, dict) and isinstance(t.get("token_id"), str | int) and not isinstance(t["token_id"], bool)
            for t in tokens):
        raise ListingError(f"market {cid:.80}: tokens {tokens!r:.80}")
    return Market(
        condition_id=cid,
        question=str(m.get("question", "")),
        token_ids=tuple(str(t["token_id"]) for t in tokens),
        outcomes=tuple(str(t.get("outcome", "")) for t in tokens),
        active=bool(m.get("active", True)) and not bool(m.get("closed", False)),
        fee_rate_bps=_fee_bps(cid, m.get("taker_base_fee")),
        tick_size=to_micro_or(m.get("minimum_tick_size"), 10_000, rounding=ROUND_DOWN),
        min_order_size=to_micro_or(m.get("minimum_order_size"), 0, rounding=ROUND_DOWN),
        neg_risk=bool(m.get("neg_risk", False)),
        neg_risk_market_id=str(m.get("neg_risk_market_id") or ""),
        neg_risk_request_id=str(m.get("neg_risk_request_id") or ""),
        tags=tuple(str(t) for t in (m.get("tags") or []) if isinstance(t, str)),
    )


def _fee_bps(cid: str, fee: object) -> int:
    if fee is None or fee == "":
        return 0
    if isinstance(fee, str) and fee.isascii() and fee.isdigit() and len(fee) <= 5:
        fee = int(fee)
    if not isinstance(fee, int) or isinstance(fee, bool) or not 0 <= fee <= MAX_FEE_BPS:
        raise ListingError(f"market {cid:.80}: taker_base_fee {fee!r:.80}")
    return fee


async def list_markets(session: aiohttp.ClientSession, clob_url: str, *, max_pages: int = 1000) -> list[Market]:
    out: list[Market] = []
    cursor = ""
    for n in range(max_pages):
        params = {"next_cursor": cursor} if cursor else {}
        async with session.get(f"{clob_url.rstrip('/')}/markets", params=params) as resp:
            resp.raise_for_status()
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > MAX_PAGE_BYTES:
                    raise ListingError(f"page {n}: more than {MAX_PAGE_BYTES} bytes")
        try:
            page = _page_decoder.decode(body)
        except msgspec.DecodeError as exc:  # not JSON, not an object, too deep
            raise ListingError(f"page {n}: not the paged object: {exc}") from None
        data, cursor = page.get("data", []), page.get("next_cursor") or END_CURSOR
        if not isinstance(data, list) or not isinstance(cursor, str):
            raise ListingError(f"page {n}: data {type(data).__name__}, next_cursor {type(cursor).__name__}")
        for m in data:
            if not isinstance(m, dict):
                raise ListingError(f"page {n}: market {m!r:.80}")
            if m.get("condition_id"):  # listings carry entries without one: not markets
                out.append(parse_market(m))
        if cursor == END_CURSOR:
            break
    return out


def select(markets: list[Market], wanted: list[str] | str) -> dict[str, str]:
    """asset id -> condition id for the configured markets ("all" or condition ids)."""
    chosen = [m for m in markets if m.active and (wanted == "all" or m.condition_id in wanted)]
    return {t: m.condition_id for m in chosen for t in m.token_ids}
