"""Plain values of bounded depth: what a decoder of untrusted bytes may build.

A decoder typed `Any` follows the input as deep as it goes, and so does the C
stack: a msgpack or JSON value nested ~50,000 deep in a 60 KB message killed
two actors with SIGSEGV (web3's py_ecc raises the recursion limit to 100,000,
so the interpreter no longer stops msgspec in time), and ~1,000 levels raise
RecursionError elsewhere. A type that names its depth stops the decoder at
the first level too many with the decoder's own ValidationError, whatever the
recursion limit is. Bus messages, RPC params and replies, the venue's JSON
and the sandbox's request bodies are decoded into these types.
"""

from __future__ import annotations

from typing import Any

Scalar = str | int | float | bool | None


def nested(depth: int) -> Any:
    """Scalars, and lists and string-keyed maps of them nested at most `depth` deep."""
    t: Any = Scalar
    for _ in range(depth):
        t = Scalar | list[t] | dict[str, t]
    return t


# Deep enough for every message we send (an actor's stats: sections of counters,
# connections and their books); a level more is refused, never followed.
MAX_DEPTH = 8
Value = nested(MAX_DEPTH)
Mapping = dict[str, Value]  # type: ignore[valid-type]
