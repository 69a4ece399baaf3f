"""The sandbox chain: anvil from the pinned npm package, run as its ELF.

The `.bin/anvil` entry is a node wrapper; supervisord and the tests must hold
anvil's real pid, so `polyarb chain` execs the platform binary in place.
With a state file, the world survives SIGKILL: a cut dump is replaced by the
last good copy, and the blocks mined since are mined again from the block log
(sandbox/chain_log.py) before anvil loads the state.
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
from typing import Any, NoReturn

import msgspec

from actors.runtime.clock import SystemClock
from actors.runtime.parent import die_with_parent
from config.schema import Config, SandboxChain
from sandbox.chain_log import BlockRecorder, RpcFailed, best_block, block_log, prune, read_blocks, rpc

RECORD_EVERY_S = 0.1  # the block log's poll: a kill can lose only a block mined this recently
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
    (the blocks since come back from the block log: `replay_lost_blocks`)."""
    path, good = Path(state_file), good_copy(state_file)
    if not path.exists():
        block_log(path).unlink(missing_ok=True)  # another world's blocks must never mine here
        return "new world"
    if _load(path) is None:
        if not good.exists():
            block_log(path).unlink(missing_ok=True)
            return f"{path} is unreadable and there is no good copy: anvil starts a new chain"
        shutil.copyfile(good, path)
        return f"{path} was cut by a kill in the middle of a dump: continuing from {good}"
    kept = _one_genesis(path)
    _replace_good(path, good)
    return "state loaded" + (f"; {kept}" if kept else "")


def _replace_good(path: Path, good: Path) -> None:
    tmp = good.with_name(good.name + ".tmp")
    shutil.copyfile(path, tmp)
    os.replace(tmp, good)


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


def _load(path: Path) -> dict[str, Any] | None:
    """The state, or None when it is missing, cut or not an anvil state."""
    try:
        with open(path, "rb") as f:
            state = json.load(f)  # ~30 ms for a 4 MB state
    except (ValueError, OSError):
        return None
    return state if isinstance(state, dict) else None


def replay_lost_blocks(cfg: SandboxChain, chain_id: int) -> str:
    """Mine again, in their order, the logged blocks past the state's best block (those a
    SIGKILL lost), on a private anvil whose state then becomes the world's: the chain
    continues where it was, as a real one does after a node restart. '' when none."""
    assert cfg.state_file
    path, log = Path(cfg.state_file), block_log(cfg.state_file)
    state = _load(path)
    if state is None:
        return ""
    lost = [raws for n, raws in read_blocks(log) if n > best_block(state)]
    if not lost:
        return ""
    work = path.with_name(path.name + ".replay")
    shutil.copyfile(path, work)
    private = msgspec.structs.replace(cfg, block_time_seconds=0)  # automine: one block per transaction
    proc, url = start_anvil(private, chain_id, extra_args=["--state", str(work)], die_with_us=True)
    counts = {"mined": 0, "reverted": 0, "known": 0, "refused": 0}
    try:
        for raws in lost:
            for raw in raws:
                counts[_mine(url, raw)] += 1
    finally:
        proc.terminate()  # anvil writes its state on exit
        proc.wait(timeout=60)
    if _load(work) is None:
        return f"the replay's state is unreadable: {len(lost)} lost blocks not replayed ({counts})"
    _one_genesis(work)
    _replace_good(work, good_copy(path))
    os.replace(work, path)
    log.write_text("")  # every logged block is in the state now
    return (f"{len(lost)} blocks the state file had not caught mined again in their order: "
            + ", ".join(f"{v} {k}" for k, v in counts.items()))


def _mine(url: str, raw: str) -> str:
    try:
        [tx_hash] = rpc(url, [("eth_sendRawTransaction", [raw])])
    except RpcFailed as exc:
        text = str(exc).lower()
        return "known" if "nonce too low" in text or "already" in text else "refused"
    for _ in range(500):  # automine answers at once; a bounded wait all the same
        try:
            [receipt] = rpc(url, [("eth_getTransactionReceipt", [tx_hash])])
        except RpcFailed:
            receipt = None
        if receipt:
            return "mined" if int(receipt["status"], 16) == 1 else "reverted"
        threading.Event().wait(0.01)
    return "refused"


def copy_good_states(state_file: str, interval: float, url: str | None, after: int) -> NoReturn:
    """A child of `polyarb chain` that outlives the exec into anvil and dies with it: each
    dump anvil finishes is copied to `<file>.good`, so a cut dump costs seconds of blocks,
    not everything since the last start; and every block mined after `after` goes to the
    block log (polled every RECORD_EVERY_S), so none is lost at all."""
    die_with_parent(signal.SIGKILL)
    clock, pause = SystemClock(), threading.Event()
    path, good, seen = Path(state_file), good_copy(state_file), 0
    recorder = BlockRecorder(url, block_log(path), after) if url else None
    ticks, every = 0, max(1, round(interval / RECORD_EVERY_S))
    while True:
        pause.wait(RECORD_EVERY_S)  # never set: a plain pause that reads no clock
        if recorder is not None:
            recorder.poll()
        ticks += 1
        if ticks % every:
            continue
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            continue
        # Settled (not being written now: older than a moment) and new since the last copy.
        if mtime == seen or clock.time_ns() - mtime <= 500_000_000:
            continue
        state = _load(path)
        if state is None:
            continue
        tmp = good.with_name(good.name + ".tmp")
        try:
            shutil.copyfile(path, tmp)
            if path.stat().st_mtime_ns == mtime:  # not rewritten while we copied
                os.replace(tmp, good)
                seen = mtime
                prune(block_log(path), best_block(state))  # the good copy holds those blocks
        except OSError:
            pass


def exec_anvil(cfg: SandboxChain, chain_id: int) -> None:
    args = anvil_args(cfg, chain_id)
    if cfg.state_file:  # the world continues: loaded now, written on exit and periodically
        Path(cfg.state_file).parent.mkdir(parents=True, exist_ok=True)
        print(f"polyarb chain: {keep_good_state(cfg.state_file)}", flush=True)
        replayed = replay_lost_blocks(cfg, chain_id)
        if replayed:
            print(f"polyarb chain: {replayed}", flush=True)
        state = _load(Path(cfg.state_file))
        after = best_block(state) if state is not None else 0
        args += ["--state", cfg.state_file, "--state-interval", str(cfg.state_interval_seconds)]
        if os.fork() == 0:  # the copier: anvil stays this process, with the pid supervisord holds
            url = f"http://{cfg.host}:{cfg.port}" if cfg.port else None
            copy_good_states(cfg.state_file, max(1.0, cfg.state_interval_seconds), url, after)
    os.execv(args[0], args)  # noqa: S606 - replace this process so supervisord holds anvil's pid


def chain_command(cfg: Config) -> int:
    """`polyarb chain` (a `polyarb.commands` entry point): exec the sandbox's anvil."""
    if cfg.sandbox is None:
        raise SystemExit("polyarb: the config has no `sandbox` section: no local chain to run")
    die_with_parent()  # kept across exec: anvil stops when its supervisor dies
    exec_anvil(cfg.sandbox.chain, cfg.chain.chain_id)
    return 0  # not reached


_LISTENING = re.compile(rb"Listening on ([\d.]+):(\d+)")


def start_anvil(cfg: SandboxChain, chain_id: int = 137, *, port: int = 0, extra_args: Sequence[str] = (),
                die_with_us: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """Start anvil (tests, benches, the replay) on `port`, or one it picks; returns (process, rpc url)."""
    args = [a for a in anvil_args(cfg, chain_id, port=port) if a != "--silent"] + list(extra_args)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent if die_with_us else None)
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
