"""L1 and L2 authentication against headers made by the real client's functions."""

from __future__ import annotations

import base64

import pytest
from py_clob_client_v2.headers.headers import create_level_1_headers

from sandbox.venue.clob.auth import AUTH_WINDOW_SECONDS, ApiKeys, AuthError, derive_creds, venue_secret, verify_l1
from tests.unit.sandbox.clob.conftest import CHAIN_ID, OTHER, TRADER, l2_headers, signer

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

NOW = 1_767_225_600
ROOT = venue_secret(b"\x02" * 32)
BODY = '{"order":{"salt":1},"owner":"k","orderType":"FOK"}'


def test_l1_headers_of_the_client_verify_to_address_and_nonce():
    headers = create_level_1_headers(signer(), nonce=7, timestamp=NOW)

    assert verify_l1(headers, CHAIN_ID, NOW + 5) == (TRADER.address, 7)


@pytest.mark.parametrize("change, reason", [
    (lambda h: h.update(POLY_ADDRESS=OTHER.address), "l1_signature"),  # someone else's address, my signature
    (lambda h: h.update(POLY_NONCE="8"), "l1_signature"),
    (lambda h: h.update(POLY_SIGNATURE="0x" + "00" * 65), "l1_signature"),
    (lambda h: h.update(POLY_SIGNATURE="garbage"), "l1_signature"),
    (lambda h: h.pop("POLY_SIGNATURE"), "l1_headers"),
    (lambda h: h.update(POLY_ADDRESS="0x12"), "l1_headers"),
    (lambda h: h.update(POLY_NONCE="-1"), "l1_headers"),
    (lambda h: h.update(POLY_TIMESTAMP="soon"), "l1_headers"),
])
def test_bad_l1_headers_are_refused(change, reason):
    headers = create_level_1_headers(signer(), nonce=0, timestamp=NOW)
    change(headers)

    with pytest.raises(AuthError, match="Invalid L1 Request headers") as info:
        verify_l1(headers, CHAIN_ID, NOW)
    assert info.value.reason == reason


def test_l1_outside_the_time_window_is_expired():
    headers = create_level_1_headers(signer(), timestamp=NOW)

    with pytest.raises(AuthError) as info:
        verify_l1(headers, CHAIN_ID, NOW + AUTH_WINDOW_SECONDS + 1)
    assert info.value.reason == "expired"


def test_l1_for_another_chain_is_refused():
    with pytest.raises(AuthError):
        verify_l1(create_level_1_headers(signer(), timestamp=NOW), 80002, NOW)


def test_credentials_are_deterministic_per_address_and_nonce():
    a = derive_creds(ROOT, TRADER.address.lower(), 0)

    assert a == derive_creds(ROOT, TRADER.address, 0)
    assert a.api_key != derive_creds(ROOT, TRADER.address, 1).api_key
    assert a.api_key != derive_creds(ROOT, OTHER.address, 0).api_key
    assert a.api_key != derive_creds(venue_secret(b"\x03" * 32), TRADER.address, 0).api_key
    assert len(base64.urlsafe_b64decode(a.secret)) == 32 and len(a.passphrase) == 64
    assert a.secret not in repr(a) and a.passphrase not in repr(a)
    assert set(a.to_wire()) == {"apiKey", "secret", "passphrase"}


def test_l2_headers_of_the_client_verify():
    keys = ApiKeys(ROOT, CHAIN_ID)
    creds = keys.issue(TRADER.address, 0)

    headers = l2_headers(creds, "POST", "/order", BODY, NOW)

    assert keys.verify_l2(headers, "POST", "/order", BODY.encode(), NOW) == creds
    get = l2_headers(creds, "GET", "/data/orders", None, NOW)
    assert keys.verify_l2(get, "GET", "/data/orders", b"", NOW) == creds


@pytest.mark.parametrize("method, path, body, reason", [
    ("POST", "/order", BODY.replace("FOK", "FAK"), "l2_signature"),  # the body was changed on the way
    ("POST", "/orders", BODY, "l2_signature"),
    ("DELETE", "/order", BODY, "l2_signature"),
])
def test_l2_binds_method_path_and_body(method, path, body, reason):
    keys = ApiKeys(ROOT, CHAIN_ID)
    headers = l2_headers(keys.issue(TRADER.address, 0), "POST", "/order", BODY, NOW)

    with pytest.raises(AuthError, match="Unauthorized/Invalid api key") as info:
        keys.verify_l2(headers, method, path, body.encode(), NOW)
    assert info.value.reason == reason


def test_l2_refuses_expired_wrong_passphrase_foreign_address_and_unknown_keys():
    keys = ApiKeys(ROOT, CHAIN_ID)
    creds = keys.issue(TRADER.address, 3)
    good = l2_headers(creds, "GET", "/data/orders", None, NOW)
    cases = {
        "expired": (good, NOW + AUTH_WINDOW_SECONDS + 1),
        "l2_passphrase": ({**good, "POLY_PASSPHRASE": "00" * 32}, NOW),
        "l2_address": ({**good, "POLY_ADDRESS": OTHER.address}, NOW),
        "l2_unknown_key": ({**good, "POLY_API_KEY": "00000000-0000-4000-8000-000000000000"}, NOW),
        "l2_headers": ({k: v for k, v in good.items() if k != "POLY_API_KEY"}, NOW),
    }
    for reason, (headers, now) in cases.items():
        with pytest.raises(AuthError) as info:
            keys.verify_l2(headers, "GET", "/data/orders", b"", now)
        assert info.value.reason == reason


def test_a_nonce_zero_key_survives_a_venue_restart():
    creds = ApiKeys(ROOT, CHAIN_ID).issue(TRADER.address, 0)
    restarted = ApiKeys(ROOT, CHAIN_ID)  # nothing issued since the start

    headers = l2_headers(creds, "GET", "/data/orders", None, NOW)

    assert restarted.verify_l2(headers, "GET", "/data/orders", b"", NOW) == creds
    other_nonce = ApiKeys(ROOT, CHAIN_ID).issue(TRADER.address, 5)
    with pytest.raises(AuthError):  # a non-default nonce must be derived again after a restart
        restarted.verify_l2(l2_headers(other_nonce, "GET", "/x", None, NOW), "GET", "/x", b"", NOW)
