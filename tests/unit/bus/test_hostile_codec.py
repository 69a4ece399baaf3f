"""Hostile bytes against the bus codec: only the codec's own error, ever.

A 60 KB request nested ~50,000 deep once killed the nonce authority and the
executor with SIGSEGV; a forged sequence of 2^64 - 1 overflowed a subscriber's
stats; a msgpack Ext value broke `polyarb sniff`. Plus >= 100,000 mutated
envelopes of every body type, and generated values in the free-form fields.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.domain.enums import CircuitState, SetKind, Side, TxStatus
from actors.domain.values import MAX_DEPTH
from actors.runtime.clock import TestClock
from bus import codec
from bus.codec import FrameError, Stamper
from bus.messages import (
    BookUpdate,
    BreakerState,
    FeedStatus,
    Leg,
    RpcReply,
    RpcRequest,
    Signal,
    Snapshot,
    SnapshotEntry,
    SnapshotRequest,
    Stats,
    TxResult,
)

pytestmark = pytest.mark.unit

stamper = Stamper("hostile", TestClock())
ASSET = "7132"
_raw = msgspec.msgpack.Encoder()


def envelope_with(params_value_bytes: bytes) -> bytes:
    """A valid RPC request whose params["x"] is replaced by raw msgpack bytes."""
    marker = "M" * 24
    good = codec.encode_payload(stamper.stamp(b"rpc", RpcRequest(request_id="r", method="allocate",
                                                                   params={"x": marker})))
    return good.replace(_raw.encode(marker), params_value_bytes)


def deep_array(depth: int) -> bytes:
    return b"\x91" * depth + b"\x01"  # fixarray of one element, `depth` times


def test_a_value_nested_50000_deep_is_a_frame_error_even_under_web3s_recursion_limit():
    # In a child: a stack overflow must fail this test, not kill the test run.
    code = textwrap.dedent("""
        import sys
        sys.setrecursionlimit(100_000)  # what importing web3 (py_ecc) does
        from bus import codec
        from tests.unit.bus.test_hostile_codec import envelope_with, deep_array
        payload = envelope_with(deep_array(50_000))
        assert len(payload) < 61_000
        try:
            codec.decode_payload(payload)
        except codec.FrameError as exc:
            print("FrameError", str(exc)[:60])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-500:]}"
    assert out.stdout.startswith("FrameError")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 2, 1_000, 20_000])
def test_deep_values_in_every_free_form_field_are_refused(depth):
    for body in (Stats(actor="a", stats={"x": 0}), RpcReply(request_id="r", ok=True, result={"x": 0})):
        good = codec.encode_payload(stamper.stamp(b"t", body))
        bad = good.replace(_raw.encode({"x": 0}), b"\x81\xa1x" + deep_array(depth))
        assert bad != good
        with pytest.raises(FrameError):
            codec.decode_payload(bad)


def test_values_as_deep_as_our_own_stats_still_decode():
    deep: object = 1
    for _ in range(MAX_DEPTH - 1):  # our stats nest 4-6 deep; the bound leaves room
        deep = {"k": [deep]} if isinstance(deep, int) else {"k": deep}
    env = codec.decode_payload(codec.encode_payload(stamper.stamp(b"s", Stats(actor="a", stats={"x": deep}))))
    assert env.body.stats["x"] == deep


def test_a_snapshot_nested_in_a_snapshot_is_refused():
    inner = Snapshot(source="a", boot_id="b", entries=[])
    as_builtins = msgspec.to_builtins(stamper.stamp(b"s", inner))
    as_builtins["body"] = {"type": "snapshot", "source": "a", "boot_id": "b",
                           "entries": [{"topic": "t", "seq": 1, "body": as_builtins["body"]}]}
    with pytest.raises(FrameError):
        codec.decode_payload(_raw.encode(as_builtins))


@pytest.mark.parametrize("seq", [2**64 - 1, 2**53 + 1, -1])
def test_a_forged_sequence_number_out_of_range_is_refused(seq):
    env = msgspec.to_builtins(stamper.stamp(b"s", Stats(actor="a", stats={})))
    env["seq"] = seq
    with pytest.raises(FrameError):
        codec.decode_payload(_raw.encode(env))


def test_a_msgpack_ext_value_is_refused():
    with pytest.raises(FrameError):
        codec.decode_payload(envelope_with(_raw.encode(msgspec.msgpack.Ext(1, b"xyz"))))


@pytest.mark.parametrize("rid", ["", "x" * 513])
def test_request_ids_are_bounded(rid):
    env = msgspec.to_builtins(stamper.stamp(b"rpc", RpcRequest(request_id="r", method="m")))
    env["body"]["request_id"] = rid
    with pytest.raises(FrameError):
        codec.decode_payload(_raw.encode(env))


def corpus() -> list[bytes]:
    leg = Leg(token_id=ASSET, side=Side.BUY, limit_price=500_000, size=10_000_000, cost=5_000_000, fee=1)
    bodies = [
        Stats(actor="feed", stats={"a": 1, "b": {"c": [1, 2.5, "x", None, True]}}),
        BreakerState(state=CircuitState.OPEN, reason="r", since_ns=1, until_ns=2),
        SnapshotRequest(prefix="book."),
        Snapshot(source="feed", boot_id="b", entries=[SnapshotEntry(topic="book.1", seq=3, body=BreakerState(
            state=CircuitState.CLOSED, reason="", since_ns=1))]),
        RpcRequest(request_id="abc", method="allocate", params={"request_id": "k"}),
        RpcReply(request_id="abc", ok=True, result={"nonce": 7}),
        BookUpdate(token_id=ASSET, market="m", valid=True, bids=[(400_000, 10)], asks=[(600_000, 5)],
                   venue_ts_ms=1, recv_ns=2, tick_size=10_000),
        FeedStatus(connections=1, connected=1, assets=2, valid_books=2, heartbeat_ok=True),
        Signal(signal_id="s", market="m", kind=SetKind.BUY_SET, legs=[leg, leg], size=1, expected_profit=1,
               book_ts_ms={"1": 1}, created_ns=1, expires_ns=2),
        TxResult(signal_id="s", idempotency_key="k", market="m", status=TxStatus.SUCCESS, success=True, attempt=1),
    ]
    return [codec.encode_payload(stamper.stamp(b"t", b)) for b in bodies]


def mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        i = rnd.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] = rnd.randrange(256)  # a byte flipped
        elif op == 1:
            b = b[: rnd.randrange(len(b) + 1)]  # truncated
        elif op == 2:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))  # inserted
        elif op == 3 and b:
            del b[i : i + rnd.randint(1, 8)]
        elif op == 4:
            b[i:i] = rnd.choice([b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xcf" + b"\xff" * 8,
                                 b"\xc7\xff\x01", b"\x91" * 3000, b"\xd9\xff", b"\xcb\x7f\xf8" + b"\x00" * 6])
        else:
            other = rnd.choice(CORPUS)
            j = rnd.randrange(len(other))
            b[i:] = other[j:]  # spliced with another message's tail
    return bytes(b)


CORPUS = corpus()


def test_100_000_mutated_envelopes_raise_only_the_codecs_error():
    rnd = random.Random(20261201)
    decoded = refused = 0
    for _ in range(100_000):
        data = mutate(rnd, rnd.choice(CORPUS))
        try:
            codec.decode_payload(data)
            decoded += 1
        except FrameError:
            refused += 1
    assert decoded + refused == 100_000
    assert refused > 50_000  # the mutations really were hostile


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5) | st.integers(), children,
                                                                       max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(params=json_like, result=json_like)
def test_generated_values_in_params_and_results_decode_or_are_refused(params, result):
    for body in ({"type": "rpc_request", "request_id": "r", "method": "m", "params": params},
                 {"type": "rpc_reply", "request_id": "r", "ok": True, "result": result},
                 {"type": "stats", "actor": "a", "stats": params}):
        env = {"v": 1, "source": "s", "boot_id": "b", "seq": 1, "event_ns": 1, "publish_ns": 1, "trace_id": "",
               "body": body}
        try:
            data = _raw.encode(env)
        except (TypeError, OverflowError):
            continue
        try:
            codec.decode_payload(data)
        except FrameError:
            pass
