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
