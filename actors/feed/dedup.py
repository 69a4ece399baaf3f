"""A bounded LRU of message identities: duplicates are recognised, memory is not.

Identities are kept as their hash: an identity holds its message's strings (a
hostile one, megabytes each), which the cache must not keep alive. A collision
(about 2**-64 a pair) reads a new message as seen; the core then applies it
anyway if it still changes a book (`FeedCore._changes_something`), so it can
miscount a duplicate, never lose an update.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class DedupCache:
    def __init__(self, max_size: int = 10_000) -> None:
        self.max_size = max_size
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.hits = 0  # duplicates
        self.misses = 0  # first sightings

    def seen(self, key: Hashable) -> bool:
        """True if `key` was seen before (a duplicate); records it either way."""
        h = hash(key)
        if h in self._seen:
            self._seen.move_to_end(h)
            self.hits += 1
            return True
        self._seen[h] = None
        if len(self._seen) > self.max_size:
            self._seen.popitem(last=False)
        self.misses += 1
        return False

    def resize(self, max_size: int) -> None:
        self.max_size = max_size
        while len(self._seen) > max_size:
            self._seen.popitem(last=False)

    def get_stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {"size": len(self._seen), "max_size": self.max_size, "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / total, 6) if total else 0.0}
