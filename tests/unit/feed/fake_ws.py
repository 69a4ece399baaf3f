"""A fake market-channel server for the WS client: records what the client
sends, lets the test push frames, answers PING with PONG unless told not to."""

from __future__ import annotations

import asyncio
import json

_CLOSE = object()


class FakeWS:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.sent: list[str] = []
        self.incoming: asyncio.Queue[object] = asyncio.Queue()
        self.closed = False
        self.close_code: int | None = None

    async def __aenter__(self) -> FakeWS:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionError("closed")
        self.sent.append(text)
        if text == "PING" and self.server.pong:
            self.incoming.put_nowait("PONG")

    def push(self, frame: object) -> None:
        self.incoming.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    def __aiter__(self) -> FakeWS:
        return self

    async def __anext__(self) -> str:
        msg = await self.incoming.get()
        if msg is _CLOSE:
            raise StopAsyncIteration
        return msg  # type: ignore[return-value]

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.close_code = 1000
            self.incoming.put_nowait(_CLOSE)

    def frames(self) -> list[dict]:
        return [json.loads(s) for s in self.sent if s[:1] == "{"]


class FakeServer:
    def __init__(self) -> None:
        self.connections: list[FakeWS] = []
        self.pong = True
        self.refuse = 0

    def connect(self, url: str, max_size: int) -> FakeWS:
        if self.refuse:
            self.refuse -= 1
            raise ConnectionRefusedError("refused")
        ws = FakeWS(self)
        self.connections.append(ws)
        return ws
