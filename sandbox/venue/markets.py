"""The venue's markets: ids from `sandbox.deploy.market_infos`, the same ids the
chain derives, so token ids on the wire are the ERC-1155 position ids.

`sandbox.deploy` is imported lazily (it pulls in web3). Only when that module
does not exist at all is a deterministic stand-in used (keccak of the slug and
outcome index), so the venue's market data works without the chain code. A
deploy module that exists but fails to import is a bug and is raised.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_utils import keccak

from actors.domain.wallet import ANVIL_MNEMONIC, dev_account
from config.schema import Config

log = logging.getLogger(__name__)

DEPLOY_MODULE = "sandbox.deploy"


@dataclass(frozen=True)
class MarketInfo:
    """The stand-in's market record; the same fields as sandbox.deploy.MarketInfo."""

    slug: str
    question: str
    condition_id: str
    question_id: str
    outcomes: list[str]
    token_ids: list[str]
    fee_rate: Decimal
    tick_size: Decimal
    min_order_size: Decimal
    neg_risk: bool = False
    fee_exponent: int = 1
    neg_risk_market_id: str = ""
    event_slug: str = ""
    outcome: str = ""
    placeholder: bool = False
    other: bool = False


def operator_address(cfg: Config) -> str:
    if cfg.sandbox is None:
        raise ValueError("the config has no `sandbox` section: the venue has no markets")
    mnemonic = cfg.sandbox.chain.mnemonic or ANVIL_MNEMONIC
    return dev_account(cfg.sandbox.venue.operator_index, mnemonic).address


def deploy_module() -> Any | None:
    """sandbox.deploy, or None if that module does not exist."""
    try:
        return importlib.import_module(DEPLOY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != DEPLOY_MODULE:
            raise
        return None


def market_infos(cfg: Config) -> list[Any]:
    """Every configured market with condition id and token ids (MarketInfo)."""
    operator = operator_address(cfg)
    deploy = deploy_module()
    if deploy is not None:
        return list(deploy.market_infos(cfg, operator))
    log.warning("%s not found: deriving stand-in market ids (not the chain's)", DEPLOY_MODULE)
    return fallback_market_infos(cfg)


def _stand_in(slug: str, question: str, outcomes: list[str], cfg: Any, **extra: Any) -> MarketInfo:
    qid = keccak(text=f"question:{slug}")
    cid = keccak(text=f"condition:{slug}")
    tokens = [str(int.from_bytes(keccak(text=f"token:{slug}:{i}"), "big")) for i in range(len(outcomes))]
    return MarketInfo(slug=slug, question=question, condition_id="0x" + cid.hex(), question_id="0x" + qid.hex(),
                      outcomes=list(outcomes), token_ids=tokens, fee_rate=cfg.fee_rate, tick_size=cfg.tick_size,
                      min_order_size=cfg.min_order_size, fee_exponent=cfg.fee_exponent, **extra)


def event_outcomes(ev: Any) -> list[tuple[str, bool, bool]]:
    """(name, placeholder, other) of every outcome of a neg-risk event, in question order."""
    return ([(o, False, False) for o in ev.outcomes] + [(f"Placeholder {i + 1}", True, False)
                                                        for i in range(ev.placeholders)]
            + ([("Other", False, True)] if ev.other else []))


def fallback_market_infos(cfg: Config) -> list[MarketInfo]:
    assert cfg.sandbox is not None
    infos = [_stand_in(m.slug, m.question, m.outcomes, m) for m in cfg.sandbox.venue.markets]
    for ev in cfg.sandbox.venue.events:
        market_id = "0x" + keccak(text=f"event:{ev.slug}")[:31].hex() + "00"
        for i, (name, placeholder, other) in enumerate(event_outcomes(ev)):
            infos.append(_stand_in(f"{ev.slug}-{i}", f"{ev.title or ev.slug}: {name}?", ["Yes", "No"], ev,
                                   neg_risk=True, neg_risk_market_id=market_id, event_slug=ev.slug, outcome=name,
                                   placeholder=placeholder, other=other))
    return infos
