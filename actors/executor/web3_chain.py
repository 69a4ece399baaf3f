"""ChainPort over JSON-RPC (web3 8): merge/split calls, fees, signing, receipts.

The merge target is the Conditional Tokens contract (live, in V2, the
collateral adapter with the same 5-argument signature: its address comes from
`executor.merge_target`, else the official client's contract config).
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from py_clob_client_v2.config import get_contract_config
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import TransactionNotFound

from actors.domain.wallet import Wallet
from actors.executor.ports import Receipt

_MERGE = function_signature_to_4byte_selector("mergePositions(address,bytes32,bytes32,uint256[],uint256)")
_SPLIT = function_signature_to_4byte_selector("splitPosition(address,bytes32,bytes32,uint256[],uint256)")
_APPROVE = function_signature_to_4byte_selector("approve(address,uint256)")
_SET_APPROVAL = function_signature_to_4byte_selector("setApprovalForAll(address,bool)")
_ALLOWANCE = function_signature_to_4byte_selector("allowance(address,address)")
_IS_APPROVED = function_signature_to_4byte_selector("isApprovedForAll(address,address)")
MAX_UINT = 2**256 - 1
ZERO32 = b"\x00" * 32


class Web3Chain:
    def __init__(self, rpc_url: str, wallet: Wallet, chain_id: int, *, timeout: float = 10.0,
                 merge_target: str | None = None) -> None:
        self._w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self._wallet = wallet
        self.address = wallet.address
        contracts = get_contract_config(chain_id)
        self.collateral = to_checksum_address(contracts.collateral)
        self.ctf = to_checksum_address(merge_target or contracts.conditional_tokens)
        self.conditional_tokens = to_checksum_address(contracts.conditional_tokens)  # the ERC-1155 itself
        self.exchange = to_checksum_address(contracts.exchange_v2)

    # -- calls
    def _positions_call(self, selector: bytes, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        partition = [1 << i for i in range(outcomes)]
        data = selector + encode(["address", "bytes32", "bytes32", "uint256[]", "uint256"],
                                 [self.collateral, ZERO32, bytes.fromhex(condition_id.removeprefix("0x")),
                                  partition, amount])
        return {"from": self.address, "to": self.ctf, "data": "0x" + data.hex()}

    def merge_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        return self._positions_call(_MERGE, condition_id, outcomes, amount)

    def split_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        return self._positions_call(_SPLIT, condition_id, outcomes, amount)

    def approval_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """The one-time approvals trading needs: the exchange settles our fills,
        the CTF pulls collateral on split."""
        def approve(spender: str) -> dict[str, Any]:
            return {"from": self.address, "to": self.collateral,
                    "data": "0x" + (_APPROVE + encode(["address", "uint256"], [spender, MAX_UINT])).hex()}
        return [
            ("approve_exchange", approve(self.exchange)),
            ("approve_ctf", approve(self.ctf)),
            ("approve_exchange_tokens", {"from": self.address, "to": self.ctf, "data": "0x" + (
                _SET_APPROVAL + encode(["address", "bool"], [self.exchange, True])).hex()}),
        ]

    async def approvals_missing(self) -> list[str]:
        # A gas estimate against an address without code is cheap and wrong:
        # approve nothing until the contracts exist (the sandbox deploys them late).
        for name, addr in (("collateral", self.collateral), ("ctf", self.ctf), ("exchange", self.exchange)):
            if not await self._w3.eth.get_code(addr):  # type: ignore[arg-type]
                raise RuntimeError(f"no {name} contract at {addr} yet")
        out = []
        for name, spender in (("approve_exchange", self.exchange), ("approve_ctf", self.ctf)):
            raw = await self._w3.eth.call({"to": self.collateral, "data": "0x" + (
                _ALLOWANCE + encode(["address", "address"], [self.address, spender])).hex()})
            if int.from_bytes(raw, "big") < MAX_UINT // 2:
                out.append(name)
        raw = await self._w3.eth.call({"to": self.ctf, "data": "0x" + (
            _IS_APPROVED + encode(["address", "address"], [self.address, self.exchange])).hex()})
        if not int.from_bytes(raw, "big"):
            out.append("approve_exchange_tokens")
        return out

    # -- ChainPort
    async def estimate_gas(self, call: dict[str, Any]) -> int:
        return int(await self._w3.eth.estimate_gas(call))  # type: ignore[arg-type]

    async def fees(self) -> tuple[int, int]:
        block = await self._w3.eth.get_block("pending")
        return int(block["baseFeePerGas"]), int(await self._w3.eth.max_priority_fee)

    def sign(self, tx: dict[str, Any]) -> tuple[str, bytes]:
        tx = {k: v for k, v in tx.items() if k != "from"}
        signed = self._wallet.sign_transaction(tx)
        return "0x" + bytes(signed.hash).hex(), bytes(signed.raw_transaction)

    async def send_raw(self, raw: bytes) -> str:
        return "0x" + bytes(await self._w3.eth.send_raw_transaction(raw)).hex()

    async def receipt(self, tx_hash: str) -> Receipt | None:
        try:
            r = await self._w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return Receipt("0x" + bytes(r["transactionHash"]).hex(), int(r["status"]), int(r["gasUsed"]),
                       int(r.get("effectiveGasPrice", 0)), int(r["blockNumber"]))

    async def genesis_hash(self) -> str:
        """Block 0's hash: which chain (which sandbox world) this is."""
        return "0x" + bytes((await self._w3.eth.get_block(0))["hash"]).hex()

    async def nonce_latest(self) -> int:
        return int(await self._w3.eth.get_transaction_count(self.address, "latest"))

    async def collateral_balance(self) -> int:
        raw = await self._w3.eth.call({"to": self.collateral, "data": "0x" + (
            function_signature_to_4byte_selector("balanceOf(address)") + encode(["address"], [self.address])).hex()})
        return int.from_bytes(raw, "big")

    async def token_balances(self, token_ids: list[str]) -> dict[str, int]:
        """The wallet's ERC-1155 balance of each token, in one balanceOfBatch call."""
        if not token_ids:
            return {}
        ids = [int(t) for t in token_ids]
        raw = await self._w3.eth.call({"to": self.conditional_tokens, "data": "0x" + (
            function_signature_to_4byte_selector("balanceOfBatch(address[],uint256[])")
            + encode(["address[]", "uint256[]"], [[self.address] * len(ids), ids])).hex()})
        (values,) = decode(["uint256[]"], raw)
        return dict(zip(token_ids, (int(v) for v in values), strict=True))

    async def close(self) -> None:
        disconnect = getattr(self._w3.provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()
