"""Circuit-breaker states as seen on the bus (a leaf module: no imports).

The executor's breaker is CLOSED / OPEN / HALF_OPEN, or FORCED_OPEN by the
kill switch. A follower that has not heard a heartbeat for a few intervals
reports UNKNOWN, which consumers treat like OPEN.
"""

CLOSED = "CLOSED"
OPEN = "OPEN"
HALF_OPEN = "HALF_OPEN"
FORCED_OPEN = "FORCED_OPEN"
UNKNOWN = "UNKNOWN"

TRADING_ALLOWED = frozenset({CLOSED, HALF_OPEN})
