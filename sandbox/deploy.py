"""The sandbox's on-chain world, bootstrapped idempotently on anvil.

    python -m sandbox.deploy [--config PATH] [--rpc URL]   # prints the Deployment as JSON

Our three contracts are placed at the REAL Polygon addresses py-clob-client-v2 uses for
the configured chain id (collateral, conditional_tokens, exchange_v2), so every client
works unchanged against the sandbox. anvil_setCode runs no constructor: each contract is
then set up through its one-shot `initialize`.

Every step checks the chain first and acts only when needed, so the venue runs this at
each start: a second run on a set-up chain sends no transaction. All transactions come
from the venue operator (dev account `sandbox.venue.operator_index`); the trading wallet
only receives collateral (its own approvals are the executor's job, through the nonce
authority). Money is integer 1e-6 units everywhere; config amounts are exact Decimals.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from eth_abi.packed import encode_packed
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from py_clob_client_v2.config import get_contract_config
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction

from actors.domain.money import to_micro
from actors.domain.wallet import ANVIL_MNEMONIC, dev_account, load_wallet
from actors.runtime.clock import Clock, SystemClock
from config.schema import Config, Venue
from sandbox.contracts.build import load_artifact

MAX_UINT = 2**256 - 1
ZERO32 = b"\x00" * 32
POL_FLOOR = 100 * 10**18  # top up an account's gas money below this ...
POL_TOP_UP = 1000 * 10**18  # ... to this (hysteresis: not at every restart)
# Explicit gas limits: the whole bootstrap is sent as one batch of consecutive nonces, so
# a later transaction (a split) cannot be estimated before an earlier one (the mint) is
# mined. 1M covers the largest step (a 256-slot prepareCondition stays under it) with room.
GAS_LIMIT = 1_000_000
RECEIPT_TIMEOUT_SECONDS = 60.0


class BootstrapError(RuntimeError):
    """The chain cannot be brought to the configured state; the message says why."""


@dataclass(frozen=True)
class MarketInfo:
    """One sandbox market as the venue lists it (Polymarket's market fields)."""

    slug: str
    question: str
    condition_id: str  # 0x hex
    question_id: str  # 0x hex, keccak256(slug)
    outcomes: list[str]
    token_ids: list[str]  # decimal uint256 position ids, in outcome order
    fee_rate: Decimal
    tick_size: Decimal
    min_order_size: Decimal
    neg_risk: bool = False  # one condition with n slots, not Polymarket's n binary conditions

    @property
    def partition(self) -> list[int]:
        """The full partition: index set of outcome i is 1 << i (split / merge argument)."""
        return [1 << i for i in range(len(self.outcomes))]


@dataclass(frozen=True)
class Deployment:
    collateral: str
    ctf: str
    exchange: str  # the Settlement contract
    operator: str
    trader: str
    markets: list[MarketInfo]

    def to_json(self) -> dict:
        """JSON-safe dict (Decimals as strings)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


# ---------------------------------------------------------------- ids (as the CTF derives them)


def question_id(slug: str) -> bytes:
    return keccak(slug.encode())


def condition_id(oracle: str, question: bytes, outcome_slot_count: int) -> bytes:
    return keccak(encode_packed(["address", "bytes32", "uint256"], [oracle, question, outcome_slot_count]))


def collection_id(parent: bytes, condition: bytes, index_set: int) -> bytes:
    return keccak(encode_packed(["bytes32", "bytes32", "uint256"], [parent, condition, index_set]))


def position_id(collateral: str, collection: bytes) -> int:
    return int.from_bytes(keccak(encode_packed(["address", "bytes32"], [collateral, collection])), "big")


def contract_addresses(chain_id: int) -> tuple[str, str, str]:
    """(collateral, conditional tokens, exchange) as py-clob-client-v2 knows them."""
    c = get_contract_config(chain_id)
    return (to_checksum_address(c.collateral), to_checksum_address(c.conditional_tokens),
            to_checksum_address(c.exchange_v2))


def market_infos(cfg: Config, operator_address: str) -> list[MarketInfo]:
    """Every configured market with its ids, computed without a chain (the venue lists
    markets before the chain is up); equal to what the contract derives."""
    collateral, _, _ = contract_addresses(cfg.chain.chain_id)
    infos = []
    for m in _venue(cfg).markets:
        qid = question_id(m.slug)
        cid = condition_id(operator_address, qid, len(m.outcomes))
        ids = [str(position_id(collateral, collection_id(ZERO32, cid, 1 << i))) for i in range(len(m.outcomes))]
        infos.append(MarketInfo(
            slug=m.slug, question=m.question, condition_id="0x" + cid.hex(), question_id="0x" + qid.hex(),
            outcomes=list(m.outcomes), token_ids=ids, fee_rate=m.fee_rate, tick_size=m.tick_size,
            min_order_size=m.min_order_size,
        ))
    return infos


# ---------------------------------------------------------------- small helpers


@cache
def _abi(name: str) -> list:
    return load_artifact(name)["abi"]


def contract(w3: Web3, name: str, address: str) -> Contract:
    """A web3 contract for `name` (Collateral, ConditionalTokens, Settlement) at `address`."""
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


def bootstrap(cfg: Config, rpc_url: str | None = None, *, timeout: float = RECEIPT_TIMEOUT_SECONDS) -> Deployment:
    """Bring the anvil at `rpc_url` (default cfg.chain.rpc_url) to the configured world:
    contracts placed and initialized, conditions prepared, trader funded, operator holding
    collateral and `operator_inventory` complete sets per market, approvals in place."""
    venue = _venue(cfg)
    w3 = wait_for_chain(rpc_url or cfg.chain.rpc_url, timeout)
    client = str(_rpc(w3, "web3_clientVersion", []))
    if not client.lower().startswith("anvil"):
        raise BootstrapError(f"refusing to bootstrap on {client!r}: the sandbox world is for anvil only")
    if w3.eth.chain_id != cfg.chain.chain_id:
        raise BootstrapError(f"the node's chain id is {w3.eth.chain_id}, the config says {cfg.chain.chain_id}")

    mnemonic = cfg.sandbox.chain.mnemonic if cfg.sandbox else ANVIL_MNEMONIC
    op = dev_account(venue.operator_index, mnemonic)
    trader = load_wallet(cfg).address
    collateral_addr, ctf_addr, exchange_addr = contract_addresses(cfg.chain.chain_id)
    for addr in (op.address, trader):
        _top_up_gas(w3, addr)
    for name, addr in (("Collateral", collateral_addr), ("ConditionalTokens", ctf_addr),
                       ("Settlement", exchange_addr)):
        _place_code(w3, name, addr)
    coll = contract(w3, "Collateral", collateral_addr).functions
    ctf = contract(w3, "ConditionalTokens", ctf_addr).functions
    ex = contract(w3, "Settlement", exchange_addr).functions
    markets = market_infos(cfg, op.address)
    batch = _Batch(w3, op)

    # 1. one-shot initialization; an existing admin must be our operator, else minting fails later.
    if not coll.initialized().call():
        batch.send("Collateral.initialize", coll.initialize(op.address))
    elif coll.admin().call() != op.address:
        raise BootstrapError(f"pUSD admin is {coll.admin().call()}, not the operator {op.address}")
    if not ex.initialized().call():
        batch.send("Settlement.initialize", ex.initialize(op.address, collateral_addr, ctf_addr))
    elif (ex.admin().call(), ex.collateral().call(), ex.ctf().call()) != (op.address, collateral_addr, ctf_addr):
        raise BootstrapError("Settlement was initialized with another admin, collateral or CTF")
    if not ex.isOperator(op.address).call():
        batch.send("Settlement.addOperator", ex.addOperator(op.address))

    # 2. conditions: the operator is the oracle of every market.
    for m in markets:
        if ctf.getOutcomeSlotCount(bytes.fromhex(m.condition_id[2:])).call() == 0:
            batch.send(f"prepareCondition({m.slug})",
                       ctf.prepareCondition(op.address, bytes.fromhex(m.question_id[2:]), len(m.outcomes)))

    # 3. funding: top the trader up to trader_funding; split each market's complete sets up to
    # operator_inventory (the outcome with the fewest shares decides); the operator keeps
    # operator_inventory collateral besides, to pay traders who sell.
    trader_target, inventory = to_micro(venue.trader_funding), to_micro(venue.operator_inventory)
    trader_has = coll.balanceOf(trader).call()
    if trader_has < trader_target:
        batch.send("mint(trader)", coll.mint(trader, trader_target - trader_has))
    splits = []
    for m in markets:
        held = ctf.balanceOfBatch([op.address] * len(m.token_ids), [int(t) for t in m.token_ids]).call()
        if min(held) < inventory:
            splits.append((m, inventory - min(held)))
    missing = inventory + sum(a for _, a in splits) - coll.balanceOf(op.address).call()
    if missing > 0:
        batch.send("mint(operator)", coll.mint(op.address, missing))
    for spender, label in ((ctf_addr, "CTF"), (exchange_addr, "Settlement")):
        if coll.allowance(op.address, spender).call() != MAX_UINT:
            batch.send(f"approve({label})", coll.approve(spender, MAX_UINT))
    if not ctf.isApprovedForAll(op.address, exchange_addr).call():
        batch.send("setApprovalForAll(Settlement)", ctf.setApprovalForAll(exchange_addr, True))
    for m, amount in splits:
        batch.send(f"splitPosition({m.slug})", ctf.splitPosition(
            collateral_addr, ZERO32, bytes.fromhex(m.condition_id[2:]), m.partition, amount))
    batch.wait(timeout)

    return Deployment(collateral=collateral_addr, ctf=ctf_addr, exchange=exchange_addr, operator=op.address,
                      trader=trader, markets=markets)


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
