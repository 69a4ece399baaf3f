"""What the executor needs from the venue and the chain, as interfaces.

The pipeline (`tx_sender`) is written against these; production plugs in
the official CLOB client and web3 (`clob_venue`, `web3_chain`), unit tests
plug in fakes. Amounts are integers in 1e-6 units; gas in wei.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from actors.domain.enums import Side


@dataclass(frozen=True, slots=True)
class Fill:
    """What one FOK/FAK order did. filled=0 means killed (nothing traded)."""

    client_id: str  # bytes32 hex derived from the idempotency key and the leg
    order_id: str
    token_id: str
    side: Side
    filled: int  # shares
    cost: int  # notional, micro-USDC
    fee: int  # micro-USDC
    status: str  # MATCHED / KILLED / DUPLICATE ...
    trades: tuple[str, ...] = ()  # the venue's trade ids of a match not followed to settlement yet


class OrderRejected(Exception):
    """The venue refused the order outright (not a transport error)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class VenuePort(Protocol):
    async def place(self, token_id: str, side: Side, price: int, size: int, client_id: str,
                    *, fill_and_kill: bool = False, settle: bool = True) -> Fill:
        """A FOK order (FAK if fill_and_kill) at limit `price`; idempotent per client_id.
        settle=False: returned once the venue decided the order (a MATCHED fill is then
        provisional: `settle` follows it), so the market is free while it settles."""

    async def settle(self, fill: Fill) -> Fill:
        """A provisional MATCHED fill once its trades are MINED (or nothing, if one FAILED)."""

    async def find(self, client_id: str, settle: bool = True) -> Fill | None:
        """The order placed with this client id, if the venue has it (reconciliation);
        settle=False: a match handed back provisional, as `place(settle=False)` does."""


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int  # 1 success, 0 reverted
    gas_used: int
    effective_gas_price: int
    block_number: int


class ChainPort(Protocol):
    address: str

    def merge_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        """Unsigned call (to, data) of mergePositions for a full set."""

    def split_call(self, condition_id: str, outcomes: int, amount: int) -> dict[str, Any]:
        """Unsigned call (to, data) of splitPosition for a full set."""

    def convert_call(self, market_id: str, index_set: int, amount: int) -> dict[str, Any]:
        """Unsigned call (to, data) of the NegRiskAdapter's convertPositions: `amount` NO
        of every question in `index_set` (bit i = question i) into collateral."""

    async def convert_terms(self, market_id: str) -> tuple[int, int]:
        """(question count, feeBips) of a NegRiskAdapter market: what a convert of every
        question burns and what it keeps back."""

    def redeem_call(self, condition_id: str, amounts: list[int]) -> dict[str, Any]:
        """Unsigned call of the NegRiskAdapter's redeemPositions ([YES, NO] amounts)."""

    async def question_condition(self, market_id: str, index: int) -> str:
        """The CTF condition id of question `index` of a NegRiskAdapter market."""

    async def payouts(self, condition_id: str) -> tuple[int, int] | None:
        """(YES, NO) payout numerators once the condition is reported, else None."""

    async def estimate_gas(self, call: dict[str, Any]) -> int: ...

    async def fees(self) -> tuple[int, int]:
        """(base fee of the next block, suggested priority fee), wei."""

    def sign(self, tx: dict[str, Any]) -> tuple[str, bytes]:
        """(tx hash, raw signed bytes): signing never leaves the wallet object."""

    async def send_raw(self, raw: bytes) -> str: ...

    async def receipt(self, tx_hash: str) -> Receipt | None: ...

    async def nonce_latest(self) -> int: ...

    async def genesis_hash(self) -> str:
        """Block 0's hash: which chain the books belong to."""

    async def collateral_balance(self) -> int:
        """The wallet's pUSD, micro-USDC."""

    async def token_balances(self, token_ids: list[str]) -> dict[str, int]:
        """The wallet's ERC-1155 balance of each token, micro-shares."""
