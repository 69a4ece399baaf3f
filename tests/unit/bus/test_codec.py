import msgspec
import pytest

from actors.runtime.clock import TestClock
from bus import codec, topics
from bus.codec import FrameError, Stamper
from bus.messages import BreakerState, RpcRequest, Stats

pytestmark = pytest.mark.unit


def test_round_trip_keeps_envelope_and_typed_body():
    stamper = Stamper("nonce", TestClock(), boot_id="b1")
    env = stamper.stamp(topics.stats("nonce"), Stats(actor="nonce", stats={"next_nonce": 7}), trace_id="t")

    topic, decoded = codec.decode(codec.encode(topics.stats("nonce"), env))

    assert topic == b"stats.nonce"
    assert decoded == env
    assert decoded.type == "stats"
    assert (decoded.source, decoded.boot_id, decoded.seq, decoded.trace_id) == ("nonce", "b1", 1, "t")


def test_sequence_numbers_are_per_topic():
    stamper = Stamper("x", TestClock())
    a = [stamper.stamp(b"a", Stats(actor="x", stats={})).seq for _ in range(3)]
    b = stamper.stamp(b"b", Stats(actor="x", stats={})).seq
    assert a == [1, 2, 3] and b == 1


@pytest.mark.parametrize(
    "frames",
    [
        [b"only-one-frame"],
        [b"t", b"\xc1not msgpack"],
        [b"t", msgspec.msgpack.encode({"v": 1, "source": "x"})],  # missing fields
        [b"t", msgspec.msgpack.encode(
            {"v": 1, "source": "x", "boot_id": "b", "seq": 1, "event_ns": 0, "publish_ns": 0,
             "trace_id": "", "body": {"type": "no_such_type"}})],
        [b"t", msgspec.msgpack.encode(
            {"v": 99, "source": "x", "boot_id": "b", "seq": 1, "event_ns": 0, "publish_ns": 0,
             "trace_id": "", "body": {"type": "stats", "actor": "x", "stats": {}}})],
        [b"t", msgspec.msgpack.encode(
            {"v": 1, "source": "x", "boot_id": "b", "seq": "one", "event_ns": 0, "publish_ns": 0,
             "trace_id": "", "body": {"type": "stats", "actor": "x", "stats": {}}})],
    ],
)
def test_malformed_frames_raise_frame_error(frames):
    with pytest.raises(FrameError):
        codec.decode(frames)


def test_bodies_are_frozen():
    body = BreakerState(state="OPEN", reason="3 consecutive failures", since_ns=1)
    with pytest.raises(AttributeError):
        body.state = "CLOSED"  # type: ignore[misc]


def test_payload_round_trip_for_rpc():
    stamper = Stamper("c", TestClock())
    env = stamper.stamp(b"rpc", RpcRequest(request_id="r1", method="allocate", params={"a": 1}))
    assert codec.decode_payload(codec.encode_payload(env)).body == env.body
