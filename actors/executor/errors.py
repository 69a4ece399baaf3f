"""What to do about an error: the classification behind the retry policy.

`classify(error)` looks at the type AND the message, because the node's
answer arrives as one exception type with different texts: web3 8 raises
`Web3RPCError` whose message is `repr()` of the JSON-RPC error dict and whose
`rpc_response["error"]` holds it. Texts (geth / bor / anvil, lower-cased):

| text | remedy |
|---|---|
| nonce too low / nonce too high | RESYNC_NONCE |
| already known / transaction already imported / known transaction | ALREADY_SENT (in the pool: watch it) |
| (replacement) transaction underpriced / ... less than block base fee | BUMP_FEE |
| intrinsic gas too low / gas required exceeds allowance / exceeds block gas limit | REESTIMATE_GAS |
| insufficient funds / execution reverted / invalid chain id / invalid sender | GIVE_UP |

HTTP status (`status_code` as on py_clob_client_v2's PolyApiException,
`status` as on aiohttp's ClientResponseError, or `response.status_code`):
429, 408, 425 and 5xx are retried (5xx as ambiguous: the request may have
been processed), other statuses give up. Timeouts and connection errors are
retried; they are ambiguous unless they happened while connecting (nothing
was sent). HTTP clients are recognised by class name, so none is imported.
The node texts are matched whatever the exception's type (a plain
`Exception("nonce too low")` is RESYNC_NONCE, as in the seed). Anything
unknown gives up: an unexplained error is not retried blindly.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

_NS = 10**9


class Remedy(StrEnum):
    RETRY = "RETRY"
    RESYNC_NONCE = "RESYNC_NONCE"
    BUMP_FEE = "BUMP_FEE"
    REESTIMATE_GAS = "REESTIMATE_GAS"
    ALREADY_SENT = "ALREADY_SENT"
    GIVE_UP = "GIVE_UP"


@dataclass(frozen=True, slots=True)
class Classification:
    """remedy: what to do; error_class: a stable label for stats (e.g. `nonce_too_low`,
    `http_429`, `timeout`, or the exception type name when unknown); retry_after_seconds:
    the server's Retry-After, if any; ambiguous: the request may have taken effect."""

    remedy: Remedy
    error_class: str
    retry_after_seconds: float | None = None
    ambiguous: bool = False

    @property
    def retryable(self) -> bool:
        return self.remedy not in (Remedy.GIVE_UP, Remedy.ALREADY_SENT)


Classifier = Callable[[BaseException], Classification | None]


class AmbiguousOutcome(Exception):
    """A non-idempotent operation failed in a way that may have happened anyway
    (timeout or connection lost after sending): reconcile, never retry blindly."""

    def __init__(self, classification: Classification, attempts: int, dependency: str) -> None:
        self.classification, self.attempts, self.dependency = classification, attempts, dependency
        super().__init__(
            f"{dependency}: outcome unknown after {classification.error_class} "
            f"(attempt {attempts}); reconcile before retrying"
        )


class AlreadySent(Exception):
    """The node already has this transaction (`already known`): not a failure to
    retry; the caller watches its receipt."""

    def __init__(self, classification: Classification, attempts: int, dependency: str) -> None:
        self.classification, self.attempts, self.dependency = classification, attempts, dependency
        super().__init__(f"{dependency}: transaction already in the pool ({classification.error_class})")


# Lower-cased substrings, first match wins ("replacement transaction underpriced"
# before "transaction underpriced").
NODE_ERRORS: tuple[tuple[str, Remedy, str], ...] = (
    ("nonce too low", Remedy.RESYNC_NONCE, "nonce_too_low"),
    ("nonce too high", Remedy.RESYNC_NONCE, "nonce_too_high"),
    ("already known", Remedy.ALREADY_SENT, "already_known"),
    ("transaction already imported", Remedy.ALREADY_SENT, "already_known"),
    ("known transaction", Remedy.ALREADY_SENT, "already_known"),
    ("replacement transaction underpriced", Remedy.BUMP_FEE, "replacement_underpriced"),
    ("transaction underpriced", Remedy.BUMP_FEE, "underpriced"),
    ("less than block base fee", Remedy.BUMP_FEE, "fee_below_base_fee"),
    ("intrinsic gas too low", Remedy.REESTIMATE_GAS, "intrinsic_gas_too_low"),
    ("gas required exceeds allowance", Remedy.REESTIMATE_GAS, "gas_exceeds_allowance"),
    ("exceeds block gas limit", Remedy.REESTIMATE_GAS, "exceeds_block_gas_limit"),
    ("insufficient funds", Remedy.GIVE_UP, "insufficient_funds"),
    ("execution reverted", Remedy.GIVE_UP, "execution_reverted"),
    ("invalid chain id", Remedy.GIVE_UP, "invalid_chain_id"),
    ("invalid sender", Remedy.GIVE_UP, "invalid_sender"),
    ("txpool is full", Remedy.RETRY, "txpool_full"),
    ("header not found", Remedy.RETRY, "node_behind"),  # load-balanced RPC lagging a block
)
_RPC_RATE_LIMIT_CODES = frozenset({-32005, 429})

_REVERTED = frozenset({"ContractLogicError"})
_RATE_LIMITED = frozenset({"TooManyRequests"})
_TLS = frozenset({"SSLError", "ClientSSLError", "ClientConnectorCertificateError", "ClientConnectorSSLError"})
# Failed before anything was sent: safe to retry even a non-idempotent operation.
_CONNECT_FAILED = frozenset({
    "ConnectionRefusedError", "ConnectError", "ClientConnectorError", "NewConnectionError",
    "NameResolutionError", "gaierror", "ConnectTimeout", "ConnectTimeoutError",
    "ConnectionTimeoutError", "PoolTimeout",
})  # fmt: skip
_TIMEOUT = frozenset({
    "TimeoutError", "TimeoutException", "Timeout", "ReadTimeout", "WriteTimeout",
    "ServerTimeoutError", "SocketTimeoutError", "TimeExhausted", "RequestTimedOut",
})  # fmt: skip
_CONNECTION = frozenset({
    "ConnectionError", "ClientConnectionError", "ServerDisconnectedError", "ClientPayloadError",
    "NetworkError", "TransportError", "ProtocolError", "ReadError", "WriteError",
    "ProviderConnectionError", "PersistentConnectionError", "ChunkedEncodingError", "ConnectionClosed",
})  # fmt: skip
_BAD_RESPONSE = frozenset({"InvalidJSONError", "JSONDecodeError", "BadResponseFormat"})
_NETWORK_ERRNOS = frozenset({
    errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ENETDOWN, errno.EPIPE, errno.EHOSTDOWN,
})  # fmt: skip


def classify(error: BaseException, *, now_ns: int | None = None) -> Classification:
    """What to do about `error`. `now_ns` (wall) resolves an HTTP-date Retry-After."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 4:
        found = _classify_one(current, now_ns)
        if found is not None:
            return found
        # An unknown wrapper: the explicit cause may be known (raise ... from e).
        current, seen = current.__cause__, seen + 1
    return Classification(Remedy.GIVE_UP, type(error).__name__)


def _classify_one(error: BaseException, now_ns: int | None) -> Classification | None:
    if isinstance(error, AlreadySent):
        return error.classification
    if isinstance(error, AmbiguousOutcome):
        return Classification(Remedy.GIVE_UP, "ambiguous_outcome", ambiguous=True)
    names = {cls.__name__ for cls in type(error).__mro__}
    if "CircuitOpenError" in names:
        return Classification(Remedy.GIVE_UP, "circuit_open")
    if names & _REVERTED:
        return Classification(Remedy.GIVE_UP, "execution_reverted")
    status = http_status(error)
    if status is not None:
        return _classify_status(status, retry_after_seconds(error, now_ns))
    if "PolyApiException" in names:
        # py_clob_client_v2 maps every transport error to status_code=None.
        return Classification(Remedy.RETRY, "transport", ambiguous=True)
    text, code = node_message(error, names)
    # Any type: a node's answer reaches us wrapped by web3, by our own code or by
    # a library as a plain exception, and its text is what names the remedy.
    for needle, remedy, label in NODE_ERRORS:
        if needle in (text or str(error).lower()):
            return Classification(remedy, label)
    if names & _RATE_LIMITED or code in _RPC_RATE_LIMIT_CODES:
        return Classification(Remedy.RETRY, "rate_limited", retry_after_seconds(error, now_ns))
    if names & _TLS or names & _BAD_RESPONSE:
        return Classification(Remedy.GIVE_UP, "tls" if names & _TLS else "bad_response")
    if names & _CONNECT_FAILED:
        return Classification(Remedy.RETRY, "connect_failed")
    if names & _TIMEOUT or isinstance(error, TimeoutError):
        return Classification(Remedy.RETRY, "timeout", ambiguous=True)
    if names & _CONNECTION or isinstance(error, ConnectionError):
        return Classification(Remedy.RETRY, "connection", ambiguous=True)
    if isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS:
        return Classification(Remedy.RETRY, "connection", ambiguous=True)
    return None


def _classify_status(status: int, retry_after: float | None) -> Classification:
    label = f"http_{status}"
    if status in (408, 425, 429):
        return Classification(Remedy.RETRY, label, retry_after)
    if status >= 500:
        return Classification(Remedy.RETRY, label, retry_after, ambiguous=True)
    return Classification(Remedy.GIVE_UP, label)


def http_status(error: BaseException) -> int | None:
    """The HTTP status carried by an error (`status_code`, `status`, or on `.response`)."""
    for holder in (error, getattr(error, "response", None)):
        if holder is None:
            continue
        for attr in ("status_code", "status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def node_message(error: BaseException, names: set[str] | None = None) -> tuple[str, int | None]:
    """(lower-cased JSON-RPC error message, code) of a web3 error; ('', None) otherwise."""
    names = names if names is not None else {cls.__name__ for cls in type(error).__mro__}
    response = getattr(error, "rpc_response", None)
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        err = response["error"]
        code = err.get("code")
        return str(err.get("message", "")).lower(), code if isinstance(code, int) else None
    if "Web3Exception" in names or isinstance(error, ValueError):
        # web3 < 7 and eth-tester raise ValueError(dict); web3 8 puts repr(dict) in the message.
        arg = error.args[0] if error.args else ""
        if isinstance(arg, dict):
            code = arg.get("code")
            return str(arg.get("message", "")).lower(), code if isinstance(code, int) else None
        return str(arg).lower(), None
    return "", None


def retry_after_seconds(error: BaseException, now_ns: int | None = None) -> float | None:
    """Retry-After of an error: a `retry_after` attribute (seconds) or the header
    (delta-seconds, or an HTTP-date when `now_ns` is given) on `.headers` / `.response.headers`."""
    value: Any = getattr(error, "retry_after", None)
    if value is None:
        headers = getattr(error, "headers", None)
        if headers is None:
            headers = getattr(getattr(error, "response", None), "headers", None)
        value = _header(headers, "Retry-After")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    if now_ns is None:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, (int(when.timestamp()) * _NS - now_ns) / _NS)


def _header(headers: Any, name: str) -> Any:
    if headers is None or not hasattr(headers, "get"):
        return None
    # aiohttp / httpx / requests headers are case-insensitive; a plain dict is not.
    value = headers.get(name)
    return value if value is not None else headers.get(name.lower())
