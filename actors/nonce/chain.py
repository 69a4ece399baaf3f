"""The nonce authority's view of the chain, over JSON-RPC (web3).

Reads the chain's identity (chain id, hash of block 0), the wallet's `latest`
and `pending` transaction counts and whether the node knows a transaction;
re-broadcasts the executor's signed transactions (`eth_sendRawTransaction`)
and sends the zero-value self-transfers that fill nonce gaps and replace
stuck transactions.
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

    async def genesis_hash(self) -> str:
        """The hash of block 0: tells a restarted dev chain from the old one."""

    async def transaction_counts(self) -> tuple[int, int]:
        """(latest, pending) transaction counts of the wallet."""

    async def transaction_known(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction (pooled or mined)."""

    async def fee_caps(self) -> tuple[int, int]:
        """The current (maxFeePerGas, maxPriorityFeePerGas) a self-transfer would use."""

    async def send_raw_transaction(self, raw: bytes) -> str:
        """Broadcast a signed transaction again (`eth_sendRawTransaction`); returns its hash.
        Raises with the node's message (`already known`, `nonce too low`, ...) when refused."""

    async def send_self_transfer(self, nonce: int, max_fee: int | None = None, tip: int | None = None) -> str:
        """Send a zero-value transfer to ourselves at `nonce` (at these fees, else today's); returns its hash."""


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

    async def genesis_hash(self) -> str:
        block = await self._w3.eth.get_block(0)
        return "0x" + bytes(block["hash"]).hex()

    async def transaction_known(self, tx_hash: str) -> bool:
        # Raw request: web3's get_transaction raises TransactionNotFound for null,
        # and we must tell null (unknown) from a transport error (raised).
        resp = await self._w3.provider.make_request("eth_getTransactionByHash", [tx_hash])  # type: ignore[arg-type]
        if "error" in resp:
            raise RuntimeError(f"eth_getTransactionByHash: {resp['error']}")
        return resp.get("result") is not None

    async def fee_caps(self) -> tuple[int, int]:
        block = await self._w3.eth.get_block("latest")
        base = block["baseFeePerGas"]
        tip = max(MIN_PRIORITY_FEE_WEI, await self._w3.eth.max_priority_fee)
        return 2 * base + tip, tip

    async def send_raw_transaction(self, raw: bytes) -> str:
        return "0x" + bytes(await self._w3.eth.send_raw_transaction(raw)).hex()

    async def send_self_transfer(self, nonce: int, max_fee: int | None = None, tip: int | None = None) -> str:
        if max_fee is None or tip is None:  # a gap fill: today's fees
            max_fee, tip = await self.fee_caps()
        max_fee = max(max_fee, tip)
        tx = {
            "chainId": self._chain_id,
            "nonce": nonce,
            "to": self.address,
            "value": 0,
            "gas": SELF_TRANSFER_GAS,
            "maxFeePerGas": max_fee,
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
