"""The alert outbox (SQLite, WAL): every alert once per key, and its delivery to each
webhook, so an alert is never lost to a crash or a failing endpoint, nor sent twice.

An alert is stored in one transaction with one delivery row per webhook configured
at that moment. A delivery is sent, or tried again after a doubling wait, until it
succeeds; one to a URL no longer configured is left (counted as orphaned).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.alerts.rules import Alert
from actors.runtime.storage import immediate, open_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    key TEXT UNIQUE NOT NULL,
    created_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    text TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ns INTEGER NOT NULL,
    sent_ns INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (alert_id, url)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sent_ns, next_ns);
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    alert_id: int
    url: str
    attempts: int
    key: str
    kind: str
    severity: str
    text: str
    created_ns: int
    details: dict[str, Any]


class Outbox:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = open_wal(path)
        self._db.executescript(_SCHEMA)

    def add(self, alert: Alert, urls: list[str], now_ns: int) -> bool:
        """Store the alert and its deliveries, once per key; False if already known."""
        with immediate(self._db):
            cur = self._db.execute(
                "INSERT OR IGNORE INTO alerts (key, created_ns, kind, severity, text, details) VALUES (?,?,?,?,?,?)",
                (alert.key, now_ns, alert.kind, alert.severity, alert.text, json.dumps(alert.details, default=str)))
            if cur.rowcount == 0:
                return False
            self._db.executemany("INSERT INTO deliveries (alert_id, url, next_ns) VALUES (?, ?, ?)",
                                 [(cur.lastrowid, u, now_ns) for u in urls])
        return True

    def due(self, now_ns: int, urls: list[str], limit: int = 100) -> list[Delivery]:
        """Unsent deliveries to configured URLs whose time has come, oldest alert first."""
        if not urls:
            return []
        wanted = set(urls)
        rows = self._db.execute(
            "SELECT d.alert_id, d.url, d.attempts, a.key, a.kind, a.severity, a.text, a.created_ns, a.details "
            "FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE d.sent_ns IS NULL AND d.next_ns <= ? "
            "ORDER BY d.alert_id", (now_ns,)).fetchall()
        return [Delivery(*r[:8], json.loads(r[8])) for r in rows if r[1] in wanted][:limit]

    def sent(self, d: Delivery, now_ns: int) -> None:
        with immediate(self._db):
            self._db.execute("UPDATE deliveries SET sent_ns=?, attempts=attempts+1 WHERE alert_id=? AND url=?",
                             (now_ns, d.alert_id, d.url))

    def failed(self, d: Delivery, next_ns: int, error: str) -> None:
        with immediate(self._db):
            self._db.execute("UPDATE deliveries SET attempts=attempts+1, next_ns=?, last_error=? "
                             "WHERE alert_id=? AND url=?", (next_ns, error[:300], d.alert_id, d.url))

    def counts(self, urls: list[str]) -> dict[str, int]:
        one = self._db.execute
        return {
            "alerts": one("SELECT COUNT(*) FROM alerts").fetchone()[0],
            "delivered": one("SELECT COUNT(*) FROM deliveries WHERE sent_ns IS NOT NULL").fetchone()[0],
            "waiting": one("SELECT COUNT(*) FROM deliveries WHERE sent_ns IS NULL").fetchone()[0],
            "orphaned": sum(1 for (u,) in one("SELECT url FROM deliveries WHERE sent_ns IS NULL") if u not in urls),
        }

    def recent(self, n: int = 5) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT key, kind, severity, text, created_ns FROM alerts ORDER BY id DESC LIMIT ?",
                                (n,)).fetchall()
        return [{"key": k, "kind": kind, "severity": sev, "text": t[:200], "created_ns": c}
                for k, kind, sev, t, c in rows]

    def close(self) -> None:
        self._db.close()

