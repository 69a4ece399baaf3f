"""Token ids from the CLOB's market listing (`GET /markets`, cursor-paginated),
exactly as the feed would discover them live."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN
from typing import Any

import aiohttp

from actors.domain.money import to_micro_or

END_CURSOR = "LTE="  # Polymarket's "no more pages"


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
    tokens = m.get("tokens") or []
    return Market(
        condition_id=str(m["condition_id"]),
        question=str(m.get("question", "")),
        token_ids=tuple(str(t["token_id"]) for t in tokens),
        outcomes=tuple(str(t.get("outcome", "")) for t in tokens),
        active=bool(m.get("active", True)) and not bool(m.get("closed", False)),
        fee_rate_bps=int(m.get("taker_base_fee") or 0),
        tick_size=to_micro_or(m.get("minimum_tick_size"), 10_000, rounding=ROUND_DOWN),
        min_order_size=to_micro_or(m.get("minimum_order_size"), 0, rounding=ROUND_DOWN),
        neg_risk=bool(m.get("neg_risk", False)),
        neg_risk_market_id=str(m.get("neg_risk_market_id") or ""),
        neg_risk_request_id=str(m.get("neg_risk_request_id") or ""),
        tags=tuple(str(t) for t in (m.get("tags") or []) if isinstance(t, str)),
    )


async def list_markets(session: aiohttp.ClientSession, clob_url: str, *, max_pages: int = 1000) -> list[Market]:
    out: list[Market] = []
    cursor = ""
    for _ in range(max_pages):
        params = {"next_cursor": cursor} if cursor else {}
        async with session.get(f"{clob_url.rstrip('/')}/markets", params=params) as resp:
            resp.raise_for_status()
            page = await resp.json()
        out.extend(parse_market(m) for m in page.get("data", []) if m.get("condition_id"))
        cursor = page.get("next_cursor") or END_CURSOR
        if cursor == END_CURSOR:
            break
    return out


def select(markets: list[Market], wanted: list[str] | str) -> dict[str, str]:
    """asset id -> condition id for the configured markets ("all" or condition ids)."""
    chosen = [m for m in markets if m.active and (wanted == "all" or m.condition_id in wanted)]
    return {t: m.condition_id for m in chosen for t in m.token_ids}
