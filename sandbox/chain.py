"""The sandbox chain: anvil from the pinned npm package, run as its ELF.

The `.bin/anvil` entry is a node wrapper; supervisord and the tests must hold
anvil's real pid, so `polyarb chain` execs the platform binary in place.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from actors.runtime.clock import SystemClock
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


def good_copy(state_file: str | os.PathLike[str]) -> Path:
    return Path(str(state_file) + ".good")


def keep_good_state(state_file: str | os.PathLike[str]) -> str:
    """Before anvil loads its state: anvil rewrites the file in place every few seconds, so a
    SIGKILL in the middle of a dump leaves it cut, and anvil then starts a NEW chain (another
    genesis: every store of the world is archived; a chaos run lost its world twice so). A
    readable file is copied to `<file>.good`; a cut one is replaced by that last good copy
    (the blocks since are lost, as when any node restarts from an older state)."""
    path, good = Path(state_file), good_copy(state_file)
    if not path.exists():
        return "new world"
    if not _is_whole(path):
        if not good.exists():
            return f"{path} is unreadable and there is no good copy: anvil starts a new chain"
        shutil.copyfile(good, path)
        return f"{path} was cut by a kill in the middle of a dump: continuing from {good}"
    kept = _one_genesis(path)
    tmp = good.with_name(good.name + ".tmp")
    shutil.copyfile(path, tmp)
    os.replace(tmp, good)
    return "state loaded" + (f"; {kept}" if kept else "")


def _one_genesis(path: Path) -> str:
    """anvil adds a block 0 of its own (a new timestamp) at every start and dumps it with the
    loaded blocks; with several in the file, which one a later load takes varies, and the
    chain's genesis hash (every store's world identity) changed under a running world (a
    chaos run archived every store, twice). The first world's block 0, the earliest, stays."""
    with open(path, "rb") as f:
        state = json.load(f)
    blocks = state.get("blocks") if isinstance(state, dict) else None
    if not isinstance(blocks, list):
        return ""
    zeros = [b for b in blocks if _number(b) == 0]
    if len(zeros) <= 1:
        return ""
    first = min(zeros, key=lambda b: _number(b, "timestamp"))
    state["blocks"] = [b for b in blocks if _number(b) != 0 or b is first]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
    return f"{len(zeros) - 1} later genesis blocks dropped"


def _number(block: object, field: str = "number") -> int:
    try:
        return int(block["header"][field], 16)  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return -1


def _is_whole(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            json.load(f)  # ~30 ms for a 4 MB state
        return True
    except (ValueError, OSError):
        return False


def copy_good_states(state_file: str, interval: float) -> NoReturn:
    """A child of `polyarb chain` that outlives the exec into anvil and dies with it: each
    dump anvil finishes is copied to `<file>.good`, so a cut dump costs seconds of blocks,
    not everything since the last start."""
    die_with_parent(signal.SIGKILL)
    clock, pause = SystemClock(), threading.Event()
    path, good, seen = Path(state_file), good_copy(state_file), 0
    while True:
        pause.wait(interval)  # never set: a plain pause that reads no clock
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            continue
        # Settled (not being written now: older than a moment) and new since the last copy.
        if mtime != seen and clock.time_ns() - mtime > 500_000_000 and _is_whole(path):
            tmp = good.with_name(good.name + ".tmp")
            try:
                shutil.copyfile(path, tmp)
                if path.stat().st_mtime_ns == mtime:  # not rewritten while we copied
                    os.replace(tmp, good)
                    seen = mtime
            except OSError:
                pass


def exec_anvil(cfg: SandboxChain, chain_id: int) -> None:
    args = anvil_args(cfg, chain_id)
    if cfg.state_file:  # the world continues: loaded now, written on exit and periodically
        Path(cfg.state_file).parent.mkdir(parents=True, exist_ok=True)
        print(f"polyarb chain: {keep_good_state(cfg.state_file)}", flush=True)
        args += ["--state", cfg.state_file, "--state-interval", str(cfg.state_interval_seconds)]
        if os.fork() == 0:  # the copier: anvil stays this process, with the pid supervisord holds
            copy_good_states(cfg.state_file, max(1.0, cfg.state_interval_seconds))
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
