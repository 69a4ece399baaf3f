"""The Clone pattern (ZeroMQ guide, chapter 5) for state streams.

Publisher side: `CloneStore` remembers the last published value of every
topic with its sequence number and answers snapshot requests over RPC.
Subscriber side: `fetch_snapshot()` asks for one and primes the subscriber's
sequence tracker so that updates already covered by the snapshot are dropped.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus.messages import Body, Envelope, Snapshot, SnapshotEntry
from bus.sockets import RpcClient, Subscriber

SNAPSHOT_METHOD = "snapshot"


class CloneStore:
    def __init__(self, source: str, boot_id: str) -> None:
        self._source = source
        self._boot_id = boot_id
        self._values: dict[bytes, tuple[int, Body]] = {}

    def record(self, topic: bytes, env: Envelope) -> None:
        self._values[topic] = (env.seq, env.body)

    def forget(self, topic: bytes) -> None:
        self._values.pop(topic, None)

    def snapshot(self, prefix: str = "") -> Snapshot:
        p = prefix.encode()
        return Snapshot(
            source=self._source,
            boot_id=self._boot_id,
            entries=[
                SnapshotEntry(topic=t.decode(), seq=seq, body=body)
                for t, (seq, body) in self._values.items()
                if t.startswith(p)
            ],
        )

    def __len__(self) -> int:
        return len(self._values)


def snapshot_reply(store: CloneStore, params: dict[str, Any]) -> Any:
    """RPC handler body: the snapshot as plain builtins for the reply."""
    prefix = params.get("prefix", "")
    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")
    return msgspec.to_builtins(store.snapshot(prefix))


async def fetch_snapshot(client: RpcClient, prefix: str, subscriber: Subscriber | None = None) -> Snapshot:
    result = await client.call(SNAPSHOT_METHOD, {"prefix": prefix})
    snap = msgspec.convert(result, Snapshot)
    if subscriber is not None:
        for e in snap.entries:
            subscriber.tracker.skip_to(snap.source, snap.boot_id, e.topic.encode(), e.seq)
    return snap
