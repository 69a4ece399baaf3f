"""The sandbox chain: anvil from the pinned npm package, run as its ELF.

The `.bin/anvil` entry is a node wrapper; supervisord and the tests must hold
anvil's real pid, so `polyarb chain` execs the platform binary in place.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from actors.runtime.parent import die_with_parent
from config.schema import Config, SandboxChain

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(os.environ.get("POLYARB_TOOLS", ROOT / ".tools"))

_PLATFORMS = {("Linux", "x86_64"): "linux-amd64", ("Linux", "aarch64"): "linux-arm64",
              ("Darwin", "arm64"): "darwin-arm64", ("Darwin", "x86_64"): "darwin-amd64"}


def anvil_path() -> Path:
    plat = _PLATFORMS.get((platform.system(), platform.machine()))
    if plat is None:
        raise RuntimeError(f"no anvil build for {platform.system()} {platform.machine()}")
    path = TOOLS / "node_modules" / "@foundry-rs" / f"anvil-{plat}" / "bin" / "anvil"
    if not path.exists():
        raise RuntimeError(f"anvil not installed at {path}: run `make install`")
    return path


def anvil_args(cfg: SandboxChain, chain_id: int, *, port: int | None = None) -> list[str]:
    args = [
        str(anvil_path()),
        "--host", cfg.host,
        "--port", str(cfg.port if port is None else port),
        "--chain-id", str(chain_id),
        "--accounts", str(cfg.accounts),
        "--mnemonic", cfg.mnemonic,
        "--silent",
    ]
    if cfg.block_time_seconds > 0:
        args += ["--block-time", str(cfg.block_time_seconds)]
    return args


def exec_anvil(cfg: SandboxChain, chain_id: int) -> None:
    args = anvil_args(cfg, chain_id)
    if cfg.state_file:  # the world continues: loaded now, written on exit and periodically
        Path(cfg.state_file).parent.mkdir(parents=True, exist_ok=True)
        args += ["--state", cfg.state_file, "--state-interval", str(cfg.state_interval_seconds)]
    os.execv(args[0], args)  # noqa: S606 - replace this process so supervisord holds anvil's pid


def chain_command(cfg: Config) -> int:
    """`polyarb chain` (a `polyarb.commands` entry point): exec the sandbox's anvil."""
    if cfg.sandbox is None:
        raise SystemExit("polyarb: the config has no `sandbox` section: no local chain to run")
    die_with_parent()  # kept across exec: anvil stops when its supervisor dies
    exec_anvil(cfg.sandbox.chain, cfg.chain.chain_id)
    return 0  # not reached


_LISTENING = re.compile(rb"Listening on ([\d.]+):(\d+)")


def start_anvil(cfg: SandboxChain, chain_id: int = 137, *, port: int = 0,
                extra_args: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """Start anvil (tests, benches) on `port`, or one it picks; returns (process, rpc url)."""
    args = [a for a in anvil_args(cfg, chain_id, port=port) if a != "--silent"] + list(extra_args)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    said: list[bytes] = []
    for line in proc.stdout:
        said.append(line)
        m = _LISTENING.search(line)
        if m:
            # Keep draining so anvil never blocks on a full pipe.
            import threading

            threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()  # type: ignore[union-attr]
            return proc, f"http://{m.group(1).decode()}:{m.group(2).decode()}"
    text = b"".join(said[-20:]).decode(errors="replace").strip()
    raise RuntimeError(f"anvil exited with {proc.wait()} before listening: {text}")
