"""Every topic string of the bus, built in one place.

Topics are the first frame of a multipart message; ZeroMQ filters on their
prefix, so each family has a fixed prefix and a '.' separator.
"""

from __future__ import annotations

STATS = "stats."
BREAKER = "breaker."
BOOK = "book."
FEED = "feed."
SIGNAL = "signal."
TX = "tx."


def stats(actor: str) -> bytes:
    return f"{STATS}{actor}".encode()


def breaker_state() -> bytes:
    return f"{BREAKER}state".encode()


def book(token_id: str) -> bytes:
    return f"{BOOK}{token_id}".encode()


def feed_status() -> bytes:
    return f"{FEED}status".encode()


def signal(market: str) -> bytes:
    return f"{SIGNAL}{market}".encode()


def tx_result() -> bytes:
    return f"{TX}result".encode()


def prefix(family: str) -> bytes:
    """A subscription prefix, e.g. prefix(STATS) or prefix('') for everything."""
    return family.encode()
