"""The sandbox world on disk, and `polyarb sandbox reset` / `make reset` to wipe it.

A sandbox world is the chain's state file plus every actor's state folder
(the nonce authority's ledger, the executor's journal, the venue's store):
they describe one chain and only make sense together, so they are wiped
together. Refused while the sandbox chain answers (stop `make run` first),
and only for a config with a `sandbox` section: a live config's state is
never touched.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from config.schema import Config
from sandbox.chain import good_copy
from sandbox.chain_log import block_log


def world_paths(cfg: Config) -> list[Path]:
    """Everything that belongs to the configured sandbox world, existing or not."""
    assert cfg.sandbox is not None
    paths = {Path(cfg.nonce.state_dir), Path(cfg.executor.state_dir), Path(cfg.sandbox.venue.state_dir)}
    if cfg.sandbox.chain.state_file:
        paths.add(Path(cfg.sandbox.chain.state_file))
        paths.add(good_copy(cfg.sandbox.chain.state_file))
        paths.add(block_log(cfg.sandbox.chain.state_file))
    return sorted(paths)


def _chain_answers(cfg: Config) -> bool:
    c = cfg.sandbox.chain  # type: ignore[union-attr]
    try:
        with socket.create_connection((c.host, c.port), timeout=0.5):
            return True
    except OSError:
        return False


def reset(cfg: Config, out: list[str]) -> int:
    if cfg.sandbox is None:
        out.append("polyarb: this config has no `sandbox` section: there is no sandbox world to reset "
                   "(a live wallet's state is never wiped by this command)")
        return 2
    if _chain_answers(cfg):
        out.append(f"polyarb: the sandbox chain answers on {cfg.sandbox.chain.host}:{cfg.sandbox.chain.port}: "
                   "stop `make run` first")
        return 1
    paths = world_paths(cfg)
    # A path inside another one (the chain's state in the actors' state folder) goes with it.
    found = [p for p in paths if p.exists() and not any(q != p and q in p.parents for q in paths)]
    if not found:
        out.append("the sandbox world is already empty")
        return 0
    out.append("removing the sandbox world:")
    for p in found:
        out.append(f"  {p}{'/' if p.is_dir() else ''}")
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    out.append("done: the next `make run` starts a fresh world")
    return 0


def sandbox_command(cfg: Config, action: str = "reset") -> int:
    """`polyarb sandbox reset` (a `polyarb.commands` entry point)."""
    if action != "reset":
        raise SystemExit(f"polyarb: unknown sandbox action {action!r}; known: reset")
    lines: list[str] = []
    code = reset(cfg, lines)
    print("\n".join(lines))
    return code
