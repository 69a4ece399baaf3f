"""Integration fixtures: a real anvil on a free port, real actor processes,
configs with free ports under a temp dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.loader import DEFAULT_PATH, load
from sandbox.chain import start_anvil

ROOT = Path(__file__).resolve().parents[2]
POLYARB = str(Path(sys.executable).with_name("polyarb"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, rpc_url: str, anvil_port: int = 0, **sections: dict) -> Path:
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    for name in raw["bus"]["endpoints"]:
        raw["bus"]["endpoints"][name] = {"pub": f"tcp://127.0.0.1:{free_port()}", "rpc": f"tcp://127.0.0.1:{free_port()}"}
    raw["chain"]["rpc_url"] = rpc_url
    raw["nonce"]["state_dir"] = str(tmp_path / "state")
    raw["nonce"]["chain_poll_seconds"] = 0.2
    raw["runtime"]["stats_interval_seconds"] = 0.2
    raw["runtime"]["config_debounce_ms"] = 50
    raw["sandbox"]["chain"]["port"] = anvil_port
    raw["sandbox"]["chain"]["block_time_seconds"] = 0
    venue = free_port()
    raw["sandbox"]["venue"]["port"] = venue
    raw["feed"]["ws_url"] = f"ws://127.0.0.1:{venue}/ws/market"
    for section in ("feed", "router", "executor"):
        if "clob_url" in raw[section]:
            raw[section]["clob_url"] = f"http://127.0.0.1:{venue}"
    raw["executor"]["state_dir"] = str(tmp_path / "state")
    for name, values in sections.items():
        if name == "sandbox":  # merge one level deeper: chain / venue
            for sub, vals in values.items():
                raw["sandbox"].setdefault(sub, {}).update(vals)
        else:
            raw.setdefault(name, {}).update(values)
    path = tmp_path / "config.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.replace(tmp, path)
    return path


@pytest.fixture
def anvil():
    """A fresh automining anvil (chain id 137); yields its RPC URL."""
    cfg = load().sandbox.chain  # type: ignore[union-attr]
    proc, url = start_anvil(cfg.__class__(block_time_seconds=0, accounts=cfg.accounts), 137)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Proc:
    """A `polyarb` process in its own session (so signals reach it alone)."""

    def __init__(self, *args: str, log: Path) -> None:
        self.args = args
        self.log = log
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        f = open(self.log, "ab")
        self.p = subprocess.Popen([POLYARB, *self.args], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                  start_new_session=True)
        f.close()
        return self

    @property
    def pid(self) -> int:
        assert self.p is not None
        return self.p.pid

    def terminate(self, timeout: float = 15) -> int:
        assert self.p is not None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout)

    def kill9(self) -> None:
        assert self.p is not None
        self.p.kill()
        self.p.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def procs(tmp_path):
    started: list[Proc] = []

    def spawn(*args: str, name: str = "proc") -> Proc:
        p = Proc(*args, log=tmp_path / f"{name}-{len(started)}.log").start()
        started.append(p)
        return p

    yield spawn
    for p in started:
        if p.p is not None and p.p.poll() is None:
            p.p.kill()
            p.p.wait(10)
