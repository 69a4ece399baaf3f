"""NonceClient: the NonceManager API across the bus (what the executor uses).

Built on the Lazy Pirate client: a lost reply is retried with the same
request id, and allocation is idempotent per request id, so a retry never
leaks or duplicates a nonce.
"""

from __future__ import annotations

from typing import Any

from bus.codec import Stamper
from bus.sockets import RpcClient, new_request_id


class NonceClient:
    def __init__(self, ctx: Any, endpoint: str, stamper: Stamper, *, timeout_ms: int = 1000, retries: int = 3) -> None:
        self._rpc = RpcClient(ctx, endpoint, stamper, timeout_ms=timeout_ms, retries=retries)

    async def allocate_nonce(self, request_id: str | None = None) -> int:
        rid = request_id or new_request_id()
        reply = await self._rpc.call("allocate", {"request_id": rid}, request_id=f"allocate:{rid}")
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
