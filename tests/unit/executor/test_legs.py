"""A leg's state machine (actors/executor/legs.py): the rules, the journal that
persists it, and the executor's venue telling each transition (a fake CLOB
client behind the real ClobVenue; the user channel faked or absent)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from py_clob_client_v2.exceptions import PolyApiException

from actors.domain.enums import Side
from actors.domain.wallet import Wallet, dev_account
from actors.executor.clob_venue import ClobVenue
from actors.executor.journal import Journal
from actors.executor.legs import LegEvent, LegState, may_move, order_state
from actors.runtime.clock import TestClock
from tests.unit.executor.test_tx_sender import drive

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]
S = LegState
M = 1_000_000


def test_transitions_go_forward_only():
    assert may_move(S.PLACED, S.MATCHED) and may_move(S.MATCHED, S.MINED) and may_move(S.MINED, S.CONFIRMED)
    assert may_move(S.PLACED, S.DELAYED) and may_move(S.DELAYED, S.UNMATCHED) and may_move(S.DELAYED, S.MATCHED)
    assert may_move(S.MATCHED, S.FAILED) and may_move(S.MATCHED, S.RETRYING) and may_move(S.RETRYING, S.MINED)
    # late news from the other source, and moves out of a final state, are ignored
    assert not may_move(S.MINED, S.MATCHED) and not may_move(S.CONFIRMED, S.FAILED)
    assert not may_move(S.UNMATCHED, S.MATCHED) and not may_move(S.KILLED, S.MATCHED)
    assert not may_move(S.MATCHED, S.DELAYED) and not may_move(S.MATCHED, S.MATCHED)


def test_an_orders_state_is_its_least_advanced_trade_and_failed_if_one_failed():
    assert order_state([S.MINED, S.CONFIRMED]) is S.MINED
    assert order_state([S.CONFIRMED, S.CONFIRMED]) is S.CONFIRMED
    assert order_state([S.MINED, S.RETRYING]) is S.RETRYING
    assert order_state([S.CONFIRMED, S.FAILED]) is S.FAILED
    assert order_state([]) is S.MATCHED


def test_the_journal_persists_each_leg_and_ignores_late_news(tmp_path):
    clock = TestClock()
    j = Journal(tmp_path / "j.sqlite", clock)
    j.place_legs("k", [("c0", "tok0", "BUY"), ("c1", "tok1", "BUY")])
    assert j.leg_event(LegEvent("c0", S.MATCHED, "o0", 5 * M, 2 * M, 1000, ("t0",)))
    assert j.leg_event(LegEvent("c0", S.MINED, "o0", 5 * M, 2 * M, 1000, ("t0",)))
    assert not j.leg_event(LegEvent("c0", S.MATCHED, "o0", 5 * M, 2 * M, 1000))  # REST after the channel
    assert j.leg_event(LegEvent("c1", S.DELAYED, "o1"))
    assert not j.leg_event(LegEvent("nobody", S.MATCHED))
    j.close()
    j = Journal(tmp_path / "j.sqlite", clock)  # a restart reads them back
    assert j.legs("k") == [("c0", S.MINED, "o0", 5 * M, 2 * M, 1000), ("c1", S.DELAYED, "o1", 0, 0, 0)]


class FakeClob:
    """The sync py-clob-client surface ClobVenue uses, scripted per trade and order."""

    host = "http://clob"

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.creds = object()
        self.trades: dict[str, list[str]] = {}  # trade id -> statuses REST answers, one per poll
        self.orders: dict[str, list[dict[str, Any]]] = {}
        self.polls = 0

    def get_neg_risk(self, token_id: str) -> bool:
        return False

    def post_order(self, order: Any, kind: Any, post_only: bool, defer_exec: bool) -> dict[str, Any]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def _l2_headers(self, method: str, path: str) -> dict[str, str]:
        return {}

    def _get(self, url: str, headers: Any = None, params: Any = None) -> Any:
        path = url.removeprefix(self.host)
        if path == "/data/orders":  # by client id (metadata)
            return {"data": self.orders.get(params["metadata"], [])[:1]}
        if path == "/data/trades":
            self.polls += 1
            script = self.trades[params["id"]]
            status = script.pop(0) if len(script) > 1 else script[0]
            return {"data": [{"id": params["id"], "status": status}]}
        order_id = path.rsplit("/", 1)[1]
        script = self.orders[order_id]
        return script.pop(0) if len(script) > 1 else script[0]


MATCHED = {"success": True, "status": "matched", "orderID": "o1", "tradeIDs": ["t1"], "makingAmount": "2.25",
           "takingAmount": "5", "cost": "2.25", "fee": "0.01"}


def venue_with(client: FakeClob, channel: Any = None) -> tuple[ClobVenue, list[LegEvent], TestClock]:
    clock = TestClock()
    venue = ClobVenue("http://clob", Wallet(dev_account(1)), 137, clock=clock, settle_timeout_s=20)
    venue._client = client

    async def inline(fn: Any, *args: Any) -> Any:  # no thread: every step on the test clock's loop
        return fn(*args)

    venue._call = inline
    venue.channel = channel
    events: list[LegEvent] = []
    venue.observer = events.append
    return venue, events, clock


async def place(venue: ClobVenue, clock: TestClock) -> Any:
    task = asyncio.ensure_future(venue.place("123", Side.BUY, 450_000, 5 * M, "0x" + "c1" * 32))
    return await drive(clock, task, step=0.05)


async def test_a_matched_trade_that_fails_is_no_fill_and_passes_through_retrying():
    client = FakeClob(MATCHED)
    client.trades["t1"] = ["MATCHED", "RETRYING", "FAILED"]
    venue, events, clock = venue_with(client)
    fill = await place(venue, clock)
    assert fill.filled == 0 and fill.status == "FAILED"
    assert [e.state for e in events] == [S.MATCHED, S.RETRYING, S.FAILED]
    assert events[0].filled == 5 * M and events[-1].filled == 0 and venue.counts["trades_failed"] == 1


async def test_a_matched_trade_is_a_fill_once_mined():
    client = FakeClob(MATCHED)
    client.trades["t1"] = ["MATCHED", "MATCHED", "MINED"]
    venue, events, clock = venue_with(client)
    fill = await place(venue, clock)
    assert fill.filled == 5 * M and fill.cost == 2_250_000 and fill.fee == 10_000
    assert [e.state for e in events] == [S.MATCHED, S.MINED] and events[-1].trades == ("t1",)


async def test_a_delayed_order_is_followed_until_it_does_not_match():
    client = FakeClob({"success": True, "status": "delayed", "orderID": "o9"})
    client.orders["o9"] = [{"id": "o9", "status": "DELAYED"}, {"id": "o9", "status": "DELAYED"},
                           {"id": "o9", "status": "UNMATCHED", "side": "BUY", "asset_id": "123"}]
    venue, events, clock = venue_with(client)
    fill = await place(venue, clock)
    assert fill.filled == 0 and fill.status == "UNMATCHED"
    assert [e.state for e in events] == [S.DELAYED, S.UNMATCHED] and venue.counts["delayed"] == 1


async def test_a_delayed_order_that_matches_settles_like_any_fill():
    client = FakeClob({"success": True, "status": "delayed", "orderID": "o9"})
    client.orders["o9"] = [{"id": "o9", "status": "DELAYED"},
                           {"id": "o9", "status": "MATCHED", "side": "BUY", "asset_id": "123", "size_matched": "5",
                            "cost": "2.25", "fee": "0.01", "associate_trades": ["t9"]}]
    client.trades["t9"] = ["MINED"]
    venue, events, clock = venue_with(client)
    fill = await place(venue, clock)
    assert fill.filled == 5 * M
    assert [e.state for e in events] == [S.DELAYED, S.MATCHED, S.MINED]


async def test_a_duplicated_placement_whose_order_is_delayed_is_followed_not_taken_for_killed():
    # Issue 12, sequence 2: a retried placement hit "Duplicated", the lookup found the
    # venue's DELAYED record and read it as filled=0: the other legs were unwound, then
    # this leg matched and its tokens were never recorded.
    body = httpx.Response(400, json={"error": "order 0xc1 is Duplicated"})
    client = FakeClob(PolyApiException(body))
    cid = "0x" + "c1" * 32
    client.orders[cid] = [{"id": "o7", "status": "DELAYED", "side": "BUY", "asset_id": "123"}]
    client.orders["o7"] = [{"id": "o7", "status": "DELAYED"},
                           {"id": "o7", "status": "MATCHED", "side": "BUY", "asset_id": "123", "size_matched": "5",
                            "cost": "2.25", "fee": "0.01", "associate_trades": ["t7"]}]
    client.trades["t7"] = ["MINED"]
    venue, events, clock = venue_with(client)
    fill = await place(venue, clock)
    assert fill.filled == 5 * M and venue.counts["duplicates"] == 1
    assert [e.state for e in events] == [S.MATCHED, S.MINED]


class FakeChannel:
    """The user channel: `connected`, and a trade's status once pushed."""

    def __init__(self, clock: TestClock, connected: bool) -> None:
        self.clock, self.connected = clock, connected
        self.heard: dict[str, str] = {}

    def status(self, trade_id: str) -> str | None:
        return self.heard.get(trade_id)

    async def run(self) -> None:
        pass

    async def wait(self, timeout: float) -> None:
        await self.clock.sleep(0.05)
        self.heard["t1"] = "MINED"  # pushed while we waited


async def test_with_the_user_channel_up_rest_is_asked_once_and_the_push_settles_the_leg():
    client = FakeClob(MATCHED)
    client.trades["t1"] = ["MATCHED"]  # REST would never say more
    venue, events, clock = venue_with(client)
    venue.channel = FakeChannel(clock, connected=True)
    fill = await place(venue, clock)
    assert fill.filled == 5 * M and client.polls == 1
    assert [e.state for e in events] == [S.MATCHED, S.MINED]


async def test_with_the_user_channel_down_rest_is_polled_until_settled():
    client = FakeClob(MATCHED)
    client.trades["t1"] = ["MATCHED", "MATCHED", "MATCHED", "CONFIRMED"]
    venue, events, clock = venue_with(client)
    venue.channel = FakeChannel(clock, connected=False)
    fill = await place(venue, clock)
    assert fill.filled == 5 * M and client.polls == 4
    assert [e.state for e in events] == [S.MATCHED, S.CONFIRMED]


class RateLimitedOnce(FakeClob):
    """/data/orders answers 429 the first time (the venue's rate limit), then the record."""

    def __init__(self, answer: Any) -> None:
        super().__init__(answer)
        self.limited = 1

    def _get(self, url: str, headers: Any = None, params: Any = None) -> Any:
        if url.endswith("/data/orders") and self.limited:
            self.limited -= 1
            raise PolyApiException(httpx.Response(429, json={"error": "Too Many Requests"}))
        return super()._get(url, headers, params)


async def test_a_duplicated_leg_whose_lookup_is_rate_limited_is_asked_again_never_rejected():
    # A chaos run: an executor restarted mid-execution re-placed a leg (same client id),
    # met "Duplicated", its lookup met a 429 and answered "unknown": the leg was booked as
    # rejected and unfilled while its fill was on chain (books 49.99 pUSD and 105.26 shares off).
    body = httpx.Response(400, json={"error": "order 0xc2 is invalid. Duplicated. (metadata 0xc1.. was used by "
                                              "order o7)"})
    client = RateLimitedOnce(PolyApiException(body))
    cid = "0x" + "c1" * 32
    client.orders[cid] = [{"id": "o7", "status": "MATCHED", "side": "BUY", "asset_id": "123", "size_matched": "5",
                           "cost": "2.25", "fee": "0.01", "associate_trades": ["t7"]}]
    client.trades["t7"] = ["MINED"]
    venue, events, clock = venue_with(client)
    with pytest.raises(ConnectionError):  # transient: the retry policy places it again
        await place(venue, clock)
    assert S.REJECTED not in [e.state for e in events]
    fill = await place(venue, clock)  # again: Duplicated, and the lookup answers
    assert fill.filled == 5 * M and fill.order_id == "o7"


async def test_a_duplicated_leg_whose_order_is_not_shown_is_never_rejected():
    body = httpx.Response(400, json={"error": "order 0xc2 is invalid. Duplicated."})
    venue, events, clock = venue_with(FakeClob(PolyApiException(body)))  # /data/orders: no rows
    with pytest.raises(ConnectionError):
        await place(venue, clock)
    assert S.REJECTED not in [e.state for e in events] and venue.counts["rejected"] == 0


class TimingOut(FakeClob):
    def post_orders(self, args: Any, post_only: bool, defer_exec: bool) -> Any:
        raise PolyApiException(error_msg="Request exception!")  # no answer: the venue may take it later


async def test_a_placement_without_an_answer_is_remembered_as_unanswered():
    venue, events, clock = venue_with(TimingOut(PolyApiException(error_msg="Request exception!")))
    orders = [("123", Side.BUY, 450_000, 5 * M, "0x" + "c1" * 32), ("124", Side.BUY, 500_000, 5 * M, "0x" + "c2" * 32)]
    with pytest.raises(ConnectionError):
        await venue.place_batch(orders, settle=False)
    assert venue.unanswered("0x" + "c1" * 32) and venue.unanswered("0x" + "c2" * 32)
    with pytest.raises(ConnectionError):
        await place(venue, clock)  # alone, no answer either
    assert not venue.unanswered("0x" + "c3" * 32)
