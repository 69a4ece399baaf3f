"""NonceClient: the NonceManager API across the bus (what the executor uses).

Built on the Lazy Pirate client: a lost reply is retried with the same
request id, and allocation is idempotent per request id, so a retry never
leaks or duplicates a nonce.
"""

from __future__ import annotations

from typing import Any

from actors.runtime.clock import Clock
from actors.runtime.metrics import Latency
from bus.codec import Stamper
from bus.sockets import RpcClient, new_request_id

# A nonce allocation's round trip: ~0.2-0.5 ms on loopback; a timeout and retry takes seconds.
ALLOCATE_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0)


def allocate_latency(actor: str) -> Latency:
    return Latency("polyarb_nonce_allocate_seconds", "a nonce allocation's round trip to the authority, by "
                   "outcome (ok, or error: refused or no reply after the RPC retries)", ALLOCATE_BUCKETS, actor,
                   labels=("outcome",))


class NonceClient:
    def __init__(self, ctx: Any, endpoint: str, stamper: Stamper, *, timeout_ms: int = 1000, retries: int = 3,
                 clock: Clock | None = None) -> None:
        self._rpc = RpcClient(ctx, endpoint, stamper, timeout_ms=timeout_ms, retries=retries)
        self._clock = clock
        self.allocate_latency = allocate_latency(stamper.source)

    async def allocate_nonce(self, request_id: str | None = None) -> int:
        rid = request_id or new_request_id()
        start = self._clock.monotonic_ns() if self._clock else 0
        outcome = "error"
        try:
            reply = await self._rpc.call("allocate", {"request_id": rid}, request_id=f"allocate:{rid}")
            outcome = "ok"
        finally:  # a timed-out allocation is the slowest of all: observed too
            if self._clock:
                self.allocate_latency.observe_ns(self._clock.monotonic_ns() - start, outcome)
        return int(reply["nonce"])

    get_nonce = allocate_nonce

    async def mark_sent(
        self, nonce: int, tx_hash: str, max_fee: int | None = None, tip: int | None = None,
        raw: bytes | None = None,
    ) -> None:
        """`max_fee` / `tip` (wei): the attempt's fees, so a stuck nonce's replacement outbids them.
        `raw`: the signed transaction (sent as 0x-hex), so the authority can re-broadcast it."""
        params: dict[str, Any] = {"nonce": nonce, "tx_hash": tx_hash}
        if max_fee is not None and tip is not None:
            params |= {"max_fee": max_fee, "tip": tip}
        if raw is not None:
            params["raw"] = "0x" + bytes(raw).hex()
        await self._rpc.call("mark_sent", params)

    async def mark_confirmed(self, nonce: int, tx_hash: str | None = None) -> bool:
        """Mined; `tx_hash`: the attempt whose receipt the sender holds (the one to
        re-broadcast if the chain loses its block), so the authority needs no chain read."""
        params: dict[str, object] = {"nonce": nonce}
        if tx_hash:
            params["tx_hash"] = tx_hash
        return bool((await self._rpc.call("confirm", params))["confirmed"])

    async def mark_failed(self, nonce: int) -> None:
        await self._rpc.call("fail", {"nonce": nonce})

    async def is_pending(self, nonce: int) -> bool:
        return bool((await self._rpc.call("is_pending", {"nonce": nonce}))["pending"])

    async def get_stats(self) -> dict[str, Any]:
        return dict(await self._rpc.call("stats"))

    async def resync(self) -> dict[str, Any]:
        return dict(await self._rpc.call("resync"))

    def client_stats(self) -> dict[str, int]:
        return self._rpc.get_stats()

    def close(self) -> None:
        self._rpc.close()
