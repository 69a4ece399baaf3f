"""The nonce authority's Prometheus series (actors.runtime.metrics), read from its stats."""

from __future__ import annotations

from actors.runtime.metrics import counter, gauge

SERIES = (
    gauge("polyarb_nonce_next", "the next nonce the authority hands out", "next_nonce"),
    gauge("polyarb_nonce_pending", "nonces allocated and not confirmed", "pending_count"),
    gauge("polyarb_nonce_leased", "nonces leased, not yet sent", "leased_count"),
    gauge("polyarb_nonce_sent", "nonces sent, not yet mined", "sent_count"),
    gauge("polyarb_nonce_chain_latest", "the wallet's mined transaction count", "chain_latest"),
    counter("polyarb_nonce_allocations_total", "nonces allocated", "allocations"),
    counter("polyarb_nonce_replays_total", "allocations answered again for the same request", "replays"),
    counter("polyarb_nonce_reclaimed_total", "leases that expired and were reclaimed", "reclaimed"),
    counter("polyarb_nonce_failed_total", "nonces released as failed", "failed"),
    counter("polyarb_nonce_gap_fills_total", "gaps filled with a self-transfer", "gap_fills"),
    counter("polyarb_nonce_recoveries_total", "stuck nonces recovered (re-broadcasts and no-ops)", "recoveries"),
    counter("polyarb_nonce_chain_rewinds_total", "times the chain lost blocks (same genesis)", "chain_rewinds"),
    counter("polyarb_nonce_chain_errors_total", "chain reads that failed", "chain_errors"),
    gauge("polyarb_nonce_initialized", "synced with the chain at start", "initialized"),
    gauge("polyarb_nonce_chain_ok", "the last periodic resync reached the chain", "chain_ok"),
)
