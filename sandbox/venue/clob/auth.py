"""CLOB authentication, exactly as py-clob-client-v2 produces it.

L1 (`POST /auth/api-key`, `GET /auth/derive-api-key`): headers POLY_ADDRESS,
POLY_SIGNATURE, POLY_TIMESTAMP (epoch seconds), POLY_NONCE. The signature is
an EIP-712 `ClobAuth{address, timestamp, nonce, message}` in the domain
`ClobAuthDomain` version "1" on the chain id; we rebuild the struct with the
client's own definitions (`py_clob_client_v2.signing`) and recover the
signer, so a change in the client shows up here as a failing test, not as a
silent divergence.

L2 (every trading route): POLY_ADDRESS, POLY_API_KEY, POLY_PASSPHRASE,
POLY_TIMESTAMP, POLY_SIGNATURE = urlsafe-base64 HMAC-SHA256 (secret) of
timestamp + method + path + body, computed by the client's own
`build_hmac_signature` over the exact body bytes received (the client signs
the same compact JSON string it sends). The path is without the query string,
as the client signs it.

Credentials are deterministic per (address, nonce): an HMAC of both under a
venue secret derived from the operator key, so `derive-api-key` always gives
back what `api-key` created, also after a venue restart. Keys issued since the
start are in memory; an unknown key is re-derived for nonce 0 (the client's
default) from POLY_ADDRESS, so executors keep working across venue restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from eth_account import Account
from eth_utils import is_hex_address, keccak, to_checksum_address
from py_clob_client_v2.signing.eip712 import MSG_TO_SIGN, get_clob_auth_domain
from py_clob_client_v2.signing.hmac import build_hmac_signature
from py_clob_client_v2.signing.model import ClobAuth

AUTH_WINDOW_SECONDS = 120  # |server time - POLY_TIMESTAMP| allowed, both directions
MAX_NONCE = 2**64  # the client sends small integers; bound the derivation input


class AuthError(Exception):
    """A request whose credentials do not hold; answered 401 with `message`."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # stable label for the stats


@dataclass(frozen=True, slots=True)
class ApiCreds:
    """The wire names are apiKey / secret / passphrase."""

    api_key: str
    secret: str
    passphrase: str
    address: str  # checksummed
    nonce: int

    def to_wire(self) -> dict[str, str]:
        return {"apiKey": self.api_key, "secret": self.secret, "passphrase": self.passphrase}

    def __repr__(self) -> str:  # never print a secret by accident
        return f"ApiCreds(api_key={self.api_key}, address={self.address}, nonce={self.nonce})"


def venue_secret(operator_key: bytes) -> bytes:
    """The root of every credential: stable across restarts, unknown without the operator key."""
    return keccak(b"polyarb-sandbox/clob-api-credentials/v1" + operator_key)


def derive_creds(root: bytes, address: str, nonce: int) -> ApiCreds:
    """Deterministic credentials of (address, nonce) under the venue secret."""
    address = to_checksum_address(address)

    def part(label: str) -> bytes:
        return hmac.new(root, f"{label}:{address.lower()}:{nonce}".encode(), hashlib.sha256).digest()

    return ApiCreds(
        api_key=str(uuid.UUID(bytes=part("key")[:16], version=4)),
        secret=base64.urlsafe_b64encode(part("secret")).decode(),
        passphrase=part("passphrase").hex(),
        address=address,
        nonce=nonce,
    )


def _header(headers: Mapping[str, str], name: str, reason: str, prefix: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise AuthError(f"{prefix}: missing {name} header", reason)
    return value


def _timestamp(headers: Mapping[str, str], now_s: int, reason: str, prefix: str) -> int:
    raw = _header(headers, "POLY_TIMESTAMP", reason, prefix)
    if not raw.isdigit() or len(raw) > 12:
        raise AuthError(f"{prefix}: POLY_TIMESTAMP must be epoch seconds, got {raw[:20]!r}", reason)
    ts = int(raw)
    if abs(now_s - ts) > AUTH_WINDOW_SECONDS:
        raise AuthError(f"{prefix}: POLY_TIMESTAMP {ts} is more than {AUTH_WINDOW_SECONDS}s from the "
                        f"server time {now_s}", "expired")
    return ts


L1_PREFIX = "Invalid L1 Request headers"
L2_PREFIX = "Unauthorized/Invalid api key"


def verify_l1(headers: Mapping[str, str], chain_id: int, now_s: int) -> tuple[str, int]:
    """(checksummed address, nonce) of a valid L1 request; AuthError otherwise."""
    address = _header(headers, "POLY_ADDRESS", "l1_headers", L1_PREFIX)
    if not is_hex_address(address):
        raise AuthError(f"{L1_PREFIX}: POLY_ADDRESS is not an address", "l1_headers")
    signature = _header(headers, "POLY_SIGNATURE", "l1_headers", L1_PREFIX)
    ts = _timestamp(headers, now_s, "l1_headers", L1_PREFIX)
    raw_nonce = headers.get("POLY_NONCE", "0").strip() or "0"
    if not raw_nonce.isdigit() or int(raw_nonce) >= MAX_NONCE:
        raise AuthError(f"{L1_PREFIX}: POLY_NONCE must be a non-negative integer", "l1_headers")
    nonce = int(raw_nonce)
    # The client signs ClobAuth with the address exactly as POLY_ADDRESS carries it.
    msg = ClobAuth(address=address, timestamp=str(ts), nonce=nonce, message=MSG_TO_SIGN)
    digest = keccak(msg.signable_bytes(get_clob_auth_domain(chain_id)))
    try:
        signer = Account._recover_hash(digest, signature=signature)
    except Exception:  # malformed hex, wrong length, s out of range: all just "bad signature"
        raise AuthError(f"{L1_PREFIX}: POLY_SIGNATURE is not a valid signature", "l1_signature") from None
    if signer.lower() != address.lower():
        raise AuthError(f"{L1_PREFIX}: the signature is not from POLY_ADDRESS", "l1_signature")
    return to_checksum_address(address), nonce


class ApiKeys:
    """Issued credentials: api key -> ApiCreds."""

    def __init__(self, root: bytes, chain_id: int) -> None:
        self._root = root
        self.chain_id = chain_id
        self._by_key: dict[str, ApiCreds] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def issue(self, address: str, nonce: int) -> ApiCreds:
        creds = derive_creds(self._root, address, nonce)
        self._by_key[creds.api_key] = creds
        return creds

    def lookup(self, api_key: str, claimed_address: str) -> ApiCreds | None:
        creds = self._by_key.get(api_key)
        if creds is None and is_hex_address(claimed_address):
            # Issued before a restart? Nonce 0 is what the client uses unless told otherwise.
            again = derive_creds(self._root, claimed_address, 0)
            if hmac.compare_digest(again.api_key, api_key):
                self._by_key[api_key] = creds = again
        return creds

    def verify_l2(self, headers: Mapping[str, str], method: str, path: str, body: bytes, now_s: int) -> ApiCreds:
        """The credentials of a valid L2 request; AuthError otherwise."""
        address = _header(headers, "POLY_ADDRESS", "l2_headers", L2_PREFIX)
        api_key = _header(headers, "POLY_API_KEY", "l2_headers", L2_PREFIX)
        passphrase = _header(headers, "POLY_PASSPHRASE", "l2_headers", L2_PREFIX)
        signature = _header(headers, "POLY_SIGNATURE", "l2_headers", L2_PREFIX)
        ts = _timestamp(headers, now_s, "l2_headers", L2_PREFIX)
        creds = self.lookup(api_key, address)
        if creds is None:
            raise AuthError(f"{L2_PREFIX}: unknown api key", "l2_unknown_key")
        if not hmac.compare_digest(creds.passphrase, passphrase):
            raise AuthError(f"{L2_PREFIX}: wrong passphrase", "l2_passphrase")
        if address.lower() != creds.address.lower():
            raise AuthError(f"{L2_PREFIX}: POLY_ADDRESS is not the owner of the api key", "l2_address")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthError(f"{L2_PREFIX}: the body is not UTF-8", "l2_signature") from None
        expected = build_hmac_signature(creds.secret, str(ts), method, path, text or None)
        if not hmac.compare_digest(expected, signature):
            raise AuthError(f"{L2_PREFIX}: POLY_SIGNATURE does not match the request", "l2_signature")
        return creds
