"""The nonce ledger: pure, synchronous bookkeeping of one wallet's nonces.

Invariants (tested with hypothesis):
- a nonce is held by at most one live allocation, and never both allocated and free;
- a restart never hands out a nonce the chain has already mined;
- once leases have expired and gaps have been filled, no free nonce lies below
  the highest sent nonce (nothing is stuck behind a hole).

Life of a nonce: free/new -> LEASED (handed out, lease running) -> SENT
(reported sent with its tx hash: no lease any more) -> confirmed (removed).
A lease that expires, or `mark_failed`, puts the nonce back in the free pool,
which is served lowest first. Every hash reported for a nonce is journaled
(`attempts`), with its fees and its signed raw transaction when the sender
gave them.

A confirmed nonce is not forgotten at once: the records of the last
`CONFIRMED_KEEP` confirmed nonces (request id, hashes, fees, raw) are kept, so
that when the chain loses blocks (`rewind`) those nonces go back to SENT with
their signed transactions, to be re-broadcast.

Write order: every change is committed to SQLite first and applied to memory
only after the commit, so a failed write leaves memory and disk agreeing.
"""

from __future__ import annotations

import heapq
from typing import Any

from actors.nonce.store import Allocation, Attempt, Confirmed, NonceStore

LEASED = "leased"
SENT = "sent"
GAP_FILL_PREFIX = "gap-fill:"
REOPENED_PREFIX = "reopened:"  # the request id of a nonce the chain lost that we hold no record of
# Records of confirmed nonces kept (the highest ones), pruned in the confirm's transaction.
# Why keep any: a chain can lose mined blocks with the same genesis (a deep reorg, a failover
# to a node behind, a dev chain restarted on a state file a second old). The nonces it lost
# must then be mined again, and only the executor's own signed transaction restores what it
# did (a no-op would not). 256 nonces is far deeper than any reorg or state-file lag, and
# bounds the table.
CONFIRMED_KEEP = 256


class NonceError(ValueError):
    """A request that contradicts the ledger (e.g. confirming an unknown nonce)."""


class NonceLedger:
    def __init__(self, store: NonceStore, clock: Any, *, lease_seconds: float, gap_fill_after_seconds: float) -> None:
        self._store = store
        self._clock = clock
        self.configure(lease_seconds, gap_fill_after_seconds)
        meta, self._allocs, self._free = store.load()
        self._confirmed: dict[int, Confirmed] = store.load_confirmed()
        # Attempts of live allocations and of the kept confirmed records (a nonce is never both).
        self._attempts = store.load_attempts()
        self._free_heap = list(self._free)
        heapq.heapify(self._free_heap)
        self._by_request = {a.request_id: a.nonce for a in self._allocs.values()}
        self.meta = meta
        self.next_nonce = int(meta.get("next_nonce", 0))
        self.confirmed_count = int(meta.get("confirmed_count", 0))
        self.chain_latest = int(meta.get("chain_latest", 0))
        self.allocations = 0
        self.replays = 0
        self.reclaimed = 0
        self.failed = 0
        self.gap_fills = 0

    def configure(self, lease_seconds: float, gap_fill_after_seconds: float) -> None:
        self._lease_ns = int(lease_seconds * 1e9)
        self._gap_ns = int(gap_fill_after_seconds * 1e9)

    # -- queries
    def is_pending(self, nonce: int) -> bool:
        return nonce in self._allocs

    def allocation(self, nonce: int) -> Allocation | None:
        return self._allocs.get(nonce)

    def attempts(self, nonce: int) -> list[Attempt]:
        return list(self._attempts.get(nonce, ()))

    def confirmed_record(self, nonce: int) -> Confirmed | None:
        return self._confirmed.get(nonce)

    @property
    def confirmed_records(self) -> list[int]:
        """The confirmed nonces whose records (and attempts) are kept."""
        return sorted(self._confirmed)

    def rebroadcastable(self, nonce: int) -> Attempt | None:
        """The signed transaction to send again for a live nonce: the attempt named by its
        allocation (the last one reported; for a reopened nonce, the one the chain had
        mined), if its raw is journaled."""
        a = self._allocs.get(nonce)
        if a is None or not a.tx_hash:
            return None
        for at in self._attempts.get(nonce, ()):
            if at.tx_hash == a.tx_hash and at.raw is not None:
                return at
        return None

    def settled(self, nonce: int) -> bool:
        """Below next_nonce, neither allocated nor free: confirmed, or adopted from the chain's count."""
        return nonce < self.next_nonce and nonce not in self._allocs and nonce not in self._free

    def sent_nonces(self) -> list[int]:
        return sorted(n for n, a in self._allocs.items() if a.status == SENT)

    @property
    def free_nonces(self) -> list[int]:
        return sorted(self._free)

    @property
    def highest_sent(self) -> int | None:
        sent = [n for n, a in self._allocs.items() if a.status == SENT]
        return max(sent) if sent else None

    # -- identity
    def set_identity(self, chain_id: int, genesis_hash: str) -> None:
        with self._store.transaction():
            self._store.set_meta("chain_id", chain_id)
            self._store.set_meta("genesis_hash", genesis_hash)
        self.meta["chain_id"], self.meta["genesis_hash"] = chain_id, genesis_hash

    # -- changes
    def allocate(self, request_id: str) -> tuple[int, bool]:
        """The nonce for this request: the same one again for a retried request
        whose allocation is still live (True = replay), else the lowest free."""
        known = self._by_request.get(request_id)
        if known is not None and known in self._allocs:
            self.replays += 1
            return known, True
        nonce = self._peek_free()
        if nonce is None:
            nonce = self.next_nonce
        self._lease(nonce, request_id)
        self.allocations += 1
        return nonce, False

    def take(self, nonce: int, request_id: str) -> None:
        """Lease a specific free nonce (used to fill a gap)."""
        if nonce not in self._free:
            raise NonceError(f"nonce {nonce} is not free")
        self._lease(nonce, request_id)

    def _lease(self, nonce: int, request_id: str) -> None:
        now = self._clock.time_ns()
        a = Allocation(nonce, request_id, LEASED, now + self._lease_ns, None, now)
        next_nonce = max(self.next_nonce, nonce + 1)
        with self._store.transaction():
            self._store.remove_free(nonce)
            self._store.put_allocation(a)
            if next_nonce != self.next_nonce:
                self._store.set_meta("next_nonce", next_nonce)
        self._free.pop(nonce, None)  # its heap entry is skipped lazily
        self.next_nonce = next_nonce
        self._allocs[nonce] = a
        self._by_request[request_id] = nonce

    def mark_sent(
        self, nonce: int, tx_hash: str, max_fee: int | None = None, tip: int | None = None,
        raw: bytes | None = None,
    ) -> None:
        a = self._allocs.get(nonce)
        if a is None:
            raise NonceError(f"nonce {nonce} is not allocated")
        sent = Allocation(a.nonce, a.request_id, SENT, None, tx_hash or a.tx_hash, a.allocated_ns)
        attempts = list(self._attempts.get(nonce, ()))
        index = next((i for i, at in enumerate(attempts) if at.tx_hash == tx_hash), None)
        attempt = None
        if tx_hash and index is None:
            attempt = Attempt(tx_hash, max_fee, tip, self._clock.time_ns(), raw)
            attempts.append(attempt)
        elif tx_hash and index is not None:  # a repeated report fills in what the first one lacked
            old = attempts[index]
            merged = Attempt(tx_hash, old.max_fee if old.max_fee is not None else max_fee,
                             old.tip if old.tip is not None else tip, old.sent_ns,
                             old.raw if old.raw is not None else raw)
            if merged != old:
                attempt = attempts[index] = merged
        with self._store.transaction():
            self._store.put_allocation(sent)
            if attempt is not None:
                self._store.add_attempt(nonce, attempt)
        self._allocs[nonce] = sent
        if attempt is not None:
            self._attempts[nonce] = attempts

    def mark_confirmed(self, nonce: int, mined_hash: str | None = None) -> bool:
        """Mined. Idempotent: False if the nonce was already settled. `mined_hash`: which
        of our attempts the chain mined (None: none of ours, or not known), kept in the
        confirmed record: the one signed transaction to re-broadcast if the chain loses it."""
        a = self._allocs.get(nonce)
        if a is None:
            return False
        record = Confirmed(nonce, a.request_id, mined_hash, a.allocated_ns, self._clock.time_ns())
        prune = sorted(set(self._confirmed) | {nonce}, reverse=True)[CONFIRMED_KEEP:]
        with self._store.transaction():
            self._store.confirm(record, prune)
            self._store.set_meta("confirmed_count", self.confirmed_count + 1)
        del self._allocs[nonce]
        if self._by_request.get(a.request_id) == nonce:
            del self._by_request[a.request_id]
        self._confirmed[nonce] = record
        for n in prune:
            self._confirmed.pop(n, None)
            self._attempts.pop(n, None)
        self.confirmed_count += 1
        return True

    def mark_failed(self, nonce: int) -> None:
        """Definitely not going to be mined: the nonce goes back to the pool."""
        a = self._allocs.get(nonce)
        if a is None:
            raise NonceError(f"nonce {nonce} is not allocated")
        if nonce < self.chain_latest:
            raise NonceError(f"nonce {nonce} is already mined on chain")
        self._release(nonce)
        self.failed += 1

    def _forget(self, a: Allocation) -> None:
        del self._allocs[a.nonce]
        self._attempts.pop(a.nonce, None)
        if self._by_request.get(a.request_id) == a.nonce:
            del self._by_request[a.request_id]

    def _release(self, nonce: int) -> None:
        a = self._allocs[nonce]
        now = self._clock.time_ns()
        # Compaction: a free nonce at the top is no gap, lower next_nonce instead.
        free = set(self._free) | {nonce}
        next_nonce = self.next_nonce
        while next_nonce - 1 in free and next_nonce - 1 >= self.chain_latest:
            next_nonce -= 1
            free.discard(next_nonce)
        with self._store.transaction():
            self._store.delete_allocation(nonce)
            self._store.add_free(nonce, now)
            for n in range(next_nonce, self.next_nonce):
                self._store.remove_free(n)
            self._store.set_meta("next_nonce", next_nonce)
        self._forget(a)
        self._free[nonce] = now
        for n in range(next_nonce, self.next_nonce):
            self._free.pop(n, None)
        self.next_nonce = next_nonce
        if nonce in self._free:
            heapq.heappush(self._free_heap, nonce)

    def _peek_free(self) -> int | None:
        while self._free_heap:
            n = self._free_heap[0]
            if n in self._free:  # the heap may hold compacted or taken entries
                return n
            heapq.heappop(self._free_heap)
        return None

    def observe_latest(self, chain_latest: int) -> None:
        """The chain was seen with `chain_latest` transactions mined: the mark rises
        (SQLite first), never falls here; the next reconcile confirms what it passed."""
        if chain_latest <= self.chain_latest:
            return
        with self._store.transaction():
            self._store.set_meta("chain_latest", chain_latest)
        self.chain_latest = chain_latest

    def rewind(self, chain_latest: int) -> dict[str, list[int]]:
        """The chain lost blocks (same genesis): its mined count fell to `chain_latest`.
        Every nonce in [chain_latest, old chain_latest) goes back to SENT, with its
        journaled attempts when a record of it is kept; chain_latest follows the chain down."""
        if chain_latest >= self.chain_latest:
            return {"reopened": [], "with_raw": [], "without_raw": []}
        return self.reopen(range(chain_latest, self.chain_latest), chain_latest=chain_latest)

    def reopen(self, nonces: Any, *, chain_latest: int | None = None) -> dict[str, list[int]]:
        """Settled nonces the chain does not have: live again as SENT, so that recovery
        re-broadcasts their signed transaction (kept record) or replaces them by a no-op."""
        now = self._clock.time_ns()
        rows: list[tuple[Allocation, bool]] = []
        taken = {a.request_id for a in self._allocs.values()}  # request ids are unique among allocations
        for n in sorted(set(nonces), reverse=True):  # a request id used twice stays with its latest nonce
            if n in self._allocs or n in self._free:
                continue
            rec = self._confirmed.get(n)
            rid = rec.request_id if rec is not None else f"{REOPENED_PREFIX}{n}"
            if rid in taken:  # its request id moved on to another nonce
                rid = f"{REOPENED_PREFIX}{n}:{rid}"
            taken.add(rid)
            a = Allocation(n, rid, SENT, None, rec.tx_hash if rec else None, rec.allocated_ns if rec else now)
            rows.append((a, rec is not None))
        rows.reverse()
        restored = sum(1 for _, had in rows if had)
        latest = self.chain_latest if chain_latest is None else chain_latest
        next_nonce = max([self.next_nonce] + [a.nonce + 1 for a, _ in rows])
        with self._store.transaction():
            for a, _ in rows:
                self._store.reopen(a)
            if restored:
                self._store.set_meta("confirmed_count", self.confirmed_count - restored)
            if latest != self.chain_latest:
                self._store.set_meta("chain_latest", latest)
            if next_nonce != self.next_nonce:
                self._store.set_meta("next_nonce", next_nonce)
        for a, _ in rows:
            self._confirmed.pop(a.nonce, None)
            self._allocs[a.nonce] = a
            self._by_request[a.request_id] = a.nonce
        self.confirmed_count -= restored
        self.chain_latest, self.next_nonce = latest, next_nonce
        reopened = [a.nonce for a, _ in rows]
        with_raw = [n for n in reopened if self.rebroadcastable(n) is not None]
        return {"reopened": reopened, "with_raw": with_raw,
                "without_raw": [n for n in reopened if n not in with_raw]}

    def reclaim_expired(self) -> list[int]:
        """Leases never reported as sent go back to the pool."""
        now = self._clock.time_ns()
        expired = [
            n for n, a in self._allocs.items()
            if a.status == LEASED and a.lease_expires_ns is not None and a.lease_expires_ns <= now
        ]
        for n in sorted(expired):
            self._release(n)
            self.reclaimed += 1
        return expired

    def gaps_to_fill(self) -> list[int]:
        """Free nonces below the highest sent one that nobody reused in time."""
        top = self.highest_sent
        if top is None:
            return []
        now = self._clock.time_ns()
        return sorted(n for n, t in self._free.items() if n < top and now - t >= self._gap_ns)

    def reconcile(
        self, chain_latest: int, chain_pending: int, mined: dict[int, str | None] | None = None
    ) -> dict[str, Any]:
        """Align with the chain's transaction counts (at start and on every poll).

        Below `chain_latest` everything is mined: confirm allocations, drop free
        entries. Up to `chain_pending` nonces sit in the node's pool: a leased
        one there was sent (we missed the report), so it stops expiring.
        """
        confirmed = sorted(n for n in self._allocs if n < chain_latest)
        for n in confirmed:
            self.mark_confirmed(n, (mined or {}).get(n))
        in_pool = sorted(n for n, a in self._allocs.items() if n < chain_pending and a.status == LEASED)
        for n in in_pool:
            self.mark_sent(n, self._allocs[n].tx_hash or "")
        dropped = [n for n in self._free if n < chain_pending]
        external = max(0, chain_pending - self.next_nonce)
        latest = max(self.chain_latest, chain_latest)
        next_nonce = max(self.next_nonce, chain_pending)  # nonces someone else sent
        with self._store.transaction():
            for n in dropped:
                self._store.remove_free(n)
            self._store.set_meta("next_nonce", next_nonce)
            self._store.set_meta("chain_latest", latest)
        for n in dropped:
            self._free.pop(n)
        self.chain_latest, self.next_nonce = latest, next_nonce
        return {"confirmed": confirmed, "adopted_in_pool": in_pool, "dropped_free": dropped, "external": external}

    def pending_nonces(self) -> list[int]:
        return sorted(self._allocs)

    def get_stats(self) -> dict[str, Any]:
        leased = sum(1 for a in self._allocs.values() if a.status == LEASED)
        return {
            "next_nonce": self.next_nonce,
            "pending_count": len(self._allocs),
            "confirmed_count": self.confirmed_count,
            "pending_nonces": self.pending_nonces()[:50],
            "leased_count": leased,
            "sent_count": len(self._allocs) - leased,
            "free_nonces": self.free_nonces[:50],
            "allocations": self.allocations,
            "replays": self.replays,
            "reclaimed": self.reclaimed,
            "failed": self.failed,
            "gap_fills": self.gap_fills,
            "chain_latest": self.chain_latest,
            "confirmed_records": len(self._confirmed),
        }
