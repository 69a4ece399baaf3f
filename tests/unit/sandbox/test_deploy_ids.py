"""Market ids derived without a chain: deterministic, distinct, and the CTF and
NegRiskAdapter formulas (checked here against a byte-level derivation;
tests/integration/test_contracts*.py check them against the contracts themselves)."""

from decimal import Decimal

import msgspec
import pytest
from eth_utils import keccak

from actors.domain.money import to_micro
from actors.domain.wallet import dev_account
from sandbox.deploy import (
    NO_TOKEN_BURN_ADDRESS,
    WCOL_ADDRESS,
    ZERO32,
    Deployment,
    addresses,
    contract_addresses,
    event_infos,
    market_infos,
)

pytestmark = pytest.mark.unit

OPERATOR = dev_account(0).address


def word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_market_infos_are_deterministic_and_complete(sandbox_config):
    venue = sandbox_config.sandbox.venue
    infos = market_infos(sandbox_config, OPERATOR)

    assert infos == market_infos(sandbox_config, OPERATOR)
    event_slugs = [f"{e.slug}-{i}" for e in venue.events for i in range(len(e.outcomes) + e.placeholders + e.other)]
    assert [i.slug for i in infos] == [m.slug for m in venue.markets] + event_slugs
    assert all(len(i.token_ids) == 2 and i.partition == [1, 2] for i in infos)
    all_ids = [t for i in infos for t in i.token_ids]
    assert len(set(all_ids)) == len(all_ids)
    assert all(t.isdigit() and int(t) < 2**256 for t in all_ids)
    assert [i.neg_risk for i in infos] == [False] * len(venue.markets) + [True] * len(event_slugs)


def test_event_outcomes_named_then_placeholders_then_other(sandbox_config):
    infos = {i.slug: i for i in market_infos(sandbox_config, OPERATOR)}
    (cup, mayor) = event_infos(sandbox_config, OPERATOR)
    assert mayor.outcomes == ["Adams", "Lander", "Placeholder 1", "Placeholder 2", "Other"]
    assert (mayor.placeholders, mayor.other, cup.placeholders, cup.other) == (2, True, 0, False)
    flags = [(infos[s].placeholder, infos[s].other) for s in mayor.market_slugs]
    assert flags == [(False, False)] * 2 + [(True, False)] * 2 + [(False, True)]
    m = infos["nyc-mayor-2029-4"]
    assert (m.question, m.outcome, m.outcomes, m.event_slug) == (
        "2029 NYC mayoral election winner: Other?", "Other", ["Yes", "No"], "nyc-mayor-2029")
    assert (m.fee_rate, m.neg_risk_market_id) == (Decimal("0.02"), mayor.market_id)
    assert [infos[s].condition_id for s in cup.market_slugs] == cup.condition_ids
    assert [infos[s].question_id for s in cup.market_slugs] == cup.question_ids
    assert cup.fee_bips == 0


def test_an_untitled_event_asks_by_its_slug(sandbox_config):
    venue = sandbox_config.sandbox.venue
    untitled = msgspec.structs.replace(venue.events[0], title="", fee_exponent=2)
    cfg = msgspec.structs.replace(sandbox_config, sandbox=msgspec.structs.replace(
        sandbox_config.sandbox, venue=msgspec.structs.replace(venue, events=[untitled])))
    first = next(i for i in market_infos(cfg, OPERATOR) if i.neg_risk)
    assert (first.question, first.fee_exponent) == ("world-cup-2026: Brazil?", 2)


def test_binary_ids_follow_the_ctf_byte_layout(sandbox_config):
    collateral = bytes.fromhex(contract_addresses(137)[0][2:])
    oracle = bytes.fromhex(OPERATOR[2:])
    for info in market_infos(sandbox_config, OPERATOR):
        if info.neg_risk:
            continue
        qid = keccak(info.slug.encode())
        cid = keccak(oracle + qid + word(2))
        assert (info.question_id, info.condition_id) == ("0x" + qid.hex(), "0x" + cid.hex())
        for i, token in enumerate(info.token_ids):
            collection = keccak(ZERO32 + cid + word(1 << i))
            assert int(token) == int.from_bytes(keccak(collateral + collection), "big")
        assert (info.neg_risk_market_id, info.event_slug, info.fee_exponent) == ("", "", 1)


def test_neg_risk_ids_follow_the_adapter_byte_layout(sandbox_config):
    a = addresses(137)
    adapter, wcol = bytes.fromhex(a.neg_risk_adapter[2:]), bytes.fromhex(a.wcol[2:])
    for event, info in zip(sandbox_config.sandbox.venue.events, event_infos(sandbox_config, OPERATOR), strict=True):
        # abi.encode(address, uint256, bytes): two words, the offset of the bytes, their length, padded data
        data = event.slug.encode()
        encoded = (bytes(12) + bytes.fromhex(OPERATOR[2:]) + word(event.convert_fee_bips) + word(0x60)
                   + word(len(data)) + data + bytes(-len(data) % 32))
        market_id = keccak(encoded)[:31] + b"\x00"
        assert info.market_id == "0x" + market_id.hex()
        for i, (qid, cid) in enumerate(zip(info.question_ids, info.condition_ids, strict=True)):
            q = market_id[:31] + bytes([i])
            assert qid == "0x" + q.hex()
            assert cid == "0x" + keccak(adapter + q + word(2)).hex()
    for m in (m for m in market_infos(sandbox_config, OPERATOR) if m.neg_risk):
        cid = bytes.fromhex(m.condition_id[2:])
        for index_set, token in zip((1, 2), m.token_ids, strict=True):  # YES, NO
            collection = keccak(ZERO32 + cid + word(index_set))
            assert int(token) == int.from_bytes(keccak(wcol + collection), "big")


def test_addresses_are_polymarkets():
    a = addresses(137)
    assert (a.collateral, a.ctf, a.exchange) == contract_addresses(137)
    assert (a.neg_risk_adapter, a.neg_risk_exchange) == (
        "0xd91E80cF2E7be2e162c6513ceD06f1dD0dA35296", "0xe2222d279d744050d28e00520010520000310F59")
    assert a.wcol == WCOL_ADDRESS == "0x3A3BD7bb9528E159577F7C2e685CC81A765002E2"
    assert NO_TOKEN_BURN_ADDRESS.lower() == "0x" + keccak(b"NO_TOKEN_BURN_ADDRESS")[:20].hex()


def test_the_oracle_is_part_of_the_condition(sandbox_config):
    mine = market_infos(sandbox_config, OPERATOR)
    theirs = market_infos(sandbox_config, dev_account(5).address)
    for a, b in zip(mine, theirs, strict=True):
        # A binary market's question is its slug's hash; an event's market id commits to its oracle.
        assert (a.question_id == b.question_id) is not a.neg_risk
        assert a.condition_id != b.condition_id


def test_deployment_round_trips_through_json(sandbox_config):
    d = Deployment(collateral="0x1", ctf="0x2", exchange="0x3", operator=OPERATOR, trader=OPERATOR,
                   markets=market_infos(sandbox_config, OPERATOR), neg_risk_adapter="0x4", neg_risk_exchange="0x5",
                   wcol="0x6", events=event_infos(sandbox_config, OPERATOR))
    assert Deployment.from_json(d.to_json()) == d


def test_to_units_is_exact():
    assert to_micro(Decimal("10000")) == 10_000_000_000
    assert to_micro(Decimal("0.000001")) == 1
    with pytest.raises(ValueError, match="whole number"):
        to_micro(Decimal("0.0000001"))
