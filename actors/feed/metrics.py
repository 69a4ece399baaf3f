"""The feed's Prometheus series (actors.runtime.metrics), read from its stats."""

from __future__ import annotations

from actors.runtime.metrics import counter, gauge

SERIES = (
    gauge("polyarb_feed_connected", "every market-channel connection is up", "connected"),
    gauge("polyarb_feed_connections_up", "market-channel connections up", "connections_up"),
    counter("polyarb_feed_connects_total", "connections opened", "connect_count"),
    counter("polyarb_feed_disconnects_total", "connections lost", "disconnect_count"),
    counter("polyarb_feed_messages_total", "market-channel messages", "message_count"),
    counter("polyarb_feed_duplicates_total", "duplicate messages dropped", "duplicate_count"),
    counter("polyarb_feed_sequence_gaps_total", "gaps found (the book is re-snapshotted)", "sequence_gap_count"),
    counter("polyarb_feed_malformed_total", "malformed messages counted and dropped", "core", "malformed"),
    counter("polyarb_feed_heartbeat_timeouts_total", "connections a missing heartbeat ended", "heartbeat_timeouts"),
    counter("polyarb_feed_stall_reconnects_total", "connections a silent stall ended", "stall_reconnects"),
    gauge("polyarb_feed_valid_books", "books valid now", "core", "valid_books"),
    gauge("polyarb_feed_tokens", "tokens subscribed", "core", "tokens"),
    counter("polyarb_feed_published_total", "book updates published", "published"),
    # Per connection (a list in the stats: each item's "id" is its label).
    gauge("polyarb_feed_last_data_age_seconds", "seconds since the connection's last data", "per_connection",
          label="connection", field="last_data_age_s"),
    gauge("polyarb_feed_connection_up", "the connection is up", "per_connection", label="connection",
          field="connected"),
    gauge("polyarb_feed_connection_assets", "assets the connection carries", "per_connection",
          label="connection", field="assets"),
)
