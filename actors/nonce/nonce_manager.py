"""NonceManager: the seed's API over the persistent ledger and the chain.

    manager = NonceManager(chain, store, clock, lease_seconds=30, gap_fill_after_seconds=10)
    await manager.initialize()            # recover from the store and the chain
    nonce = await manager.allocate_nonce("exec-42")   # idempotent per request id
    await manager.mark_sent(nonce, tx_hash)           # before or right after broadcasting
    await manager.mark_confirmed(nonce)   # or mark_failed(nonce): back to the pool

Allocation is serialised with an asyncio.Lock, which is never held across a
network call: chain reads and sends happen outside it, and the ledger update
that follows is a short critical section that re-checks what it decided on.

`initialize()` first checks the chain's identity (chain id, hash of block 0)
against the one stored with the state: the state of another chain (a
restarted anvil) is moved to `<state dir>/archive/<UTC time>/` and the
authority starts clean from the chain's counts.

`tick()` (run periodically by the actor) reconciles with the chain, reclaims
expired leases, fills gaps that nobody reused with zero-value self-transfers,
and recovers stuck SENT nonces. One whose every journaled hash has been
unknown to the node for `resend_after_seconds` is first re-broadcast (the
signed raw transaction the executor journaled with `mark_sent`); if there is
none, the re-broadcast fails, or the nonce is still unknown
`noop_after_seconds` later, it is replaced by a zero-value self-transfer that
outbids every known attempt by >= 10% + 1 wei.

Blocks lost: when the chain's mined count for the wallet falls below the
ledger's `chain_latest` with the same genesis (a deep reorg, a failover to a
node behind, a dev chain restarted on an old state file), the nonces the chain
lost go back to SENT with their journaled attempts (the ledger keeps the
records of recently confirmed nonces), so recovery re-broadcasts them; and
`chain_latest` follows the chain down. A settled nonce missing below one the
node holds (the node's pending count <= that nonce) is reopened the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.nonce.chain import NonceChain
from actors.nonce.ledger import CONFIRMED_KEEP, GAP_FILL_PREFIX, SENT, NonceError, NonceLedger
from actors.nonce.store import NonceStore
from actors.runtime.storage import archive_state

log = logging.getLogger(__name__)

_ALREADY_MINED = ("nonce too low",)
_ALREADY_IN_POOL = ("already known", "transaction already imported")
_UNDERPRICED = ("underpriced",)
REPLACE_BUMP_PERCENT = 10  # geth's minimum replacement bump (+ 1 wei)


def outbid(value: int) -> int:
    return value * (100 + REPLACE_BUMP_PERCENT) // 100 + 1


class NonceManager:
    def __init__(
        self,
        chain: NonceChain,
        store: NonceStore,
        clock: Any,
        *,
        lease_seconds: float = 30.0,
        gap_fill_after_seconds: float = 10.0,
        resend_after_seconds: float = 15.0,
        noop_after_seconds: float = 30.0,
    ) -> None:
        self._chain = chain
        self._clock = clock
        self.store = store
        self._lease_s, self._gap_s = lease_seconds, gap_fill_after_seconds
        self.ledger = NonceLedger(
            store, clock, lease_seconds=lease_seconds, gap_fill_after_seconds=gap_fill_after_seconds
        )
        self._resend_ns = int(resend_after_seconds * 1e9)
        self._noop_ns = int(noop_after_seconds * 1e9)
        self._lock = asyncio.Lock()
        self.initialized = False
        self.chain_pending = 0
        self.chain_errors = 0
        self.chain_ok = False  # the last periodic resync reached the chain (`/healthz`)
        self.gap_fill_errors = 0
        self.recoveries = 0  # rebroadcasts + noop_replacements
        self.rebroadcasts = 0
        self.noop_replacements = 0
        self.recovery_errors = 0
        self.chain_rewinds = 0  # the chain lost blocks (same genesis): nonces reopened
        self.reopened_nonces = 0  # settled nonces made SENT again (blocks lost, or missing below a pooled one)
        self.unmined_confirms = 0
        self.archived_state: str | None = None
        self.last_reconcile: dict[str, Any] = {}
        self._unknown_since: dict[int, int] = {}  # SENT nonce -> when all its hashes were first unknown
        self._rebroadcast_at: dict[int, int] = {}  # SENT nonce -> when its raw was re-broadcast (while unknown)
        self._fee_floor: dict[int, tuple[int, int]] = {}  # refused replacement fees, to outbid next time
        # Count reads are numbered when they start. A count lower than the ledger's is taken for
        # blocks lost only when read after the read that set the ledger's (concurrent resyncs).
        self._read_seq = 0
        self._latest_seq = 0
        self.chain_behind = 0  # a drop deeper than the kept records: taken for a node behind, not rewound
        self._behind_logged: tuple[int, int] | None = None

    def configure(
        self, lease_seconds: float, gap_fill_after_seconds: float, resend_after_seconds: float | None = None,
        noop_after_seconds: float | None = None,
    ) -> None:
        self._lease_s, self._gap_s = lease_seconds, gap_fill_after_seconds
        self.ledger.configure(lease_seconds, gap_fill_after_seconds)
        if resend_after_seconds is not None:
            self._resend_ns = int(resend_after_seconds * 1e9)
        if noop_after_seconds is not None:
            self._noop_ns = int(noop_after_seconds * 1e9)

    async def initialize(self) -> dict[str, Any]:
        """Recover: the persisted ledger of THIS chain, aligned with the chain's counts."""
        await self.check_identity()
        report = await self.resync()
        self.initialized = self.chain_ok = True
        log.info("nonce authority recovered: next nonce %d", self.ledger.next_nonce,
                 extra={"fields": {"reconcile": report}})
        return report

    # -- chain identity
    async def check_identity(self) -> str | None:
        """Archive the state if it belongs to another chain; returns the archive path."""
        chain_id = await self._chain.chain_id()
        genesis = await self._chain.genesis_hash()
        meta = self.ledger.meta
        stored_id, stored_genesis = meta.get("chain_id"), meta.get("genesis_hash")
        reason = None
        if stored_genesis is not None:
            if stored_genesis != genesis or stored_id != chain_id:
                reason = (f"it belongs to chain id {stored_id} with genesis {stored_genesis}, "
                          f"the node is chain id {chain_id} with genesis {genesis}")
        elif not self.store.is_empty():
            # State written before the identity was recorded: a chain whose mined
            # count went backwards is not the chain it was written for.
            latest, _ = await self._chain.transaction_counts()
            if self.ledger.chain_latest > latest:
                reason = (f"it has no chain identity and records {self.ledger.chain_latest} mined "
                          f"transactions, the node only {latest}")
        if reason is None:
            if stored_genesis is None:
                self.ledger.set_identity(chain_id, genesis)
            return None
        async with self._lock:
            dest = self._archive(reason)
            self.ledger.set_identity(chain_id, genesis)
        return dest

    def _archive(self, reason: str) -> str:
        path = self.store.path
        self.store.close()
        stamp = datetime.fromtimestamp(self._clock.time_ns() / 1e9, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        dest = archive_state(path, Path(path).parent / "archive", stamp)
        self.store = NonceStore(path)
        self.ledger = NonceLedger(
            self.store, self._clock, lease_seconds=self._lease_s, gap_fill_after_seconds=self._gap_s
        )
        self._unknown_since.clear()
        self._rebroadcast_at.clear()
        self._fee_floor.clear()
        self.archived_state = str(dest)
        log.warning("nonce state of another chain moved aside to %s: %s; starting clean from the chain's counts",
                    dest, reason, extra={"fields": {"archived_state": str(dest), "reason": reason}})
        return str(dest)

    async def resync(self) -> dict[str, Any]:
        seq, latest, pending = await self._counts()
        if latest < self.ledger.chain_latest and await self.check_identity() is not None:
            seq, latest, pending = await self._counts()  # a new chain under us: archived, start clean
        # The allocations the chain has passed are confirmed below: with the hash it mined.
        mined = {n: await self._mined_hash(n) for n in self.ledger.pending_nonces() if n < latest}
        rewound: dict[str, Any] = {}
        async with self._lock:
            old = self.ledger.chain_latest
            if latest < old and seq > self._latest_seq:  # same genesis (the state was kept): blocks lost
                if old - latest <= CONFIRMED_KEEP:
                    rewound = self.ledger.rewind(latest)
                    self._blocks_lost(old, latest, rewound)
                else:
                    self._far_behind(old, latest)
            if latest >= old:
                self.chain_behind = 0
            self._latest_seq = max(self._latest_seq, seq)
            self.chain_pending = pending
            self.last_reconcile = self.ledger.reconcile(latest, pending, mined)
            if rewound:
                self.last_reconcile["rewound"] = rewound["reopened"]
        return {"chain_latest": latest, "chain_pending": pending, **self.last_reconcile}

    async def _counts(self) -> tuple[int, int, int]:
        """(read number, latest, pending)."""
        self._read_seq += 1
        seq = self._read_seq
        latest, pending = await self._chain.transaction_counts()
        return seq, latest, max(latest, pending)  # a node restarted on its state may answer pending < latest

    def _far_behind(self, old: int, new: int) -> None:
        # Deeper than any reorg and than the records kept: most likely a node still syncing, or one
        # far behind. Reopening thousands of nonces would send as many no-ops: wait for it instead.
        self.chain_behind = old - new
        if self._behind_logged != (old, new):
            self._behind_logged = (old, new)
            log.warning(
                "the node reports %d mined transactions of the wallet, the ledger %d: %d fewer, deeper than "
                "the %d confirmed nonces whose records are kept; taken for a node behind, not rewound",
                new, old, old - new, CONFIRMED_KEEP,
                extra={"fields": {"old_latest": old, "new_latest": new}},
            )

    def _blocks_lost(self, old: int, new: int, rewound: dict[str, list[int]]) -> None:
        """Under the lock, after the ledger's commit: count, forget the timers, log."""
        self.chain_rewinds += 1
        self.reopened_nonces += len(rewound["reopened"])
        for n in rewound["reopened"]:  # a fresh grace period, and a fresh re-broadcast
            self._unknown_since.pop(n, None)
            self._rebroadcast_at.pop(n, None)
        hashes = {n: [at.tx_hash for at in self.ledger.attempts(n)] for n in rewound["reopened"]}
        log.warning(
            "the chain lost blocks: the wallet's mined count went from %d back to %d with the same genesis; "
            "nonces %s are SENT again (%s to re-broadcast, %s without a signed transaction: to replace by a "
            "no-op); hashes %s",
            old, new, rewound["reopened"], rewound["with_raw"], rewound["without_raw"], hashes,
            extra={"fields": {"old_latest": old, "new_latest": new, "nonces": rewound["reopened"],
                              "with_raw": rewound["with_raw"], "without_raw": rewound["without_raw"],
                              "hashes": hashes}},
        )

    # -- the seed API
    async def allocate_nonce(self, request_id: str | None = None) -> int:
        async with self._lock:
            nonce, _ = self.ledger.allocate(request_id or os.urandom(12).hex())
            return nonce

    get_nonce = allocate_nonce

    async def mark_sent(
        self, nonce: int, tx_hash: str, max_fee: int | None = None, tip: int | None = None,
        raw: bytes | None = None,
    ) -> None:
        """`raw`: the signed transaction, re-broadcast if the node forgets it."""
        async with self._lock:
            self.ledger.mark_sent(nonce, tx_hash, max_fee, tip, raw)
            self._unknown_since.pop(nonce, None)  # a new attempt: its own grace period
            self._rebroadcast_at.pop(nonce, None)

    async def mark_confirmed(self, nonce: int, tx_hash: str | None = None) -> bool:
        """Mined. A nonce the chain has not passed is never confirmed (the sender
        saw `nonce too high`, or its report is wrong): with no hash of it known
        to the node (and none named by the sender's receipt) it goes back to the
        pool, else reconciliation confirms it once mined. `tx_hash`: the attempt whose receipt the sender holds; one of
        ours, it is the mined one, without asking the node (which may be going
        down: a confirm without the hash lost the signed transaction to a no-op
        when the chain then lost the block). False when nothing was confirmed."""
        if not self.ledger.is_pending(nonce):
            return False
        latest = pending = seq = -1
        ours = tx_hash is not None and any(at.tx_hash == tx_hash for at in self.ledger.attempts(nonce))
        known, mined = False, tx_hash if ours else None
        try:
            if nonce >= self.ledger.chain_latest:
                seq, latest, pending = await self._counts()
            known = 0 <= latest <= nonce and await self._any_known(nonce)
            if not (0 <= latest <= nonce) and not ours:
                mined = await self._mined_hash(nonce)
        except Exception as exc:
            self.chain_errors += 1
            if not ours:
                log.warning("cannot check confirm of nonce %d against the chain (%s): left to reconciliation",
                            nonce, exc)
                return False
            latest = pending = seq = -1  # the sender holds its receipt: confirmed on it, with its hash
            log.info("confirm of nonce %d on the sender's receipt %s (the chain did not answer: %s)",
                     nonce, tx_hash, exc)
        if 0 <= latest <= nonce:
            async with self._lock:
                self.unmined_confirms += 1
                # The sender's receipt names one of our signed transactions: it mined, in a
                # block the chain has lost since (a restarted dev chain, a reorg). Never back
                # to the pool (the next transaction would take the nonce and the step would
                # never run): kept SENT, its signed transaction re-broadcast like any lost one.
                released = not known and not ours and self.ledger.is_pending(nonce)
                if released:
                    self.ledger.mark_failed(nonce)
                self.chain_pending = pending
                self._latest_seq = max(self._latest_seq, seq)
                self.last_reconcile = self.ledger.reconcile(latest, pending)
            why = ("back to the pool" if released else "its signed transaction mined in a block the chain lost: "
                   "kept, to re-broadcast" if ours and not known else "a hash of it is known: left to reconciliation")
            log.warning("confirm of nonce %d refused: the chain has mined only %d; %s", nonce, latest, why)
            return False
        async with self._lock:
            done = self.ledger.mark_confirmed(nonce, mined)
            if latest > 0 and seq > self._latest_seq:
                # The mark lost blocks are judged by: seen now, not at the next tick. A chain
                # that dies before that tick (anvil SIGKILLed) would take this nonce with it
                # unnoticed, and the next transaction would reuse it.
                self.ledger.observe_latest(latest)
                self._latest_seq = seq
            return done

    async def _mined_hash(self, nonce: int) -> str | None:
        """Which of our hashes the chain mined at `nonce` (once the chain has passed it, a
        hash the node knows is a mined one); None: none of ours, someone else used the
        nonce. Kept with the confirmed record: if the chain loses that block, only the
        signed transaction that ran is re-broadcast, never an attempt that did not (the
        executor then retried its call at another nonce: it would run twice)."""
        a = self.ledger.allocation(nonce)
        hashes = [at.tx_hash for at in self.ledger.attempts(nonce)] or ([a.tx_hash] if a and a.tx_hash else [])
        for h in reversed(hashes):
            if await self._chain.transaction_known(h):
                return h
        return None

    async def mark_failed(self, nonce: int) -> None:
        async with self._lock:
            self.ledger.mark_failed(nonce)

    def is_pending(self, nonce: int) -> bool:
        return self.ledger.is_pending(nonce)

    # -- the periodic work
    async def tick(self) -> dict[str, Any]:
        """Reconcile with the chain, reclaim expired leases, fill stale gaps, recover stuck nonces."""
        try:
            await self.resync()
        except Exception as exc:  # the node is down: keep serving from the ledger
            self.chain_errors += 1
            self.chain_ok = False
            log.warning("chain unreachable during nonce resync: %s", exc)
            return {"error": str(exc)}
        self.chain_ok = True
        async with self._lock:
            reclaimed = self.ledger.reclaim_expired()
            gaps = []
            for nonce in self.ledger.gaps_to_fill():
                self.ledger.take(nonce, f"{GAP_FILL_PREFIX}{nonce}")
                gaps.append(nonce)
        for nonce in gaps:  # sent outside the lock
            await self._fill_gap(nonce)
        recovered = await self._recover_stuck()
        return {"reclaimed": reclaimed, "gaps_filled": gaps, "recovered": recovered}

    def _still(self, nonce: int, request_id: str) -> bool:
        a = self.ledger.allocation(nonce)
        return a is not None and a.request_id == request_id

    async def _fill_gap(self, nonce: int) -> None:
        rid = f"{GAP_FILL_PREFIX}{nonce}"
        try:
            max_fee, tip = await self._chain.fee_caps()
            tx_hash = await self._chain.send_self_transfer(nonce, max_fee=max_fee, tip=tip)
        except Exception as exc:
            text = str(exc).lower()
            async with self._lock:
                if not self._still(nonce, rid):
                    return
                if any(t in text for t in _ALREADY_MINED):
                    self.ledger.mark_confirmed(nonce)
                    return
                if any(t in text for t in _ALREADY_IN_POOL):
                    self.ledger.mark_sent(nonce, "")
                    return
                self.gap_fill_errors += 1
                log.warning("gap fill at nonce %d failed: %s", nonce, exc)
                if nonce >= self.ledger.chain_latest:
                    self.ledger.mark_failed(nonce)
            return
        async with self._lock:
            if self._still(nonce, rid):
                self.ledger.mark_sent(nonce, tx_hash, max_fee, tip)
            self.ledger.gap_fills += 1
        log.info("filled nonce gap %d with a self-transfer %s", nonce, tx_hash)

    async def _any_known(self, nonce: int) -> bool:
        hashes = [at.tx_hash for at in self.ledger.attempts(nonce)]
        a = self.ledger.allocation(nonce)
        if not hashes and a is not None and a.tx_hash:
            hashes = [a.tx_hash]
        if not hashes:  # adopted from the pool count without a hash: ask the count
            return nonce < self.chain_pending
        for h in hashes:
            if await self._chain.transaction_known(h):
                return True
        return False

    async def _recover_stuck(self) -> list[int]:
        """Recover SENT nonces the node has forgotten (evicted from its pool, lost
        with blocks, or a chain that never saw them): re-broadcast the journaled
        signed transaction first, replace by a zero-value self-transfer later."""
        now = self._clock.time_ns()
        candidates = [n for n in self.ledger.sent_nonces() if n >= self.ledger.chain_latest]
        for timers in (self._unknown_since, self._rebroadcast_at):
            for n in [n for n in timers if n not in candidates]:
                del timers[n]
        rebroadcast: list[int] = []
        noop: dict[int, str] = {}  # nonce -> why a no-op replaces it
        queued: list[int] = []  # known to the node, yet at or above its pending count: a lower nonce is missing
        try:
            for n in candidates:
                if await self._any_known(n):
                    self._unknown_since.pop(n, None)
                    self._rebroadcast_at.pop(n, None)
                    if n >= self.chain_pending:
                        queued.append(n)
                    continue
                since = self._unknown_since.setdefault(n, now)
                if n in self._rebroadcast_at:
                    if now - self._rebroadcast_at[n] >= self._noop_ns:
                        noop[n] = f"still unknown {self._noop_ns / 1e9:.1f}s after its re-broadcast"
                elif now - since >= self._resend_ns:
                    if self.ledger.rebroadcastable(n) is not None:
                        rebroadcast.append(n)
                    else:
                        noop[n] = f"unknown for {(now - since) / 1e9:.1f}s, no signed transaction of it journaled"
        except Exception as exc:
            self.chain_errors += 1
            log.warning("chain unreachable while checking sent nonces: %s", exc)
            return []
        if queued:
            await self._reopen_missing(max(queued))
        recovered = []
        for n in rebroadcast:
            if await self._rebroadcast(n, now):
                recovered.append(n)
            elif n in self._unknown_since and n not in self._rebroadcast_at:  # refused: the no-op now
                noop[n] = "its re-broadcast was refused"
        for n in sorted(noop):
            if await self._replace(n, noop[n]):
                recovered.append(n)
        return sorted(recovered)

    async def _reopen_missing(self, above: int) -> None:
        """The node holds nonce `above` but its pending count says a lower one is
        missing. Read afresh (the tick's counts may predate a confirm): settled
        nonces in [pending, above) are what the node lacks."""
        try:
            _, latest, pending = await self._counts()
        except Exception as exc:
            self.chain_errors += 1
            log.warning("chain unreachable while checking for missing nonces: %s", exc)
            return
        async with self._lock:
            low = max(pending, self.ledger.chain_latest)
            missing = [n for n in range(low, above) if self.ledger.settled(n)]
            if not missing:
                return
            reopened = self.ledger.reopen(missing)
            self.reopened_nonces += len(reopened["reopened"])
            for n in reopened["reopened"]:
                self._unknown_since.pop(n, None)
                self._rebroadcast_at.pop(n, None)
            hashes = {n: [at.tx_hash for at in self.ledger.attempts(n)] for n in reopened["reopened"]}
        if reopened["reopened"]:
            log.warning(
                "nonces %s are missing on the chain below nonce %d, which the node holds (its pending count is "
                "%d, mined %d): SENT again (%s to re-broadcast, %s to replace by a no-op); hashes %s",
                reopened["reopened"], above, pending, latest, reopened["with_raw"],
                reopened["without_raw"], hashes,
                extra={"fields": {"nonces": reopened["reopened"], "above": above, "hashes": hashes}},
            )

    async def _rebroadcast(self, nonce: int, now: int) -> bool:
        """Send the journaled signed transaction of `nonce` again: the last one reported
        (for a nonce the chain lost, the one it had mined). True when the node took it
        (or already has it, or has mined the nonce)."""
        a = self.ledger.allocation(nonce)
        latest = self.ledger.rebroadcastable(nonce)
        if a is None or a.status != SENT or latest is None or latest.raw is None:
            return False
        hashes = [at.tx_hash for at in self.ledger.attempts(nonce)]
        try:
            tx_hash = await self._chain.send_raw_transaction(latest.raw)
            answer = "accepted"
        except Exception as exc:
            text = str(exc).lower()
            if any(t in text for t in _ALREADY_MINED) or any(t in text for t in _ALREADY_IN_POOL):
                tx_hash, answer = latest.tx_hash, str(exc)
            else:
                self.recovery_errors += 1
                log.warning("re-broadcasting stuck nonce %d (%s) failed: %s; replacing it by a no-op",
                            nonce, latest.tx_hash, exc,
                            extra={"fields": {"nonce": nonce, "hashes": hashes, "error": str(exc)}})
                return False
        async with self._lock:
            if tx_hash and tx_hash != latest.tx_hash and self.ledger.is_pending(nonce):
                self.ledger.mark_sent(nonce, tx_hash, latest.max_fee, latest.tip, latest.raw)
            self._rebroadcast_at[nonce] = now
            self.rebroadcasts += 1
            self.recoveries += 1
        log.warning(
            "recovered stuck nonce %d by re-broadcasting its signed transaction %s: its hashes %s were unknown "
            "to the node for %.1fs (node: %s); a no-op replaces it if it stays unknown for %.1fs",
            nonce, latest.tx_hash, hashes, (now - self._unknown_since.get(nonce, now)) / 1e9, answer,
            self._noop_ns / 1e9,
            extra={"fields": {"nonce": nonce, "hashes": hashes, "rebroadcast": latest.tx_hash,
                              "request_id": a.request_id}},
        )
        return True

    async def _replace(self, nonce: int, why: str) -> bool:
        a = self.ledger.allocation(nonce)
        if a is None or a.status != SENT:
            return False
        attempts = self.ledger.attempts(nonce)
        hashes = [at.tx_hash for at in attempts] or [a.tx_hash or ""]
        try:
            cur_fee, cur_tip = await self._chain.fee_caps()
            fees = [(at.max_fee, at.tip) for at in attempts if at.max_fee is not None and at.tip is not None]
            if nonce in self._fee_floor:
                fees.append(self._fee_floor[nonce])
            if fees:
                max_fee = max(outbid(max(f for f, _ in fees)), cur_fee)
                tip = max(outbid(max(t for _, t in fees)), cur_tip)
            else:  # the sender reported no fees: outbid what it most likely paid, today's caps
                max_fee, tip = outbid(cur_fee), outbid(cur_tip)
            max_fee = max(max_fee, tip)
            tx_hash = await self._chain.send_self_transfer(nonce, max_fee=max_fee, tip=tip)
        except Exception as exc:
            text = str(exc).lower()
            if any(t in text for t in _ALREADY_MINED) or any(t in text for t in _ALREADY_IN_POOL):
                self._unknown_since.pop(nonce, None)  # the next resync settles it
                self._rebroadcast_at.pop(nonce, None)
                return False
            if any(t in text for t in _UNDERPRICED):
                self._fee_floor[nonce] = (max_fee, tip)
            self.recovery_errors += 1
            log.warning("replacing stuck nonce %d failed: %s", nonce, exc)
            return False
        async with self._lock:
            if self.ledger.is_pending(nonce):
                self.ledger.mark_sent(nonce, tx_hash, max_fee, tip)
            self.recoveries += 1
            self.noop_replacements += 1
            self._unknown_since.pop(nonce, None)
            self._rebroadcast_at.pop(nonce, None)
            self._fee_floor.pop(nonce, None)
        log.warning(
            "recovered stuck nonce %d: the node knows none of its hashes %s (%s); "
            "replaced by a zero-value self-transfer %s (max fee %d, tip %d)",
            nonce, hashes, why, tx_hash, max_fee, tip,
            extra={"fields": {"nonce": nonce, "hashes": hashes, "replacement": tx_hash, "why": why,
                              "max_fee": max_fee, "tip": tip, "request_id": a.request_id}},
        )
        return True

    def get_stats(self) -> dict[str, Any]:
        return {
            **self.ledger.get_stats(),
            "chain_pending": self.chain_pending,
            "initialized": self.initialized,
            "chain_errors": self.chain_errors,
            "chain_ok": self.chain_ok,
            "gap_fill_errors": self.gap_fill_errors,
            "recoveries": self.recoveries,
            "rebroadcasts": self.rebroadcasts,
            "noop_replacements": self.noop_replacements,
            "recovery_errors": self.recovery_errors,
            "chain_rewinds": self.chain_rewinds,
            "reopened_nonces": self.reopened_nonces,
            "chain_behind": self.chain_behind,
            "unknown_sent": sorted(self._unknown_since)[:50],
            "unmined_confirms": self.unmined_confirms,
            "archived_state": self.archived_state,
        }


__all__ = ["NonceError", "NonceManager"]
