"""The venue's CLOB: order placement with Polymarket's protocol, settled on the sandbox chain.

    auth.py        L1 (EIP-712 ClobAuth) and L2 (HMAC) authentication, deterministic api keys
    orders.py      the POST /order payload, its EIP-712 hash and signer, price / size / fees (pure)
    records.py     orders and trades in Polymarket's forms (pure)
    store.py       orders, trades and client ids in SQLite (WAL): they survive a restart
    settlement.py  traders' funds and the settlement calls, with the operator's nonces (AsyncWeb3)
    lifecycle.py   a trade after the match: MATCHED -> MINED -> CONFIRMED / RETRYING / FAILED
    service.py     the order flow: verify -> match on the venue's book -> trade (settled afterwards)
    user_ws.py     the user channel `/ws/user`: order and trade events of the subscriber's account
    routes.py      the REST routes py-clob-client-v2 calls

`install(app, venue)` is discovered by sandbox.venue.actor.build_app. It uses
`venue.state` (VenueState), `venue.faults` (FaultInjector), `venue.rt.clock`,
`venue.rt.config` and `venue.chain_ready`. The service is `app[CLOB_KEY]`, also
set as `venue.clob`, whose `get_stats()` the venue reports under "clob".
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from py_clob_client_v2.config import get_contract_config

from actors.domain.wallet import ANVIL_MNEMONIC, dev_account
from actors.runtime.storage import inside
from sandbox.venue.clob.auth import ApiKeys, venue_secret
from sandbox.venue.clob.routes import add_routes
from sandbox.venue.clob.service import ClobService
from sandbox.venue.clob.settlement import Settler
from sandbox.venue.clob.store import VenueStore

CLOB_KEY = web.AppKey("clob", ClobService)


def build_service(venue: Any) -> ClobService:
    """The CLOB of a venue (its state, faults, clock and config)."""
    cfg = venue.rt.config
    if cfg.sandbox is None:
        raise ValueError("the CLOB needs the config's `sandbox` section (operator account, markets)")
    from sandbox.deploy import contract_addresses  # web3-heavy: imported only when the CLOB is built

    v = cfg.sandbox.venue
    operator = dev_account(v.operator_index, cfg.sandbox.chain.mnemonic or ANVIL_MNEMONIC)
    collateral, ctf, exchange = contract_addresses(cfg.chain.chain_id)
    settler = Settler(cfg.chain.rpc_url, operator, chain_id=cfg.chain.chain_id, exchange=exchange,
                      collateral=collateral, ctf=ctf, clock=venue.rt.clock,
                      timeout_s=cfg.chain.request_timeout_seconds,
                      neg_risk_exchange=get_contract_config(cfg.chain.chain_id).neg_risk_exchange_v2,
                      neg_risk_adapter=get_contract_config(cfg.chain.chain_id).neg_risk_adapter)
    keys = ApiKeys(venue_secret(bytes(operator.key)), cfg.chain.chain_id)
    store = VenueStore(str(inside(v.state_dir, f"venue-{cfg.chain.chain_id}-{operator.address.lower()}.sqlite")))

    def config() -> Any:
        return venue.rt.config.sandbox.venue  # hot: read at every use

    return ClobService(venue.state, keys, settler, venue.rt.clock, chain_id=cfg.chain.chain_id,
                       faults=getattr(venue, "faults", None), store=store,
                       ready=lambda: bool(getattr(venue, "chain_ready", True)),
                       heartbeat_timeout_s=lambda: config().heartbeat_timeout_seconds)


def install(app: web.Application, venue: Any) -> None:
    """Add the CLOB routes (see routes.py for the list) and the user channel `/ws/user` to the venue's app."""
    service = build_service(venue)
    app[CLOB_KEY] = service
    if getattr(venue, "clob", None) is None:
        venue.clob = service  # the venue's stats hook: venue.clob.get_stats()
    from sandbox.venue.clob.user_ws import UserHub

    hub = UserHub(service, venue.faults, venue.rt.clock)
    service.user_hub = hub  # the venue's hooks: housekeeping(), set_stall(), get_stats()

    async def close_ws(_app: web.Application) -> None:
        await hub.close_all()  # on shutdown: open WebSockets would hold the runner's shutdown up

    async def close(_app: web.Application) -> None:
        await service.close()

    app.on_shutdown.append(close_ws)
    app.on_cleanup.append(close)
    add_routes(app, service, venue)
    app.router.add_get("/ws/user", hub.handle)


__all__ = ["CLOB_KEY", "ClobService", "build_service", "install"]
