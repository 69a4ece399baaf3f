"""What an operator sees: `polyarb status` and `polyarb sniff` against a live
actor, and a config edit applied (or rejected) while it runs."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import wait_until
from tests.integration.conftest import POLYARB, ROOT, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def polyarb(path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([POLYARB, "--config", str(path), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def status(path) -> dict:
    out = polyarb(path, "status", "--json", "--seconds", "0.6")
    return json.loads(out.stdout)


def test_status_sniff_and_live_config_edits(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil)
    procs("--config", str(path), "actor", "nonce", name="nonce")

    nonce = wait_until(lambda: status(path)["nonce"]["up"] and status(path)["nonce"], timeout=30)
    assert nonce["summary"]["next_nonce"] == 0
    assert nonce["breaker"] == "UNKNOWN"  # no executor yet: unknown, and trading would be refused
    assert status(path)["executor"]["up"] is False

    table = polyarb(path, "status", "--seconds", "0.6").stdout
    assert "nonce" in table and "next_nonce=0" in table

    sniffed = polyarb(path, "sniff", "--topic", "stats.", "--count", "3", "--json", "--seconds", "10")
    lines = [json.loads(line) for line in sniffed.stdout.splitlines()]
    assert len(lines) == 3
    assert {line["topic"] for line in lines} == {"stats.nonce"}
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)

    text = path.read_text()
    edited = path.with_suffix(".new")
    edited.write_text(text.replace("lease_seconds: 30\n", "lease_seconds: 12.5\n"))
    os.replace(edited, path)
    wait_until(lambda: status(path)["nonce"]["summary"]["lease_s"] == 12.5, timeout=20)

    edited.write_text(text.replace("lease_seconds: 30\n", "lease_seconds: -1\n"))
    os.replace(edited, path)
    rejected = wait_until(lambda: (s := status(path)["nonce"])["config"]["reload_errors"] == 1 and s, timeout=20)
    assert "nonce.lease_seconds" in rejected["config"]["last_error"]
    assert rejected["summary"]["lease_s"] == 12.5 and rejected["up"]
    table = polyarb(path, "status", "--seconds", "0.6")
    assert "config rejected" in table.stdout and "invalid" in table.stderr
