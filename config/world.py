"""Which world a config trades in, in one line: every actor reports it in its stats and
`polyarb status` prints it first, so nobody reads a sandbox's actors for a live system's."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.schema import Config


def world(cfg: Config, path: str | Path | None) -> dict[str, Any]:
    return {"config": Path(path).name if path else "(embedded default)",
            "profile": "paper" if cfg.paper is not None else "sandbox" if cfg.sandbox is not None else "live",
            "chain_id": cfg.chain.chain_id,
            "venue": urlsplit(cfg.executor.clob_url).netloc or cfg.executor.clob_url,
            "state_dir": cfg.executor.state_dir}


def same_world(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same trading world: profile, chain, venue and books (the file may be a copy)."""
    return all(a.get(k) == b.get(k) for k in ("profile", "chain_id", "venue", "state_dir"))


def line(w: dict[str, Any]) -> str:
    return (f"world: {w['config']} ({w['profile']}) · chain {w['chain_id']} · venue {w['venue']} · "
            f"state {w['state_dir']}")
