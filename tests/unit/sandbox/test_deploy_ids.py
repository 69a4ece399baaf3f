"""Market ids derived without a chain: deterministic, distinct, and the CTF formulas
(checked here against a byte-level derivation; tests/integration/test_contracts.py
checks them against the contract itself)."""

from decimal import Decimal

import pytest
from eth_utils import keccak

from actors.domain.money import to_micro
from actors.domain.wallet import dev_account
from sandbox.deploy import ZERO32, contract_addresses, market_infos

pytestmark = pytest.mark.unit

OPERATOR = dev_account(0).address


def test_market_infos_are_deterministic_and_complete(sandbox_config):
    infos = market_infos(sandbox_config, OPERATOR)

    assert infos == market_infos(sandbox_config, OPERATOR)
    assert [i.slug for i in infos] == [m.slug for m in sandbox_config.sandbox.venue.markets]
    assert [len(i.token_ids) for i in infos] == [len(m.outcomes) for m in sandbox_config.sandbox.venue.markets]
    all_ids = [t for i in infos for t in i.token_ids]
    assert len(set(all_ids)) == len(all_ids)
    assert all(t.isdigit() and int(t) < 2**256 for t in all_ids)
    assert not any(i.neg_risk for i in infos)


def test_ids_follow_the_ctf_byte_layout(sandbox_config):
    collateral = bytes.fromhex(contract_addresses(137)[0][2:])
    oracle = bytes.fromhex(OPERATOR[2:])
    for info in market_infos(sandbox_config, OPERATOR):
        qid = keccak(info.slug.encode())
        n = len(info.outcomes)
        cid = keccak(oracle + qid + n.to_bytes(32, "big"))
        assert (info.question_id, info.condition_id) == ("0x" + qid.hex(), "0x" + cid.hex())
        for i, token in enumerate(info.token_ids):
            collection = keccak(ZERO32 + cid + (1 << i).to_bytes(32, "big"))
            assert int(token) == int.from_bytes(keccak(collateral + collection), "big")
        assert info.partition == [1 << i for i in range(n)]


def test_the_oracle_is_part_of_the_condition(sandbox_config):
    mine = market_infos(sandbox_config, OPERATOR)
    theirs = market_infos(sandbox_config, dev_account(5).address)
    for a, b in zip(mine, theirs, strict=True):
        assert a.question_id == b.question_id
        assert a.condition_id != b.condition_id


def test_to_units_is_exact():
    assert to_micro(Decimal("10000")) == 10_000_000_000
    assert to_micro(Decimal("0.000001")) == 1
    with pytest.raises(ValueError, match="whole number"):
        to_micro(Decimal("0.0000001"))
