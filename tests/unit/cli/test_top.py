"""`polyarb top`: one frame of the board, drawn by rich (recorded, not on a terminal)."""

from __future__ import annotations

import pytest
from rich.console import Console

from actors.cli.top import render
from actors.dashboard.board import NS, Board, Limits

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

T0 = 1_800_000_000 * NS


def test_a_frame_shows_every_actor_the_breaker_the_pnl_and_the_executions():
    b = Board(["nonce", "executor", "feed"], T0, Limits(5 * NS, 100, 10, 10))
    b.on_stats("executor", {"summary": {"ok": 3}, "breaker": {"state": "OPEN"},
                            "executor": {"open_positions": [{"token_id": "123456789012345", "size": 5_000_000}],
                                         "locked_capital_usdc": "100.000000", "sales_in_doubt": 1}}, T0, "b")
    b.on_breaker("OPEN", "3 consecutive failures", T0, None)
    b.on_result(key="ab" * 32, strategy="BUY_SET", market="0xm", status="SUCCESS", pnl=4_218_188, gas=800, legs=2,
                latency_us=2_071_900, error=None, trace_id="t", now_ns=T0)
    console = Console(record=True, width=160, color_system=None)
    console.print(render(b.snapshot(T0 + NS), "sandbox · chain 137"))
    out = console.export_text()
    assert "OPEN" in out and "3 consecutive failures" in out
    for actor in ("nonce", "executor", "feed"):
        assert actor in out
    assert "SILENT" in out and "up" in out  # nonce and feed never heard, the executor heard
    assert "4.218188 USDC" in out and "2071.9 ms" in out and "BUY_SET" in out
    assert "locked 100.000000 USDC" in out and "sales in doubt 1" in out and "123456789012.. 5.00" in out
