"""ChainPort over JSON-RPC (web3 8): merge/split/convert calls, fees, signing, receipts.

The merge target is the Conditional Tokens contract (live, in V2, the
collateral adapter with the same 5-argument signature: its address comes from
`executor.merge_target`, else the official client's contract config). A NO
basket converts on the NegRiskAdapter (`neg_risk_adapter` of the same config).
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
_CONVERT = function_signature_to_4byte_selector("convertPositions(bytes32,uint256,uint256)")
_QUESTION_COUNT = function_signature_to_4byte_selector("getQuestionCount(bytes32)")
_FEE_BIPS = function_signature_to_4byte_selector("getFeeBips(bytes32)")
_CONDITION_ID = function_signature_to_4byte_selector("getConditionId(bytes32)")
_REDEEM = function_signature_to_4byte_selector("redeemPositions(bytes32,uint256[])")
_PAYOUT_DENOMINATOR = function_signature_to_4byte_selector("payoutDenominator(bytes32)")
_PAYOUT_NUMERATORS = function_signature_to_4byte_selector("payoutNumerators(bytes32,uint256)")
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
        self.neg_risk_exchange = to_checksum_address(contracts.neg_risk_exchange_v2)  # neg-risk orders settle there
        self.neg_risk_adapter = to_checksum_address(contracts.neg_risk_adapter)  # convertPositions

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

    def convert_call(self, market_id: str, index_set: int, amount: int) -> dict[str, Any]:
        data = _CONVERT + encode(["bytes32", "uint256", "uint256"],
                                 [bytes.fromhex(market_id.removeprefix("0x")), index_set, amount])
        return {"from": self.address, "to": self.neg_risk_adapter, "data": "0x" + data.hex()}

    async def convert_terms(self, market_id: str) -> tuple[int, int]:
        mid = encode(["bytes32"], [bytes.fromhex(market_id.removeprefix("0x"))])
        if not await self._w3.eth.get_code(self.neg_risk_adapter):  # type: ignore[arg-type]
            raise RuntimeError(f"no NegRiskAdapter contract at {self.neg_risk_adapter} yet")
        count = await self._w3.eth.call({"to": self.neg_risk_adapter, "data": "0x" + (_QUESTION_COUNT + mid).hex()})
        bips = await self._w3.eth.call({"to": self.neg_risk_adapter, "data": "0x" + (_FEE_BIPS + mid).hex()})
        return int.from_bytes(count, "big"), int.from_bytes(bips, "big")

    def redeem_call(self, condition_id: str, amounts: list[int]) -> dict[str, Any]:
        """The NegRiskAdapter's redeemPositions: [YES, NO] of a resolved question into pUSD."""
        data = _REDEEM + encode(["bytes32", "uint256[]"], [bytes.fromhex(condition_id.removeprefix("0x")), amounts])
        return {"from": self.address, "to": self.neg_risk_adapter, "data": "0x" + data.hex()}

    async def question_condition(self, market_id: str, index: int) -> str:
        """The CTF condition of question `index` of an adapter market (its question id is
        the market id with the index in the last byte)."""
        qid = bytes.fromhex(market_id.removeprefix("0x"))[:31] + bytes([index])
        raw = await self._w3.eth.call({"to": self.neg_risk_adapter, "data": "0x" + (
            _CONDITION_ID + encode(["bytes32"], [qid])).hex()})
        return "0x" + bytes(raw[:32]).hex()

    async def payouts(self, condition_id: str) -> tuple[int, int] | None:
        """(YES, NO) payout numerators of a reported condition; None until it is reported."""
        cid = bytes.fromhex(condition_id.removeprefix("0x"))
        den = await self._w3.eth.call({"to": self.conditional_tokens, "data": "0x" + (
            _PAYOUT_DENOMINATOR + encode(["bytes32"], [cid])).hex()})
        if not int.from_bytes(den, "big"):
            return None
        nums = []
        for i in (0, 1):
            raw = await self._w3.eth.call({"to": self.conditional_tokens, "data": "0x" + (
                _PAYOUT_NUMERATORS + encode(["bytes32", "uint256"], [cid, i])).hex()})
            nums.append(int.from_bytes(raw, "big"))
        return nums[0], nums[1]

    def _erc20_approvals(self) -> list[tuple[str, str]]:
        """(name, spender) of each pUSD allowance trading needs."""
        return [("approve_exchange", self.exchange), ("approve_ctf", self.ctf),
                ("approve_neg_risk_exchange", self.neg_risk_exchange)]

    def _operator_approvals(self) -> list[tuple[str, str, str]]:
        """(name, ERC-1155 contract, operator) of each setApprovalForAll trading needs:
        always on the CTF itself, never on a merge target (a collateral adapter)."""
        return [("approve_exchange_tokens", self.conditional_tokens, self.exchange),
                ("approve_neg_risk_exchange_tokens", self.conditional_tokens, self.neg_risk_exchange),
                ("approve_neg_risk_adapter_tokens", self.conditional_tokens, self.neg_risk_adapter)]

    def approval_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """The one-time approvals trading needs: the exchanges settle our fills (pUSD
        in for a BUY, tokens out for a SELL; neg-risk orders on the neg-risk exchange),
        the CTF pulls collateral on split, the NegRiskAdapter pulls the NO it converts."""
        out = [(name, {"from": self.address, "to": self.collateral, "data": "0x" + (
            _APPROVE + encode(["address", "uint256"], [spender, MAX_UINT])).hex()})
            for name, spender in self._erc20_approvals()]
        out += [(name, {"from": self.address, "to": token, "data": "0x" + (
            _SET_APPROVAL + encode(["address", "bool"], [operator, True])).hex()})
            for name, token, operator in self._operator_approvals()]
        return out

    async def approvals_missing(self) -> list[str]:
        # A gas estimate against an address without code is cheap and wrong:
        # approve nothing until the contracts exist (the sandbox deploys them late).
        for name, addr in (("collateral", self.collateral), ("ctf", self.ctf), ("exchange", self.exchange),
                           ("neg-risk exchange", self.neg_risk_exchange), ("neg-risk adapter", self.neg_risk_adapter)):
            if not await self._w3.eth.get_code(addr):  # type: ignore[arg-type]
                raise RuntimeError(f"no {name} contract at {addr} yet")
        out = []
        for name, spender in self._erc20_approvals():
            raw = await self._w3.eth.call({"to": self.collateral, "data": "0x" + (
                _ALLOWANCE + encode(["address", "address"], [self.address, spender])).hex()})
            if int.from_bytes(raw, "big") < MAX_UINT // 2:
                out.append(name)
        for name, token, operator in self._operator_approvals():
            raw = await self._w3.eth.call({"to": token, "data": "0x" + (
                _IS_APPROVED + encode(["address", "address"], [self.address, operator])).hex()})
            if not int.from_bytes(raw, "big"):
                out.append(name)
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
