"""`polyarb doctor` against the sandbox (a real anvil and the venue process): every check
OK once the executor has made its approvals, and each broken setup (no key, wrong chain
id, missing approvals, no gas, state of another world) its own FAIL with the fix, with
nothing sent."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml
from eth_account import Account
from web3 import Web3

from config.loader import load
from tests.helpers import wait_until
from tests.integration.conftest import POLYARB, write_config
from tests.integration.test_system import TRADER, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def doctor(path: Path, **env: str) -> tuple[int, dict[str, str], str]:
    """Exit code, {check: its line and fix}, the whole output."""
    out = subprocess.run([POLYARB, "--config", str(path), "doctor"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    checks: dict[str, str] = {}
    last = ""
    for row in out.stdout.splitlines():
        head = row.split(maxsplit=2)
        if head and head[0] in ("OK", "FAIL", "SKIP") and len(head) > 1:
            last = head[1]
            checks[last] = row
        elif last and row.strip().startswith("fix:"):
            checks[last] += "\n" + row.strip()
    return out.returncode, checks, out.stdout + out.stderr


def variant(path: Path, name: str, edit) -> Path:
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    out = path.with_name(f"{name}.yaml")
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def test_doctor_passes_the_sandbox_and_names_each_broken_setup(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil, anvil_port=int(anvil.rsplit(":", 1)[1]),
                        sandbox={"venue": {"updates_per_second": 5, "arbitrage": {"rate_per_minute": 0}}})
    cfg = load(path)
    procs("--config", str(path), "actor", "venue", name="venue")
    wait_until(lambda: snapshot(cfg).get("venue", {}).get("venue", {}).get("chain_ready"), timeout=90,
               what="venue bootstrapped the chain")
    w3 = Web3(Web3.HTTPProvider(anvil))
    sent_before = w3.eth.get_transaction_count(TRADER)

    # Missing approvals: a fresh world, before the executor's first start.
    code, checks, out = doctor(path)
    assert code == 1, out
    assert checks["approvals"].startswith("FAIL") and "approve_exchange" in checks["approvals"], out
    assert "the executor sends these" in checks["approvals"]
    for name in ("config", "keys", "wallet", "chain", "contracts", "gas", "pol-price", "collateral", "state",
                 "venue", "channels"):
        assert checks[name].startswith("OK"), out
    assert "from the feed" in checks["pol-price"], out  # the sandbox places its POL / USD feed
    assert "Nothing was sent" in out and w3.eth.get_transaction_count(TRADER) == sent_before

    # The executor's start sends them (through the nonce authority): then every check is OK.
    procs("--config", str(path), "actor", "nonce", name="nonce")
    procs("--config", str(path), "actor", "executor", name="executor")
    wait_until(lambda: snapshot(cfg).get("executor", {}).get("executor", {}).get("ready"), timeout=120,
               what="the executor made its approvals")
    code, checks, out = doctor(path)
    assert code == 0 and all(line.startswith("OK") for line in checks.values()), out
    assert "world: config.yaml (sandbox)" in checks["config"] and "API key" in checks["venue"]
    sent = w3.eth.get_transaction_count(TRADER)

    # No key.
    no_key = variant(path, "no-key", lambda r: r["chain"].update(wallet={"source": "env",
                                                                         "env_var": "POLYARB_TEST_UNSET_KEY"}))
    code, checks, out = doctor(no_key)
    assert code == 1 and checks["wallet"].startswith("FAIL") and "POLYARB_TEST_UNSET_KEY" in checks["wallet"], out
    assert "fix: export POLYARB_TEST_UNSET_KEY=" in checks["wallet"]

    # Wrong chain id.
    wrong = variant(path, "wrong-chain", lambda r: r["chain"].update(chain_id=1))
    code, checks, out = doctor(wrong)
    assert code == 1 and checks["chain"].startswith("FAIL"), out
    assert "is chain 137, the config says chain.chain_id 1" in checks["chain"]
    assert checks["contracts"].startswith("SKIP")

    # No gas (and no pUSD, no approvals): a key nobody funded.
    fresh = Account.create()
    empty = variant(path, "empty", lambda r: r["chain"].update(wallet={"source": "env", "env_var": "DOCTOR_KEY"}))
    code, checks, out = doctor(empty, DOCTOR_KEY=fresh.key.hex())
    assert code == 1 and checks["gas"].startswith("FAIL") and f"POL to {fresh.address}" in checks["gas"], out
    assert checks["collateral"].startswith("FAIL") and checks["approvals"].startswith("FAIL")

    # State of another world: books recorded under another chain's genesis.
    other = tmp_path / "other-state"
    other.mkdir()
    db = sqlite3.connect(other / f"executor-137-{TRADER.lower()}.sqlite")
    db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO kv VALUES ('world', ?)", (json.dumps("0x" + "ab" * 32),))
    db.commit()
    db.close()
    stale = variant(path, "stale", lambda r: r["executor"].update(state_dir=str(other)))
    code, checks, out = doctor(stale)
    assert code == 1 and checks["state"].startswith("FAIL") and "belong to another chain" in checks["state"], out
    assert "state folders of its own" in checks["state"]

    assert w3.eth.get_transaction_count(TRADER) == sent  # nothing sent by any doctor run
