"""The live books the paper venue matches on: the feed's latest book of each token, less
what our own paper orders took from it.

A paper order does not move the real market, so the next book the feed publishes still
shows the liquidity it took. Counted as there again, the same gap would fill our orders
over and over. So what we took at a price stays taken while the live level still shows
it: when the level shrinks (others took or cancelled it), what we took shrinks with it,
and it is forgotten once the level is gone. That errs against us, never for us.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.domain.enums import Side
from actors.executor.paper.matching import Level
from bus.messages import BookUpdate


@dataclass(frozen=True, slots=True)
class Seen:
    """What an order met: the levels it could take (ours already taken off), and the book's age."""

    levels: tuple[Level, ...]
    venue_ts_ms: int
    recv_ns: int


def _book_side(side: Side | str) -> str:
    return "asks" if side == Side.BUY else "bids"  # a BUY takes the asks, a SELL the bids


class LiveBooks:
    def __init__(self) -> None:
        self.books: dict[str, BookUpdate] = {}
        self._taken: dict[tuple[str, str, int], int] = {}  # (token, "asks"/"bids", price) -> shares
        self.updates = 0

    def on_book(self, book: BookUpdate) -> None:
        """A book from the feed. An older book than the one held (a snapshot racing the stream) is ignored."""
        held = self.books.get(book.token_id)
        if held is not None and book.venue_ts_ms < held.venue_ts_ms:
            return
        self.books[book.token_id] = book
        self.updates += 1
        for key in [k for k in self._taken if k[0] == book.token_id]:
            live = dict(getattr(book, key[1])).get(key[2], 0) if book.valid else 0
            if live <= 0:
                del self._taken[key]
            elif live < self._taken[key]:
                self._taken[key] = live

    def seen(self, token_id: str, side: Side | str) -> Seen | None:
        """The levels an order on `side` can take now; None without a valid book."""
        book = self.books.get(token_id)
        if book is None or not book.valid:
            return None
        name = _book_side(side)
        levels = tuple((p, s - self._taken.get((token_id, name, p), 0)) for p, s in getattr(book, name))
        return Seen(tuple(lv for lv in levels if lv[1] > 0), book.venue_ts_ms, book.recv_ns)

    def took(self, token_id: str, side: Side | str, fills: tuple[Level, ...]) -> None:
        name = _book_side(side)
        for price, size in fills:
            key = (token_id, name, price)
            self._taken[key] = self._taken.get(key, 0) + size

    def taken(self) -> int:
        """Shares our paper orders hold off the live books now."""
        return sum(self._taken.values())
