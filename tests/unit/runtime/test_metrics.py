"""Prometheus series read from an actor's stats (actors.runtime.metrics), parsed back with
prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actors.executor.metrics import SERIES as EXECUTOR_SERIES
from actors.executor.metrics import latencies
from actors.feed.metrics import SERIES as FEED_SERIES
from actors.nonce.metrics import SERIES as NONCE_SERIES
from actors.router.metrics import SERIES as ROUTER_SERIES
from actors.runtime.metrics import ActorCollector, counter, gauge

pytestmark = pytest.mark.unit


def scrape(name, stats, series=(), histograms=(), breaker=lambda: None) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ActorCollector(name, lambda: stats, series, lambda: histograms, breaker))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def shell_stats(actor: str, own: dict, state: str = "CLOSED") -> dict:
    return {"runtime": {"uptime_seconds": 12.5}, "config": {"reloads": 3, "reload_errors": 1},
            "breaker": {"state": state, "transitions": 2, "heard_seconds_ago": 0.3},
            "bus": {"publisher": {"sent": 10, "dropped": 0}, "rpc_server": None}, actor: own}


def test_numbers_labels_lists_and_scaled_amounts_become_series():
    series = (counter("polyarb_things_total", "things", "n"),
              gauge("polyarb_money_usdc", "money", "money_micro", usdc=True),
              counter("polyarb_by_kind_total", "by kind", "by_kind", label="kind"),
              gauge("polyarb_conn_age_seconds", "age", "conns", label="connection", field="age"),
              gauge("polyarb_absent", "not in the stats", "nowhere"),
              gauge("polyarb_text", "a decimal string", "text"))
    own = {"n": 7, "money_micro": 49_355_817, "by_kind": {"BUY_SET": 22, "SELL_SET": 1},
           "conns": [{"id": 1, "age": 0.026}, {"id": 2, "age": 3.5}], "text": "1.5"}
    m = scrape("feed", shell_stats("feed", own), series)
    a = (("actor", "feed"),)
    assert m[("polyarb_things_total", a)] == 7
    assert m[("polyarb_money_usdc", a)] == pytest.approx(49.355817)
    assert m[("polyarb_by_kind_total", (("actor", "feed"), ("kind", "BUY_SET")))] == 22
    assert m[("polyarb_conn_age_seconds", (("actor", "feed"), ("connection", "2")))] == 3.5
    assert m[("polyarb_text", a)] == 1.5
    assert not any(name == "polyarb_absent" for name, _ in m)  # no figure yet: no sample
    # The shell's figures, for every actor.
    assert m[("polyarb_config_reload_rejections_total", a)] == 1
    assert m[("polyarb_uptime_seconds", a)] == 12.5
    assert m[("polyarb_breaker_state", (("actor", "feed"), ("state", "CLOSED")))] == 1
    assert m[("polyarb_breaker_state", (("actor", "feed"), ("state", "OPEN")))] == 0


def test_the_breaker_gauge_follows_a_trip_and_the_executor_exports_its_own_state():
    own = {"circuit_breaker_trips": 0, "by_status": {"SUCCESS": 3}}
    before = scrape("executor", shell_stats("executor", own), EXECUTOR_SERIES, breaker=lambda: "CLOSED")
    own["circuit_breaker_trips"] = 1
    after = scrape("executor", shell_stats("executor", own, state="UNKNOWN"), EXECUTOR_SERIES,
                   breaker=lambda: "OPEN")
    a = (("actor", "executor"),)
    assert before[("polyarb_breaker_trips_total", a)] == 0 and after[("polyarb_breaker_trips_total", a)] == 1
    assert after[("polyarb_breaker_state", (*a, ("state", "OPEN")))] == 1  # its own, not its follower's
    assert after[("polyarb_breaker_state", (*a, ("state", "UNKNOWN")))] == 0
    assert after[("polyarb_executions_total", (*a, ("status", "SUCCESS")))] == 3


def test_latencies_are_histograms_in_seconds():
    tick, settled = latencies()
    for ns in (3_000_000, 7_000_000, 40_000_000):
        tick.observe_ns(ns)
    m = scrape("executor", shell_stats("executor", {}), EXECUTOR_SERIES, histograms=(tick, settled))
    a = (("actor", "executor"),)
    assert m[("polyarb_tick_to_trade_seconds_count", a)] == 3
    assert m[("polyarb_tick_to_trade_seconds_sum", a)] == pytest.approx(0.05)
    assert m[("polyarb_tick_to_trade_seconds_bucket", (*a, ("le", "0.005")))] == 1
    assert m[("polyarb_tick_to_trade_seconds_bucket", (*a, ("le", "0.01")))] == 2
    assert m[("polyarb_signal_to_settled_seconds_count", a)] == 0


def _exposed(series) -> list[str]:
    return [s.name if s.kind != "counter" or s.name.endswith("_total") else s.name + "_total" for s in series]


@pytest.mark.parametrize("series,histograms", [
    (EXECUTOR_SERIES, [h.name for h in latencies()] + ["polyarb_nonce_allocate_seconds", "polyarb_retry_call_seconds"]),
    (NONCE_SERIES, []), (FEED_SERIES, []), (ROUTER_SERIES, [])])
def test_no_two_families_of_one_actor_share_a_name(series, histograms):
    from actors.runtime.metrics import COMMON

    names = [*_exposed(COMMON), "polyarb_breaker_state", *_exposed(series),
             *(h + suffix for h in histograms for suffix in ("", "_bucket", "_count", "_sum"))]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert all(n.startswith("polyarb_") for n in names)


def test_the_metrics_doc_is_up_to_date():
    from actors.cli import metrics_doc

    assert metrics_doc.DOC_PATH.read_text() == metrics_doc.render(), (
        "docs/metrics.md is out of date: run `.venv/bin/python -m actors.cli.metrics_doc --write`")


def test_the_grafana_dashboard_uses_only_metrics_we_serve():
    import json
    import re

    from actors.cli import metrics_doc

    served = set(re.findall(r"`(polyarb_[a-z_]+)`", metrics_doc.render()))
    dashboard = json.loads((metrics_doc.DOC_PATH.parent / "grafana" / "polyarb-x.json").read_text())
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for p in dashboard["panels"] for t in p["targets"]
            for m in re.findall(r"polyarb_[a-z_]+", t["expr"])}
    assert used and used <= served, used - served
