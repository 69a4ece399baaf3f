"""Reading an RPC request's params: each value of the type it must have, or a clear error.

The bus decoder guarantees plain values of bounded depth, not their types: a
request id of `["x", 1]` or null once allocated real nonces through `str()`,
and `int()` turns 1.9 into 1 and True into 1. A method reads its params
through these, so a wrong one is refused (the client gets the error, the
server counts it) and nothing is applied.
"""

from __future__ import annotations

from typing import Any

MAX_TEXT = 512  # ids, hashes and reasons; a raw transaction is read with its own bound


class ParamError(ValueError):
    pass


def need_str(p: dict[str, Any], key: str, *, max_len: int = MAX_TEXT) -> str:
    v = p.get(key)
    if not isinstance(v, str) or not v:
        raise ParamError(f"{key!r} must be a non-empty string, got {_show(v)}")
    if len(v) > max_len:
        raise ParamError(f"{key!r} is {len(v)} characters long; at most {max_len}")
    return v


def opt_str(p: dict[str, Any], key: str, *, max_len: int = MAX_TEXT) -> str | None:
    return None if p.get(key) in (None, "") else need_str(p, key, max_len=max_len)


def need_int(p: dict[str, Any], key: str, *, ge: int = 0, lt: int = 2**256) -> int:
    v = p.get(key)
    if type(v) is not int:  # bool is an int subclass: not a nonce
        raise ParamError(f"{key!r} must be an integer, got {_show(v)}")
    if not ge <= v < lt:
        raise ParamError(f"{key!r} = {v} is out of range [{ge}, {lt})")
    return v


def opt_int(p: dict[str, Any], key: str, *, ge: int = 0, lt: int = 2**256) -> int | None:
    return None if p.get(key) is None else need_int(p, key, ge=ge, lt=lt)


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
