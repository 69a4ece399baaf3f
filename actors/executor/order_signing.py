"""Order signatures in the fast path.

py-clob-client-v2 signs an EOA order by building the EIP-712 typed-data dict,
encoding it generically and signing through eth_account: ~0.5 ms an order, on
the executor's event loop, for every leg. The Order struct is fixed, so its
hash is eleven 32-byte words; the digest is signed with libsecp256k1
(coincurve, RFC 6979 like eth_account: the same bytes). Other signature types
(POLY_1271 deposit wallets) keep the library's path.
"""

from __future__ import annotations

from typing import Any

from eth_utils import keccak
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ORDER_TYPE_HASH, ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.signature_type_v2 import SignatureTypeV2

from actors.domain.wallet import Wallet


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value).rjust(32, b"\0")


def _bytes32(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value.rjust(32, b"\0")
    return bytes.fromhex(str(value).removeprefix("0x").zfill(64))


def order_struct_hash(message: dict[str, Any]) -> bytes:
    """hashStruct(Order) of the CTF exchange v2, from the typed data's message."""
    m = message
    return keccak(ORDER_TYPE_HASH + _word(int(m["salt"])) + _address(m["maker"]) + _address(m["signer"])
                  + _word(int(m["tokenId"])) + _word(int(m["makerAmount"])) + _word(int(m["takerAmount"]))
                  + _word(int(m["side"])) + _word(int(m["signatureType"])) + _word(int(m["timestamp"]))
                  + _bytes32(m["metadata"]) + _bytes32(m["builder"]))


class FastOrderBuilder(ExchangeOrderBuilderV2):
    """The library's order builder, with EOA and proxy/Safe signatures made by the wallet."""

    def __init__(self, contract_address: str, chain_id: int, signer: Any, wallet: Wallet) -> None:
        super().__init__(contract_address, chain_id, signer)
        self._wallet = wallet

    def build_order_signature(self, typed_data: dict[str, Any]) -> str:
        if typed_data["message"]["signatureType"] == int(SignatureTypeV2.POLY_1271):
            return super().build_order_signature(typed_data)
        digest = keccak(b"\x19\x01" + self.app_domain_separator + order_struct_hash(typed_data["message"]))
        return "0x" + self._wallet.sign_digest(digest).hex()
