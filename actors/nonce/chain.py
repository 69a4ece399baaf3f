"""The nonce authority's view of the chain, over JSON-RPC (web3).

Reads the wallet's `latest` and `pending` transaction counts and sends the
zero-value self-transfers that fill nonce gaps.
"""

from __future__ import annotations

from typing import Protocol

from web3 import AsyncHTTPProvider, AsyncWeb3

from actors.domain.wallet import Wallet

SELF_TRANSFER_GAS = 21_000
# Polygon PoS refuses priority fees under 25 gwei; anvil accepts anything.
MIN_PRIORITY_FEE_WEI = 25 * 10**9


class NonceChain(Protocol):
    async def chain_id(self) -> int: ...

    async def transaction_counts(self) -> tuple[int, int]:
        """(latest, pending) transaction counts of the wallet."""

    async def send_self_transfer(self, nonce: int) -> str:
        """Send a zero-value transfer to ourselves at `nonce`; returns its hash."""


class Web3NonceChain:
    def __init__(self, rpc_url: str, wallet: Wallet, chain_id: int, timeout_seconds: float = 10.0) -> None:
        self._w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout_seconds}))
        self._wallet = wallet
        self._chain_id = chain_id
        self.address = wallet.address

    async def transaction_counts(self) -> tuple[int, int]:
        latest = await self._w3.eth.get_transaction_count(self.address, "latest")
        pending = await self._w3.eth.get_transaction_count(self.address, "pending")
        return latest, pending

    async def chain_id(self) -> int:
        return await self._w3.eth.chain_id

    async def send_self_transfer(self, nonce: int) -> str:
        block = await self._w3.eth.get_block("latest")
        base = block["baseFeePerGas"]
        tip = max(MIN_PRIORITY_FEE_WEI, await self._w3.eth.max_priority_fee)
        tx = {
            "chainId": self._chain_id,
            "nonce": nonce,
            "to": self.address,
            "value": 0,
            "gas": SELF_TRANSFER_GAS,
            "maxFeePerGas": 2 * base + tip,
            "maxPriorityFeePerGas": tip,
            "type": 2,
        }
        signed = self._wallet.sign_transaction(tx)
        return "0x" + bytes(await self._w3.eth.send_raw_transaction(signed.raw_transaction)).hex()

    async def close(self) -> None:
        provider = self._w3.provider
        disconnect = getattr(provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()
