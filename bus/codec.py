"""Encoding and decoding of bus frames, with per-topic sequence numbers.

`Stamper` gives each published message its envelope (source, boot id, next
sequence number of its topic, times). `decode()` validates a received
multipart message and raises `FrameError` for anything malformed, so callers
count and drop instead of crashing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import msgspec

from bus import trace
from bus.messages import SCHEMA_VERSION, Body, Envelope

_encoder = msgspec.msgpack.Encoder()
_env_decoder = msgspec.msgpack.Decoder(Envelope)
_body_decoder = msgspec.msgpack.Decoder(Body)
# The message types bound every depth (actors.domain.values), so a deep value is a
# ValidationError; RecursionError stays caught should a type ever lose its bound.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


class FrameError(ValueError):
    """A received message that cannot be decoded: count it and drop it."""


def new_boot_id() -> str:
    return os.urandom(6).hex()


def new_trace_id() -> str:
    return os.urandom(8).hex()


class Stamper:
    """Builds envelopes for one publisher: source, boot id, per-topic sequences."""

    def __init__(self, source: str, clock, boot_id: str | None = None) -> None:
        self.source = source
        self.boot_id = boot_id or new_boot_id()
        self._clock = clock
        self._seqs: dict[bytes, int] = {}

    def stamp(
        self, topic: bytes, body: Body, *, event_ns: int | None = None, trace_id: str = ""
    ) -> Envelope:
        seq = self._seqs.get(topic, 0) + 1
        self._seqs[topic] = seq
        now = self._clock.time_ns()
        return Envelope(
            v=SCHEMA_VERSION,
            source=self.source,
            boot_id=self.boot_id,
            seq=seq,
            event_ns=now if event_ns is None else event_ns,
            publish_ns=now,
            trace_id=trace_id or trace.current.get(),  # a message sent for a traced task carries its trace
            body=body,
        )

    def last_seq(self, topic: bytes) -> int:
        return self._seqs.get(topic, 0)

    def seqs(self) -> dict[bytes, int]:
        return dict(self._seqs)


def encode(topic: bytes, envelope: Envelope) -> list[bytes]:
    return [topic, _encoder.encode(envelope)]


def encode_body(body: Body) -> bytes:
    return _encoder.encode(body)


def decode_body(data: bytes) -> Body:
    try:
        return _body_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise FrameError(str(exc)) from exc


def decode(frames: Sequence[bytes]) -> tuple[bytes, Envelope]:
    if len(frames) != 2:
        raise FrameError(f"expected 2 frames [topic, envelope], got {len(frames)}")
    topic, payload = frames
    return bytes(topic), decode_payload(payload)


def encode_payload(envelope: Envelope) -> bytes:
    """A single-frame envelope (REQ/REP payloads have no topic frame)."""
    return _encoder.encode(envelope)


def decode_payload(payload: bytes) -> Envelope:
    try:
        env = _env_decoder.decode(payload)
    except _DECODE_ERRORS as exc:
        raise FrameError(str(exc)) from exc
    if env.v != SCHEMA_VERSION:
        raise FrameError(f"unsupported schema version {env.v}")
    return env
