"""The nonce authority's recovery against a real anvil: a transaction the node forgot is
re-broadcast (its own signed bytes, the same hash mines), not replaced; a restarted node
that lost its pool gets it again; a chain that lost blocks (same genesis) gets the lost
transaction back and the next one mines."""

from __future__ import annotations

import asyncio

import pytest
from web3 import Web3

from actors.nonce.client import NonceClient
from config.loader import load
from tests.helpers import eventually
from tests.integration.conftest import RestartableAnvil, write_config
from tests.integration.test_nonce_authority import WALLET, confirmed, with_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

def sign(nonce: int, fee_gwei: int = 100) -> tuple[str, bytes, int, int]:
    """A signed self-transfer of the trading wallet: (hash, raw, max fee, tip)."""
    fee, tip = fee_gwei * 10**9, 30 * 10**9
    tx = {"chainId": 137, "nonce": nonce, "to": WALLET.address, "value": 0, "gas": 21000,
          "maxFeePerGas": fee, "maxPriorityFeePerGas": tip, "type": 2}
    signed = WALLET.sign_transaction(tx)
    return "0x" + bytes(signed.hash).hex(), bytes(signed.raw_transaction), fee, tip


def rpc(w3: Web3, method: str, *params):  # type: ignore[no-untyped-def]
    resp = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in resp, resp
    return resp["result"]


def known(w3: Web3, h: str) -> bool:
    return rpc(w3, "eth_getTransactionByHash", h) is not None


async def send_through_the_authority(c: NonceClient, w3: Web3, rid: str) -> tuple[int, str]:
    """What the executor does: allocate, sign, mark_sent with fees and raw, broadcast."""
    n = await c.allocate_nonce(rid)
    h, raw, fee, tip = sign(n)
    await c.mark_sent(n, h, fee, tip, raw)
    assert rpc(w3, "eth_sendRawTransaction", "0x" + raw.hex()) == h
    return n, h


@pytest.fixture
def no_mining_anvil(tmp_path):
    anvil = RestartableAnvil(tmp_path / "anvil-state.json", "--no-mining")
    url = anvil.start()
    yield anvil, url
    anvil.stop()


def test_a_transaction_dropped_from_the_mempool_is_rebroadcast_and_the_same_hash_mines(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil, nonce={"resend_after_seconds": 1.0, "noop_after_seconds": 120.0})
    cfg = load(path)
    w3 = Web3(Web3.HTTPProvider(anvil))
    rpc(w3, "anvil_setAutomine", False)
    proc = procs("--config", str(path), "actor", "nonce", name="nonce")

    async def scenario(c: NonceClient):
        n, h = await send_through_the_authority(c, w3, "merge")
        rpc(w3, "anvil_dropTransaction", h)
        assert not known(w3, h)

        async def rebroadcast() -> bool:
            stats = await c.get_stats()
            assert stats["noop_replacements"] == 0 and stats["recovery_errors"] == 0, stats
            return stats["rebroadcasts"] == 1 and known(w3, h)

        await eventually(rebroadcast, timeout=30, what="the authority re-broadcast the dropped transaction")
        nxt, h2 = await send_through_the_authority(c, w3, "next")
        assert nxt == n + 1
        rpc(w3, "evm_mine")
        assert w3.eth.get_transaction_receipt(h)["status"] == 1  # the executor's own transaction mined
        assert w3.eth.get_transaction_receipt(h2)["status"] == 1
        assert w3.eth.get_transaction_count(WALLET.address) == nxt + 1

        async def settled() -> bool:
            stats = await c.get_stats()
            return stats["pending_count"] == 0 and stats["noop_replacements"] == 0

        await eventually(settled, timeout=30, what="both confirmed by reconciliation, no no-op sent")

    asyncio.run(with_client(cfg, scenario))
    out = proc.output()
    assert "recovered stuck nonce 0 by re-broadcasting" in out
    assert sign(0)[1].hex() not in out  # hashes in the log, never the raw bytes


def test_a_dropped_transaction_lost_with_a_node_restart_is_recovered_and_the_next_one_mines(
        tmp_path, no_mining_anvil, procs):
    anvil, url = no_mining_anvil
    path = write_config(tmp_path, url, nonce={"resend_after_seconds": 1.0, "noop_after_seconds": 3.0})
    cfg = load(path)
    w3 = Web3(Web3.HTTPProvider(url))
    procs("--config", str(path), "actor", "nonce", name="nonce")

    async def scenario(c: NonceClient):
        n, h = await send_through_the_authority(c, w3, "merge")
        rpc(w3, "anvil_dropTransaction", h)
        anvil.stop()  # the node goes down; its pool is gone, its chain (the same genesis) is kept
        anvil.start()
        assert not known(w3, h) and w3.eth.get_transaction_count(WALLET.address) == n

        async def recovered() -> bool:
            return (await c.get_stats())["recoveries"] >= 1 and w3.eth.get_transaction_count(
                WALLET.address, "pending") == n + 1

        await eventually(recovered, timeout=60, what="the authority re-broadcast (or replaced) the lost nonce")
        stats = await c.get_stats()
        assert stats["archived_state"] is None  # the same chain: its state kept
        nxt, h2 = await send_through_the_authority(c, w3, "next")
        assert nxt == n + 1
        rpc(w3, "anvil_mine", "0x1")
        assert w3.eth.get_transaction_receipt(h2)["status"] == 1  # the next transaction mined
        assert w3.eth.get_transaction_count(WALLET.address) == nxt + 1

        async def settled() -> bool:
            return (await c.get_stats())["pending_count"] == 0

        await eventually(settled, timeout=30, what="both confirmed by reconciliation")
        return h

    h = asyncio.run(with_client(cfg, scenario))
    assert w3.eth.get_transaction_receipt(h)["status"] == 1  # re-broadcast: the same hash mined


def test_blocks_lost_with_the_same_genesis_unconfirm_and_rebroadcast_the_lost_transaction(
        tmp_path, no_mining_anvil, procs):
    anvil, url = no_mining_anvil
    path = write_config(tmp_path, url, nonce={"resend_after_seconds": 1.0, "noop_after_seconds": 120.0})
    cfg = load(path)
    w3 = Web3(Web3.HTTPProvider(url))
    proc = procs("--config", str(path), "actor", "nonce", name="nonce")

    async def scenario(c: NonceClient):
        first, h0 = await send_through_the_authority(c, w3, "trade-0")
        rpc(w3, "anvil_mine", "0x1")
        assert await confirmed(c, first)
        snapshot = rpc(w3, "evm_snapshot")
        merge, h1 = await send_through_the_authority(c, w3, "merge")
        rpc(w3, "anvil_mine", "0x1")
        assert await confirmed(c, merge)

        async def seen() -> bool:
            return (await c.get_stats())["chain_latest"] == merge + 1

        await eventually(seen, timeout=30, what="the authority saw the merge mined")
        assert rpc(w3, "evm_revert", snapshot)  # the chain loses its last block: same genesis
        assert w3.eth.get_transaction_count(WALLET.address) == merge and not known(w3, h1)
        nxt, h2 = await send_through_the_authority(c, w3, "next")  # queued behind the lost nonce
        assert nxt == merge + 1

        async def restored() -> bool:
            stats = await c.get_stats()
            return stats["chain_rewinds"] == 1 and stats["rebroadcasts"] == 1 and known(w3, h1)

        await eventually(restored, timeout=30, what="the lost merge re-broadcast")
        stats = await c.get_stats()
        assert stats["archived_state"] is None and stats["noop_replacements"] == 0
        rpc(w3, "anvil_mine", "0x1")
        assert w3.eth.get_transaction_receipt(h1)["status"] == 1  # the executor's own merge, again
        assert w3.eth.get_transaction_receipt(h2)["status"] == 1  # and the one queued behind it
        assert w3.eth.get_transaction_receipt(h0)["status"] == 1

        async def settled() -> bool:
            stats = await c.get_stats()
            return stats["pending_count"] == 0 and stats["chain_latest"] == nxt + 1

        await eventually(settled, timeout=30, what="all confirmed, chain_latest back up")

    asyncio.run(with_client(cfg, scenario))
    assert "the chain lost blocks: the wallet's mined count went from 2 back to 1" in proc.output()
