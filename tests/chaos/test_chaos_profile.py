"""The CI profile of the chaos suite: the real system under supervisord, every fault
kind injected at least once (a seeded order), then every check of the driver.

`make chaos` runs the long profile (10 minutes, any seed); a failing seed is rerun
with the command its report prints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.chaos.driver import REPORTS
from tests.chaos.faults import KINDS
from tests.chaos.world import ROOT

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(900)]

SECONDS, SEED = 100, 20261201


def test_every_fault_kind_once_and_every_check_holds():
    before = set(REPORTS.glob("*.json")) if REPORTS.exists() else set()
    run = subprocess.run([sys.executable, "-m", "tests.chaos", "--seconds", str(SECONDS), "--seed", str(SEED)],
                         cwd=ROOT, capture_output=True, text=True, timeout=840)
    print(run.stdout[-6000:])
    [path] = set(REPORTS.glob("*.json")) - before
    report = json.loads(path.read_text())
    assert set(report["fault_kinds"]) == set(KINDS)  # every kind injected
    failed = [f"{c['number']} {c['name']}: {json.dumps(c['figures'])[:1500]}" for c in report.get("checks", [])
              if not c["ok"]]
    assert run.returncode == 0 and not failed and "error" not in report, (
        f"chaos seed {SEED} failed (rerun: {report['rerun']}; world kept in {report['world']}):\n"
        + "\n".join(failed) + f"\n{report.get('error', '')}\n{run.stdout[-3000:]}")
