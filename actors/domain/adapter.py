"""Read-only calls to the NegRiskAdapter that the router and the paper chain share."""

from __future__ import annotations

import aiohttp
from eth_utils import function_signature_to_4byte_selector
from py_clob_client_v2.config import get_contract_config

from config.schema import Config

BIPS = 10_000  # the adapter's fee denominator
_GET_FEE_BIPS = function_signature_to_4byte_selector("getFeeBips(bytes32)")


async def read_convert_fee_bips(session: aiohttp.ClientSession, cfg: Config, market_id: str) -> int:
    """The NegRiskAdapter's feeBips of a market (`getFeeBips(bytes32)`, an eth_call on
    `chain.rpc_url`; the adapter's address from the official client's contract config)."""
    adapter = get_contract_config(cfg.chain.chain_id).neg_risk_adapter
    data = "0x" + _GET_FEE_BIPS.hex() + market_id.removeprefix("0x").rjust(64, "0")
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"to": adapter, "data": data}, "latest"]}
    async with session.post(cfg.chain.url(), json=body) as resp:
        resp.raise_for_status()
        reply = await resp.json()
    if reply.get("error") or not isinstance(reply.get("result"), str):
        raise RuntimeError(f"getFeeBips({market_id}) failed: {reply.get('error') or reply}")
    raw = reply["result"].removeprefix("0x")
    if len(raw) != 64:  # no code at the adapter's address (yet): an empty answer
        raise RuntimeError(f"getFeeBips({market_id}) answered {reply['result']!r}")
    bips = int(raw, 16)
    if not 0 <= bips < BIPS:
        raise RuntimeError(f"getFeeBips({market_id}) = {bips}, out of range")
    return bips
