"""The dashboard's state, folded from bus messages (pure: a test clock is the `now`)."""

import pytest

from actors.dashboard.board import NS, Board, Limits
from actors.executor.history import Trade

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

T0 = 1_800_000_000 * NS


def board() -> Board:
    return Board(["nonce", "executor", "feed"], T0, Limits(5 * NS, 100, 3, 2))


def result(b: Board, key: str, pnl: int, now: int, status: str = "SUCCESS") -> None:
    b.on_result(key=key, strategy="BUY_SET", market="0xm", status=status, pnl=pnl, gas=1_000, legs=2,
                latency_us=12_300, error=None, trace_id="t-" + key, now_ns=now)


def test_every_configured_actor_is_listed_and_one_not_heard_lately_is_silent():
    b = board()
    b.on_stats("executor", {"summary": {"ok": 1}, "runtime": {"uptime_seconds": 3.0, "pid": 7},
                            "breaker": {"state": "CLOSED"}}, T0 + NS, "boot1")
    b.on_stats("feed", {"summary": {}}, T0 + NS, "boot2")
    s = b.snapshot(T0 + 4 * NS)
    by = {a["name"]: a for a in s["actors"]}
    assert list(by) == ["nonce", "executor", "feed"]
    assert not by["nonce"]["up"] and by["nonce"]["heard_s_ago"] is None  # never heard
    assert by["executor"]["up"] and by["executor"]["breaker"] == "CLOSED" and by["executor"]["pid"] == 7
    s = b.snapshot(T0 + 7 * NS)  # 6 s after: beyond the 5 s
    assert not {a["name"]: a for a in s["actors"]}["executor"]["up"]


def test_breaker_transitions_make_the_timeline_and_heartbeats_add_nothing():
    b = board()
    assert b.snapshot(T0)["breaker"]["state"] == "UNKNOWN"
    assert b.on_breaker("CLOSED", "initial", T0, None)
    assert not b.on_breaker("CLOSED", "initial", T0, None)  # the broadcast's heartbeat
    assert b.on_breaker("OPEN", "3 consecutive failures", T0 + NS, T0 + 31 * NS)
    s = b.snapshot(T0 + 2 * NS)
    assert s["breaker"] == {"state": "OPEN", "reason": "3 consecutive failures", "since_ms": (T0 + NS) // 10**6,
                            "until_ms": (T0 + 31 * NS) // 10**6}
    assert [t["state"] for t in s["timeline"]] == ["OPEN", "CLOSED"]  # newest first
    b.on_breaker("HALF_OPEN", "open timeout elapsed", T0 + 31 * NS, None)
    assert [t["state"] for t in b.snapshot(T0)["timeline"]] == ["HALF_OPEN", "OPEN"]  # two kept


def test_results_make_the_executions_list_and_the_pnl_curve_in_micro_usdc():
    b = board()
    result(b, "k1", 2_500_000, T0 + NS)
    result(b, "k2", -1_000_000, T0 + 2 * NS, "PARTIAL_UNWOUND")
    s = b.snapshot(T0 + 3 * NS)
    assert s["pnl"]["micro"] == [2_500_000, 1_500_000] and s["pnl"]["total_usdc"] == "1.500000"
    assert s["pnl"]["gas_usdc"] == "0.002000"
    first = s["executions"][0]
    assert (first["key"], first["status"], first["pnl_usdc"], first["legs"], first["latency_ms"]) == (
        "k2", "PARTIAL_UNWOUND", "-1.000000", 2, 12.3)
    assert s["by_status"] == {"PARTIAL_UNWOUND": 1, "SUCCESS": 1}


def test_a_replayed_result_is_listed_but_its_pnl_counted_once():
    b = board()
    result(b, "k1", 2_500_000, T0 + NS)
    result(b, "k1", 2_500_000, T0 + 2 * NS)  # the executor's resume published it again
    assert b.snapshot(T0)["pnl"]["micro"] == [2_500_000]


def test_the_books_seed_the_curve_and_results_already_booked_are_not_added_twice():
    b = board()
    b.seed([Trade("k1", T0, "SUCCESS", "BUY_SET", "0xm", 10, 2, 3, 1_000_000, 100),
            Trade("reserve:0xm:1", T0 + NS, "SUCCESS", "BOOKKEEPING", "0xm", 0, 0, 0, -100, 100)])
    result(b, "k1", 1_000_000, T0 + 2 * NS)  # heard after the seed: already in the books
    s = b.snapshot(T0 + 3 * NS)
    assert s["pnl"]["micro"] == [1_000_000, 999_900]  # bookkeeping gas is in the P&L, not in the list
    assert [e["key"] for e in s["executions"]] == ["k1", "k1"]


def test_executor_feed_and_nonce_figures_come_from_their_stats():
    b = board()
    b.on_stats("executor", {"executor": {"open_positions": [{"token_id": "1", "size": 5, "attempts": 1}],
                                         "locked_capital_usdc": "12.000000", "sales_in_doubt": 1,
                                         "reconciler": {"checks": 4, "trips": 0, "differences": [], "x": 1}}},
               T0, "b")
    b.on_stats("feed", {"summary": {"books": "4/4"}, "feed": {
        "per_connection": [{"id": 0, "connected": True}], "message_count": 9, "heartbeat_ok": True}}, T0, "b")
    b.on_stats("nonce", {"nonce": {"next_nonce": 12, "pending_count": 1, "chain_ok": True}}, T0, "b")
    s = b.snapshot(T0)
    assert s["positions"] == [{"token_id": "1", "size": 5, "attempts": 1}] and s["locked_capital_usdc"] == "12.000000"
    assert s["reconciler"] == {"checks": 4, "trips": 0, "differences": []} and s["sales_in_doubt"] == 1
    assert s["feed"]["books"] == "4/4" and s["feed"]["connections"] == [{"id": 0, "connected": True}]
    assert s["nonce"]["next_nonce"] == 12 and s["nonce"]["pending_count"] == 1


def test_odd_stats_shapes_never_break_the_snapshot():
    b = board()
    b.on_stats("executor", {"executor": "not a mapping", "runtime": None, "breaker": 5, "summary": [1]}, T0, "b")
    b.on_stats("feed", {"feed": {"per_connection": [3, {"id": 1}]}}, T0, "b")
    s = b.snapshot(T0)
    assert s["positions"] == [] and {a["name"]: a for a in s["actors"]}["executor"]["up"]
    assert s["feed"]["connections"] == [{"id": 1}]
