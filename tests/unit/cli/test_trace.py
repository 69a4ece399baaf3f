"""`polyarb trace`: one execution's log lines across actors, found by its trace id or
its key; the trace id an execution runs under reaches its log lines and its books."""

from __future__ import annotations

import json
import logging

import pytest

from actors.cli import trace
from actors.runtime.logs import JsonFormatter
from bus import trace as bus_trace
from bus.codec import Stamper
from bus.messages import Stats
from bus.trace import tracing
from tests.unit.executor.test_tx_sender import signal, world  # noqa: F401 - the fixture

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

TID = "0a1b2c3d4e5f6071"


def line(actor: str, ts: str, msg: str, **fields) -> str:
    return json.dumps({"ts": ts, "level": "INFO", "actor": actor, "logger": "x", "msg": msg, **fields})


def test_a_log_line_written_inside_a_trace_carries_it_and_one_outside_does_not():
    fmt = JsonFormatter("executor")
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "placing legs", (), None)
    with tracing(TID):
        assert json.loads(fmt.format(rec))["trace_id"] == TID
    assert "trace_id" not in json.loads(fmt.format(rec))


def test_an_envelope_stamped_inside_a_trace_carries_it():
    from actors.runtime.clock import SystemClock

    stamper = Stamper("executor", SystemClock())
    with tracing(TID):
        assert stamper.stamp(b"rpc", Stats(actor="x", stats={})).trace_id == TID
        assert stamper.stamp(b"rpc", Stats(actor="x", stats={}), trace_id="other").trace_id == "other"
    assert stamper.stamp(b"rpc", Stats(actor="x", stats={})).trace_id == ""
    assert bus_trace.current.get() == ""


async def test_lines_of_every_actor_with_the_trace_id_or_the_key_in_time_order(world, tmp_path, sandbox_config):  # noqa: F811
    with tracing(TID):
        r = await world.sender.execute(signal(world.clock))
    key = r.idempotency_key
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "feed.log").write_text(line("feed", "2026-12-02T01:00:00.100Z", "books published", trace_id=TID) + "\n"
                                   + line("feed", "2026-12-02T01:00:00.200Z", "another flush", trace_id="ffff") + "\n")
    (logs / "router.log").write_text(line("router", "2026-12-02T01:00:00.150Z", "signal s1", trace_id=TID) + "\n")
    (logs / "executor.log").write_text(
        "supervisord: not json\n"
        + line("executor", "2026-12-02T01:00:00.400Z", f"execution {key[:12]}: SUCCESS") + "\n"
        + line("executor", "2026-12-02T01:00:00.300Z", "legs placed", trace_id=TID) + "\n")
    (logs / "nonce.log").write_text(line("nonce", "2026-12-02T01:00:00.350Z", "allocate", trace_id=TID) + "\n")
    journal = str(world.tmp / "journal.sqlite")

    for ident in (TID, key, key[:12]):
        text, code = trace.render(sandbox_config, ident, logs=str(logs), journal=journal, as_json=False)
        assert code == 0, text
        body = text.splitlines()
        assert body[0].startswith(f"trace {TID}") and body[0].endswith("from executor, feed, nonce, router"), body[0]
        msgs = [b.split(None, 3)[3] for b in body[1:]]
        want = ["books published", "signal s1", "legs placed", "allocate"]
        assert msgs[:4] == want, msgs  # time order across files
        if ident != TID:  # by key: the executor's outcome line names the key only
            assert msgs[4].startswith(f"execution {key[:12]}")
    out, code = trace.render(sandbox_config, "nothing-like-it", logs=str(logs), journal=journal, as_json=True)
    assert (out, code) == ("", 1)


def test_an_ambiguous_key_prefix_is_taken_as_a_trace_id(world, tmp_path):  # noqa: F811
    j = world.journal
    j.begin("abcdef0123456789aa", signal(world.clock))
    j.begin("abcdef0123456789bb", signal(world.clock, created_offset=1))
    from contextlib import closing

    from actors.executor.history import open_read_only

    with closing(open_read_only(world.tmp / "journal.sqlite")) as db:
        assert trace.trace_of(db, "abcdef0123") is None
        assert trace.trace_of(db, "abcdef0123456789aa") == ("abcdef0123456789aa", "")
