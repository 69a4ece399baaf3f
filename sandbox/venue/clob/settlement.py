"""The venue's chain side: traders' funds, and one settlement transaction per trade.

Each trade settles on the exchange it was signed for (the standard or the
neg-risk one), with the call of its match type: `settle` (COMPLEMENTARY: the
operator's tokens for the trader's collateral, or the reverse), `settleMint`
(a BUY of NO against the operator's YES bid: both pay, a set is split) or
`settleMerge` (a SELL of NO against the operator's YES ask: a set is merged).

web3's AsyncHTTPProvider on cfg.chain.rpc_url, on the event loop (never a
blocking call), used as a JSON-RPC transport: `make_request` /
`make_batch_request` with calldata encoded by eth_abi. Measured here, a web3
contract `.call()` costs ~4.5 ms of formatting against ~0.7 ms for the raw
eth_call, and the funds check is one batched round trip. The aiohttp session
is ours, with keep-alive (web3's default opens a TCP connection per request),
and web3's hidden retries are off (a retried send must be our decision).

Operator nonces: one asyncio lock around "allocate nonce, sign, send"; the
local counter starts from the chain's pending count and is resynced from it
after any send error (a nonce error is retried once right away). A resync
first re-broadcasts the raw transactions held from the node's count up, so a
settlement the chain lost while the node was unreachable keeps its nonce. The receipt
is awaited OUTSIDE the lock, so with a block time settlements pipeline: many
in flight, one block. Fee caps are cached for FEE_TTL_NS.

A chain that loses its last seconds (the sandbox's anvil killed with SIGKILL
and restarted on a state file written every few seconds; live, a reorg) loses
settlements the venue already reported MINED. `heal()`, run every second,
compares the node's pending count with the operator's own counter and
re-broadcasts the recent raw transactions the node no longer knows, in nonce
order: the same transactions mine again, as reorged ones return on Polygon,
so the chain ends where the venue said it was.

Fill ids are unique (the order hash), and the contract refuses a fill id a
second time, so a settlement can never pay twice. When the outcome is unknown
(no receipt in time), the contract's `settled(fillId)` decides; a pending
transaction is dropped from anvil's pool first (the sandbox chain is always
anvil: sandbox.deploy refuses anything else), so "failed" stays failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import aiohttp
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import AsyncHTTPProvider

from actors.runtime.clock import Clock

log = logging.getLogger(__name__)

# Explicit, so no estimate round trip per trade: settle uses ~90-115k, settleMint / settleMerge
# ~165-195k on a standard market and ~255-290k through the NegRiskAdapter.
GAS_LIMIT = 400_000
FEE_TTL_NS = 2_000_000_000
RECEIPT_TIMEOUT_NS = 30_000_000_000
RECENT_SENDS = 1024  # raw transactions kept for `heal` (~minutes of settlements)
POLL_FIRST_S, POLL_MAX_S = 0.002, 0.1  # receipt polling: automine answers at once, blocks take ~2 s
MAX_UINT = 2**256 - 1


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


BALANCE_OF = _selector("balanceOf(address)")  # pUSD
ALLOWANCE = _selector("allowance(address,address)")
BALANCE_OF_1155 = _selector("balanceOf(address,uint256)")  # CTF positions
IS_APPROVED_FOR_ALL = _selector("isApprovedForAll(address,address)")
SETTLED = _selector("settled(bytes32)")
SETTLE = _selector("settle(bytes32,address,uint256,bool,uint256,uint256,uint256)")
SETTLE_TYPES = ["bytes32", "address", "uint256", "bool", "uint256", "uint256", "uint256"]
SETTLE_MINT = _selector("settleMint(bytes32,address,bytes32,uint256,uint256,uint256,uint256,uint256)")
SETTLE_MERGE = _selector("settleMerge(bytes32,address,bytes32,uint256,uint256,uint256,uint256,uint256)")
PAIR_TYPES = ["bytes32", "address", "bytes32", "uint256", "uint256", "uint256", "uint256", "uint256"]
REPORT_PAYOUTS = _selector("reportPayouts(bytes32,uint256[])")  # CTF, from the oracle (the operator)
REPORT_OUTCOME = _selector("reportOutcome(bytes32,bool)")  # NegRiskAdapter, from its oracle


def _call_data(selector: bytes, types: list[str], args: list[Any]) -> str:
    return "0x" + (selector + encode(types, args)).hex()


class RpcError(Exception):
    """The node answered with a JSON-RPC error; the message is the node's."""


class ChainUnavailable(Exception):
    """The node did not answer a read: nothing was done."""


class SettlementFailed(Exception):
    """The settlement did not happen (nothing moved on chain); `tx_hash` if one was mined."""

    def __init__(self, reason: str, tx_hash: str = "") -> None:
        super().__init__(reason)
        self.reason, self.tx_hash = reason, tx_hash


@dataclass(frozen=True, slots=True)
class Funds:
    """A trader's balance of what it gives, and what it allowed the exchange to take (1e-6)."""

    balance: int
    allowance: int


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _result(response: Any) -> Any:
    if not isinstance(response, dict):
        raise RpcError(f"not a JSON-RPC response: {str(response)[:200]}")
    if response.get("error"):
        error = response["error"]
        raise RpcError(error.get("message", str(error)) if isinstance(error, dict) else str(error))
    return response.get("result")


@dataclass(frozen=True, slots=True)
class Settlement:
    """One trade's settlement call: where to send it and how to recognise it on chain."""

    fill_id: bytes
    exchange: str
    data: str


def settlement_call(*, fill_id: bytes, exchange: str, match_type: str, trader: str, token_id: int,
                    other_token_id: int, condition_id: str, trader_buys: bool, shares: int, cost: int,
                    fee: int) -> Settlement:
    """The Settlement contract call of one trade (`cost`: the trader's collateral before fee)."""
    who = to_checksum_address(trader)
    if match_type == "MINT":
        data = _call_data(SETTLE_MINT, PAIR_TYPES, [fill_id, who, bytes.fromhex(condition_id[2:]), token_id,
                                                   other_token_id, shares, cost, fee])
    elif match_type == "MERGE":
        data = _call_data(SETTLE_MERGE, PAIR_TYPES, [fill_id, who, bytes.fromhex(condition_id[2:]), token_id,
                                                    other_token_id, shares, cost, fee])
    else:
        data = _call_data(SETTLE, SETTLE_TYPES, [fill_id, who, token_id, trader_buys, shares, cost, fee])
    return Settlement(fill_id, to_checksum_address(exchange), data)


class Settler:
    def __init__(self, rpc_url: str, operator: LocalAccount, *, chain_id: int, exchange: str, collateral: str,
                 ctf: str, clock: Clock, timeout_s: float = 10.0, neg_risk_exchange: str | None = None,
                 neg_risk_adapter: str | None = None) -> None:
        self.rpc_url, self.chain_id, self.clock, self.timeout_s = rpc_url, chain_id, clock, timeout_s
        self._account = operator  # the key stays inside the LocalAccount; never logged
        self.operator = operator.address
        self.exchange = to_checksum_address(exchange)
        self.neg_risk_exchange = to_checksum_address(neg_risk_exchange or exchange)
        self.neg_risk_adapter = to_checksum_address(neg_risk_adapter or exchange)
        self.collateral = to_checksum_address(collateral)
        self.ctf = to_checksum_address(ctf)
        self._provider: AsyncHTTPProvider | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._nonce: int | None = None
        self._fees: tuple[int, int, int] | None = None  # (max fee, tip, fetched at monotonic ns)
        self._recent: OrderedDict[int, tuple[str, str]] = OrderedDict()  # nonce -> (hash, raw 0x hex), newest last
        self.stats = {"sent": 0, "mined_ok": 0, "reverted": 0, "send_errors": 0, "nonce_resyncs": 0,
                      "restore_errors": 0, "receipt_timeouts": 0, "dropped": 0, "read_errors": 0, "heals": 0,
                      "rebroadcasts": 0, "chain_unreachable": 0}

    async def _connect(self) -> AsyncHTTPProvider:
        if self._provider is None:  # created on the running loop, at first use
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            provider = AsyncHTTPProvider(self.rpc_url, request_kwargs={"timeout": timeout},
                                         exception_retry_configuration=None)
            self._session = aiohttp.ClientSession(raise_for_status=True, timeout=timeout)
            await provider.cache_async_session(self._session)
            self._provider = provider
        return self._provider

    async def _rpc(self, method: str, params: list[Any]) -> Any:
        provider = await self._connect()
        return _result(await provider.make_request(method, params))  # type: ignore[arg-type]

    async def _calls(self, calls: list[tuple[str, str]]) -> list[int]:
        """eth_call each (to, data) in ONE batched request; the uint256 results."""
        provider = await self._connect()
        batch = [("eth_call", [{"to": to, "data": data}, "latest"]) for to, data in calls]
        responses = await provider.make_batch_request(batch)  # type: ignore[arg-type]
        if not isinstance(responses, list):  # the node refused the whole batch
            _result(responses)
            raise RpcError(f"unexpected batch answer: {str(responses)[:200]}")
        return [int(_result(r), 16) for r in responses]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._provider = self._session = None

    # ------------------------------------------------------------ reads

    def exchange_for(self, neg_risk: bool) -> str:
        return self.neg_risk_exchange if neg_risk else self.exchange

    async def genesis_hash(self) -> str:
        """The chain's block 0 hash: which sandbox world this is."""
        return str((await self._rpc("eth_getBlockByNumber", ["0x0", False]))["hash"])

    async def funds(self, trader: str, token_id: int, buy: bool, neg_risk: bool = False) -> Funds:
        """BUY: pUSD balance and allowance to the order's exchange; SELL: token balance,
        and isApprovedForAll as an unlimited (or zero) allowance."""
        owner, exchange = to_checksum_address(trader), self.exchange_for(neg_risk)
        if buy:
            calls = [(self.collateral, _call_data(BALANCE_OF, ["address"], [owner])),
                     (self.collateral, _call_data(ALLOWANCE, ["address", "address"], [owner, exchange]))]
        else:
            calls = [(self.ctf, _call_data(BALANCE_OF_1155, ["address", "uint256"], [owner, token_id])),
                     (self.ctf, _call_data(IS_APPROVED_FOR_ALL, ["address", "address"], [owner, exchange]))]
        try:
            balance, allowance = await self._calls(calls)
        except Exception as exc:  # connection refused, timeout, node error: the order is not taken
            self.stats["read_errors"] += 1
            raise ChainUnavailable(f"chain read failed: {_short(exc)}") from exc
        return Funds(balance, allowance if buy else (MAX_UINT if allowance else 0))

    # ------------------------------------------------------------ settlement

    async def _fee_caps(self) -> tuple[int, int]:
        now = self.clock.monotonic_ns()
        if self._fees is None or now - self._fees[2] > FEE_TTL_NS:
            block, tip = await asyncio.gather(self._rpc("eth_getBlockByNumber", ["latest", False]),
                                              self._rpc("eth_maxPriorityFeePerGas", []))
            tip = int(tip, 16)
            self._fees = (2 * int(block["baseFeePerGas"], 16) + tip, tip, now)
        return self._fees[0], self._fees[1]

    async def _send(self, data: str, to: str | None = None) -> str:
        """Allocate a nonce, sign and send, under the lock; one retry after a nonce resync.
        ChainUnavailable when the node cannot be reached: nothing was sent."""
        async with self._lock:
            for attempt in (1, 2):
                try:
                    if self._nonce is None:
                        pending = int(await self._rpc("eth_getTransactionCount", [self.operator, "pending"]), 16)
                        self.stats["nonce_resyncs"] += 1
                        await self._restore(pending)
                    max_fee, tip = await self._fee_caps()
                except (aiohttp.ClientConnectionError, OSError, TimeoutError) as exc:
                    self.stats["chain_unreachable"] += 1
                    self._nonce, self._fees = None, None
                    raise ChainUnavailable(f"the node is unreachable: {_short(exc)}") from exc
                tx = {"to": to or self.exchange, "data": data, "value": 0, "nonce": self._nonce, "gas": GAS_LIMIT,
                      "chainId": self.chain_id, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "type": 2}
                raw = "0x" + self._account.sign_transaction(tx).raw_transaction.hex()
                try:
                    tx_hash = str(await self._rpc("eth_sendRawTransaction", [raw]))
                except aiohttp.ClientConnectorError as exc:  # no connection: the node never saw it
                    self.stats["chain_unreachable"] += 1
                    self._nonce, self._fees = None, None
                    raise ChainUnavailable(f"the node is unreachable: {_short(exc)}") from exc
                except Exception as exc:
                    self.stats["send_errors"] += 1
                    self._nonce, self._fees = None, None
                    if attempt == 1 and "nonce" in str(exc).lower():
                        continue
                    raise SettlementFailed(f"settlement transaction not accepted: {_short(exc)}") from exc
                self._recent[self._nonce] = (tx_hash, raw)
                self._recent.move_to_end(self._nonce)
                if len(self._recent) > RECENT_SENDS:
                    self._recent.popitem(last=False)
                self._nonce += 1
                self.stats["sent"] += 1
                return tx_hash
        raise AssertionError("unreachable")

    async def heal(self) -> list[int]:
        """Re-broadcast what the node lost: every nonce from its pending count up that we
        hold the raw transaction of, lowest first (`_restore`). Returns the nonces sent."""
        top = self._top()
        if top is None:
            return []
        pending = int(await self._rpc("eth_getTransactionCount", [self.operator, "pending"]), 16)
        if pending >= top:
            return []
        async with self._lock:
            return await self._restore(pending)

    def _top(self) -> int | None:
        """One past the highest nonce sent: the counter, or, once it was forgotten (a send
        error resyncs it), the highest raw transaction held."""
        if self._nonce is not None:
            return self._nonce
        return max(self._recent) + 1 if self._recent else None

    async def _restore(self, pending: int) -> list[int]:
        """Under the lock: the node's pending count is `pending`; re-broadcast the raw
        transactions held from there up, in nonce order, and continue the counter after
        them. A chain that lost its last seconds while the counter was forgotten (a send to
        the unreachable node resets it) lost settlements the venue had reported MINED; a
        resync straight to the node's count reused their nonces and they never came back
        (a chaos run: a BUY reported CONFIRMED, 105.26 shares never delivered)."""
        top = self._top()
        sent: list[int] = []
        n = pending
        while top is not None and n < top and n in self._recent:
            try:
                await self._rpc("eth_sendRawTransaction", [self._recent[n][1]])
            except Exception as exc:
                text = str(exc).lower()
                if "already" not in text and "nonce too low" not in text:
                    self.stats["restore_errors"] += 1  # the hole stays: counted, and the next resync tries again
                    log.warning("re-broadcast of operator nonce %d failed: %s", n, _short(exc))
                    break
            sent.append(n)
            n += 1
        # A hole we cannot fill (a nonce given up): the counter starts at the first one, so
        # the next settlement fills it and the held ones above mine after it.
        self._nonce = n
        if sent:
            self.stats["heals"] += 1
            self.stats["rebroadcasts"] += len(sent)
            log.warning("the chain lost operator transactions %d..%d (node's pending count %d): re-broadcast %d "
                        "of them", pending, (top or n) - 1, pending, len(sent),
                        extra={"fields": {"lost": [pending, (top or n) - 1], "rebroadcast": len(sent)}})
        return sent

    async def _receipt(self, tx_hash: str) -> dict[str, Any] | None:
        deadline = self.clock.monotonic_ns() + RECEIPT_TIMEOUT_NS
        delay = POLL_FIRST_S
        while True:
            try:
                receipt = await self._rpc("eth_getTransactionReceipt", [tx_hash])
                if receipt:
                    return receipt
            except Exception as exc:  # a flaky read: keep polling until the deadline
                log.warning("receipt poll for %s failed: %s", tx_hash, _short(exc))
            if self.clock.monotonic_ns() > deadline:
                return None
            await self.clock.sleep(delay)
            delay = min(POLL_MAX_S, delay * 2)

    async def settle(self, fill_id: bytes, trader: str, token_id: int, trader_buys: bool, shares: int, cost: int,
                     fee: int) -> str:
        """A COMPLEMENTARY settlement on the standard exchange (see `submit`)."""
        data = _call_data(SETTLE, SETTLE_TYPES,
                          [fill_id, to_checksum_address(trader), token_id, trader_buys, shares, cost, fee])
        return await self.submit(Settlement(fill_id, self.exchange, data))

    async def submit(self, call: Settlement, on_sent: Any = None) -> str:
        """Send one settlement and wait for it to be mined: its transaction hash, or
        SettlementFailed (nothing moved). `on_sent(tx_hash)` runs once it is broadcast
        (the caller records it, so a restart can look the transaction up)."""
        try:
            tx_hash = await self._send(call.data, call.exchange)
        except SettlementFailed:
            if await self.is_settled(call.fill_id, call.exchange):  # the "failed" send got through after all
                return ""
            raise
        if on_sent is not None:
            on_sent(tx_hash)
        receipt = await self._receipt(tx_hash)
        if receipt is None:
            self.stats["receipt_timeouts"] += 1
            await self._drop(tx_hash)
            if await self.is_settled(call.fill_id, call.exchange):
                return tx_hash
            raise SettlementFailed(f"no receipt for {tx_hash} within {RECEIPT_TIMEOUT_NS // 10**9}s; dropped")
        if int(receipt["status"], 16) != 1:
            self.stats["reverted"] += 1
            raise SettlementFailed(f"settlement reverted{await self._why(call.data, call.exchange)}", tx_hash)
        self.stats["mined_ok"] += 1
        return tx_hash

    async def report_payout(self, question_id: str, yes_wins: bool, neg_risk: bool) -> str:
        """Resolve one binary question on chain (the operator is its oracle): the CTF's
        reportPayouts, or the NegRiskAdapter's reportOutcome for a neg-risk question."""
        qid = bytes.fromhex(question_id[2:])
        if neg_risk:
            to, data = self.neg_risk_adapter, _call_data(REPORT_OUTCOME, ["bytes32", "bool"], [qid, yes_wins])
        else:
            to, data = self.ctf, _call_data(REPORT_PAYOUTS, ["bytes32", "uint256[]"], [qid, [1, 0] if yes_wins
                                                                                          else [0, 1]])
        tx_hash = await self._send(data, to)
        receipt = await self._receipt(tx_hash)
        if receipt is None or int(receipt["status"], 16) != 1:
            raise SettlementFailed(f"payout report for {question_id} not mined{await self._why(data, to)}", tx_hash)
        return tx_hash

    async def is_settled(self, fill_id: bytes, exchange: str | None = None) -> bool:
        """Whether the exchange settled this fill id (False when the chain cannot say)."""
        try:
            calls = [(exchange or self.exchange, _call_data(SETTLED, ["bytes32"], [fill_id]))]
            return bool((await self._calls(calls))[0])
        except Exception:
            return False

    async def _drop(self, tx_hash: str) -> None:
        async with self._lock:
            try:
                await self._rpc("anvil_dropTransaction", [tx_hash])
                self.stats["dropped"] += 1
            except Exception as exc:
                log.warning("could not drop %s: %s", tx_hash, _short(exc))
            for n, (h, _) in list(self._recent.items()):
                if h == tx_hash:  # given up either way: never re-broadcast by `heal`
                    del self._recent[n]
            self._nonce = None  # the dropped nonce must be reused

    async def _why(self, data: str, to: str | None = None) -> str:
        # Replaying the call on the current state usually names the require() that failed.
        try:
            await self._rpc("eth_call", [{"from": self.operator, "to": to or self.exchange, "data": data}, "latest"])
        except Exception as exc:
            return f": {str(exc)[:200]}"
        return ""

    def get_stats(self) -> dict[str, Any]:
        return {**self.stats, "nonce": self._nonce}
