"""The price gas is booked at: POL in USDC.

    price = PolPrice(read, clock, config)    # read: async () -> (answer, decimals, updated_at)
    await price.refresh()                     # each executor.pol_price_refresh_seconds
    price.per_pol()                           # micro-USDC per POL, for every gas cost

With `executor.pol_price_feed` (a Chainlink AggregatorV3 POL / USD feed on the chain)
the answer of its last read is used while it is fresh (updated within
`pol_price_max_age_seconds`) and sane (above 0, at most 1000 USDC); otherwise, and
without a feed, the static `executor.pol_usdc_price`. The stats say which is in use
(`polyarb status`: gas_price), so nobody books gas at a price they did not expect.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from actors.domain.money import fixed_to_micro, format_usdc, to_micro
from config.schema import Config

log = logging.getLogger(__name__)

MAX_PRICE_MICRO = 1000 * 10**6  # the schema's bound on the static price: a feed answering more is broken
Reader = Callable[[], Awaitable[tuple[int, int, int]]]


class PolPrice:
    def __init__(self, read: Reader | None, clock: Any, config: Callable[[], Config]) -> None:
        self._read, self.clock, self._config = read, clock, config
        self._live: int | None = None  # micro-USDC per POL, of the last good read
        self._updated_s = 0  # the feed's updatedAt of that read (chain seconds)
        self.reads = self.errors = self.rejected = 0
        self.last_error = ""

    def _static(self) -> int:
        return to_micro(self._config().executor.pol_usdc_price)

    def _fresh(self) -> bool:
        age = self.clock.time_ns() / 1e9 - self._updated_s
        return self._live is not None and age <= self._config().executor.pol_price_max_age_seconds

    def per_pol(self) -> int:
        """micro-USDC per POL."""
        return self._live if self._fresh() and self._live is not None else self._static()

    def source(self) -> str:
        return "feed" if self._config().executor.pol_price_feed and self._fresh() else "static"

    async def refresh(self) -> None:
        if self._read is None or not self._config().executor.pol_price_feed:
            return
        try:
            answer, decimals, updated_s = await self._read()
        except Exception as exc:  # the node is down: the last answer serves while fresh, then the static one
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("POL price feed not read (%s): gas priced at %s", self.last_error, self.source())
            return
        self.reads += 1
        micro = fixed_to_micro(answer, decimals) if 0 <= decimals <= 36 else 0
        if not 0 < micro <= MAX_PRICE_MICRO:
            self.rejected += 1
            self.last_error = f"feed answered {answer} with {decimals} decimals: not a POL price"
            log.warning("%s; gas priced at the static price", self.last_error)
            return
        was = self.source()
        self._live, self._updated_s = micro, updated_s
        if self.source() != was:
            log.info("gas priced at the %s POL price: %s USDC", self.source(), format_usdc(self.per_pol()))

    def get_stats(self) -> dict[str, Any]:
        age = round(self.clock.time_ns() / 1e9 - self._updated_s, 1) if self._live is not None else None
        return {"source": self.source(), "usdc": format_usdc(self.per_pol()),
                "feed": self._config().executor.pol_price_feed,
                "feed_usdc": format_usdc(self._live) if self._live is not None else None, "age_seconds": age,
                "reads": self.reads, "errors": self.errors, "rejected": self.rejected, "last_error": self.last_error}
