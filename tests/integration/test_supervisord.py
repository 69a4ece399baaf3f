"""The repo's own supervisord.conf, as `make run` uses it, on free ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration.conftest import POLYARB, ROOT, free_port, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def supervised(tmp_path):
    """supervisord with the repo's programs on free ports: (process, supervisorctl argv, config path)."""
    anvil_port = free_port()
    cfg = write_config(tmp_path, f"http://127.0.0.1:{anvil_port}", anvil_port=anvil_port)
    # The same programs, with the run folder under tmp instead of the repo.
    conf = (ROOT / "supervisord.conf").read_text()
    conf = conf.replace("%(here)s/run", str(tmp_path / "run")).replace("%(here)s", str(ROOT))
    (tmp_path / "run" / "logs").mkdir(parents=True)
    conf_path = tmp_path / "supervisord.conf"
    conf_path.write_text(conf)
    env = {**os.environ, "POLYARB_CONFIG": str(cfg)}
    sup = subprocess.Popen([str(Path(sys.executable).with_name("supervisord")), "-n", "-c", str(conf_path)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ctl = [str(Path(sys.executable).with_name("supervisorctl")), "-c", str(conf_path)]
    return sup, ctl, cfg


PROGRAMS = ("nonce", "venue", "feed", "router", "executor", "alerts", "dashboard", "chain")


def test_make_run_programs_start_survive_kill9_and_stop_cleanly(tmp_path):
    sup, ctl, cfg = supervised(tmp_path)

    def status() -> dict:
        out = subprocess.run([POLYARB, "--config", str(cfg), "status", "--json", "--seconds", "0.6"],
                             capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout)

    def pid(name: str) -> int:
        out = subprocess.run([*ctl, "pid", name], capture_output=True, text=True, timeout=30).stdout.strip()
        return int(out) if out.isdigit() else 0

    try:
        first = wait_until(lambda: (s := status()["nonce"])["up"] and s["stats"]["nonce"]["initialized"] and s,
                           timeout=60)
        # Recovered from the chain (the executor may already have sent its approvals).
        assert first["summary"]["next_nonce"] >= first["summary"]["chain_latest"]
        # The chain program is anvil itself, not a wrapper.
        chain_pid = pid("chain")
        assert Path(f"/proc/{chain_pid}/exe").resolve().name == "anvil"

        old = pid("nonce")
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: pid("nonce") not in (0, old), timeout=30, what="supervisord respawned nonce")
        wait_until(lambda: status()["nonce"].get("boot_id") not in (None, first["boot_id"]), timeout=30)
    finally:
        sup.send_signal(signal.SIGTERM)
        out, _ = sup.communicate(timeout=60)
    log = out.decode()
    for program in PROGRAMS:
        assert f"stopped: {program} (exit status 0)" in log, log
    assert sup.returncode == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) is not trading.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def test_no_program_outlives_a_supervisord_killed_with_sigkill(tmp_path):
    sup, ctl, _ = supervised(tmp_path)

    def pids() -> list[int]:
        out = subprocess.run([*ctl, "pid", "all"], capture_output=True, text=True, timeout=30).stdout.split()
        ok = len(out) == len(PROGRAMS) and all(p.isdigit() and int(p) > 0 for p in out)
        return [int(p) for p in out] if ok else []

    try:
        running = wait_until(pids, timeout=60, what="every program running")
    finally:
        sup.kill()  # SIGKILL: supervisord cannot stop anything
        sup.communicate(timeout=30)

    wait_until(lambda: not any(alive(p) for p in running), timeout=5, interval=0.1,
               what=f"no program of {running} left 5 s after supervisord died")
