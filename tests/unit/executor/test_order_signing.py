"""The fast order signature is the library's signature, byte for byte, and recovers to the wallet."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.order_data_v2 import OrderDataV2
from py_clob_client_v2.order_utils.model.side import Side
from py_clob_client_v2.order_utils.model.signature_type_v2 import SignatureTypeV2
from py_clob_client_v2.signer import Signer

from actors.domain.wallet import Wallet, dev_account
from actors.executor.order_signing import FastOrderBuilder

WALLET = Wallet(dev_account(3))
SIGNER = Signer("0x" + bytes(WALLET.account.key).hex(), 137)


@pytest.mark.parametrize("neg_risk", [False, True])
@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_the_fast_signature_is_the_librarys(neg_risk: bool, side: Side) -> None:
    contracts = get_contract_config(137)
    exchange = contracts.neg_risk_exchange_v2 if neg_risk else contracts.exchange_v2
    slow = ExchangeOrderBuilderV2(exchange, 137, SIGNER)
    fast = FastOrderBuilder(exchange, 137, SIGNER, WALLET)
    for i in range(20):
        order = slow.build_order(OrderDataV2(
            maker=WALLET.address, tokenId=str(10**76 + i * 7919), makerAmount=str(1_000_000 + i),
            takerAmount=str(2_500_000 + 3 * i), side=side, signer=WALLET.address,
            signatureType=SignatureTypeV2.EOA, metadata="0x" + f"{i:02x}" * 32))
        typed = slow.build_order_typed_data(order)
        sig = fast.build_order_signature(typed)
        assert sig == slow.build_order_signature(typed)
        assert Account.recover_message(encode_typed_data(full_message=typed), signature=sig) == WALLET.address


def test_another_domain_gives_another_signature() -> None:
    contracts = get_contract_config(137)
    a = FastOrderBuilder(contracts.exchange_v2, 137, SIGNER, WALLET)
    b = FastOrderBuilder(contracts.neg_risk_exchange_v2, 137, SIGNER, WALLET)
    order = a.build_order(OrderDataV2(maker=WALLET.address, tokenId="1", makerAmount="1", takerAmount="1",
                                      side=Side.BUY, signer=WALLET.address, signatureType=SignatureTypeV2.EOA))
    typed = a.build_order_typed_data(order)
    assert a.build_order_signature(typed) != b.build_order_signature(b.build_order_typed_data(order))


def test_the_wallet_never_shows_its_key() -> None:
    key = bytes(WALLET.account.key).hex()
    assert key not in repr(WALLET) and key not in str(WALLET)
    with pytest.raises(AttributeError):
        WALLET.__dict__  # noqa: B018 - slots only: no attribute dump either


def test_the_clob_client_signs_through_the_wallet_and_holds_no_copy_of_the_key():
    # Issue 16 (hygiene): the client kept the key as a hex string in its own Signer.
    import os

    from py_clob_client_v2.signer import Signer

    from actors.domain.wallet import Wallet, dev_account
    from actors.executor.clob_venue import ClobVenue

    account = dev_account(1)
    venue = ClobVenue("http://clob", Wallet(account), 137)
    key_hex = bytes(account.key).hex()

    def strings(obj, seen, depth=0):
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, str):
            yield obj
        elif isinstance(obj, dict):
            for v in obj.values():
                yield from strings(v, seen, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            for v in vars(obj).values():
                yield from strings(v, seen, depth + 1)

    assert not any(key_hex in s for s in strings(venue._client, set()))
    digest = os.urandom(32)
    library = Signer("0x" + key_hex, 137)
    assert venue._client.signer.sign(digest) == library.sign(digest).removeprefix("0x")
    as_hex = "0x" + digest.hex()  # how the library's L1 auth (eip712.sign_clob_auth_message) passes it
    assert venue._client.signer.sign(as_hex) == library.sign(as_hex).removeprefix("0x")
    assert venue._client.signer.address() == library.address() and key_hex not in repr(venue._client.signer)
