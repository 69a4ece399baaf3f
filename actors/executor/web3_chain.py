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
_BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
_BALANCE_OF_BATCH = function_signature_to_4byte_selector("balanceOfBatch(address[],uint256[])")
_LATEST_ROUND = function_signature_to_4byte_selector("latestRoundData()")  # Chainlink AggregatorV3
_DECIMALS = function_signature_to_4byte_selector("decimals()")
MAX_UINT = 2**256 - 1
ZERO32 = b"\x00" * 32


def _data(selector: bytes, types: list[str], values: list[Any]) -> str:
    """ABI call data: the selector and the encoded arguments, 0x hex."""
    return "0x" + (selector + encode(types, values)).hex()


def _b32(hex_id: str) -> bytes:
    return bytes.fromhex(hex_id.removeprefix("0x"))


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
        return self._tx(self.ctf, selector, ["address", "bytes32", "bytes32", "uint256[]", "uint256"],
                        [self.collateral, ZERO32, _b32(condition_id), partition, amount])

    def _tx(self, to: str, selector: bytes, types: list[str], values: list[Any]) -> dict[str, Any]:
        """An unsigned call from the wallet."""
        return {"from": self.address, "to": to, "data": _data(selector, types, values)}

    async def _read(self, to: str, selector: bytes, types: list[str], values: list[Any]) -> bytes:
        """An eth_call's raw answer."""
        return bytes(await self._w3.eth.call({"to": to, "data": _data(selector, types, values)}))  # type: ignore[typeddict-item]

    async def _read_int(self, to: str, selector: bytes, types: list[str], values: list[Any]) -> int:
        return int.from_bytes(await self._read(to, selector, types, values), "big")

    def merge_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        return self._positions_call(_MERGE, condition_id, outcomes, amount)

    def split_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        return self._positions_call(_SPLIT, condition_id, outcomes, amount)

    def convert_call(self, market_id: str, index_set: int, amount: int) -> dict[str, Any]:
        return self._tx(self.neg_risk_adapter, _CONVERT, ["bytes32", "uint256", "uint256"],
                        [_b32(market_id), index_set, amount])

    async def convert_terms(self, market_id: str) -> tuple[int, int]:
        if not await self._w3.eth.get_code(self.neg_risk_adapter):  # type: ignore[arg-type]
            raise RuntimeError(f"no NegRiskAdapter contract at {self.neg_risk_adapter} yet")
        mid = [_b32(market_id)]
        return (await self._read_int(self.neg_risk_adapter, _QUESTION_COUNT, ["bytes32"], mid),
                await self._read_int(self.neg_risk_adapter, _FEE_BIPS, ["bytes32"], mid))

    def redeem_call(self, condition_id: str, amounts: list[int]) -> dict[str, Any]:
        """The NegRiskAdapter's redeemPositions: [YES, NO] of a resolved question into pUSD."""
        return self._tx(self.neg_risk_adapter, _REDEEM, ["bytes32", "uint256[]"], [_b32(condition_id), amounts])

    async def question_condition(self, market_id: str, index: int) -> str:
        """The CTF condition of question `index` of an adapter market (its question id is
        the market id with the index in the last byte)."""
        qid = _b32(market_id)[:31] + bytes([index])
        return "0x" + (await self._read(self.neg_risk_adapter, _CONDITION_ID, ["bytes32"], [qid]))[:32].hex()

    async def payouts(self, condition_id: str) -> tuple[int, int] | None:
        """(YES, NO) payout numerators of a reported condition; None until it is reported."""
        ctf, cid = self.conditional_tokens, _b32(condition_id)
        if not await self._read_int(ctf, _PAYOUT_DENOMINATOR, ["bytes32"], [cid]):
            return None
        return (await self._read_int(ctf, _PAYOUT_NUMERATORS, ["bytes32", "uint256"], [cid, 0]),
                await self._read_int(ctf, _PAYOUT_NUMERATORS, ["bytes32", "uint256"], [cid, 1]))

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
        out = [(name, self._tx(self.collateral, _APPROVE, ["address", "uint256"], [spender, MAX_UINT]))
               for name, spender in self._erc20_approvals()]
        out += [(name, self._tx(token, _SET_APPROVAL, ["address", "bool"], [operator, True]))
                for name, token, operator in self._operator_approvals()]
        return out

    def contracts(self) -> list[tuple[str, str]]:
        """(name, address) of every contract trading calls."""
        return [("collateral", self.collateral), ("ctf", self.ctf), ("exchange", self.exchange),
                ("neg-risk exchange", self.neg_risk_exchange), ("neg-risk adapter", self.neg_risk_adapter)]

    async def contracts_missing(self) -> list[tuple[str, str]]:
        """Those of `contracts()` with no code at their address on this chain."""
        return [(name, addr) for name, addr in self.contracts()
                if not await self._w3.eth.get_code(addr)]  # type: ignore[arg-type]

    def approval_targets(self) -> dict[str, tuple[str, str]]:
        """Each approval's name -> (what it lets, the spender's address), for people."""
        return {**{name: (f"pUSD allowance of {spender}", spender) for name, spender in self._erc20_approvals()},
                **{name: (f"ERC-1155 operator {operator}", operator)
                   for name, _, operator in self._operator_approvals()}}

    async def price_feed(self, feed: str) -> tuple[int, int, int]:
        """A Chainlink AggregatorV3's (answer, decimals, updatedAt seconds)."""
        if not await self._w3.eth.get_code(to_checksum_address(feed)):  # type: ignore[arg-type]
            raise RuntimeError(f"no price feed contract at {feed}")
        to = to_checksum_address(feed)
        raw = await self._read(to, _LATEST_ROUND, [], [])
        _, answer, _, updated, _ = decode(["uint80", "int256", "uint256", "uint256", "uint80"], raw)
        return int(answer), await self._read_int(to, _DECIMALS, [], []), int(updated)

    async def pol_balance(self) -> int:
        """The wallet's POL (wei): what pays for gas."""
        return int(await self._w3.eth.get_balance(self.address))

    async def chain_id(self) -> int:
        return int(await self._w3.eth.chain_id)

    async def approvals_missing(self) -> list[str]:
        # A gas estimate against an address without code is cheap and wrong:
        # approve nothing until the contracts exist (the sandbox deploys them late).
        for name, addr in await self.contracts_missing():
            raise RuntimeError(f"no {name} contract at {addr} yet")
        out = []
        pair = ["address", "address"]
        for name, spender in self._erc20_approvals():
            if await self._read_int(self.collateral, _ALLOWANCE, pair, [self.address, spender]) < MAX_UINT // 2:
                out.append(name)
        for name, token, operator in self._operator_approvals():
            if not await self._read_int(token, _IS_APPROVED, pair, [self.address, operator]):
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
        return await self._read_int(self.collateral, _BALANCE_OF, ["address"], [self.address])

    async def token_balances(self, token_ids: list[str]) -> dict[str, int]:
        """The wallet's ERC-1155 balance of each token, in one balanceOfBatch call."""
        if not token_ids:
            return {}
        ids = [int(t) for t in token_ids]
        raw = await self._read(self.conditional_tokens, _BALANCE_OF_BATCH, ["address[]", "uint256[]"],
                               [[self.address] * len(ids), ids])
        (values,) = decode(["uint256[]"], raw)
        return dict(zip(token_ids, (int(v) for v in values), strict=True))

    async def close(self) -> None:
        disconnect = getattr(self._w3.provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()
