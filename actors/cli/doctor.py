"""`polyarb doctor`: the preflight before trading (`make live` runs it first).

Each check prints OK or FAIL, and a FAIL says how to fix it. It reads, never
writes: no transaction is sent, no state file is opened for writing (the API
key is derived, which the venue allows any number of times). A check that
needs an earlier one (the chain for the balances) is SKIP when that one failed.

    config     the file is valid; which world it is
    keys       the bus's CurveZMQ key pairs exist (bus.security)
    wallet     the trading key loads (env or keystore), and is no public dev key on a live profile
    chain      the node answers, with the configured chain id
    contracts  code at every contract address trading calls
    gas        POL for gas: enough for GAS_TRANSACTIONS transactions at today's fees
    pol-price  the POL / USD feed gas is priced at answers, fresh (or the static price, without one)
    collateral pUSD: above risk.min_collateral_balance and trading.max_position_size
    approvals  every allowance and operator approval the executor needs; the missing ones
               are those the executor sends by itself at its start
    state      the state folders hold this chain's books, not another world's
    venue      the CLOB answers /time, the clock is within MAX_SKEW_S of it, API credentials derive
    channels   the market and user WebSocket channels accept a connection
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from actors.domain.money import format_usdc, to_micro
from actors.runtime.clock import SystemClock
from config.schema import Config
from config.world import line, world

GAS_TRANSACTIONS = 50  # POL for this many transactions of GAS_PER_TX at today's fee cap
GAS_PER_TX = 300_000
MAX_SKEW_S = 5.0  # the venue's L2 auth signs a timestamp: a clock off by more is refused
TIMEOUT_S = 8.0
SANDBOX_STATE = "run/state"  # the sandbox's folder: `make reset` wipes it


@dataclass
class Check:
    name: str
    status: str  # OK, FAIL or SKIP
    detail: str
    fix: str = ""

    def render(self) -> str:
        out = f"{self.status:<4} {self.name:<10} {self.detail}"
        return out + (f"\n{'':<15}fix: {self.fix}" if self.fix else "")


class Doctor:
    def __init__(self, cfg: Config, path: Path) -> None:
        self.cfg, self.path = cfg, path
        self.checks: list[Check] = []
        self.wallet: Any = None
        self.chain: Any = None  # a Web3Chain once the node answered with the right chain id
        self.genesis = ""

    def ok(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, "OK", detail))

    def fail(self, name: str, detail: str, fix: str) -> None:
        self.checks.append(Check(name, "FAIL", detail, fix))

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, "SKIP", why))

    async def run(self) -> list[Check]:
        self.ok("config", f"{self.path} is valid; {line(world(self.cfg, self.path))}")
        self._keys()
        self._wallet()
        await self._guard("chain", self._chain)
        for name, step in (("contracts", self._contracts), ("gas", self._gas), ("pol-price", self._pol_price),
                           ("collateral", self._collateral),
                           ("approvals", self._approvals), ("state", self._state)):
            if self.chain is None:
                self.skip(name, "needs the chain")
            else:
                await self._guard(name, step)
        await self._guard("venue", self._venue)
        await self._guard("channels", self._channels)
        if self.chain is not None:
            await self.chain.close()
        return self.checks

    async def _guard(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await asyncio.wait_for(step(), TIMEOUT_S * 3)
        except Exception as exc:  # a check's own failure is its FAIL, never a traceback
            self.fail(name, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                      "see the message; `polyarb doctor` again once fixed")

    # -- the checks
    def _keys(self) -> None:
        sec = self.cfg.bus.security
        if not sec.enabled:
            self.ok("keys", "bus.security is off: loopback only")
            return
        from bus.curve import KeyError_ as CurveKeyError
        from bus.curve import KeyStore, identities

        try:
            store = KeyStore(sec.keys_dir)
            for name in identities(self.cfg):
                store.pair(name)
        except (CurveKeyError, OSError) as exc:
            self.fail("keys", str(exc), f"`polyarb --config {self.path} keys init` creates the missing key pairs")
            return
        self.ok("keys", f"{len(identities(self.cfg))} identities' key pairs in {sec.keys_dir}")

    def _wallet(self) -> None:
        from actors.domain.wallet import WalletError, load_wallet
        from config.schema import DevMnemonicWallet

        src = self.cfg.chain.wallet
        if isinstance(src, DevMnemonicWallet) and self.cfg.sandbox is None:
            self.fail("wallet", "chain.wallet is the public dev mnemonic on a live profile: anyone can spend it",
                      "chain.wallet: {source: env, env_var: POLYARB_PRIVATE_KEY} or a keystore")
            return
        try:
            self.wallet = load_wallet(self.cfg)
        except WalletError as exc:
            fix = (f"export {src.env_var}=0x<your key> (never in the config file)" if hasattr(src, "env_var")
                   else "check chain.wallet.path and its password variable")
            self.fail("wallet", f"no trading key: {exc}", fix)
            return
        self.ok("wallet", f"{self.wallet.address} (an EOA: it signs the orders and sends the merges and splits)")

    async def _chain(self) -> None:
        from actors.executor.web3_chain import Web3Chain

        c = self.cfg.chain
        try:
            url = c.url()
        except RuntimeError as exc:
            self.fail("chain", str(exc), f"export {c.rpc_url_env}=https://<your Polygon node>")
            return
        if self.wallet is None:
            self.skip("chain", "needs the wallet")
            return
        from web3 import AsyncHTTPProvider, AsyncWeb3

        w3 = AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": min(c.request_timeout_seconds, TIMEOUT_S)}))
        try:
            got = int(await w3.eth.chain_id)
        except Exception as exc:
            self.fail("chain", f"the node at {c.host()} does not answer: {_why(exc)}",
                      "check the URL and this machine's internet (a sandbox: `make run` starts its chain)")
            return
        finally:
            await w3.provider.disconnect()
        if got != c.chain_id:
            self.fail("chain", f"the node at {c.host()} is chain {got}, the config says chain.chain_id {c.chain_id}",
                      "point the RPC URL at a node of that chain (Polygon PoS is 137), or correct chain.chain_id")
            return
        try:
            chain = Web3Chain(url, self.wallet, c.chain_id, timeout=min(c.request_timeout_seconds, TIMEOUT_S))
        except Exception as exc:  # the official client knows no contracts of that chain
            self.fail("chain", f"no Polymarket contracts are known for chain {c.chain_id}: {_why(exc)}",
                      "Polymarket trades on Polygon PoS: chain.chain_id 137")
            return
        self.genesis = await chain.genesis_hash()
        self.chain = chain
        self.ok("chain", f"{c.host()} answers, chain {got}, genesis {self.genesis[:12]}…")

    async def _contracts(self) -> None:
        missing = await self.chain.contracts_missing()
        if missing:
            self.fail("contracts", "no code at " + ", ".join(f"{n} {a}" for n, a in missing),
                      "this node is not on the configured chain's network (or a sandbox not deployed yet: make run)")
            return
        self.ok("contracts", ", ".join(n for n, _ in self.chain.contracts()) + " have code")

    async def _gas(self) -> None:
        base, tip = await self.chain.fees()
        need = GAS_TRANSACTIONS * GAS_PER_TX * (2 * base + tip)
        have = await self.chain.pol_balance()
        text = f"POL {_pol(have)} for gas; {GAS_TRANSACTIONS} transactions at today's fees need {_pol(need)}"
        if have < need:
            self.fail("gas", text, f"send at least {_pol(need - have)} POL to {self.chain.address}")
        else:
            self.ok("gas", text)

    async def _pol_price(self) -> None:
        from actors.executor.pol_price import PolPrice
        from actors.runtime.clock import SystemClock

        e = self.cfg.executor
        if not e.pol_price_feed:
            self.ok("pol-price", f"gas priced at the static executor.pol_usdc_price {e.pol_usdc_price} USDC")
            return
        price = PolPrice(lambda: self.chain.price_feed(e.pol_price_feed), SystemClock(), lambda: self.cfg)
        await price.refresh()
        st = price.get_stats()
        if st["source"] != "feed":
            why = st["last_error"] or (f"its answer is {st['age_seconds']} s old (pol_price_max_age_seconds "
                                       f"{e.pol_price_max_age_seconds})")
            self.fail("pol-price", f"the feed {e.pol_price_feed} gives no usable price: {why}; gas would be priced "
                      f"at the static {e.pol_usdc_price}", "point executor.pol_price_feed at Chainlink's POL / USD "
                      "(Polygon: 0xAB594600376Ec9fD91F8e885dADF0CE036862dE0), or remove it to use the static price")
            return
        self.ok("pol-price", f"{st['usdc']} USDC from the feed {e.pol_price_feed[:10]}…, {st['age_seconds']} s old "
                             f"(static fallback {e.pol_usdc_price})")

    async def _collateral(self) -> None:
        have = await self.chain.collateral_balance()
        floor = self.cfg.risk.min_collateral_balance
        need = max(to_micro(floor) if floor is not None else 0, to_micro(self.cfg.trading.max_position_size))
        text = (f"pUSD {format_usdc(have)}; needs {format_usdc(need)} (trading.max_position_size"
                + (", risk.min_collateral_balance)" if floor is not None else ")"))
        if have < need:
            self.fail("collateral", text, f"deposit pUSD to {self.chain.address} (Polymarket's collateral)")
        else:
            self.ok("collateral", text)

    async def _approvals(self) -> None:
        missing = await self.chain.approvals_missing()
        targets = self.chain.approval_targets()
        if missing:
            self.fail("approvals", f"{len(missing)} of {len(targets)} missing: "
                      + "; ".join(f"{n} ({targets[n][0]})" for n in missing),
                      f"the executor sends these {len(missing)} transactions by itself when it starts (about "
                      f"{GAS_PER_TX // 3:,} gas each), or approve them yourself from {self.chain.address}; "
                      "doctor sends nothing")
            return
        self.ok("approvals", f"all {len(targets)} in place: " + ", ".join(targets))

    async def _state(self) -> None:
        cfg, address = self.cfg, self.chain.address.lower()
        problems = []
        for section, folder in (("executor", cfg.executor.state_dir), ("nonce", cfg.nonce.state_dir)):
            if cfg.sandbox is None and Path(folder) == Path(SANDBOX_STATE):
                problems.append(f"{section}.state_dir is {folder}, the sandbox's folder (`make reset` wipes it)")
        journal = Path(cfg.executor.state_dir) / f"executor-{cfg.chain.chain_id}-{address}.sqlite"
        ledger = Path(cfg.nonce.state_dir) / f"nonce-{cfg.chain.chain_id}-{address}.sqlite"
        for what, file, query in (("books", journal, "SELECT value FROM kv WHERE key='world'"),
                                  ("nonce ledger", ledger, "SELECT value FROM meta WHERE key='genesis_hash'")):
            recorded = _read_one(file, query)
            if recorded and recorded.lower() != self.genesis.lower():
                problems.append(f"the {what} {file} belong to another chain (genesis {recorded[:12]}…, this "
                                f"node's {self.genesis[:12]}…)")
        if problems:
            self.fail("state", "; ".join(problems),
                      "give this world state folders of its own (executor.state_dir, nonce.state_dir); a stale "
                      "sandbox's: `make reset`")
            return
        found = [p.name for p in (journal, ledger) if p.exists()]
        self.ok("state", f"{cfg.executor.state_dir}: " + (", ".join(found) + " of this chain" if found
                                                           else "no books yet (a first start)"))

    async def _venue(self) -> None:
        import aiohttp

        url = self.cfg.executor.clob_url.rstrip("/")
        host = urlsplit(url).netloc
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as s:
                clock = SystemClock()
                sent = clock.time()
                async with s.get(f"{url}/time") as resp:
                    body = await resp.text()
                    answered = clock.time()
        except Exception as exc:
            self.fail("venue", f"the CLOB at {host} does not answer: {_why(exc)}",
                      "check executor.clob_url and this machine's internet")
            return
        try:
            server = float(json.loads(body))
        except (ValueError, TypeError):
            self.fail("venue", f"{host}/time answered {resp.status} {body[:60]!r}, not a time",
                      "is executor.clob_url the CLOB's base URL (https://clob.polymarket.com)?")
            return
        skew = (sent + answered) / 2 - server
        if abs(skew) > MAX_SKEW_S:
            self.fail("venue", f"this clock is {skew:+.1f} s off the venue's", "sync the clock (chrony or "
                      "systemd-timesyncd): signed requests carry a timestamp")
            return
        creds = ""
        if self.wallet is not None:
            try:
                creds = await asyncio.to_thread(self._derive, url)
            except Exception as exc:
                self.fail("venue", f"{host} answers (clock {skew:+.2f} s) but the API key does not derive: "
                          f"{_why(exc)}", "the wallet must be able to sign (L1 auth); see the message")
                return
        self.ok("venue", f"{host} answers, clock {skew:+.2f} s off" + (f", API key {creds[:8]}… derived" if creds
                                                                          else ""))

    def _derive(self, url: str) -> str:
        from py_clob_client_v2.client import ClobClient

        from actors.executor.clob_venue import WalletSigner

        client = ClobClient(url, chain_id=self.cfg.chain.chain_id)
        client.signer = WalletSigner(self.wallet, self.cfg.chain.chain_id)
        return str(client.create_or_derive_api_key().api_key)

    async def _channels(self) -> None:
        import websockets

        results = []
        for name, url in (("market", self.cfg.feed.ws_url), ("user", self.cfg.executor.user_ws_url)):
            if not url:
                results.append((name, url, None))
                continue
            try:
                async with websockets.connect(url, open_timeout=TIMEOUT_S, close_timeout=1):
                    results.append((name, url, None))
            except Exception as exc:
                results.append((name, url, _why(exc)))
        bad = [(n, u, e) for n, u, e in results if e]
        if bad:
            self.fail("channels", "; ".join(f"the {n} channel {urlsplit(u).netloc} refused: {e}" for n, u, e in bad),
                      "check feed.ws_url / executor.user_ws_url and this machine's internet")
            return
        self.ok("channels", ", ".join(f"{n} {urlsplit(u).netloc}" if u else f"{n} off" for n, u, _ in results)
                + " accept a connection")


def _why(exc: BaseException) -> str:
    """An unreachable endpoint's error in a few words (no internet reads as a name that does not resolve)."""
    text = str(exc) or type(exc).__name__
    if "Name or service not known" in text or "Temporary failure in name resolution" in text \
            or "nodename nor servname" in text:
        return f"the host name does not resolve (no internet here?): {text[:160]}"
    return text[:200]


def _pol(wei: int) -> str:
    return f"{wei / 10**18:.4f}"  # display only: POL is never booked as money


def _read_one(file: Path, query: str) -> str | None:
    """One value from a state file, read-only (never created, never locked for writing)."""
    if not file.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=2)
        try:
            row = db.execute(query).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:  # unreadable books are no books of this world: said, not skipped
        raise RuntimeError(f"cannot read {file}: {exc}") from None
    if not row or row[0] is None:
        return None
    value = row[0]
    try:
        value = json.loads(value) if isinstance(value, str) and value.startswith('"') else value
    except ValueError:
        pass
    return str(value)


def report(checks: list[Check]) -> str:
    failed = sum(c.status == "FAIL" for c in checks)
    tail = (f"{failed} check(s) FAILED: fix them before trading. Nothing was sent." if failed
            else "every check OK. Nothing was sent.")
    return "\n".join([*(c.render() for c in checks), tail])


def run(cfg: Config, path: Path) -> tuple[int, str]:
    checks = asyncio.run(Doctor(cfg, path).run())
    return (1 if any(c.status == "FAIL" for c in checks) else 0), report(checks)
