"""The paper venue: the executor's VenuePort, matched against the live books.

    venue = PaperVenue(books, ledger, markets, clock, config)

An order waits `paper.order_latency_ms` (its trip to the CLOB), then takes what the
feed's latest book of its token shows within its limit (`matching.take`: FOK whole or
nothing, FAK what is there), less what earlier paper orders took (`books.LiveBooks`),
at the live taker fee rate of its market. The wallet must hold what the order needs
(the pUSD for a buy, the tokens for a sale, less what matched orders not settled yet
will take), else it is refused like the CLOB's "not enough balance / allowance".
A match is MATCHED, then MINED `paper.settlement_latency_ms` later: its tokens and pUSD
move then (FAILED if the wallet no longer holds them). Every order is recorded in the
ledger with the levels it met (the decision log `polyarb paper replay` recomputes), and
a second placement with the same client id answers the first order, never trades again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from actors.domain.enums import Side
from actors.domain.listing import Market
from actors.executor.legs import LegEvent, LegState
from actors.executor.paper import ledger as L
from actors.executor.paper.books import LiveBooks
from actors.executor.paper.matching import take
from actors.executor.ports import Fill, OrderRejected
from config.schema import Config

log = logging.getLogger(__name__)

NOT_ENOUGH = "not enough balance / allowance"
SETTLE_EVERY_S = 0.1  # due matches are mined this often even when nobody waits on them


def _state(status: str) -> LegState:
    return {L.MATCHED: LegState.MATCHED, L.MINED: LegState.MINED, L.FAILED: LegState.FAILED,
            L.KILLED: LegState.KILLED, L.REJECTED: LegState.REJECTED}[status]


def as_fill(o: L.Order) -> Fill:
    """An order record as the pipeline reads a venue's answer (a FAILED trade filled nothing)."""
    traded = o.status in (L.MATCHED, L.MINED)
    return Fill(o.client_id, o.order_id, o.token_id, Side(o.side), o.filled if traded else 0,
                o.cost if traded else 0, o.fee if traded else 0, o.status,
                trades=("paper-trade-" + o.order_id,) if o.status == L.MATCHED else ())


class PaperVenue:
    def __init__(self, books: LiveBooks, ledger: L.PaperLedger, markets: Callable[[], dict[str, Market]],
                 clock: Any, config: Callable[[], Config]) -> None:
        self.books, self.ledger, self._markets, self._clock, self._config = books, ledger, markets, clock, config
        self.observer: Callable[[LegEvent], None] | None = None  # the journal's leg records, as live
        self._lock = asyncio.Lock()  # one match at a time: each sees the books the previous one left
        self.counts = {"placed": 0, "filled": 0, "killed": 0, "rejected": 0, "duplicates": 0, "settled": 0,
                       "trades_failed": 0, "no_book": 0, "batches": 0, "leg_events_unrecorded": 0}

    def _paper(self) -> Any:
        paper = self._config().paper
        assert paper is not None, "the paper venue runs only with a `paper` section"
        return paper

    def _tell(self, o: L.Order) -> None:
        if self.observer is None:
            return
        try:
            self.observer(LegEvent(o.client_id, _state(o.status), o.order_id, o.filled, o.cost, o.fee,
                                   ("paper-trade-" + o.order_id,) if o.filled else (), o.reason))
        except Exception:  # the journal failing must not hide the venue's answer
            self.counts["leg_events_unrecorded"] += 1
            log.exception("leg event of %s not recorded", o.client_id[:12])

    async def place(self, token_id: str, side: Side, price: int, size: int, client_id: str, *,
                    fill_and_kill: bool = False, settle: bool = True) -> Fill:
        held = self.ledger.order(client_id)
        if held is None:
            self.counts["placed"] += 1
            await self._clock.sleep(self._paper().order_latency_ms / 1000)
            async with self._lock:
                held = self._match(token_id, side, price, size, client_id, fill_and_kill)
            self._tell(held)
        else:
            self.counts["duplicates"] += 1
        if held.status == L.REJECTED:
            raise OrderRejected(held.reason, 400)
        fill = as_fill(held)
        return await self.settle(fill) if settle else fill

    async def place_batch(self, orders: list[tuple[str, Side, int, int, str]], settle: bool = True) -> list[Any]:
        """Every order FOK, as one request: they travel together, then match one after another."""
        self.counts["batches"] += 1

        async def one(o: tuple[str, Side, int, int, str]) -> Fill:
            return await self.place(*o[:4], o[4], settle=settle)

        return list(await asyncio.gather(*(one(o) for o in orders), return_exceptions=True))

    def _match(self, token_id: str, side: Side, price: int, size: int, client_id: str, fak: bool) -> L.Order:
        """Decide the order on the books as they are now, and record it (synchronous: the lock holds)."""
        now = self._clock.time_ns()
        market = self._markets().get(token_id)
        seen = self.books.seen(token_id, side)
        base = {"client_id": client_id, "order_id": "paper-" + client_id.removeprefix("0x")[:24],
                "token_id": token_id, "side": str(side), "limit_price": price, "size": size, "fak": fak,
                "fee_rate_ppm": market.fee_rate_bps * 100 if market else 0,
                "levels": seen.levels if seen else (), "book_ts_ms": seen.venue_ts_ms if seen else 0,
                "placed_ns": now, "due_ns": now}
        if market is None or not market.active:
            self.counts["rejected"] += 1
            why = "market not found" if market is None else "market closed: not accepting orders"
            return self.ledger.record_order(L.Order(**base, status=L.REJECTED, filled=0, cost=0, fee=0, fills=(),
                                                    reason=why))
        if seen is None:
            self.counts["no_book"] += 1
        taken = take(seen.levels if seen else (), side, price, size, all_or_none=not fak,
                     fee_rate_ppm=base["fee_rate_ppm"])
        if not taken.filled:
            self.counts["killed"] += 1
            why = "no live book" if seen is None else "killed: no liquidity within the limit"
            return self.ledger.record_order(L.Order(**base, status=L.KILLED, filled=0, cost=0, fee=0, fills=(),
                                                    reason=why))
        asset, need = (L.PUSD, taken.cost + taken.fee) if side == Side.BUY else (token_id, taken.filled)
        if need > self.ledger.balance(asset) - self.ledger.reserved(asset):
            self.counts["rejected"] += 1
            return self.ledger.record_order(L.Order(**base, status=L.REJECTED, filled=0, cost=0, fee=0, fills=(),
                                                    reason=NOT_ENOUGH))
        due = now + self._paper().settlement_latency_ms * 1_000_000
        order = self.ledger.record_order(L.Order(**{**base, "due_ns": due}, status=L.MATCHED, filled=taken.filled,
                                                 cost=taken.cost, fee=taken.fee, fills=taken.fills, reason=""))
        self.books.took(token_id, side, taken.fills)
        self.counts["filled"] += 1
        return order

    async def settle(self, fill: Fill) -> Fill:
        """A MATCHED fill once its trade is mined (or FAILED: nothing traded)."""
        o = self.ledger.order(fill.client_id)
        if o is None or o.status != L.MATCHED:
            return as_fill(o) if o is not None else fill
        wait_ns = o.due_ns - self._clock.time_ns()
        if wait_ns > 0:
            await self._clock.sleep(wait_ns / 1e9)
        return as_fill(self._settle_one(o.client_id))

    def _settle_one(self, client_id: str) -> L.Order:
        before = self.ledger.order(client_id)
        o = self.ledger.settle(client_id, self._clock.time_ns())
        assert o is not None
        if before is not None and before.status == L.MATCHED and o.status != L.MATCHED:
            self.counts["settled" if o.status == L.MINED else "trades_failed"] += 1
            self._tell(o)
        return o

    def settle_due(self) -> int:
        """Mine every match whose settlement is due (before any balance is read, and each tick)."""
        due = self.ledger.due(self._clock.time_ns())
        for cid in due:
            self._settle_one(cid)
        return len(due)

    async def run(self) -> None:
        """Settle due matches nobody waits on (a restarted process's, a caller gone)."""
        while True:
            self.settle_due()
            await self._clock.sleep(SETTLE_EVERY_S)

    async def find(self, client_id: str, settle: bool = True) -> Fill | None:
        o = self.ledger.order(client_id)
        if o is None:
            return None
        if o.status == L.REJECTED:
            return Fill(o.client_id, o.order_id, o.token_id, Side(o.side), 0, 0, 0, "REJECTED")
        fill = as_fill(o)
        return await self.settle(fill) if settle else fill

    def get_stats(self) -> dict[str, Any]:
        return {**self.counts, "paper": True, "books": len(self.books.books), "taken_shares": self.books.taken()}
