"""Sending one on-chain transaction without ever losing track of it.

    outcome = await sender.send(key, "merge", call)

- Price first: gas estimate x fee cap x POL price must stay within
  `trading.max_gas_cost` (USDC) before a nonce is even allocated.
- The nonce comes from the nonce authority under a request id derived from
  the execution key, so a restarted executor gets the SAME nonce back.
- Every signed hash is journaled and reported to the authority (mark_sent)
  BEFORE it is broadcast: a crash after the broadcast is always found again.
- Errors follow the retry policy's classification: `nonce too low` ->
  check our own hashes, else resync and take a new nonce; `replacement
  underpriced` -> bump fees; gas errors -> re-estimate; `already known` ->
  it is in the pool, watch it.
- A transaction not mined within `receipt_timeout` is replaced at the same
  nonce with fee cap AND tip raised by >= 10% + 1 wei (geth's rule, whatever
  the node tolerates), the cap at least today's base fee + the new tip, at
  most `max_fee_bumps` times and never past `max_fee_per_gas_gwei` or
  `max_gas_cost`; we keep watching every hash sent and never give up while
  one may still be mined (a bump that cannot be broadcast changes nothing),
  until `give_up_after` (then `StuckTransaction`: reconcile later). A first
  broadcast whose outcome is unknown is a `StuckTransaction` too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.domain.fees import gas_fee
from actors.domain.money import from_micro, to_micro
from actors.executor.errors import AlreadySent, Remedy
from actors.executor.journal import Journal
from actors.executor.ports import ChainPort, Receipt
from actors.executor.retry_policy import RetryPolicy
from actors.runtime.clock import doubling
from config.schema import Config

log = logging.getLogger(__name__)
GWEI = 10**9


class GasTooExpensive(Exception):
    """The transaction would cost more than trading.max_gas_cost."""


class StuckTransaction(Exception):
    """Not mined within give_up_after_seconds; the nonce is still ours to reconcile."""


class TxReverted(Exception):
    def __init__(self, receipt: Receipt, gas_cost: int) -> None:
        super().__init__(f"transaction {receipt.tx_hash} reverted")
        self.receipt, self.gas_cost = receipt, gas_cost


class _Mined(Exception):
    def __init__(self, receipt: Receipt) -> None:
        self.receipt = receipt


@dataclass
class TxOutcome:
    nonce: int
    tx_hash: str
    receipt: Receipt
    gas_cost: int  # micro-USDC actually burnt
    hashes: list[str] = field(default_factory=list)
    bumps: int = 0


def bumped(value: int, percent: int) -> int:
    return value * (100 + percent) // 100 + 1


class OnChainSender:
    def __init__(self, chain: ChainPort, nonces: Any, retry: RetryPolicy, clock: Any, journal: Journal,
                 config: Callable[[], Config], pol_price: Callable[[], int] | None = None) -> None:
        self.chain, self.nonces, self.retry, self.clock, self.journal = chain, nonces, retry, clock, journal
        self._config = config
        # micro-USDC per POL that gas is booked at (the feed's, or executor.pol_usdc_price).
        self._pol_price = pol_price or (lambda: to_micro(self._config().executor.pol_usdc_price))
        self._gas_seen: dict[tuple[Any, str], int] = {}
        self._fees: tuple[int, tuple[int, int]] | None = None
        self.counts = {"sent": 0, "mined": 0, "reverted": 0, "bumps": 0, "nonce_resyncs": 0, "reestimates": 0,
                       "already_known": 0, "too_expensive": 0, "stuck": 0, "unknown_sends": 0,
                       "rebroadcast_errors": 0, "bumps_capped": 0, "receipt_polls": 0, "confirm_errors": 0}

    # A pre-trade check may use fees this fresh instead of asking the node: it
    # sits on the tick-to-trade path. The send itself always asks.
    QUOTE_MAX_AGE_NS = 2_000_000_000

    async def quote(self, call: dict[str, Any], gas_hint: int, *, cached: bool = False) -> tuple[int, int, int, int]:
        """(gas limit, max fee, tip, worst-case cost in micro-USDC) for a call.

        cached=True: reuse recent fees, and the configured gas budget when no
        estimate of this call shape is known (a merge cannot be estimated before
        the tokens are held anyway)."""
        cfg = self._config()
        shape = (call.get("to"), str(call.get("data", ""))[:10])
        now = self.clock.monotonic_ns()
        if cached:
            gas = self._gas_seen.get(shape, gas_hint)
        else:
            try:
                gas = await self.retry.run(lambda: self.chain.estimate_gas(call), dependency="chain")
                # Headroom: state moves between estimate and mining. A concurrent merge that
                # empties a token balance makes our split write a zero slot again (+20k gas
                # each): 20% alone ran splits out of gas. Never below the configured budget.
                gas = max(gas * 12 // 10, gas_hint)
                self._gas_seen[shape] = gas
            except Exception as exc:  # cannot estimate yet (e.g. tokens not held): use the budget
                log.debug("gas estimate failed, using the configured budget: %s", exc)
                gas = gas_hint
        if cached and self._fees is not None and now - self._fees[0] < self.QUOTE_MAX_AGE_NS:
            base, tip = self._fees[1]
        else:
            base, tip = await self.retry.run(self.chain.fees, dependency="chain")
            self._fees = (now, (base, tip))
        tip = max(tip, cfg.executor.min_priority_fee_gwei * GWEI)
        cap = cfg.executor.max_fee_per_gas_gwei * GWEI
        if base + tip > cap:  # a fee cap the network would never mine
            self.counts["too_expensive"] += 1
            raise GasTooExpensive(f"base fee {base} + tip {tip} wei exceeds max_fee_per_gas_gwei")
        max_fee = min(2 * base + tip, cap)
        tip = min(tip, max_fee)
        return gas, max_fee, tip, gas_fee(gas, max_fee, self._pol_price())

    async def send(self, key: str, purpose: str, call: dict[str, Any], gas_hint: int,
                   prior: dict[str, Any] | None = None) -> TxOutcome:
        """Send `call` for execution `key`. `prior` is the journal's record of an
        earlier attempt (nonce, hashes): those are watched first, never re-sent blind."""
        cfg = self._config()
        deadline = self.clock.monotonic_ns() + int(cfg.executor.give_up_after_seconds * 1e9)
        if prior and prior.get("hashes"):
            for h in prior["hashes"]:
                r = await self.chain.receipt(h)
                if r is not None:
                    return await self._finish(r, {"nonce": prior["nonce"], "hashes": prior["hashes"], "bumps": 0})
        gas, max_fee, tip, worst = await self.quote(call, gas_hint)
        if worst > to_micro(cfg.trading.max_gas_cost):
            self.counts["too_expensive"] += 1
            raise GasTooExpensive(f"{purpose} would cost up to {from_micro(worst)} USDC in gas "
                                  f"> max_gas_cost {cfg.trading.max_gas_cost}")
        nonce = prior["nonce"] if prior and "nonce" in prior else await self.nonces.allocate_nonce(f"{key}:{purpose}")
        st: dict[str, Any] = {"nonce": nonce, "gas": gas, "max_fee": max_fee, "tip": tip,
                              "hashes": list(prior.get("hashes", [])) if prior else [], "bumps": 0, "resyncs": 0}
        try:
            try:
                await self._broadcast(key, purpose, call, st)
            except _Mined:
                raise
            except Exception as exc:
                found = self.retry.classify(exc)
                refused = found.remedy is Remedy.GIVE_UP and not found.ambiguous and len(st["hashes"]) <= 1
                if st["hashes"] and not refused:
                    # Signed, journaled, maybe in the pool: the outcome is not known.
                    self.counts["unknown_sends"] += 1
                    raise StuckTransaction(f"{purpose} nonce {st['nonce']}: broadcast outcome unknown ({exc}); "
                                           f"hashes {st['hashes']}") from exc
                raise
            while True:
                receipt = await self._watch(st, cfg.executor.receipt_timeout_seconds, deadline)
                if receipt is not None:
                    break
                if self.clock.monotonic_ns() >= deadline:
                    self.counts["stuck"] += 1
                    raise StuckTransaction(f"{purpose} nonce {st['nonce']} not mined; hashes {st['hashes']}")
                if self._bump(st):
                    try:
                        await self._broadcast(key, purpose, call, st)
                    except _Mined:
                        raise
                    except Exception as exc:
                        # An earlier attempt may still be mined: never leave it, keep watching.
                        self.counts["rebroadcast_errors"] += 1
                        log.warning("%s nonce %d: fee bump not broadcast (%s); still watching %s", purpose,
                                    st["nonce"], exc, st["hashes"])
        except _Mined as m:
            receipt = m.receipt
        return await self._finish(receipt, st)

    async def _finish(self, receipt: Receipt, st: dict[str, Any]) -> TxOutcome:
        try:
            await self.nonces.mark_confirmed(st["nonce"], receipt.tx_hash)
        except Exception as exc:
            # The receipt is the truth: the transaction is mined. The authority confirms
            # mined nonces from the chain by itself; an error here (it was busy, restarting,
            # slow with the chain) made a mined split look "not sent", and the books missed
            # 100 sets the chain held (the CI chaos profile).
            self.counts["confirm_errors"] += 1
            log.warning("nonce %d mined (%s); the authority did not take the confirm (%s): it confirms it from "
                        "the chain", st["nonce"], receipt.tx_hash, exc)
        price = self._pol_price()
        cost = gas_fee(receipt.gas_used, receipt.effective_gas_price, price)
        if receipt.status != 1:
            self.counts["reverted"] += 1
            raise TxReverted(receipt, cost)
        self.counts["mined"] += 1
        return TxOutcome(st["nonce"], receipt.tx_hash, receipt, cost, list(st["hashes"]), st["bumps"])

    async def refresh_fees(self) -> None:
        """Keep the cached fee quote warm (run every second by the actor)."""
        self._fees = (self.clock.monotonic_ns(), await self.chain.fees())

    def _bump(self, st: dict[str, Any]) -> bool:
        """Raise fee cap and tip for a replacement at the same nonce: by at least
        `fee_bump_percent` (a node refuses less), and the cap to at least today's
        base fee + the new tip (a base fee that rose since the quote). False, and
        nothing changed, once `max_fee_bumps` are used or the new cap would pass
        `max_fee_per_gas_gwei` or the gas would cost more than `max_gas_cost`:
        the attempts already sent are watched until they are mined or given up."""
        cfg = self._config()
        if st["bumps"] >= cfg.executor.max_fee_bumps:
            return False
        pct = cfg.executor.fee_bump_percent
        tip = bumped(st["tip"], pct)
        base = self._fees[1][0] if self._fees is not None else 0
        max_fee = max(bumped(st["max_fee"], pct), base + tip)
        cost = gas_fee(st["gas"], max_fee, self._pol_price())
        if max_fee > cfg.executor.max_fee_per_gas_gwei * GWEI or cost > to_micro(cfg.trading.max_gas_cost):
            self.counts["bumps_capped"] += 1
            return False
        st["tip"], st["max_fee"] = tip, max_fee
        st["bumps"] += 1
        self.counts["bumps"] += 1
        return True

    async def _broadcast(self, key: str, purpose: str, call: dict[str, Any], st: dict[str, Any]) -> None:
        cid = self._config().chain.chain_id

        async def send_once() -> str:
            tx = {**call, "chainId": cid, "nonce": st["nonce"], "gas": st["gas"], "maxFeePerGas": st["max_fee"],
                  "maxPriorityFeePerGas": st["tip"], "value": 0, "type": 2}
            tx_hash, raw = self.chain.sign(tx)
            if tx_hash not in st["hashes"]:
                st["hashes"].append(tx_hash)
                # Journal and report BEFORE broadcasting: a crash after it is always recoverable.
                self.journal.update(key, f"{purpose}_sent", **{purpose: {"nonce": st["nonce"],
                                                                         "hashes": st["hashes"]}})
                # The fees let a replacement outbid it; the raw lets the authority re-broadcast it.
                await self.nonces.mark_sent(st["nonce"], tx_hash, st["max_fee"], st["tip"], raw)
            await self.chain.send_raw(raw)
            self.counts["sent"] += 1
            return tx_hash

        async def bump(found: Any, error: BaseException) -> None:
            if not self._bump(st):  # no higher fee allowed: stop retrying this broadcast
                raise error

        async def resync(found: Any, error: BaseException) -> None:
            # Our own earlier attempt may be the one that used the nonce.
            for h in st["hashes"]:
                r = await self.chain.receipt(h)
                if r is not None:
                    raise _Mined(r)
            self.counts["nonce_resyncs"] += 1
            st["resyncs"] += 1
            await self.nonces.mark_confirmed(st["nonce"])  # consumed by someone else
            await self.nonces.resync()
            st["nonce"] = await self.nonces.allocate_nonce(f"{key}:{purpose}:r{st['resyncs']}")
            st["hashes"] = []

        async def reestimate(found: Any, error: BaseException) -> None:
            self.counts["reestimates"] += 1
            st["gas"] = (await self.chain.estimate_gas(call)) * 13 // 10

        try:
            await self.retry.run(send_once, dependency="chain", idempotent=True,
                                 remedies={Remedy.BUMP_FEE: bump, Remedy.RESYNC_NONCE: resync,
                                           Remedy.REESTIMATE_GAS: reestimate})
        except AlreadySent:
            self.counts["already_known"] += 1  # in the pool already: watch it
        except _Mined:
            raise
        except Exception as exc:
            found = self.retry.classify(exc)
            # Only a definite refusal by the node frees the nonce; after a
            # transport error the tx may be in the pool: leave it to reconciliation.
            if found.remedy is Remedy.GIVE_UP and not found.ambiguous and len(st["hashes"]) <= 1:
                if await self.chain.nonce_latest() <= st["nonce"]:
                    await self.nonces.mark_failed(st["nonce"])
            raise

    async def _watch(self, st: dict[str, Any], timeout: float, deadline: int) -> Receipt | None:  # noqa: ASYNC109 - on the injected clock
        end = min(self.clock.monotonic_ns() + int(timeout * 1e9), deadline)
        cfg = self._config().executor
        # Adaptive: an automined or fast chain answers within milliseconds, a 2 s block
        # after one; a flat sleep held every execution (and its worker) for its length.
        waits = doubling(cfg.receipt_poll_first_seconds, cfg.receipt_poll_seconds)
        while True:
            for h in list(st["hashes"]):
                try:
                    r = await self.chain.receipt(h)
                except Exception as exc:  # a flaky node: keep watching
                    log.debug("receipt lookup failed: %s", exc)
                    r = None
                if r is not None:
                    return r
            if self.clock.monotonic_ns() >= end:
                return None
            await self.clock.sleep(next(waits))
            self.counts["receipt_polls"] += 1

    def get_stats(self) -> dict[str, int]:
        return dict(self.counts)
