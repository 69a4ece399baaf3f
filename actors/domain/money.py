"""Money and share quantities in integer 1e-6 units: the ONE place that converts.

Inside PolyArb-X a price is micro-USDC per share (0 < p < MICRO), a size is
micro-shares and an amount is micro-USDC (the collateral's 6 decimals). At
the edges they are decimal strings (the venue's JSON, the YAML config) or
Decimals. Every conversion between those forms goes through this module; no
float ever holds money. A value with more than 6 decimals is an error unless
the caller names a rounding: rounding money silently is how books drift.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

MICRO = 1_000_000  # micro units per USDC (or per share)
PLACES = 6  # its decimal places
ONE = MICRO  # one share, or one USDC, in micro units
DECIMALS = 6
_MAX_DIGITS = 40  # far beyond any real amount; bounds int() on hostile input

Money = Decimal | int | float | str
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def to_micro(amount: Decimal | str | int, *, rounding: str | None = None) -> int:
    """Decimal("0.62") / "0.62" / 1 (whole units) -> 620000 / 620000 / 1000000.

    More than 6 decimals raises ValueError unless `rounding` (a `decimal`
    rounding mode, e.g. ROUND_DOWN) says how to round.
    """
    if isinstance(amount, str):
        amount = amount.strip()
        if len(amount) > _MAX_DIGITS or not _DECIMAL_TEXT.fullmatch(amount):  # no exponent, no NaN
            raise ValueError(f"not a decimal number: {amount!r}")
    try:
        value = Decimal(amount) * MICRO
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"not a decimal number: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    if value != value.to_integral_value():
        if rounding is None:
            raise ValueError(f"{amount} has more than 6 decimals: not a whole number of 1e-6 units")
        value = value.to_integral_value(rounding=rounding)
    return int(value)


def to_micro_or(amount: object, default: int, *, rounding: str | None = None) -> int:
    """`to_micro`, or `default` when the amount is missing or not a number (lenient
    reading of optional listing fields)."""
    if amount is None or amount == "":
        return default
    try:
        return to_micro(str(amount), rounding=rounding)
    except ValueError:
        return default


def usdc_to_micro(amount: Money) -> int:
    """USDC (Decimal, str, or a float read as the literal its str() shows) or
    micro-USDC (int, returned as is) -> micro-USDC, rounded half up."""
    if isinstance(amount, bool):
        raise TypeError("money cannot be a bool")
    if isinstance(amount, int):
        return amount
    if isinstance(amount, float | str):
        amount = Decimal(str(amount))
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise TypeError(f"not an amount of money: {amount!r}")
    return int((amount * MICRO).to_integral_value(rounding=ROUND_HALF_UP))


def parse_decimal(text: str) -> int:
    """The venue's wire strings: '0.62' -> 620000 exactly. ASCII digits only, at
    most 6 decimals, bounded length, no sign; anything else raises ValueError.

    The feed's hot path: integer arithmetic only (no Decimal), about 1 us.
    """
    if len(text) > _MAX_DIGITS:
        raise ValueError(f"number too long ({len(text)} chars)")
    whole, _, frac = text.partition(".")
    if not (whole or frac) or len(frac) > DECIMALS or not (_ascii_digits(whole) and _ascii_digits(frac)):
        raise ValueError(f"not a 6-decimal number: {text!r}")
    return int(whole or "0") * MICRO + int(frac.ljust(DECIMALS, "0"))


def _ascii_digits(s: str) -> bool:
    # str.isdigit() accepts '²' and '①', which int() refuses.
    return s == "" or (s.isascii() and s.isdigit())


def fixed_to_micro(value: int, decimals: int) -> int:
    """An integer amount with `decimals` places (a price feed's answer: 25120000 with 8
    decimals is 0.2512) in 1e-6 units, rounded down: 251200."""
    if decimals >= PLACES:
        return value // 10 ** (decimals - PLACES)
    return value * 10 ** (PLACES - decimals)


def from_micro(value: int) -> Decimal:
    """620000 -> Decimal('0.62')."""
    return Decimal(value) / MICRO


@lru_cache(maxsize=8192)  # prices come from a small grid: most formats are cache hits
def micro_to_str(value: int) -> str:
    """The venue's form: 620000 -> "0.62", 1_000_000 -> "1", 0 -> "0" (trailing zeros trimmed)."""
    if value < 0:
        return "-" + micro_to_str(-value)
    whole, frac = divmod(value, MICRO)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:06d}".rstrip("0")


def format_usdc(micro: int) -> str:
    """A fixed 6-decimal amount for people and logs: 1500000 -> "1.500000"."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"
