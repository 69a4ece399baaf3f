"""The nonce authority as a real process, with a real anvil and real sockets."""

from __future__ import annotations

import asyncio

import pytest
from web3 import Web3

from actors.domain.wallet import dev_account
from actors.nonce.client import NonceClient
from actors.runtime.clock import SystemClock
from bus.codec import Stamper
from bus.context import destroy
from config.loader import load
from sandbox.testbed import context_as
from tests.helpers import eventually
from tests.integration.conftest import write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WALLET = dev_account(1)  # the sandbox config's trading wallet


def send_tx(w3: Web3, nonce: int) -> str:
    tx = {"chainId": 137, "nonce": nonce, "to": WALLET.address, "value": 0, "gas": 21000,
          "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 30 * 10**9, "type": 2}
    return w3.eth.send_raw_transaction(WALLET.sign_transaction(tx).raw_transaction).hex()


async def with_client(cfg, fn):
    ctx = context_as(cfg, "executor")  # the authority's one allowed client
    client = NonceClient(ctx, cfg.bus.endpoints["nonce"].rpc, Stamper("test", SystemClock()),
                         timeout_ms=500, retries=40)
    try:
        return await fn(client)
    finally:
        client.close()
        destroy(ctx, 0)


async def confirmed(c: NonceClient, nonce: int, tx_hash: str | None = None) -> bool:
    """Report `nonce` mined, as the executor does, and say whether it ends confirmed. The
    authority's own poll of the chain (every 0.2 s here) may confirm it first, with the
    hash the node mined: then the report changes nothing and answers False, which is
    no failure (a flaky `assert await c.mark_confirmed(n)` in a CI run)."""
    await c.mark_confirmed(nonce, tx_hash)
    return not await c.is_pending(nonce)


def test_allocate_send_confirm_and_sigkill_between_allocation_and_confirmation(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil)
    cfg = load(path)
    w3 = Web3(Web3.HTTPProvider(anvil))
    # Someone else already used nonces 0-1 of this wallet: the authority must recover them.
    send_tx(w3, 0)
    send_tx(w3, 1)
    authority = procs("--config", str(path), "actor", "nonce", name="nonce")

    async def before_kill(c: NonceClient):
        n = await c.allocate_nonce("trade-1")
        assert n == 2
        await c.mark_sent(n, send_tx(w3, n))
        assert await confirmed(c, n)
        mined_unreported = await c.allocate_nonce("trade-2")
        send_tx(w3, mined_unreported)  # mined, but the authority dies before hearing of it
        leased = await c.allocate_nonce("trade-3")  # the client is still working on it
        return mined_unreported, leased

    mined_unreported, leased = asyncio.run(with_client(cfg, before_kill))
    authority.kill9()
    procs("--config", str(path), "actor", "nonce", name="nonce")

    async def after_restart(c: NonceClient):
        stats = await c.get_stats()
        assert mined_unreported not in stats["pending_nonces"]
        assert leased in stats["pending_nonces"]
        assert await c.allocate_nonce("trade-3") == leased  # the retried request keeps its nonce
        fresh = await c.allocate_nonce("trade-4")
        assert fresh == leased + 1
        assert fresh > mined_unreported
        assert w3.eth.get_transaction_count(WALLET.address) == mined_unreported + 1

    asyncio.run(with_client(cfg, after_restart))


def test_a_nonce_that_is_never_sent_is_reclaimed_and_the_gap_filled_on_chain(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil, nonce={"lease_seconds": 1.0, "gap_fill_after_seconds": 0.5})
    cfg = load(path)
    w3 = Web3(Web3.HTTPProvider(anvil))
    procs("--config", str(path), "actor", "nonce", name="nonce")

    async def scenario(c: NonceClient):
        hole = await c.allocate_nonce("crashed-executor")
        after = await c.allocate_nonce("healthy-executor")
        await c.mark_sent(after, send_tx(w3, after))  # queued behind the hole by the node
        assert w3.eth.get_transaction_count(WALLET.address) == 0

        await eventually(lambda: w3.eth.get_transaction_count(WALLET.address) == after + 1,
                         timeout=30, what="the gap filled and both mined")
        stats = await c.get_stats()
        assert stats["gap_fills"] == 1 and stats["reclaimed"] >= 1
        assert hole not in stats["free_nonces"]

    asyncio.run(with_client(cfg, scenario))


def test_sigterm_exits_cleanly(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil)
    cfg = load(path)
    authority = procs("--config", str(path), "actor", "nonce", name="nonce")

    async def ready(c: NonceClient):
        return await c.get_stats()

    assert asyncio.run(with_client(cfg, ready))["initialized"]
    assert authority.terminate() == 0
    assert '"msg": "stopped"' in authority.output()


def test_a_fault_exits_non_zero_so_supervisord_restarts(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil)
    cfg = load(path)
    first = procs("--config", str(path), "actor", "nonce", name="first")
    asyncio.run(with_client(cfg, lambda c: c.get_stats()))
    second = procs("--config", str(path), "actor", "nonce", name="second")  # its endpoint is taken
    assert second.p.wait(30) != 0
    assert "Address already in use" in second.output()
    assert first.terminate() == 0


def test_a_transaction_dropped_from_the_mempool_is_replaced_and_the_next_one_mines(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil, nonce={"resend_after_seconds": 1.0})
    cfg = load(path)
    w3 = Web3(Web3.HTTPProvider(anvil))
    w3.provider.make_request("anvil_setAutomine", [False])
    proc = procs("--config", str(path), "actor", "nonce", name="nonce")

    def known(h: str) -> bool:
        return w3.provider.make_request("eth_getTransactionByHash", [h])["result"] is not None

    async def scenario(c: NonceClient):
        n = await c.allocate_nonce("evicted")
        h = "0x" + send_tx(w3, n).removeprefix("0x")
        await c.mark_sent(n, h, max_fee=100 * 10**9, tip=30 * 10**9)
        assert w3.provider.make_request("anvil_dropTransaction", [h]).get("error") is None
        assert not known(h)

        async def replaced() -> bool:
            stats = await c.get_stats()
            assert stats["recoveries"] == 1 and stats["recovery_errors"] == 0, stats
            return True

        await eventually(replaced, timeout=30, what="the authority replaced the dropped nonce")
        assert w3.eth.get_transaction_count(WALLET.address, "pending") == n + 1  # the no-op is pooled
        nxt = await c.allocate_nonce("next")
        assert nxt == n + 1
        h2 = "0x" + send_tx(w3, nxt).removeprefix("0x")
        await c.mark_sent(nxt, h2)
        w3.provider.make_request("evm_mine", [])
        assert w3.eth.get_transaction_count(WALLET.address) == nxt + 1  # the next transaction mined
        assert w3.eth.get_transaction_receipt(h2)["status"] == 1

        async def settled() -> bool:
            return (await c.get_stats())["pending_count"] == 0

        await eventually(settled, timeout=30, what="both confirmed by reconciliation")

    asyncio.run(with_client(cfg, scenario))
    assert "recovered stuck nonce 0" in proc.output()


def test_state_of_a_restarted_chain_is_archived(tmp_path, anvil, procs):
    path = write_config(tmp_path, anvil)
    cfg = load(path)
    w3 = Web3(Web3.HTTPProvider(anvil))
    first = procs("--config", str(path), "actor", "nonce", name="first")

    async def before(c: NonceClient):
        for i in range(3):
            n = await c.allocate_nonce(f"old-{i}")
            await c.mark_sent(n, "0x" + f"{i:02x}" * 32)  # never reached this chain

    asyncio.run(with_client(cfg, before))
    assert first.terminate() == 0
    # The node's block 0 changes (a fresh anvil): simulated by rewriting the stored identity.
    import sqlite3

    from actors.nonce.actor import state_path
    db = sqlite3.connect(state_path(cfg, WALLET.address))
    db.execute("UPDATE meta SET value=? WHERE key='genesis_hash'", ("0x" + "ab" * 32,))
    db.commit()
    db.close()
    second = procs("--config", str(path), "actor", "nonce", name="second")

    async def after(c: NonceClient):
        stats = await c.get_stats()
        assert stats["archived_state"] and "/archive/" in stats["archived_state"]
        assert stats["pending_count"] == 0 and stats["next_nonce"] == w3.eth.get_transaction_count(WALLET.address)
        assert await c.allocate_nonce("old-2") == 0

    asyncio.run(with_client(cfg, after))
    assert "moved aside" in second.output()
