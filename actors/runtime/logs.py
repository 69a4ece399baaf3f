"""Structured logs: one JSON object per line, tagged with the actor's name."""

from __future__ import annotations

import json
import logging
import sys
import time

from bus import trace


class JsonFormatter(logging.Formatter):
    def __init__(self, actor: str) -> None:
        super().__init__()
        self._actor = actor

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "actor": self._actor,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        tid = trace.current.get()
        if tid:
            entry["trace_id"] = tid
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(actor: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(actor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # web3/urllib3 debug output can carry request bodies (signed transactions).
    for noisy in ("web3", "urllib3", "asyncio", "watchdog", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
    # httpx (under py-clob-client-v2) logs every request at INFO: a line per order
    # and per trade poll drowns what matters. Its warnings and errors still show.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # py-clob-client-v2 logs every refused order at ERROR (a killed FOK is routine)
    # and then raises; the executor logs the outcome with its execution's context.
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)
