"""The feed's local book of one token: levels with the timestamp of their last change.

Sizes are absolute ("new total size at this price"), so for each level the
update with the latest venue timestamp wins, whatever order updates arrive in:
a reordered older update is applied only to levels it is newer for, and a
removed level keeps a tombstone so an older update cannot resurrect it.
Best prices are computed from the levels, never from list positions.
"""

from __future__ import annotations


class LocalBook:
    __slots__ = ("_tomb", "asks", "bids", "last_ts", "snapshot_ts", "tick_size")

    def __init__(self) -> None:
        self.bids: dict[int, tuple[int, int]] = {}  # price -> (size, ts)
        self.asks: dict[int, tuple[int, int]] = {}
        self._tomb: dict[tuple[bool, int], int] = {}  # (is_bid, price) -> ts of removal
        self.last_ts = 0  # newest venue timestamp applied
        self.snapshot_ts = 0
        self.tick_size = 0

    def load_snapshot(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]], ts: int,
                      tick_size: int | None) -> None:
        self.bids = {p: (s, ts) for p, s in bids if s > 0}
        self.asks = {p: (s, ts) for p, s in asks if s > 0}
        self._tomb.clear()
        self.last_ts = self.snapshot_ts = ts
        if tick_size:
            self.tick_size = tick_size

    def apply(self, is_bid: bool, price: int, size: int, ts: int) -> bool:
        """Set a level; False if a newer update of that level was already applied."""
        side = self.bids if is_bid else self.asks
        current = side.get(price)
        newest = current[1] if current is not None else self._tomb.get((is_bid, price), -1)
        if ts < newest or ts < self.snapshot_ts:
            return False
        if size > 0:
            side[price] = (size, ts)
            self._tomb.pop((is_bid, price), None)
        else:
            side.pop(price, None)
            self._tomb[(is_bid, price)] = ts
        if ts > self.last_ts:
            self.last_ts = ts
        return True

    def would_change(self, is_bid: bool, price: int, size: int, ts: int) -> bool:
        """Whether `apply` would change the level (not stale, and a different size)."""
        current = (self.bids if is_bid else self.asks).get(price)
        newest = current[1] if current is not None else self._tomb.get((is_bid, price), -1)
        if ts < newest or ts < self.snapshot_ts:
            return False
        return (current[0] if current is not None else 0) != size

    def holds(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> bool:
        """Whether the book's levels are exactly these (a snapshot's)."""
        return ({p: s for p, s in bids if s > 0} == {p: s for p, (s, _) in self.bids.items()}
                and {p: s for p, s in asks if s > 0} == {p: s for p, (s, _) in self.asks.items()})

    def best_bid(self) -> int | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> int | None:
        return min(self.asks) if self.asks else None

    def crossed(self) -> bool:
        bb, ba = self.best_bid(), self.best_ask()
        return bb is not None and ba is not None and bb >= ba

    def depth(self, levels: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Best-first (price, size) lists, at most `levels` each."""
        bids = sorted(self.bids.items(), reverse=True)[:levels]
        asks = sorted(self.asks.items())[:levels]
        return [(p, s) for p, (s, _) in bids], [(p, s) for p, (s, _) in asks]
