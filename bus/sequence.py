"""Per-stream sequence tracking on the subscriber side.

A stream is (source, topic). Publishers number each topic from 1 per boot;
a subscriber that sees a jump counts a gap, a new boot id resets the stream,
and the first message of a stream marks a join: in both cases the consumer
should ask for a snapshot (the Clone pattern).
"""

from __future__ import annotations

from enum import Enum


class Arrival(Enum):
    IN_ORDER = "in_order"
    JOINED = "joined"  # first message seen of this stream (or a new boot)
    GAP = "gap"  # one or more messages were lost before this one
    STALE = "stale"  # at or below the last seen sequence: drop


class SequenceTracker:
    def __init__(self) -> None:
        self._streams: dict[tuple[str, bytes], tuple[str, int]] = {}
        self.gaps = 0  # gap events
        self.missed = 0  # messages known lost
        self.stale = 0
        self.restarts = 0

    def observe(self, source: str, boot_id: str, topic: bytes, seq: int) -> Arrival:
        key = (source, topic)
        prev = self._streams.get(key)
        if prev is None or prev[0] != boot_id:
            if prev is not None:
                self.restarts += 1
            self._streams[key] = (boot_id, seq)
            return Arrival.JOINED
        last = prev[1]
        if seq <= last:
            self.stale += 1
            return Arrival.STALE
        self._streams[key] = (boot_id, seq)
        if seq == last + 1:
            return Arrival.IN_ORDER
        self.gaps += 1
        self.missed += seq - last - 1
        return Arrival.GAP

    def skip_to(self, source: str, boot_id: str, topic: bytes, seq: int) -> None:
        """After a snapshot: updates at or below `seq` are stale."""
        prev = self._streams.get((source, topic))
        if prev is None or prev[0] != boot_id or prev[1] < seq:
            self._streams[(source, topic)] = (boot_id, seq)

    def get_stats(self) -> dict[str, int]:
        return {
            "streams": len(self._streams),
            "gaps": self.gaps,
            "missed": self.missed,
            "stale": self.stale,
            "restarts": self.restarts,
        }
