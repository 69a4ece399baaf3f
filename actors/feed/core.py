"""The feed's pure core: frames in, books and counters out.

No sockets and no wall clock: the shell (`polymarket_ws`) hands it text
frames with their receive time and asks it which books changed. It owns the
books, the dedup cache, ordering and validity:

- a duplicate (same identity, from the LRU, and changing nothing) is counted
  and dropped; a seen-before identity that would still change a book is a
  legitimate repeat, applied (`_changes_something`);
- a message older than the newest one seen for any of its tokens is counted
  out of order (once per message, whether or not its book is valid) and
  applied only to the levels it is newer for (see `LocalBook`);
- a book is INVALID until its first snapshot, after a disconnect, after a
  tick-size change, when a price change's best bid/ask disagree with ours
  (an update was lost, or is late: overtaken by this one), or when it stays
  crossed past a grace period; each invalidation counts as a sequence gap and
  lasts until a fresh snapshot;
- a message that would change a book but is refused invalidates that book
  too (its update is lost): malformed (`wire` names its tokens), stamped more
  than `max_future_ms` ahead of the receive clock (`future_stamped`: it would
  pin the book, every honest message after it judged out of order), or with
  a price off the book's tick (`off_tick`). A malformed frame whose tokens
  cannot be read is counted and dropped. Books name the market the listing
  gave them (`track`), never the wire's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.feed import wire
from actors.feed.book import LocalBook
from actors.feed.dedup import DedupCache

LOST_UPDATE = "best bid/ask disagree with the venue: an update was lost or is late"
REFUSED = "a message for this book was refused ({}): awaiting snapshot"
# How far a venue timestamp may run ahead of our receive clock (clock skew and
# latency take a few ms; the router already needs clocks within seconds).
FUTURE_TOLERANCE_MS = 60_000
MAX_TEXT_KINDS = 64  # distinct text frames counted by name; a flood of unique ones shares one count
_NO_HORIZON = 1 << 62


@dataclass(slots=True)
class TokenState:
    market: str
    book: LocalBook = field(default_factory=LocalBook)
    valid: bool = False
    reason: str = "awaiting first snapshot"
    invalid_since_ns: int = 0
    crossed_since_ns: int | None = None
    recv_ns: int = 0
    seen_ts: int = 0  # newest venue timestamp seen for this token (applied or not): judges order


class FeedCore:
    def __init__(self, *, dedup_size: int = 10_000, crossed_grace_ms: int = 500,
                 max_future_ms: int | None = None) -> None:
        # None: no bound (replays of recorded sessions carry synthetic receive times); the actor sets it.
        self.max_future_ms = max_future_ms
        self.tokens: dict[str, TokenState] = {}
        self._valid = 0  # how many tokens' books are valid: kept as they change, never counted by a scan
        self.dedup = DedupCache(dedup_size)
        self.crossed_grace_ns = crossed_grace_ms * 1_000_000
        self.counts: dict[str, int] = {
            "messages": 0, "frames": 0, "generic_path": 0, "duplicates": 0, "out_of_order": 0, "sequence_gaps": 0,
            "snapshots": 0, "price_changes": 0, "tick_size_changes": 0, "trades": 0,
            "unknown_events": 0, "ignored_events": 0, "unknown_fields": 0, "untracked": 0,
            "malformed": 0, "no_snapshot": 0, "best_mismatch": 0, "crossed": 0, "stale_levels": 0,
            "repeats": 0,  # seen-before identities applied anyway: they still changed a book
            "future_stamped": 0, "off_tick": 0,
        }
        self.malformed_kinds: dict[str, int] = {}
        self.text_frames: dict[str, int] = {}

    # -- subscriptions
    def track(self, asset_id: str, market: str, now_ns: int = 0) -> None:
        if asset_id not in self.tokens:
            self.tokens[asset_id] = TokenState(market, invalid_since_ns=now_ns)

    def untrack(self, asset_id: str) -> None:
        st = self.tokens.pop(asset_id, None)
        if st is not None and st.valid:
            self._valid -= 1

    def invalidate(self, asset_id: str, reason: str, now_ns: int) -> bool:
        st = self.tokens.get(asset_id)
        if st is None or not st.valid:
            return False
        st.valid, st.reason, st.invalid_since_ns = False, reason, now_ns
        self._valid -= 1
        self.counts["sequence_gaps"] += 1
        return True

    # -- frames
    def on_text_frame(self, text: str) -> None:
        """PONG / INVALID OPERATION / NO NEW ASSETS: plain text, not JSON."""
        key = text if len(text) <= 32 else text[:32]
        if key not in self.text_frames and len(self.text_frames) >= MAX_TEXT_KINDS:
            key = "(other)"
        self.text_frames[key] = self.text_frames.get(key, 0) + 1

    def on_frame(self, text: str | bytes, recv_ns: int) -> set[str]:
        """Apply one JSON frame; returns the asset ids whose book changed."""
        self.counts["frames"] += 1
        future = self.max_future_ms
        horizon = recv_ns // 1_000_000 + future if future is not None else _NO_HORIZON
        fast = wire.decode_fast(text)
        if fast is not None:  # the venue's known events, well formed: no dicts
            changed: set[str] = set()
            for event in fast:
                self.counts["messages"] += 1
                if isinstance(event, wire.Ignored):
                    self.counts["ignored_events"] += 1  # known (the fast path has no unknown event types)
                    continue
                self._deliver(event, wire.identity(event), recv_ns, changed, horizon)
            return changed
        self.counts["generic_path"] += 1  # not the venue's known events, or not well formed: read as dicts
        try:
            objs = wire.decode(text)
        except wire.WireError as exc:
            self._malformed(exc.kind)
            return set()
        changed = set()
        for obj in objs:
            self.counts["messages"] += 1
            try:
                event, unknown = wire.parse_event(obj)
            except wire.WireError as exc:
                self._malformed(exc.kind)
                self._refuse(exc.assets, REFUSED.format(exc.kind), recv_ns, changed)
                continue
            self.counts["unknown_fields"] += unknown
            if isinstance(event, wire.Ignored):
                known = event.event_type in wire.KNOWN_EVENTS
                self.counts["ignored_events" if known else "unknown_events"] += 1
                continue
            self._deliver(event, wire.identity(event), recv_ns, changed, horizon)
        return changed

    def _deliver(self, event: wire.Event, ident: tuple, recv_ns: int, changed: set[str], horizon: int) -> None:
        if event.timestamp_ms > horizon:  # type: ignore[union-attr] - Ignored never gets here
            self.counts["future_stamped"] += 1
            if not isinstance(event, wire.LastTrade):  # a trade changes no book
                self._refuse(_assets(event), REFUSED.format("stamped in the future"), recv_ns, changed)
            return
        if self.dedup.seen(ident):
            if not self._changes_something(event):
                self.counts["duplicates"] += 1
                return
            self.counts["repeats"] += 1
        self._apply(event, recv_ns, changed)

    def _changes_something(self, event: wire.Event) -> bool:
        """Whether a message whose identity was seen before would still change a book.

        A duplicate delivered again changes nothing: its levels already hold its sizes
        (or newer ones), its tick is the book's, its snapshot is the book. A message
        that would change something is a legitimate repeat: within one millisecond a
        level can go back to an earlier size (or a tick flip back and forth) and the
        venue then sends byte-identical messages. A snapshot for an invalid book is
        always taken.
        """
        if isinstance(event, wire.PriceChange):
            for ch in event.changes:
                st = self.tokens.get(ch.asset_id)
                if st is not None and st.valid and st.book.would_change(ch.is_bid, ch.price, ch.size,
                                                                        event.timestamp_ms):
                    return True
            return False
        if isinstance(event, wire.BookSnapshot):
            st = self.tokens.get(event.asset_id)
            return st is not None and (not st.valid or (
                event.timestamp_ms >= st.seen_ts and not st.book.holds(event.bids, event.asks)))
        if isinstance(event, wire.TickSizeChange):
            st = self.tokens.get(event.asset_id)
            return st is not None and st.book.tick_size != event.new_tick_size
        return False

    def _malformed(self, kind: str) -> None:
        self.counts["malformed"] += 1
        self.malformed_kinds[kind] = self.malformed_kinds.get(kind, 0) + 1

    def _refuse(self, assets: tuple[str, ...] | set[str], reason: str, now_ns: int, changed: set[str]) -> None:
        for a in assets:
            if self.invalidate(a, reason, now_ns):
                changed.add(a)

    def _apply(self, event: wire.Event, recv_ns: int, changed: set[str]) -> None:
        if isinstance(event, wire.PriceChange):
            self.counts["price_changes"] += 1
            self._price_change(event, recv_ns, changed)
        elif isinstance(event, wire.BookSnapshot):
            st = self.tokens.get(event.asset_id)
            if st is None:
                self.counts["untracked"] += 1
                return
            self.counts["snapshots"] += 1
            if st.valid and event.timestamp_ms < st.seen_ts:
                self.counts["out_of_order"] += 1  # an old snapshot must not roll the book back
                return
            tick = event.tick_size or st.book.tick_size
            if tick and any(p % tick for side in (event.bids, event.asks) for p, _ in side):
                self.counts["off_tick"] += 1
                self._refuse((event.asset_id,), REFUSED.format("price off the tick"), recv_ns, changed)
                return
            st.book.load_snapshot(event.bids, event.asks, event.timestamp_ms, event.tick_size)
            st.seen_ts = event.timestamp_ms  # a new epoch: whatever is older than it is late
            self._valid += not st.valid
            st.valid, st.reason, st.recv_ns = True, "", recv_ns
            st.crossed_since_ns = recv_ns if st.book.crossed() else None
            changed.add(event.asset_id)
        elif isinstance(event, wire.TickSizeChange):
            self.counts["tick_size_changes"] += 1
            st = self.tokens.get(event.asset_id)
            if st is not None:
                st.seen_ts = max(st.seen_ts, event.timestamp_ms)
                st.book.tick_size = event.new_tick_size
                if self.invalidate(event.asset_id, "tick size changed: awaiting snapshot", recv_ns):
                    changed.add(event.asset_id)
        elif isinstance(event, wire.LastTrade):
            self.counts["trades"] += 1

    def _price_change(self, event: wire.PriceChange, recv_ns: int, changed: set[str]) -> None:
        ts = event.timestamp_ms
        newest: dict[str, bool] = {}  # token -> no newer message was seen for it before this one
        touched: dict[str, wire.LevelChange] = {}
        for ch in event.changes:
            st = self.tokens.get(ch.asset_id)
            if st is None:
                self.counts["untracked"] += 1
                continue
            if ch.asset_id not in newest:
                # Judged before validity: a late message is counted even when the newer
                # one that overtook it already invalidated the book (best-price check below).
                newest[ch.asset_id] = ts >= st.seen_ts
                st.seen_ts = max(st.seen_ts, ts)
            if not st.valid:
                if st.book.snapshot_ts == 0:
                    self.counts["no_snapshot"] += 1
                continue
            tick = st.book.tick_size
            if tick and ch.price % tick:
                self.counts["off_tick"] += 1
                self._refuse((ch.asset_id,), REFUSED.format("price off the tick"), recv_ns, changed)
                touched.pop(ch.asset_id, None)
                continue
            if not st.book.apply(ch.is_bid, ch.price, ch.size, ts):
                self.counts["stale_levels"] += 1
            st.recv_ns = recv_ns
            touched[ch.asset_id] = ch  # the last entry carries the venue's best prices
        if not all(newest.values()):
            self.counts["out_of_order"] += 1
        for asset_id, last in touched.items():
            st = self.tokens[asset_id]
            changed.add(asset_id)
            book = st.book
            if newest[asset_id] and (
                (last.best_bid is not None and last.best_bid != book.best_bid())
                or (last.best_ask is not None and last.best_ask != book.best_ask())
            ):
                self.counts["best_mismatch"] += 1
                self.invalidate(asset_id, LOST_UPDATE, recv_ns)
                continue
            if book.crossed():
                if st.crossed_since_ns is None:
                    st.crossed_since_ns = recv_ns
            else:
                st.crossed_since_ns = None

    # -- time-driven checks
    def check(self, now_ns: int) -> set[str]:
        """Invalidate books crossed longer than the grace period."""
        changed = set()
        for asset_id, st in self.tokens.items():
            if st.valid and st.crossed_since_ns is not None and now_ns - st.crossed_since_ns > self.crossed_grace_ns:
                self.counts["crossed"] += 1
                self.invalidate(asset_id, "book crossed beyond the grace period", now_ns)
                changed.add(asset_id)
        return changed

    def stale_invalid(self, now_ns: int, after_ns: int) -> list[str]:
        """Invalid books that have waited long enough to be re-requested."""
        return [a for a, st in self.tokens.items() if not st.valid and now_ns - st.invalid_since_ns >= after_ns]

    def mark_requested(self, asset_id: str, now_ns: int) -> None:
        st = self.tokens.get(asset_id)
        if st is not None:
            st.invalid_since_ns = now_ns  # wait again before the next request

    def valid_count(self) -> int:
        return self._valid

    def get_stats(self) -> dict[str, Any]:
        return {**self.counts, "malformed_kinds": dict(self.malformed_kinds), "text_frames": dict(self.text_frames),
                "tokens": len(self.tokens), "valid_books": self.valid_count()}


def _assets(event: wire.Event) -> tuple[str, ...] | set[str]:
    if isinstance(event, wire.PriceChange):
        return {ch.asset_id for ch in event.changes}
    return (event.asset_id,)  # type: ignore[union-attr]
