"""The sandbox's on-chain world, bootstrapped idempotently on anvil.

    python -m sandbox.deploy [--config PATH] [--rpc URL]   # prints the Deployment as JSON

Our contracts are placed at the REAL Polygon addresses py-clob-client-v2 uses for the
configured chain id (collateral, conditional_tokens, exchange_v2, neg_risk_exchange_v2,
neg_risk_adapter; WCOL at the real adapter's WCOL address), so every client works
unchanged against the sandbox. anvil_setCode runs no constructor: each contract is then
set up through its one-shot `initialize`.

Binary `markets` are CTF conditions with the operator as oracle, traded on the exchange;
neg-risk `events` are NegRiskAdapter markets, one binary question per outcome, traded on
the neg-risk exchange. Both exchanges are a Settlement instance.

Every step checks the chain first and acts only when needed, so the venue runs this at
each start: a second run on a set-up chain sends no transaction. The trading wallet is
funded once, when the world is created (the collateral's one-shot initialization marks
it), never topped up afterwards; the operator's own inventory is. All transactions come
from the venue operator (dev account `sandbox.venue.operator_index`); the trader's own
approvals are the executor's job. Money is integer 1e-6 units everywhere; config amounts
are exact Decimals.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from py_clob_client_v2.config import get_contract_config
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction

from actors.domain.money import to_micro
from actors.domain.wallet import ANVIL_MNEMONIC, dev_account, load_wallet
from actors.runtime.clock import Clock, SystemClock
from config.schema import Config, Venue, VenueEvent
from sandbox.contracts.build import load_artifact
from sandbox.contracts.ids import (  # noqa: F401 - re-exported: the venue and the tests derive ids from here
    NO,
    NO_TOKEN_BURN_ADDRESS,
    YES,
    ZERO32,
    binary_position_ids,
    collection_id,
    condition_id,
    neg_risk_market_id,
    neg_risk_question_id,
    position_id,
    question_id,
)

MAX_UINT = 2**256 - 1
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
POL_FLOOR = 100 * 10**18  # top up the operator's gas money below this ...
POL_TOP_UP = 1000 * 10**18  # ... to this (hysteresis: not at every restart)
# Explicit gas limits: the whole bootstrap is sent as one batch of consecutive nonces, so
# a later transaction (a split) cannot be estimated before an earlier one (the mint) is
# mined. 1M covers the largest step (a 256-slot prepareCondition stays under it) with room.
GAS_LIMIT = 1_000_000
RECEIPT_TIMEOUT_SECONDS = 60.0
# Polymarket's WCOL on Polygon (the NegRiskAdapter's wrapped collateral, neg-risk-ctf-adapter's
# addresses.json); py-clob-client-v2 does not list it.
WCOL_ADDRESS = "0x3A3BD7bb9528E159577F7C2e685CC81A765002E2"
PLACEHOLDER, OTHER = "Placeholder {}", "Other"


class BootstrapError(RuntimeError):
    """The chain cannot be brought to the configured state; the message says why."""


@dataclass(frozen=True)
class MarketInfo:
    """One binary market as the venue lists it (Polymarket's market fields): a configured
    binary market, or one outcome of a neg-risk event."""

    slug: str
    question: str
    condition_id: str  # 0x hex
    question_id: str  # 0x hex: keccak256(slug), or the adapter's (market id + index)
    outcomes: list[str]
    token_ids: list[str]  # decimal uint256 position ids, in outcome order (YES, NO)
    fee_rate: Decimal
    tick_size: Decimal
    min_order_size: Decimal
    neg_risk: bool = False  # an event's outcome: WCOL positions, the neg-risk exchange
    fee_exponent: int = 1
    neg_risk_market_id: str = ""  # 0x hex, the adapter's market id of the event (neg risk only)
    event_slug: str = ""
    outcome: str = ""  # the event outcome's name
    placeholder: bool = False  # a placeholder outcome of an augmented event
    other: bool = False  # the "Other" outcome of an augmented event

    @property
    def partition(self) -> list[int]:
        """The full partition: index set of outcome i is 1 << i (split / merge argument)."""
        return [1 << i for i in range(len(self.outcomes))]


@dataclass(frozen=True)
class EventInfo:
    """One neg-risk event: a NegRiskAdapter market, one question (binary market) per outcome."""

    slug: str
    title: str
    market_id: str  # 0x hex, the adapter's market id
    fee_bips: int  # convertPositions' fee, out of 10_000
    condition_ids: list[str]  # 0x hex, in question order
    outcomes: list[str]  # named outcomes, then "Placeholder 1..n", then "Other"
    placeholders: int  # how many outcomes after the named ones are placeholders
    other: bool  # the last outcome is "Other"
    question_ids: list[str]  # 0x hex, in question order (reportOutcome's argument)
    market_slugs: list[str]  # the MarketInfo slug of each outcome


@dataclass(frozen=True)
class Addresses:
    collateral: str
    ctf: str
    exchange: str
    neg_risk_adapter: str
    neg_risk_exchange: str
    wcol: str


@dataclass(frozen=True)
class Deployment:
    collateral: str
    ctf: str
    exchange: str  # the standard Settlement instance
    operator: str
    trader: str
    markets: list[MarketInfo]  # binary markets, then every event's outcomes
    neg_risk_adapter: str = ""
    neg_risk_exchange: str = ""  # the neg-risk Settlement instance
    wcol: str = ""
    events: list[EventInfo] = field(default_factory=list)

    def to_json(self) -> dict:
        """JSON-safe dict (Decimals as strings)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    @classmethod
    def from_json(cls, raw: dict) -> Deployment:
        """The inverse of to_json."""
        decimals = ("fee_rate", "tick_size", "min_order_size")
        markets = [MarketInfo(**{**m, **{k: Decimal(m[k]) for k in decimals}}) for m in raw["markets"]]
        events = [EventInfo(**e) for e in raw.get("events", [])]
        return cls(**{**raw, "markets": markets, "events": events})


# ---------------------------------------------------------------- ids


def contract_addresses(chain_id: int) -> tuple[str, str, str]:
    """(collateral, conditional tokens, exchange) as py-clob-client-v2 knows them."""
    a = addresses(chain_id)
    return a.collateral, a.ctf, a.exchange


def addresses(chain_id: int) -> Addresses:
    """Every contract address of the sandbox world for `chain_id`."""
    c = get_contract_config(chain_id)
    return Addresses(
        collateral=to_checksum_address(c.collateral), ctf=to_checksum_address(c.conditional_tokens),
        exchange=to_checksum_address(c.exchange_v2), neg_risk_adapter=to_checksum_address(c.neg_risk_adapter),
        neg_risk_exchange=to_checksum_address(c.neg_risk_exchange_v2), wcol=to_checksum_address(WCOL_ADDRESS),
    )


def event_outcomes(event: VenueEvent) -> list[tuple[str, bool, bool]]:
    """(name, placeholder, other) of each question of `event`, in question order."""
    return ([(name, False, False) for name in event.outcomes]
            + [(PLACEHOLDER.format(i), True, False) for i in range(1, event.placeholders + 1)]
            + ([(OTHER, False, True)] if event.other else []))


def _event_market_id(event: VenueEvent, oracle: str) -> bytes:
    return neg_risk_market_id(oracle, event.convert_fee_bips, event.slug.encode())


def market_infos(cfg: Config, operator_address: str) -> list[MarketInfo]:
    """Every binary condition (the configured markets, then each event's outcomes) with its
    ids, computed without a chain (the venue lists markets before the chain is up); equal
    to what the contracts derive."""
    a, venue = addresses(cfg.chain.chain_id), _venue(cfg)
    infos = []
    for m in venue.markets:
        qid = question_id(m.slug)
        cid = condition_id(operator_address, qid, 2)
        infos.append(MarketInfo(
            slug=m.slug, question=m.question, condition_id="0x" + cid.hex(), question_id="0x" + qid.hex(),
            outcomes=list(m.outcomes), token_ids=[str(t) for t in binary_position_ids(a.collateral, cid)],
            fee_rate=m.fee_rate, tick_size=m.tick_size, min_order_size=m.min_order_size,
            fee_exponent=m.fee_exponent,
        ))
    for e in venue.events:
        market_id = _event_market_id(e, operator_address)
        for i, (name, placeholder, other) in enumerate(event_outcomes(e)):
            qid = neg_risk_question_id(market_id, i)
            cid = condition_id(a.neg_risk_adapter, qid, 2)
            infos.append(MarketInfo(
                slug=f"{e.slug}-{i}", question=f"{e.title or e.slug}: {name}?", condition_id="0x" + cid.hex(),
                question_id="0x" + qid.hex(), outcomes=["Yes", "No"],
                token_ids=[str(t) for t in binary_position_ids(a.wcol, cid)], fee_rate=e.fee_rate,
                tick_size=e.tick_size, min_order_size=e.min_order_size, neg_risk=True, fee_exponent=e.fee_exponent,
                neg_risk_market_id="0x" + market_id.hex(), event_slug=e.slug, outcome=name, placeholder=placeholder,
                other=other,
            ))
    return infos


def event_infos(cfg: Config, operator_address: str) -> list[EventInfo]:
    """Every configured neg-risk event with its adapter ids (no chain needed)."""
    markets = [m for m in market_infos(cfg, operator_address) if m.neg_risk]
    infos = []
    for e in _venue(cfg).events:
        mine = [m for m in markets if m.event_slug == e.slug]
        infos.append(EventInfo(
            slug=e.slug, title=e.title, market_id="0x" + _event_market_id(e, operator_address).hex(),
            fee_bips=e.convert_fee_bips, condition_ids=[m.condition_id for m in mine],
            outcomes=[m.outcome for m in mine], placeholders=e.placeholders, other=e.other,
            question_ids=[m.question_id for m in mine], market_slugs=[m.slug for m in mine],
        ))
    return infos


# ---------------------------------------------------------------- small helpers


@cache
def _abi(name: str) -> list:
    return load_artifact(name)["abi"]


def contract(w3: Web3, name: str, address: str) -> Contract:
    """A web3 contract for `name` (one of sandbox.contracts.build.CONTRACTS) at `address`."""
    return w3.eth.contract(address=to_checksum_address(address), abi=_abi(name))


def balances(w3: Web3, deployment: Deployment, address: str) -> dict[str, int]:
    """{"collateral": units, <token id>: shares units, ...} of `address`, two calls."""
    owner = to_checksum_address(address)
    ids = [int(t) for m in deployment.markets for t in m.token_ids]
    ctf = contract(w3, "ConditionalTokens", deployment.ctf)
    held = ctf.functions.balanceOfBatch([owner] * len(ids), ids).call() if ids else []
    out = {"collateral": contract(w3, "Collateral", deployment.collateral).functions.balanceOf(owner).call()}
    out.update({str(i): b for i, b in zip(ids, held, strict=True)})
    return out


def connect(url: str, timeout: float = 10.0) -> Web3:
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))


def wait_for_chain(url: str, timeout: float = 30.0, *, clock: Clock | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> Web3:
    """Poll `url` until the node answers eth_chainId; returns a connected Web3."""
    clock = clock or SystemClock()
    w3 = connect(url)
    deadline = clock.monotonic_ns() + int(timeout * 1e9)
    while True:
        try:
            w3.eth.chain_id  # noqa: B018 - the request is the probe
            return w3
        except Exception as exc:  # connection refused, timeout, half-started node
            if clock.monotonic_ns() > deadline:
                raise BootstrapError(f"no chain answering at {url} within {timeout}s: {exc}") from exc
        sleep(0.1)


def _rpc(w3: Web3, method: str, params: list) -> object:
    resp = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in resp:
        raise BootstrapError(f"{method} failed: {resp['error']}")
    return resp.get("result")


def _venue(cfg: Config) -> Venue:
    if cfg.sandbox is None:
        raise BootstrapError("the config has no `sandbox` section: there is no sandbox world to bootstrap")
    return cfg.sandbox.venue


# ---------------------------------------------------------------- transactions


class _Batch:
    """Operator transactions with consecutive explicit nonces, sent at once and then
    awaited together: one block with --block-time 2, instant with automine."""

    def __init__(self, w3: Web3, account: LocalAccount) -> None:
        self.w3, self.account = w3, account
        self.nonce = w3.eth.get_transaction_count(account.address, "pending")
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        self.tip = w3.eth.max_priority_fee
        self.max_fee = 2 * base + self.tip  # room for two base-fee rises before inclusion
        self.chain_id = w3.eth.chain_id
        self.sent: list[tuple[str, dict, bytes]] = []

    def send(self, label: str, fn: ContractFunction) -> None:
        tx = fn.build_transaction({
            "from": self.account.address, "nonce": self.nonce, "gas": GAS_LIMIT, "chainId": self.chain_id,
            "maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.tip,
        })
        signed = self.account.sign_transaction(tx)
        self.sent.append((label, tx, self.w3.eth.send_raw_transaction(signed.raw_transaction)))
        self.nonce += 1

    def wait(self, timeout: float = RECEIPT_TIMEOUT_SECONDS) -> None:
        for label, tx, h in self.sent:
            receipt = self.w3.eth.wait_for_transaction_receipt(h, timeout=timeout, poll_latency=0.05)
            if receipt["status"] != 1:
                raise BootstrapError(f"bootstrap step {label} reverted (tx {h.hex()}){self._why(tx)}")

    def _why(self, tx: dict) -> str:
        # Replaying on the current state usually names the require() that failed.
        try:
            self.w3.eth.call({k: tx[k] for k in ("from", "to", "data")})
        except Exception as exc:
            return f": {exc}"
        return ""


def _place_code(w3: Web3, name: str, address: str) -> None:
    runtime = bytes.fromhex(load_artifact(name)["deployedBytecode"][2:])
    if bytes(w3.eth.get_code(address)) != runtime:
        # New chain, or the contract was rebuilt: storage is kept, only code changes.
        _rpc(w3, "anvil_setCode", [address, "0x" + runtime.hex()])


def _top_up_gas(w3: Web3, address: str) -> None:
    if w3.eth.get_balance(address) < POL_FLOOR:
        _rpc(w3, "anvil_setBalance", [address, hex(POL_TOP_UP)])


def _by_signature(c: Contract, signature: str, *args: object) -> ContractFunction:
    """An overloaded function (the adapter's split has the CTF's 5-argument form too)."""
    return c.get_function_by_signature(signature)(*args)


@dataclass
class _World:
    """What one bootstrap works with: the batch, the contracts, the parties."""

    batch: _Batch
    a: Addresses
    op: str
    trader: str
    coll: Contract
    ctf: Contract
    adapter: Contract
    exchanges: dict[str, Contract]  # label -> Settlement instance


def _connect_anvil(cfg: Config, rpc_url: str | None, timeout: float) -> Web3:
    w3 = wait_for_chain(rpc_url or cfg.chain.rpc_url, timeout)
    client = str(_rpc(w3, "web3_clientVersion", []))
    if not client.lower().startswith("anvil"):
        raise BootstrapError(f"refusing to bootstrap on {client!r}: the sandbox world is for anvil only")
    if w3.eth.chain_id != cfg.chain.chain_id:
        raise BootstrapError(f"the node's chain id is {w3.eth.chain_id}, the config says {cfg.chain.chain_id}")
    return w3


def _initialize(w: _World, venue: Venue) -> None:
    """One-shot initializations, in dependency order (the adapter takes WCOL, the neg-risk
    exchange reads WCOL from the adapter). A fresh collateral means a new world: only then
    is the trader funded, right after, in the same batch."""
    coll, adapter, a, op = w.coll.functions, w.adapter.functions, w.a, w.op
    if not coll.initialized().call():
        w.batch.send("Collateral.initialize", coll.initialize(op))
        if venue.trader_funding > 0:
            w.batch.send("mint(trader)", coll.mint(w.trader, to_micro(venue.trader_funding)))
    elif coll.admin().call() != op:
        raise BootstrapError(f"pUSD admin is {coll.admin().call()}, not the operator {op}")
    if not adapter.initialized().call():
        w.batch.send("NegRiskAdapter.initialize", adapter.initialize(op, a.ctf, a.collateral, a.wcol, op))
    elif ((adapter.ctf().call(), adapter.col().call(), adapter.wcol().call(), adapter.isAdmin(op).call())
          != (a.ctf, a.collateral, a.wcol, True)):
        raise BootstrapError("NegRiskAdapter was initialized with another CTF, collateral, WCOL or admin")
    for label, nr, positions in (("Settlement", ZERO_ADDRESS, a.collateral),
                                 ("NegRiskSettlement", a.neg_risk_adapter, a.wcol)):
        f = w.exchanges[label].functions
        if not f.initialized().call():
            w.batch.send(f"{label}.initialize", f.initialize(op, a.collateral, a.ctf, nr))
        elif (f.admin().call(), f.collateral().call(), f.ctf().call(), f.negRiskAdapter().call(),
              f.positionCollateral().call()) != (op, a.collateral, a.ctf, nr, positions):
            raise BootstrapError(f"{label} was initialized with another admin, collateral, CTF or adapter")
        if not f.isOperator(op).call():
            w.batch.send(f"{label}.addOperator", f.addOperator(op))


def _price_feed(w3: Web3, batch: _Batch, address: str, op: str, venue: Venue) -> None:
    """The sandbox's POL / USD feed where executor.pol_price_feed points (Chainlink's address
    on Polygon), answering sandbox.venue.pol_usdc_price (8 decimals, as Chainlink's)."""
    address = to_checksum_address(address)
    _place_code(w3, "PriceFeed", address)
    feed = contract(w3, "PriceFeed", address).functions
    if not feed.initialized().call():
        batch.send("PriceFeed.initialize", feed.initialize(op))
    answer = to_micro(venue.pol_usdc_price) * 100  # 1e-6 -> 1e-8
    if feed.latestRoundData().call()[1] != answer:
        batch.send("PriceFeed.setAnswer", feed.setAnswer(answer))


def _prepare(w: _World, venue: Venue, markets: list[MarketInfo], events: list[EventInfo]) -> None:
    """Binary conditions with the operator as oracle; each event's market and questions
    through the adapter (questions are numbered in order: only the missing tail is added)."""
    ctf, adapter = w.ctf.functions, w.adapter.functions
    for m in markets:
        if not m.neg_risk and ctf.getOutcomeSlotCount(bytes.fromhex(m.condition_id[2:])).call() == 0:
            w.batch.send(f"prepareCondition({m.slug})",
                         ctf.prepareCondition(w.op, bytes.fromhex(m.question_id[2:]), len(m.outcomes)))
    for e, info in zip(venue.events, events, strict=True):
        market_id = bytes.fromhex(info.market_id[2:])
        if adapter.getOracle(market_id).call() == ZERO_ADDRESS:
            w.batch.send(f"prepareMarket({e.slug})", adapter.prepareMarket(e.convert_fee_bips, e.slug.encode()))
            prepared = 0
        else:
            prepared = adapter.getQuestionCount(market_id).call()
        for i in range(prepared, len(info.outcomes)):
            w.batch.send(f"prepareQuestion({info.market_slugs[i]})",
                         adapter.prepareQuestion(market_id, info.outcomes[i].encode()))


def _fund_operator(w: _World, venue: Venue, markets: list[MarketInfo]) -> None:
    """Split each condition's complete sets up to operator_inventory (the outcome with the
    fewest shares decides; neg-risk ones through the adapter); the operator keeps
    operator_inventory collateral besides, to pay traders who sell. Approvals first."""
    coll, ctf, op = w.coll.functions, w.ctf.functions, w.op
    inventory = to_micro(venue.operator_inventory)
    splits = []
    for m in markets:
        held = ctf.balanceOfBatch([op] * len(m.token_ids), [int(t) for t in m.token_ids]).call()
        if min(held) < inventory:
            splits.append((m, inventory - min(held)))
    missing = inventory + sum(amount for _, amount in splits) - coll.balanceOf(op).call()
    if missing > 0:
        w.batch.send("mint(operator)", coll.mint(op, missing))
    spenders = {"CTF": w.a.ctf, "NegRiskAdapter": w.a.neg_risk_adapter,
                **{label: ex.address for label, ex in w.exchanges.items()}}
    for label, spender in spenders.items():
        if coll.allowance(op, spender).call() != MAX_UINT:
            w.batch.send(f"approve({label})", coll.approve(spender, MAX_UINT))
        if label != "CTF" and not ctf.isApprovedForAll(op, spender).call():
            w.batch.send(f"setApprovalForAll({label})", ctf.setApprovalForAll(spender, True))
    for m, amount in splits:
        cid = bytes.fromhex(m.condition_id[2:])
        if m.neg_risk:
            w.batch.send(f"adapter.splitPosition({m.slug})",
                         _by_signature(w.adapter, "splitPosition(bytes32,uint256)", cid, amount))
        else:
            w.batch.send(f"splitPosition({m.slug})",
                         ctf.splitPosition(w.a.collateral, ZERO32, cid, m.partition, amount))


def bootstrap(cfg: Config, rpc_url: str | None = None, *, timeout: float = RECEIPT_TIMEOUT_SECONDS) -> Deployment:
    """Bring the anvil at `rpc_url` (default cfg.chain.rpc_url) to the configured world:
    contracts placed and initialized, conditions and neg-risk markets prepared, the trader
    funded if the world is new, the operator holding collateral and `operator_inventory`
    complete sets per condition, its approvals in place."""
    venue = _venue(cfg)
    w3 = _connect_anvil(cfg, rpc_url, timeout)
    mnemonic = cfg.sandbox.chain.mnemonic if cfg.sandbox else ANVIL_MNEMONIC
    op = dev_account(venue.operator_index, mnemonic)
    trader = load_wallet(cfg).address
    a = addresses(cfg.chain.chain_id)
    code = (("Collateral", a.collateral), ("ConditionalTokens", a.ctf), ("Settlement", a.exchange),
            ("Settlement", a.neg_risk_exchange), ("WrappedCollateral", a.wcol), ("NegRiskAdapter", a.neg_risk_adapter))
    for name, addr in code:
        _place_code(w3, name, addr)
    w = _World(
        batch=_Batch(w3, op), a=a, op=op.address, trader=trader, coll=contract(w3, "Collateral", a.collateral),
        ctf=contract(w3, "ConditionalTokens", a.ctf), adapter=contract(w3, "NegRiskAdapter", a.neg_risk_adapter),
        exchanges={"Settlement": contract(w3, "Settlement", a.exchange),
                   "NegRiskSettlement": contract(w3, "Settlement", a.neg_risk_exchange)},
    )
    _top_up_gas(w3, op.address)
    if not w.coll.functions.initialized().call():
        _top_up_gas(w3, trader)  # gas money too: only for a new world
    markets, events = market_infos(cfg, op.address), event_infos(cfg, op.address)
    _initialize(w, venue)
    if cfg.executor.pol_price_feed:
        _price_feed(w3, w.batch, cfg.executor.pol_price_feed, op.address, venue)
    _prepare(w, venue, markets, events)
    _fund_operator(w, venue, markets)
    w.batch.wait(timeout)
    return Deployment(collateral=a.collateral, ctf=a.ctf, exchange=a.exchange, operator=op.address, trader=trader,
                      markets=markets, neg_risk_adapter=a.neg_risk_adapter, neg_risk_exchange=a.neg_risk_exchange,
                      wcol=a.wcol, events=events)


def main(argv: list[str] | None = None) -> int:
    from config.loader import ConfigError, load

    parser = argparse.ArgumentParser(prog="python -m sandbox.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="config file (default: $POLYARB_CONFIG, else the sandbox default)")
    parser.add_argument("--rpc", help="anvil RPC URL (default: chain.rpc_url of the config)")
    args = parser.parse_args(argv)
    try:
        deployment = bootstrap(load(args.config), args.rpc)
    except (BootstrapError, ConfigError) as exc:
        print(f"bootstrap failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(deployment.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
