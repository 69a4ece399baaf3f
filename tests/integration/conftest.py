"""Integration fixtures: a real anvil on a free port, real actor processes,
configs with free ports under a temp dir."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.loader import load
from sandbox.chain import start_anvil
from sandbox.testbed import free_port, write_config  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[2]
POLYARB = str(Path(sys.executable).with_name("polyarb"))


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


class RestartableAnvil:
    """anvil on a state file, killed and restarted by a test on the SAME port. The port
    comes from the test bed (below the ephemeral range): a port anvil picked itself is
    ephemeral, and an outgoing connection could take it between the kill and the restart."""

    def __init__(self, state: Path, *extra_args: str) -> None:
        self.state, self.extra_args, self.port = state, extra_args, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Started on its port; a bind refused while the killed anvil's connections are in
        TIME_WAIT on it ("Address already in use") is tried again, for up to 20 s."""
        chain = load().sandbox.chain  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while True:
            try:
                self.proc, url = start_anvil(chain.__class__(block_time_seconds=0, accounts=chain.accounts), 137,
                                             port=self.port, extra_args=["--state", str(self.state),
                                                                         *self.extra_args])
                return url
            except RuntimeError as exc:
                if "in use" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM: anvil writes its state (blocks and accounts; its pool is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
