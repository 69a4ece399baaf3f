"""Ids exactly as the sandbox contracts derive them, computed without a chain (the venue
lists its markets before the chain is up). tests/integration/test_contracts*.py check
every formula against the contracts themselves.

Binary markets: the CTF's condition of (oracle, questionId, 2); positions collateralised
by pUSD. Neg-risk events: the NegRiskAdapter's market id, question ids in its last byte,
conditions with the adapter as oracle; positions collateralised by WCOL.
"""

from __future__ import annotations

from eth_abi import encode
from eth_abi.packed import encode_packed
from eth_utils import keccak, to_checksum_address

ZERO32 = b"\x00" * 32
YES, NO = 1, 2  # the index sets of a binary condition's outcomes
# Where convertPositions sends the NO tokens it takes: never redeemed (the adapter's constant).
NO_TOKEN_BURN_ADDRESS = to_checksum_address(keccak(b"NO_TOKEN_BURN_ADDRESS")[:20])


def question_id(slug: str) -> bytes:
    """A binary market's question id: keccak256 of its slug."""
    return keccak(slug.encode())


def condition_id(oracle: str, question: bytes, outcome_slot_count: int) -> bytes:
    return keccak(encode_packed(["address", "bytes32", "uint256"], [oracle, question, outcome_slot_count]))


def collection_id(parent: bytes, condition: bytes, index_set: int) -> bytes:
    return keccak(encode_packed(["bytes32", "bytes32", "uint256"], [parent, condition, index_set]))


def position_id(collateral: str, collection: bytes) -> int:
    return int.from_bytes(keccak(encode_packed(["address", "bytes32"], [collateral, collection])), "big")


def binary_position_ids(collateral: str, condition: bytes) -> list[int]:
    """[YES, NO] position ids of a top-level binary condition."""
    return [position_id(collateral, collection_id(ZERO32, condition, s)) for s in (YES, NO)]


def neg_risk_market_id(oracle: str, fee_bips: int, data: bytes) -> bytes:
    """keccak256(abi.encode(oracle, feeBips, data)) with its last byte zeroed."""
    return keccak(encode(["address", "uint256", "bytes"], [oracle, fee_bips, data]))[:31] + b"\x00"


def neg_risk_question_id(market_id: bytes, index: int) -> bytes:
    """The market id with the question's index in its last byte."""
    if not 0 <= index < 255:
        raise ValueError(f"question index {index} out of range: a neg-risk market has at most 255 questions")
    return (int.from_bytes(market_id, "big") + index).to_bytes(32, "big")
