"""The venue's market listing as the paper world needs it: each token's market (its fee
rate, open or closed), each condition's tokens (merge, split), each event's questions
(convert, redeem), and whether a market has resolved (`GET /markets/{condition_id}`)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from actors.domain.listing import Market, list_markets, parse_market

log = logging.getLogger(__name__)


class PaperMarkets:
    def __init__(self, clob_url: str) -> None:
        self.clob_url = clob_url.rstrip("/")
        self.by_token: dict[str, Market] = {}
        self.by_condition: dict[str, Market] = {}
        self.refreshes = self.errors = 0
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    def adopt(self, markets: list[Market]) -> None:
        self.by_condition = {m.condition_id: m for m in markets}
        self.by_token = {t: m for m in markets for t in m.token_ids}

    async def refresh(self) -> None:
        """The whole listing again; a failed read keeps the previous one (counted)."""
        try:
            self.adopt(await list_markets(self._http(), self.clob_url))
            self.refreshes += 1
        except Exception as exc:  # the venue down, a malformed page: the old listing serves
            self.errors += 1
            log.warning("market listing not read: %s", exc)
            if not self.by_condition:
                raise

    def tokens(self) -> dict[str, Market]:
        return self.by_token

    def condition(self, condition_id: str) -> Market:
        m = self.by_condition.get(condition_id)
        if m is None:
            raise LookupError(f"condition {condition_id[:18]} is not in the venue's listing")
        return m

    def questions(self, market_id: str) -> list[Market]:
        """An event's markets (its NegRiskAdapter market id), in question order."""
        qs = [m for m in self.by_condition.values() if m.neg_risk and m.neg_risk_market_id.lower() == market_id.lower()]
        if not qs or any(m.question_index is None for m in qs):
            raise LookupError(f"event {market_id[:18]}: its questions are not in the venue's listing")
        return sorted(qs, key=lambda m: m.question_index or 0)

    async def winner(self, condition_id: str) -> str | None:
        """The winning token of a resolved market (the venue's `closed` and `winner`), else None."""
        async with self._http().get(f"{self.clob_url}/markets/{condition_id}") as resp:
            resp.raise_for_status()
            body: Any = await resp.json(content_type=None)
        if not isinstance(body, dict) or not body.get("closed"):
            return None
        parse_market(body)  # refuses a malformed answer (ListingError)
        won = [str(t.get("token_id")) for t in body.get("tokens") or [] if isinstance(t, dict) and t.get("winner")]
        return won[0] if len(won) == 1 else None

    def get_stats(self) -> dict[str, int]:
        return {"markets": len(self.by_condition), "listing_refreshes": self.refreshes, "listing_errors": self.errors}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
