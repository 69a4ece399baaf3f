"""VenuePort over the official py-clob-client-v2: the same calls live and in
the sandbox.

Orders are built from exact integer amounts with the client's own V2 order
builder (its float interface rounds sizes), signed by the client's signer, and
posted FOK/FAK with `post_order`. The order's `metadata` is our client id: the
venue refuses a second order with the same metadata ("Duplicated"), so a
retried placement can never execute twice, and the order can be looked up by
it after a crash. The client is synchronous (httpx): calls run in a thread.

A `delayed` answer (or a DELAYED record found by client id) is neither a
fill nor a kill: the order is followed by id until the venue decides.
A `matched` answer is not a fill: the trade settles afterwards and can still
FAIL. The order is posted with `defer_exec` (the client would otherwise block
a thread polling for up to 30 s) and its trades are then followed here, on the
event loop, until each is MINED / CONFIRMED (a fill) or FAILED (nothing
traded); one still unsettled after `settle_timeout_s` is an ambiguous outcome
for reconciliation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import ROUND_DOWN
from typing import Any

from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import OrderType, PostOrdersV2Args
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.exceptions import PolyApiException
from py_clob_client_v2.order_builder.builder import OrderBuilder
from py_clob_client_v2.order_utils.model.order_data_v2 import OrderDataV2
from py_clob_client_v2.order_utils.model.side import Side
from py_clob_client_v2.order_utils.model.signature_type_v2 import SignatureTypeV2

from actors.domain.enums import Side as OrderSide
from actors.domain.fees import notional, proceeds
from actors.domain.money import to_micro
from actors.domain.wallet import Wallet
from actors.executor.legs import TRADE_STATES, LegEvent, LegState, order_state
from actors.executor.order_signing import FastOrderBuilder
from actors.executor.ports import Fill, OrderRejected
from actors.executor.user_channel import UserChannel
from actors.runtime.clock import Clock, SystemClock, doubling

log = logging.getLogger(__name__)

UNANSWERED_KEEP = 10_000
_KILLED = ("fully filled or killed", "couldn't be fully filled", "no orders found to match", "fak")


class VenueHttpError(Exception):
    """A 429/5xx answer: retryable under the policy (status_code, retry_after)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status_code = status
        self.retry_after = retry_after


def _amount(value: Any) -> int:
    """The venue's decimal strings ("4.5") -> micro units (beyond 6 decimals, down)."""
    return to_micro(str(value), rounding=ROUND_DOWN) if value not in (None, "") else 0


SETTLED = ("MINED", "CONFIRMED")
PENDING_ORDER = ("DELAYED", "LIVE")  # not decided yet: neither a fill nor a kill
TRADE_FAILED = "FAILED"
POLL_FIRST_S, POLL_MAX_S = 0.005, 0.25  # automine settles in ms, blocks take ~2 s
CHANNEL_RECHECK_S = 2.0  # with the user channel up, REST is asked this often (an event it missed)


class TradeUnsettled(Exception):
    """A matched trade neither settled nor failed in time: the outcome is not known yet."""


HTTP_THREADS = 32  # concurrent CLOB requests (each in flight holds a thread)


class WalletSigner:
    """py-clob-client-v2's `Signer`, delegating to our wallet."""

    def __init__(self, wallet: Wallet, chain_id: int) -> None:
        self._wallet, self._chain_id = wallet, chain_id

    def address(self) -> str:
        return self._wallet.address

    def get_chain_id(self) -> int:
        return self._chain_id

    def sign(self, message_hash: bytes | str) -> str:
        """As the library's: the hash as bytes or as "0x" hex (its L1 auth passes hex)."""
        if isinstance(message_hash, str):
            return self._wallet.sign_digest(bytes.fromhex(message_hash.removeprefix("0x"))).hex()
        digest = bytes(message_hash)
        return self._wallet.sign_digest(digest).hex()

    @property
    def private_key(self) -> Any:
        """Only the library's POLY_1271 (deposit wallet) order path reads it: the wallet's
        own key object, handed over for that one signature, never stored here."""
        return self._wallet.account.key

    def __repr__(self) -> str:
        return f"WalletSigner({self._wallet.address})"


class ClobVenue:
    def __init__(self, host: str, wallet: Wallet, chain_id: int, clock: Clock | None = None,
                 settle_timeout_s: float = 60.0, user_ws_url: str = "") -> None:
        self._clock = clock or SystemClock()
        self.settle_timeout_s = settle_timeout_s
        # The user channel tells a trade's settlement as it happens; REST is the fallback.
        self.channel = UserChannel(user_ws_url, self._creds, self._clock) if user_ws_url else None
        self._channel_task: asyncio.Task[None] | None = None
        # The client signs through the wallet (its L1 auth): the key stays in the wallet
        # object, never copied into the client as the hex string its own Signer keeps.
        self._client = ClobClient(host, chain_id=chain_id)
        self._client.signer = WalletSigner(wallet, chain_id)
        self._client.builder = OrderBuilder(signer=self._client.signer)
        self._address = wallet.address
        contracts = get_contract_config(chain_id)
        # A neg-risk token's orders are signed for the neg-risk exchange's EIP-712 domain.
        self._builders = {neg: FastOrderBuilder(addr, chain_id, self._client.signer, wallet)
                          for neg, addr in ((False, contracts.exchange_v2), (True, contracts.neg_risk_exchange_v2))}
        self._neg_risk: dict[str, bool] = {}
        # The client is sync: its calls run in threads of our own pool. asyncio's default pool
        # has min(32, cpus + 4) threads (6 here): 64 executions in flight queued behind 6 HTTP
        # calls, and at exit the interpreter ran the whole queue before it let the process go.
        self._pool = ThreadPoolExecutor(max_workers=HTTP_THREADS, thread_name_prefix="clob")
        self._call: Callable[..., Awaitable[Any]] = self._in_pool
        # Told every state a leg reaches (the executor persists them: actors/executor/legs.py).
        self.observer: Callable[[LegEvent], None] | None = None
        self._creds_lock = asyncio.Lock()
        # Client ids a placement of which got no answer (a timeout): the venue may take that
        # request later, so "no such order" right after proves nothing (see TxSender._settle).
        self._unanswered: OrderedDict[str, None] = OrderedDict()
        self.counts = {"placed": 0, "filled": 0, "killed": 0, "duplicates": 0, "rejected": 0, "http_errors": 0,
                       "trades_failed": 0, "trades_unsettled": 0, "delayed": 0, "orders_undecided": 0,
                       "trade_polls": 0, "batches": 0, "leg_events_unrecorded": 0}

    def _tell(self, ev: LegEvent) -> None:
        if self.observer is not None:
            try:
                self.observer(ev)
            except Exception:  # the books' journal failing must not hide the venue's answer
                self.counts["leg_events_unrecorded"] += 1
                log.exception("leg event %s of %s not recorded", ev.state, ev.client_id[:12])

    def _told(self, fill: Fill, state: LegState, trades: tuple[str, ...] = ()) -> Fill:
        self._tell(LegEvent(fill.client_id, state, fill.order_id, fill.filled, fill.cost, fill.fee, trades,
                            fill.status))
        return fill

    async def _ensure_creds(self) -> None:
        async with self._creds_lock:
            if getattr(self._client, "creds", None) is None:
                creds = await self._call(self._client.create_or_derive_api_key)
                self._client.set_api_creds(creds)
        if self.channel is not None and self._channel_task is None:
            self._channel_task = asyncio.create_task(self.channel.run(), name="user-channel")

    async def _creds(self) -> tuple[str, str, str]:
        await self._ensure_creds()
        c = self._client.creds
        return c.api_key, c.api_secret, c.api_passphrase

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    async def close(self) -> None:
        if self._channel_task is not None:
            self._channel_task.cancel()
            await asyncio.gather(self._channel_task, return_exceptions=True)
            self._channel_task = None
        self._pool.shutdown(wait=False, cancel_futures=True)  # queued calls dropped: their tasks are gone

    async def _is_neg_risk(self, token_id: str) -> bool:
        if token_id not in self._neg_risk:  # the listing's flag, once per token
            self._neg_risk[token_id] = bool(await self._call(self._client.get_neg_risk, token_id))
        return self._neg_risk[token_id]

    def _order(self, token_id: str, side: OrderSide, price: int, size: int, client_id: str,
               neg_risk: bool = False) -> Any:
        cost = notional(size, price) if side == OrderSide.BUY else proceeds(size, price)
        maker, taker = (cost, size) if side == OrderSide.BUY else (size, cost)
        return self._builders[neg_risk].build_signed_order(OrderDataV2(
            maker=self._address, tokenId=token_id, makerAmount=str(maker), takerAmount=str(taker),
            side=Side.BUY if side == OrderSide.BUY else Side.SELL, signer=self._address,
            signatureType=SignatureTypeV2.EOA, metadata=client_id))

    async def place(self, token_id: str, side: OrderSide, price: int, size: int, client_id: str, *,
                    fill_and_kill: bool = False, settle: bool = True) -> Fill:
        await self._ensure_creds()
        order = self._order(token_id, side, price, size, client_id, await self._is_neg_risk(token_id))
        kind = OrderType.FAK if fill_and_kill else OrderType.FOK
        self.counts["placed"] += 1
        try:
            resp = await self._call(self._client.post_order, order, kind, False, True)  # defer_exec
        except PolyApiException as exc:
            return await self._refused(exc, token_id, side, client_id, settle)
        return await self._accepted(resp, token_id, side, client_id, settle)

    async def _accepted(self, resp: dict[str, Any], token_id: str, side: OrderSide, client_id: str,
                        settle: bool = True) -> Fill:
        """An order the venue took (alone or in a batch): DELAYED followed until decided,
        a match followed until its trades settle (unless `settle` is off), else killed."""
        if str(resp.get("status", "")).lower() == "delayed":  # pending at the venue: never "killed"
            self.counts["delayed"] += 1
            order_id = str(resp.get("orderID", ""))
            self._tell(LegEvent(client_id, LegState.DELAYED, order_id))
            return await self._await_order(order_id, client_id, settle)
        fill = self._fill(resp, token_id, side, client_id)
        if fill.filled:
            return await self._matched(fill, [str(t) for t in resp.get("tradeIDs") or []], settle)
        return self._told(fill, LegState.KILLED)

    async def _matched(self, fill: Fill, trade_ids: list[str], settle: bool) -> Fill:
        """A match: told MATCHED, then followed to settlement, or handed back provisional."""
        fill = replace(fill, trades=tuple(trade_ids))
        self._told(fill, LegState.MATCHED, fill.trades)
        return await self._follow(fill) if settle else fill

    async def settle(self, fill: Fill) -> Fill:
        """A provisional MATCHED fill (from `settle=False`) followed until its trades settle."""
        if not fill.filled or fill.status.upper() != "MATCHED":  # an order record's status may be "matched"
            return fill
        return await self._follow(fill)

    async def place_batch(self, orders: list[tuple[str, OrderSide, int, int, str]],
                          settle: bool = True) -> list[Any]:
        """Every order (token, side, limit, size, client id) FOK in ONE `POST /orders`:
        per order a Fill (settled like `place`), an OrderRejected, or an error to retry
        on its own. A failure of the request as a whole raises."""
        await self._ensure_creds()
        neg = await asyncio.gather(*(self._is_neg_risk(o[0]) for o in orders))  # new tokens: one look each, at once
        signed = [self._order(t, side, price, size, cid, n) for (t, side, price, size, cid), n in zip(
            orders, neg, strict=True)]
        self.counts["placed"] += len(orders)
        self.counts["batches"] += 1
        args = [PostOrdersV2Args(order=o, orderType=OrderType.FOK, deferExec=True) for o in signed]
        try:
            answers = await self._call(self._client.post_orders, args, False, True)
        except PolyApiException as exc:
            status = exc.status_code
            if status is None:
                self._unsure(*(o[4] for o in orders))
                raise ConnectionError(str(exc.error_msg)) from None
            raise VenueHttpError(status, str(exc.error_msg)) from None
        if not isinstance(answers, list) or len(answers) != len(orders):
            self._unsure(*(o[4] for o in orders))
            raise ConnectionError(f"POST /orders answered {str(answers)[:200]}")  # unknown: ask order by order
        return list(await asyncio.gather(*(self._answer(a, o[0], o[1], o[4], settle)
                                           for a, o in zip(answers, orders, strict=True)), return_exceptions=True))

    async def _answer(self, resp: Any, token_id: str, side: OrderSide, client_id: str,
                      settle: bool = True) -> Fill:
        """One order's answer inside a batch, as `place` would have turned it."""
        if not isinstance(resp, dict):
            raise ConnectionError(f"unreadable answer {str(resp)[:200]}")
        if resp.get("success", True) is False or resp.get("errorMsg"):
            text = str(resp.get("errorMsg") or resp.get("error") or "refused")
            if "duplicat" in text.lower():
                self.counts["duplicates"] += 1
                found = await self.find(client_id, settle)
                if found is not None:
                    return found
                raise ConnectionError(f"duplicated client id {client_id[:12]}, but its order is not found yet")
            if any(k in text.lower() for k in _KILLED):
                self.counts["killed"] += 1
                return self._told(Fill(client_id, str(resp.get("orderID", "")), token_id, side, 0, 0, 0, "KILLED"),
                                  LegState.KILLED)
            self.counts["rejected"] += 1
            self._tell(LegEvent(client_id, LegState.REJECTED, detail=text))
            raise OrderRejected(text, 400)
        return await self._accepted(resp, token_id, side, client_id, settle)

    async def _await_order(self, order_id: str, client_id: str, settle: bool = True) -> Fill:
        """A DELAYED (or still LIVE) order, followed until the venue decides: MATCHED
        (then settled like any fill), UNMATCHED or CANCELED (nothing traded). Still
        undecided after `settle_timeout_s`: an unknown outcome (TradeUnsettled)."""
        deadline = self._clock.monotonic_ns() + int(self.settle_timeout_s * 1e9)
        waits = doubling(POLL_FIRST_S, POLL_MAX_S)
        while True:
            try:
                record = await self._l2_get(f"/data/order/{order_id}", {})
            except PolyApiException as exc:
                if exc.status_code is not None and exc.status_code < 500 and exc.status_code != 429:
                    raise
                record = None  # not known this time: ask again
            if isinstance(record, dict) and str(record.get("status", "")).upper() not in PENDING_ORDER:
                return await self._from_record(record, client_id, settle)
            if self._clock.monotonic_ns() > deadline:
                self.counts["orders_undecided"] += 1
                raise TradeUnsettled(f"order {order_id} still pending after {self.settle_timeout_s}s")
            await self._clock.sleep(next(waits))

    async def _follow(self, fill: Fill) -> Fill:
        """The fill once its trades are MINED, or nothing traded if one FAILED; each
        state the order passes through is told to the observer."""
        trades, trade_ids = fill.trades, list(fill.trades)
        told = [LegState.MATCHED]

        def changed(statuses: dict[str, str]) -> None:
            state = order_state([TRADE_STATES.get(st, LegState.MATCHED) for st in statuses.values()])
            if state != told[-1]:
                told.append(state)
                if state is not LegState.FAILED:
                    self._told(fill, state, trades)

        statuses = await self._await_trades(trade_ids, changed)
        if any(s == TRADE_FAILED for s in statuses.values()):
            self.counts["trades_failed"] += 1
            return self._told(Fill(fill.client_id, fill.order_id, fill.token_id, fill.side, 0, 0, 0, "FAILED"),
                              LegState.FAILED, trades)
        return fill

    async def _await_trades(self, trade_ids: list[str],
                            changed: Callable[[dict[str, str]], None] | None = None) -> dict[str, str]:
        """Each trade's final status: from the user channel as it happens, and from
        `GET /data/trades` at first and whenever the channel is down; with the
        channel up, REST is asked only every CHANNEL_RECHECK_S (a missed event)."""
        deadline = self._clock.monotonic_ns() + int(self.settle_timeout_s * 1e9)
        waits, statuses = doubling(POLL_FIRST_S, POLL_MAX_S), {t: "" for t in trade_ids}
        polled_ns = None
        final = (*SETTLED, TRADE_FAILED)
        while True:
            ch = self.channel
            for tid in [t for t, st in statuses.items() if st not in final]:
                heard = ch.status(tid) if ch is not None else None
                if heard is not None:
                    statuses[tid] = heard
            open_ids = [t for t, st in statuses.items() if st not in final]
            now = self._clock.monotonic_ns()
            listening = ch is not None and ch.connected
            if open_ids and (polled_ns is None or not listening or now - polled_ns >= CHANNEL_RECHECK_S * 1e9):
                polled_ns = now
                for tid in open_ids:
                    statuses[tid] = await self._trade_status(tid)
            if changed is not None:
                changed(statuses)
            if all(st in final for st in statuses.values()):
                return statuses
            if self._clock.monotonic_ns() > deadline:
                self.counts["trades_unsettled"] += 1
                raise TradeUnsettled(f"trades {statuses} not settled within {self.settle_timeout_s}s")
            if listening:
                await ch.wait(CHANNEL_RECHECK_S)  # type: ignore[union-attr]
            else:
                await self._clock.sleep(next(waits))

    async def _l2_get(self, path: str, params: dict[str, str]) -> Any:
        """An authenticated GET the client has no method for, in a thread (the client is sync)."""
        c = self._client

        def get() -> Any:
            return c._get(f"{c.host}{path}", headers=c._l2_headers("GET", path), params=params)

        return await self._call(get)

    async def _trade_status(self, trade_id: str) -> str:
        self.counts["trade_polls"] += 1
        try:
            page = await self._l2_get("/data/trades", {"id": trade_id})
        except PolyApiException as exc:
            if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429:
                return ""  # not known this time: poll again
            raise
        rows = page.get("data", []) if isinstance(page, dict) else []
        return str(rows[0].get("status", "")).upper() if rows else ""

    async def _refused(self, exc: PolyApiException, token_id: str, side: OrderSide, client_id: str,
                       settle: bool = True) -> Fill:
        status, body = exc.status_code, exc.error_msg
        text = str(body.get("error", body) if isinstance(body, dict) else body)
        if status is None:  # no answer at all: transport error, safe to retry (metadata)
            self._unsure(client_id)
            raise ConnectionError(text)
        if "duplicat" in text.lower():
            self.counts["duplicates"] += 1
            found = await self.find(client_id, settle)
            if found is not None:
                return found
            # The venue says an order with our client id exists but does not show it yet: never
            # "rejected" (a chaos run booked such a leg as unfilled while its fill was on chain).
            raise ConnectionError(f"duplicated client id {client_id[:12]}, but its order is not found yet")
        if status == 400 and any(k in text.lower() for k in _KILLED):
            self.counts["killed"] += 1
            order_id = body.get("orderID", "") if isinstance(body, dict) else ""
            return self._told(Fill(client_id, order_id, token_id, side, 0, 0, 0, "KILLED"), LegState.KILLED)
        if status == 429 or status >= 500:
            self.counts["http_errors"] += 1
            raise VenueHttpError(status, text)
        self.counts["rejected"] += 1
        self._tell(LegEvent(client_id, LegState.REJECTED, detail=text))
        raise OrderRejected(text, status)

    def _fill(self, resp: dict[str, Any], token_id: str, side: OrderSide, client_id: str) -> Fill:
        if not resp.get("success", True) or resp.get("status") not in ("matched", "MATCHED"):
            self.counts["killed"] += 1
            return Fill(client_id, str(resp.get("orderID", "")), token_id, side, 0, 0, 0,
                        str(resp.get("status") or resp.get("errorMsg") or "UNMATCHED"))
        making, taking = _amount(resp.get("makingAmount")), _amount(resp.get("takingAmount"))
        cost, fee = _amount(resp.get("cost")), _amount(resp.get("fee"))
        filled = taking if side == OrderSide.BUY else making
        self.counts["filled"] += 1
        return Fill(client_id, str(resp.get("orderID", "")), token_id, side, filled, cost, fee, "MATCHED")

    async def find(self, client_id: str, settle: bool = True) -> Fill | None:
        """The order placed with this client id, followed until decided (and, unless
        `settle` is off, its match until settled: a placement under the market lock
        that met "Duplicated" must not wait for settlement there); None if unknown."""
        await self._ensure_creds()
        try:
            page = await self._l2_get("/data/orders", {"metadata": client_id})
        except PolyApiException as exc:
            if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429:
                raise ConnectionError(str(exc.error_msg)) from None  # not known this time: ask again
            return None
        rows = page.get("data", []) if isinstance(page, dict) else []
        if not rows:
            return None
        o = rows[0]
        if str(o.get("status", "")).upper() in PENDING_ORDER:  # DELAYED: it may still match
            return await self._await_order(str(o.get("id", "")), client_id, settle)
        return await self._from_record(o, client_id, settle)

    async def _from_record(self, o: dict[str, Any], client_id: str, settle: bool = True) -> Fill:
        """An order record (GET /data/order(s)) as a Fill, settled if it matched."""
        matched = str(o.get("status", "")).upper() == "MATCHED"
        side = str(o.get("side", "")).upper()
        size = _amount(o.get("size_matched") or o.get("filled") or o.get("original_size") or 0) if matched else 0
        fill = Fill(client_id, str(o.get("id", "")), str(o.get("asset_id", "")), side, size,
                    _amount(o.get("cost")) if matched else 0, _amount(o.get("fee")) if matched else 0,
                    str(o.get("status", "")))
        if fill.filled:  # matched: filled only once its trades settled
            return await self._matched(fill, [str(t) for t in o.get("associate_trades") or []], settle)
        # Decided without a match: a delayed order that did not match, or a killed one.
        return self._told(fill, LegState.UNMATCHED if fill.status.upper() in ("UNMATCHED", "CANCELED")
                          else LegState.KILLED)

    def _unsure(self, *client_ids: str) -> None:
        for cid in client_ids:
            self._unanswered[cid] = None
            self._unanswered.move_to_end(cid)
        while len(self._unanswered) > UNANSWERED_KEEP:
            self._unanswered.popitem(last=False)

    def unanswered(self, client_id: str) -> bool:
        """Whether a placement with this client id went unanswered (it may still be taken)."""
        return client_id in self._unanswered

    def get_stats(self) -> dict[str, Any]:
        return {**self.counts, **({"user_channel": self.channel.get_stats()} if self.channel else {})}
