"""The real system for a chaos run: the repo's supervisord.conf with every program
(chain, venue, nonce, feed, router, executor), on free ports, in a folder of its own.

The config file is the one the actors hot-reload: the driver rewrites it
atomically to turn venue faults and the arbitrage load on and off, and to
break it for a while.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from sandbox.testbed import free_port, write_config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROGRAMS = ("chain", "venue", "nonce", "feed", "router", "executor")
ACTORS = ("venue", "nonce", "feed", "router", "executor")  # the programs that publish stats

# What a chaos world changes from the sandbox defaults: fast stats, a breaker that
# tries again soon, a chain that dumps its state often (SIGKILL loses what came since).
SECTIONS: dict[str, dict[str, Any]] = {
    "runtime": {"stats_interval_seconds": 0.25},
    "circuit_breaker": {"open_timeout_seconds": 5, "consecutive_failures_threshold": 3},
    "retry_policy": {"max_retries": 1, "base_delay_ms": 20, "max_delay_ms": 200},
    "executor": {"reconcile_seconds": 1},
}


class World:
    def __init__(self, folder: Path, seed: int, arbitrage_per_minute: float) -> None:
        self.folder = folder
        (folder / "run" / "logs").mkdir(parents=True, exist_ok=True)
        anvil_port = free_port()
        self.rpc_url = f"http://127.0.0.1:{anvil_port}"
        self.config_path = write_config(
            folder, self.rpc_url, anvil_port=anvil_port,
            sandbox={"chain": {"state_interval_seconds": 2},
                     "venue": {"seed": seed, "updates_per_second": 10,
                               "arbitrage": {"rate_per_minute": 0, "margin": "0.05", "lifetime_seconds": 6,
                                             "sell_side_share": 0.3}}},
            **SECTIONS)
        self.base: dict[str, Any] = yaml.safe_load(self.config_path.read_text())
        self.arbitrage_per_minute = arbitrage_per_minute
        self.venue_faults: dict[str, dict[str, Any]] = {}  # active fault kind -> its settings
        self.broken: str | None = None  # the text of a broken config while one is in place
        self.load = False
        conf = (ROOT / "supervisord.conf").read_text()
        conf = conf.replace("%(here)s/run", str(folder / "run")).replace("%(here)s", str(ROOT))
        self.supervisord_conf = folder / "supervisord.conf"
        self.supervisord_conf.write_text(conf)
        self.sup: subprocess.Popen[bytes] | None = None

    # -- supervisord
    def start(self) -> None:
        env = {**os.environ, "POLYARB_CONFIG": str(self.config_path)}
        log = open(self.folder / "run" / "supervisord.out", "ab")
        # Its own session (our signals reach it alone), and dies with the driver (never a world left running).
        # The parent-death signal is kept across exec: set it, then become supervisord.
        become = "import os, sys; from actors.runtime.parent import die_with_parent; die_with_parent(); " \
                 "os.execv(sys.argv[1], sys.argv[1:])"
        self.sup = subprocess.Popen([sys.executable, "-c", become, str(BIN / "supervisord"), "-n", "-c",
                                     str(self.supervisord_conf)], env=env, cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def ctl(self, *args: str) -> str:
        out = subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.supervisord_conf), *args],
                             capture_output=True, text=True, timeout=30)
        return out.stdout

    def statuses(self) -> dict[str, str]:
        """supervisorctl's state of each program: RUNNING, STARTING, BACKOFF, FATAL, ..."""
        out: dict[str, str] = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in PROGRAMS:
                out[parts[0]] = parts[1]
        return out

    def pid(self, program: str) -> int:
        text = self.ctl("pid", program).strip()
        return int(text) if text.isdigit() else 0

    def signal(self, program: str, sig: signal.Signals) -> int:
        """Send `sig` to the program's process (its group: anvil is exec'd in place). 0 if not running."""
        pid = self.pid(program)
        if pid > 0:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return 0
        return pid

    def stop(self) -> int | None:
        if self.sup is None:
            return None
        if self.sup.poll() is None:
            self.sup.send_signal(signal.SIGTERM)
            try:
                return self.sup.wait(90)
            except subprocess.TimeoutExpired:
                self.sup.kill()
                return self.sup.wait(30)
        return self.sup.returncode

    def log_text(self, program: str) -> str:
        path = self.folder / "run" / "logs" / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the live config: base + load + active venue faults, or a broken text
    def render(self) -> None:
        if self.broken is not None:
            text = self.broken
        else:
            raw = copy.deepcopy(self.base)
            venue = raw["sandbox"]["venue"]
            venue["arbitrage"]["rate_per_minute"] = self.arbitrage_per_minute if self.load else 0
            for settings in self.venue_faults.values():
                venue["faults"].update(settings)
            text = yaml.safe_dump(raw, sort_keys=False)
        tmp = self.config_path.with_suffix(".chaos")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)  # atomic: an actor never reads half a file
