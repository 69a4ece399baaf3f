"""The nonce authority as a process: the manager served over REQ/REP.

Methods (params -> result):
    allocate {request_id}         -> {"nonce": int, "request_id": str}
    mark_sent {nonce, tx_hash, max_fee?, tip?, raw?} -> {"ok": true}
                                  (fees in wei, if known; raw: the signed transaction, 0x-hex)
    confirm {nonce, tx_hash?}     -> {"confirmed": bool}   (false: already settled, or not mined)
    fail {nonce}                  -> {"ok": true}
    is_pending {nonce}            -> {"pending": bool}
    stats {}                      -> the manager's get_stats()
    resync {}                     -> the reconciliation report
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from actors.domain.wallet import load_wallet
from actors.nonce.chain import Web3NonceChain
from actors.nonce.metrics import SERIES
from actors.nonce.nonce_manager import NonceManager
from actors.nonce.store import NonceStore
from actors.runtime.actor import Actor, RpcMethod
from actors.runtime.context import ActorContext
from actors.runtime.metrics import Series
from actors.runtime.params import ParamError, need_int, need_str, opt_int, opt_str
from actors.runtime.storage import inside
from config.schema import Config

log = logging.getLogger(__name__)


HASH_TEXT = 66  # 0x and 32 bytes in hex
RAW_TEXT = 2 + 2 * 128 * 1024  # a signed transaction of up to 128 KB (a node's own limit), in hex


def decode_raw(value: str | None) -> bytes | None:
    """A signed raw transaction from the wire: a 0x-hex string."""
    if not value:
        return None
    if not value.startswith(("0x", "0X")):
        raise ParamError("raw must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ParamError("raw is not hex") from None


def state_path(cfg: Config, address: str) -> Path:
    return inside(cfg.nonce.state_dir, f"nonce-{cfg.chain.chain_id}-{address.lower()}.sqlite")


class NonceActor(Actor):
    name = "nonce"

    def __init__(self, rt: ActorContext, chain: Any = None, address: str | None = None) -> None:
        super().__init__(rt)
        self.chain = chain  # injected in tests; the node over web3 otherwise
        self.address = address or ""

    async def start(self) -> None:
        cfg = self.rt.config
        if self.chain is None:
            wallet = load_wallet(cfg)
            self.address = wallet.address
            self.chain = Web3NonceChain(
                cfg.chain.url(), wallet, cfg.chain.chain_id, cfg.chain.request_timeout_seconds
            )
        self.store = NonceStore(state_path(cfg, self.address))
        self.manager = NonceManager(
            self.chain, self.store, self.rt.clock,
            lease_seconds=cfg.nonce.lease_seconds,
            gap_fill_after_seconds=cfg.nonce.gap_fill_after_seconds,
            resend_after_seconds=cfg.nonce.resend_after_seconds,
            noop_after_seconds=cfg.nonce.noop_after_seconds,
        )
        await self._recover()

    async def _recover(self) -> None:
        # The chain may come up after us under supervisord: wait for it rather
        # than serve nonces we have not reconciled.
        delay = 0.2
        while True:
            try:
                chain_id = await self.chain.chain_id()
                if chain_id != self.rt.config.chain.chain_id:
                    raise SystemExit(f"chain id {chain_id} != configured {self.rt.config.chain.chain_id}")
                await self.manager.initialize()
                return
            except SystemExit:
                raise
            except Exception as exc:
                self.manager.chain_errors += 1
                log.warning("waiting for the chain at %s: %s", self.rt.config.chain.host(), exc)
                await self.rt.clock.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def run(self) -> None:
        while True:
            await self.rt.clock.sleep(self.rt.config.nonce.chain_poll_seconds)
            await self.manager.tick()

    async def stop(self) -> None:
        close = getattr(self.chain, "close", None)
        if close is not None:
            await close()
        self.manager.store.close()  # the manager may have archived and reopened it

    def on_config(self, old: Config, new: Config) -> None:
        self.manager.configure(
            new.nonce.lease_seconds, new.nonce.gap_fill_after_seconds, new.nonce.resend_after_seconds,
            new.nonce.noop_after_seconds,
        )

    def rpc_methods(self) -> dict[str, RpcMethod]:
        m = self.manager

        async def allocate(p: dict[str, Any]) -> Any:
            rid = need_str(p, "request_id")
            return {"nonce": await m.allocate_nonce(rid), "request_id": rid}

        async def mark_sent(p: dict[str, Any]) -> Any:
            await m.mark_sent(need_int(p, "nonce"), opt_str(p, "tx_hash", max_len=HASH_TEXT) or "",
                              opt_int(p, "max_fee"), opt_int(p, "tip"),
                              decode_raw(opt_str(p, "raw", max_len=RAW_TEXT)))
            return {"ok": True}

        async def confirm(p: dict[str, Any]) -> Any:
            return {"confirmed": await m.mark_confirmed(need_int(p, "nonce"),
                                                        opt_str(p, "tx_hash", max_len=HASH_TEXT))}

        async def fail(p: dict[str, Any]) -> Any:
            await m.mark_failed(need_int(p, "nonce"))
            return {"ok": True}

        async def is_pending(p: dict[str, Any]) -> Any:
            return {"pending": m.is_pending(need_int(p, "nonce"))}

        async def stats(p: dict[str, Any]) -> Any:
            return m.get_stats()

        async def resync(p: dict[str, Any]) -> Any:
            return await m.resync()

        return {
            "allocate": allocate, "mark_sent": mark_sent, "confirm": confirm, "fail": fail,
            "is_pending": is_pending, "stats": stats, "resync": resync,
        }

    def get_stats(self) -> dict[str, Any]:
        cfg = self.rt.config.nonce
        return {
            **self.manager.get_stats(),
            "address": self.address,
            "lease_seconds": cfg.lease_seconds,
            "gap_fill_after_seconds": cfg.gap_fill_after_seconds,
            "resend_after_seconds": cfg.resend_after_seconds,
            "noop_after_seconds": cfg.noop_after_seconds,
        }

    def metric_series(self) -> tuple[Series, ...]:
        return SERIES

    def health(self) -> dict[str, Any]:
        """Running, synced with the chain at start, and the chain answered its last poll."""
        s = self.manager.get_stats()
        return {"running": True, "chain_synced": bool(s["initialized"]),
                "chain_reachable": bool(s["chain_ok"])}

    def summary(self) -> dict[str, Any]:
        s = self.manager.get_stats()
        return {
            "next_nonce": s["next_nonce"],
            "pending": s["pending_count"],
            "chain_latest": s["chain_latest"],
            "lease_s": self.rt.config.nonce.lease_seconds,
            "recoveries": s["recoveries"],
            **({"chain_rewinds": s["chain_rewinds"]} if s["chain_rewinds"] else {}),
            **({"archived_state": s["archived_state"]} if s["archived_state"] else {}),
        }
