"""The sandbox chain (`polyarb chain`, a real anvil on its state file) killed with SIGKILL
before its next dump: the blocks mined since come back, in their order, with the same
transactions. Re-broadcast by each sender instead, a chaos run's lost blocks came back in
another order: settlements that spent shares minted by a later re-broadcast reverted, and
the books stood 624 pUSD from the chain."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from sandbox.chain_log import block_log, read_blocks
from sandbox.testbed import free_port
from tests.helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
MNEMONIC = "test test test test test test test test test test test junk"
Account.enable_unaudited_hdwallet_features()
FUNDER = Account.from_mnemonic(MNEMONIC, account_path="m/44'/60'/0'/0/8")
MIDDLE = Account.from_key("0x" + "11" * 32)  # holds nothing until the funder's transfer
LAST = "0x000000000000000000000000000000000000bEEF"


class Chain:
    """`polyarb chain`'s code path (sandbox.chain.exec_anvil) in its own process."""

    def __init__(self, state: Path) -> None:
        self.state, self.port = state, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = state.parent / "chain.out"

    def start(self) -> Web3:
        code = ("from config.schema import SandboxChain; from sandbox.chain import exec_anvil; "
                f"exec_anvil(SandboxChain(port={self.port}, block_time_seconds=0, state_file={str(self.state)!r}, "
                "state_interval_seconds=3600), 137)")
        deadline = time.monotonic() + 30
        while True:  # the killed anvil's port can stay in TIME_WAIT for a moment
            with open(self.out, "ab") as out:
                self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=out, stderr=out)
            w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 2}))
            if self._answers(w3):
                return w3
            assert time.monotonic() < deadline, self.out.read_text()[-2000:]

    def _answers(self, w3: Web3) -> bool:
        """Whether this start answers (False: it exited, its port still held)."""
        proc = self.proc
        assert proc is not None
        try:
            wait_until(lambda: proc.poll() is not None or w3.is_connected(), timeout=30, what="the chain answers")
        except AssertionError:
            return False
        return proc.poll() is None and w3.is_connected()

    def stop(self, sig: str) -> None:
        assert self.proc is not None
        self.proc.kill() if sig == "KILL" else self.proc.terminate()
        self.proc.wait(30)


def _send(w3: Web3, account, to: str, wei: int) -> str:
    tx = {"to": Web3.to_checksum_address(to), "value": wei, "gas": 21_000, "nonce": w3.eth.get_transaction_count(
        account.address), "chainId": 137, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "type": 2}
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10).status == 1
    return tx_hash.hex()


@pytest.fixture
def chain(tmp_path):
    c = Chain(tmp_path / "anvil-state.json")
    yield c
    if c.proc is not None and c.proc.poll() is None:
        c.proc.kill()
        c.proc.wait(10)


def test_blocks_a_sigkill_lost_are_mined_again_in_their_order(chain):
    w3 = chain.start()
    _send(w3, FUNDER, LAST, 1)  # a world with a block, written on a clean stop
    chain.stop("TERM")
    w3 = chain.start()
    best = w3.eth.block_number

    # Two senders, the second spending what the first gave it: a different order reverts.
    first = _send(w3, FUNDER, MIDDLE.address, 10**18)
    second = _send(w3, MIDDLE, LAST, 5 * 10**17)
    log = block_log(chain.state)
    wait_until(lambda: sum(len(r) for n, r in read_blocks(log) if n > best) == 2, timeout=10,
               what="both blocks in the block log")
    chain.stop("KILL")  # an hour before the next dump: both blocks are only in the log

    w3 = chain.start()
    receipts = [w3.eth.get_transaction_receipt(h) for h in (first, second)]
    assert [r.status for r in receipts] == [1, 1]
    assert receipts[0].blockNumber < receipts[1].blockNumber
    assert w3.eth.get_balance(Web3.to_checksum_address(LAST)) == 1 + 5 * 10**17
    assert "2 blocks the state file had not caught mined again in their order: 2 mined" in chain.out.read_text()
    assert read_blocks(log) == []  # in the state now: never mined a second time

    chain.stop("KILL")  # nothing new since the replay wrote its state
    w3 = chain.start()
    assert w3.eth.get_balance(Web3.to_checksum_address(LAST)) == 1 + 5 * 10**17
    assert w3.eth.get_transaction_count(MIDDLE.address) == 1
