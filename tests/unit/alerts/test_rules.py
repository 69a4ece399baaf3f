"""What the alerts program raises, from the bus (actors.alerts.rules), and the outbox that
keeps each alert once and every delivery until it is sent (actors.alerts.outbox)."""

from __future__ import annotations

import pytest

from actors.alerts.outbox import Outbox
from actors.alerts.rules import NS, Thresholds, Watch

pytestmark = pytest.mark.unit

LIMITS = Thresholds(actor_silent_ns=30 * NS, position_open_ns=600 * NS, nonce_stuck_ns=120 * NS)
T0 = 1_800_000_000 * NS


def test_each_breaker_transition_is_one_alert_and_heartbeats_are_none():
    w = Watch(["executor"], T0)
    assert w.on_breaker("CLOSED", "initial", T0) == []  # found at start, nothing wrong
    [opened] = w.on_breaker("OPEN", "3 consecutive failures", T0 + NS)
    assert opened.severity == "critical" and opened.text.endswith("CLOSED -> OPEN: 3 consecutive failures")
    assert w.on_breaker("OPEN", "3 consecutive failures", T0 + NS) == []  # the heartbeat of the same state
    [half] = w.on_breaker("HALF_OPEN", "open timeout elapsed", T0 + 60 * NS)
    [closed] = w.on_breaker("CLOSED", "3 probe calls succeeded", T0 + 61 * NS)
    assert (half.severity, closed.severity) == ("warning", "info")
    assert len({opened.key, half.key, closed.key}) == 3


def test_a_restarted_watch_finding_the_breaker_open_raises_the_same_key_again():
    first = Watch(["executor"], T0).on_breaker("FORCED_OPEN", "operator halt", T0)
    again = Watch(["executor"], T0 + 5 * NS).on_breaker("FORCED_OPEN", "operator halt", T0)
    assert first[0].key == again[0].key  # the outbox stores it once: never sent twice


def test_an_actor_silent_past_the_limit_is_told_once_and_its_return_too():
    w = Watch(["feed", "router"], T0)
    assert w.tick(T0 + 29 * NS, LIMITS) == []
    w.on_stats("router", {}, T0 + 29 * NS, "b1", LIMITS)
    [silent] = w.tick(T0 + 31 * NS, LIMITS)
    assert silent.kind == "actor_silent" and silent.details["actor"] == "feed"
    assert w.tick(T0 + 40 * NS, LIMITS) == []  # once per silence
    [back] = w.on_stats("feed", {}, T0 + 45 * NS, "b2", LIMITS)
    assert back.kind == "actor_back"


def test_the_reconciler_finding_the_books_apart_is_one_critical_alert_per_trip():
    w = Watch(["executor"], T0)
    stats = {"executor": {"reconciler": {"trips": 0, "differences": []}}}
    assert w.on_stats("executor", stats, T0, "boot1", LIMITS) == []
    stats["executor"]["reconciler"] = {"trips": 1, "differences": ["pUSD on chain 10, books 11 (-1)"]}
    [apart] = w.on_stats("executor", stats, T0 + NS, "boot1", LIMITS)
    assert apart.kind == "books_apart" and "pUSD on chain 10" in apart.text
    assert w.on_stats("executor", stats, T0 + 2 * NS, "boot1", LIMITS) == []
    # A restarted executor counts from 0 again: its first trip is news.
    stats["executor"]["reconciler"] = {"trips": 1, "differences": ["token 7"]}
    assert len(w.on_stats("executor", stats, T0 + 3 * NS, "boot2", LIMITS)) == 1


def test_a_position_open_past_the_limit_and_a_stuck_nonce_are_told_once():
    w = Watch(["executor", "nonce"], T0)
    ex = {"executor": {"open_positions": [{"token_id": "123456789012345", "size": 5_000_000, "attempts": 2}]}}
    assert w.on_stats("executor", ex, T0, "b", LIMITS) == []
    [pos] = w.on_stats("executor", ex, T0 + 601 * NS, "b", LIMITS)
    assert pos.kind == "position_open" and "open for 10 min" in pos.text
    assert w.on_stats("executor", ex, T0 + 700 * NS, "b", LIMITS) == []
    nonce = {"nonce": {"pending_nonces": [41, 42], "chain_latest": 41}}
    assert w.on_stats("nonce", nonce, T0, "n", LIMITS) == []
    nonce["nonce"]["pending_nonces"] = [42]  # 41 confirmed
    [stuck] = w.on_stats("nonce", nonce, T0 + 121 * NS, "n", LIMITS)
    assert stuck.details["nonce"] == 42


def test_odd_stats_raise_nothing_and_break_nothing():
    w = Watch(["executor", "nonce"], T0)
    for odd in ({"executor": None}, {"executor": {"reconciler": "x", "open_positions": [1, None, {"size": "a"}]}},
                {"nonce": {"pending_nonces": ["a", True, None]}}):
        for actor in ("executor", "nonce"):
            w.on_stats(actor, odd, T0 + 10_000 * NS, "b", LIMITS)


def test_the_outbox_keeps_an_alert_once_and_each_delivery_until_sent(tmp_path):
    w = Watch(["executor"], T0)
    [alert] = w.on_breaker("OPEN", "3 consecutive failures", T0 + NS)
    box = Outbox(tmp_path / "alerts.sqlite")
    urls = ["http://a.example/hook", "http://b.example/hook"]
    assert box.add(alert, urls, T0) and not box.add(alert, urls, T0)
    due = box.due(T0, urls)
    assert [d.url for d in due] == urls
    box.sent(due[0], T0 + 1)
    box.failed(due[1], T0 + 10 * NS, "HTTP 500")
    assert [d.url for d in box.due(T0 + NS, urls)] == []  # b waits its retry time
    assert [(d.url, d.attempts) for d in box.due(T0 + 10 * NS, urls)] == [("http://b.example/hook", 1)]
    assert box.counts(urls) == {"alerts": 1, "delivered": 1, "waiting": 1, "orphaned": 0}
    assert box.counts(urls[:1])["orphaned"] == 1  # b removed from the config: kept, not sent
    box.close()
    reopened = Outbox(tmp_path / "alerts.sqlite")  # a restart sends what was not sent
    assert [d.url for d in reopened.due(T0 + 10 * NS, urls)] == ["http://b.example/hook"]
