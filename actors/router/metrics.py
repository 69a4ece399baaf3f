"""The router's Prometheus series (actors.runtime.metrics), read from its stats."""

from __future__ import annotations

from actors.runtime.metrics import counter, gauge

SERIES = (
    gauge("polyarb_router_markets", "markets watched", "markets"),
    gauge("polyarb_router_valid_books", "books valid now", "valid_books"),
    counter("polyarb_router_updates_total", "book updates received", "updates"),
    counter("polyarb_router_evaluations_total", "markets evaluated", "evaluations"),
    counter("polyarb_router_opportunities_total", "opportunities found", "opportunities"),
    counter("polyarb_router_signals_total", "signals published, by kind", "signals_by_kind", label="kind"),
    counter("polyarb_router_suppressed_total", "opportunities not signalled, by reason", "suppressed",
            label="reason"),
    counter("polyarb_router_results_total", "results heard from the executor, by status", "results_seen",
            label="status"),
    gauge("polyarb_router_in_flight", "signals sent and not answered", "in_flight"),
    counter("polyarb_router_handler_errors_total", "messages a handler failed on (counted, dropped)",
            "handler_errors"),
)
