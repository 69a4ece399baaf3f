"""Paper trading: the matching, the live books less our own takes, the paper venue and
chain, and the executor's real pipeline run on them, checked by the replay of its own
decisions. A test clock; no process, no socket."""

import asyncio
import dataclasses
import json
import random
import sqlite3
from decimal import Decimal

import msgspec
import pytest

from actors.domain.enums import Side, TxStatus
from actors.domain.listing import Market
from actors.executor.circuit_breaker import CircuitBreaker
from actors.executor.idempotency import IdempotencyStore
from actors.executor.journal import Journal
from actors.executor.onchain import OnChainSender
from actors.executor.paper import ledger as L
from actors.executor.paper.books import LiveBooks
from actors.executor.paper.chain import PaperChain, PaperChainError
from actors.executor.paper.markets import PaperMarkets
from actors.executor.paper.matching import NOTHING, take
from actors.executor.paper.nonces import PaperNonces
from actors.executor.paper.replay import replay, summary
from actors.executor.paper.venue import PaperVenue
from actors.executor.ports import OrderRejected
from actors.executor.retry_policy import RetryPolicy
from actors.executor.tx_sender import TxSender
from actors.runtime.clock import TestClock
from bus.messages import BookUpdate, Leg, Signal
from config.schema import Paper

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

C = "0x" + "c1" * 32  # a binary condition
YES, NO = "101", "102"
EVENT = "0x" + "e0" * 31 + "00"  # a neg-risk event of two questions
Q = [("0x" + f"{i + 1:02x}" * 32, str(200 + 2 * i), str(201 + 2 * i)) for i in range(2)]
SIZE = 10_000_000
FUNDING = 1_000_000_000  # 1000 pUSD


def markets() -> list[Market]:
    out = [Market(C, "binary?", (YES, NO), ("Yes", "No"), True, fee_rate_bps=200)]
    for i, (cid, y, n) in enumerate(Q):
        out.append(Market(cid, f"q{i}", (y, n), ("Yes", "No"), True, fee_rate_bps=0, neg_risk=True,
                          neg_risk_market_id=EVENT, neg_risk_request_id=EVENT[:64] + f"{i:02x}"))
    return out


def book(token, asks=(), bids=(), ts=1_000, valid=True):
    return BookUpdate(token_id=token, market=C, valid=valid, bids=list(bids), asks=list(asks), venue_ts_ms=ts,
                      recv_ns=0, tick_size=10_000)


# -- matching
def test_fok_takes_levels_within_the_limit_or_nothing():
    asks = [(450_000, 4_000_000), (460_000, 10_000_000), (500_000, 50_000_000)]
    t = take(asks, Side.BUY, 460_000, 10_000_000, all_or_none=True, fee_rate_ppm=20_000)
    assert t.fills == ((450_000, 4_000_000), (460_000, 6_000_000)) and t.filled == 10_000_000
    assert t.cost == 1_800_000 + 2_760_000
    # fee per level, rounded up: 4 x 0.02 x 0.45 x 0.55 + 6 x 0.02 x 0.46 x 0.54
    assert t.fee == 19_800 + 29_808
    assert take(asks, Side.BUY, 450_000, 10_000_000, all_or_none=True, fee_rate_ppm=0) is NOTHING
    fak = take(asks, Side.BUY, 450_000, 10_000_000, all_or_none=False, fee_rate_ppm=0)
    assert fak.filled == 4_000_000 and fak.cost == 1_800_000


def test_a_sale_takes_the_bids_and_receives_rounded_down():
    bids = [(333_333, 3), (300_000, 10)]
    t = take(bids, Side.SELL, 300_000, 5, all_or_none=True, fee_rate_ppm=0)
    assert t.fills == ((333_333, 3), (300_000, 2)) and t.cost == (999_999 + 600_000) // 1_000_000
    assert take(bids, Side.SELL, 340_000, 1, all_or_none=True, fee_rate_ppm=0) is NOTHING


# -- the live books, less what we took
def test_what_we_took_stays_taken_until_the_live_level_shrinks_or_goes():
    b = LiveBooks()
    b.on_book(book(YES, asks=[(450_000, 10), (460_000, 10)]))
    b.took(YES, Side.BUY, ((450_000, 6),))
    assert b.seen(YES, Side.BUY).levels == ((450_000, 4), (460_000, 10))
    b.on_book(book(YES, asks=[(450_000, 10), (460_000, 10)], ts=1_001))  # the live book still shows it
    assert b.seen(YES, Side.BUY).levels == ((450_000, 4), (460_000, 10))
    b.on_book(book(YES, asks=[(450_000, 5), (460_000, 10)], ts=1_002))  # others took some: ours shrinks with it
    assert b.seen(YES, Side.BUY).levels == ((460_000, 10),)
    b.on_book(book(YES, asks=[(460_000, 10)], ts=1_003))  # the level went: forgotten
    b.on_book(book(YES, asks=[(450_000, 7), (460_000, 10)], ts=1_004))  # a new order there is all there
    assert b.seen(YES, Side.BUY).levels == ((450_000, 7), (460_000, 10))
    b.on_book(book(YES, asks=[(450_000, 1)], ts=999))  # older than the one held: ignored
    assert b.seen(YES, Side.BUY).levels[0] == (450_000, 7)
    b.on_book(book(YES, valid=False, ts=1_005))
    assert b.seen(YES, Side.BUY) is None


# -- the paper venue and chain
class Paperworld:
    def __init__(self, tmp_path, cfg, clock=None):
        self.tmp, self.cfg = tmp_path, cfg
        self.clock = clock or TestClock()
        self.ledger = L.PaperLedger(tmp_path / "paper-ledger.sqlite", self.clock, FUNDING)
        self.books = LiveBooks()
        self.markets = PaperMarkets("http://127.0.0.1:9")
        self.markets.adopt(markets())
        self.venue = PaperVenue(self.books, self.ledger, self.markets.tokens, self.clock, lambda: self.cfg)
        self.chain = PaperChain(self.ledger, self.markets, lambda: self.cfg, self.venue.settle_due)
        self.nonces = PaperNonces(self.chain, tmp_path / "paper-nonces.sqlite", self.clock, cfg)


@pytest.fixture
def cfg(sandbox_config):
    return msgspec.structs.replace(sandbox_config, paper=Paper(convert_fee_bips=0),
                                   trading=msgspec.structs.replace(sandbox_config.trading, sell_reserve=Decimal(0)))


@pytest.fixture
def pw(tmp_path, cfg):
    return Paperworld(tmp_path, cfg)


async def drive(clock, aw, step=0.05, limit=4000):
    task = asyncio.ensure_future(aw)
    for _ in range(limit):
        for _ in range(3):
            await asyncio.sleep(0)
        if task.done():
            return task.result()
        clock.advance(step)
    raise AssertionError("did not finish")


async def test_a_match_settles_after_the_latency_and_only_then_moves_the_wallet(pw):
    pw.books.on_book(book(YES, asks=[(450_000, 100_000_000)]))
    fill = await drive(pw.clock, pw.venue.place(YES, Side.BUY, 450_000, SIZE, "0xa1", settle=False))
    assert fill.status == "MATCHED" and fill.filled == SIZE and fill.cost == 4_500_000 and fill.fee == 49_500
    assert pw.ledger.balance(YES) == 0 and pw.ledger.balance(L.PUSD) == FUNDING  # not mined yet
    assert pw.ledger.reserved(L.PUSD) == 4_549_500
    settled = await drive(pw.clock, pw.venue.settle(fill))
    assert settled.status == "MINED"
    assert pw.ledger.balance(YES) == SIZE and pw.ledger.balance(L.PUSD) == FUNDING - 4_549_500
    # The same client id again: the first order's answer, never a second trade.
    again = await drive(pw.clock, pw.venue.place(YES, Side.BUY, 450_000, SIZE, "0xa1"))
    assert again.filled == SIZE and pw.ledger.balance(YES) == SIZE and pw.venue.counts["duplicates"] == 1
    # The liquidity we took is gone for the next order while the live book still shows it.
    pw.books.on_book(book(YES, asks=[(450_000, 100_000_000)], ts=2_000))
    rest = await drive(pw.clock, pw.venue.place(YES, Side.BUY, 450_000, 95_000_000, "0xa2"))
    assert rest.filled == 0 and rest.status == "KILLED"


async def test_no_book_kills_a_closed_market_or_an_empty_wallet_is_refused(pw, cfg):
    killed = await drive(pw.clock, pw.venue.place(NO, Side.BUY, 500_000, SIZE, "0xb1"))
    assert killed.status == "KILLED" and pw.ledger.order("0xb1").reason == "no live book"
    pw.books.on_book(book(YES, bids=[(400_000, 100_000_000)]))
    with pytest.raises(OrderRejected, match="not enough balance"):
        await drive(pw.clock, pw.venue.place(YES, Side.SELL, 400_000, SIZE, "0xb2"))  # no YES held
    pw.books.on_book(book(YES, asks=[(999_000, 10_000_000_000)]))
    with pytest.raises(OrderRejected, match="not enough balance"):  # 1000 pUSD do not buy 10000 shares at 0.999
        await drive(pw.clock, pw.venue.place(YES, Side.BUY, 999_000, 10_000_000_000, "0xb3"))
    pw.markets.adopt([dataclasses.replace(markets()[0], active=False), *markets()[1:]])
    with pytest.raises(OrderRejected, match="market closed"):
        await drive(pw.clock, pw.venue.place(YES, Side.BUY, 999_000, SIZE, "0xb4"))


async def test_a_sale_whose_tokens_a_merge_took_fails_to_settle(pw):
    await pw.nonces.initialize()
    pw.ledger.db.execute("UPDATE balances SET amount = amount - ? WHERE asset = ?", (SIZE, L.PUSD))
    pw.ledger.db.executemany("INSERT INTO balances VALUES (?, ?)", [(YES, SIZE), (NO, SIZE)])
    pw.ledger.db.commit()
    pw.books.on_book(book(YES, bids=[(600_000, 100_000_000)]))
    sale = await drive(pw.clock, pw.venue.place(YES, Side.SELL, 600_000, SIZE, "0xc1", settle=False))
    assert sale.status == "MATCHED"
    merged = await _send(pw, pw.chain.merge_call(C, 2, SIZE), 0)
    assert merged.status == 1 and pw.ledger.balance(YES) == 0 and pw.ledger.balance(L.PUSD) == FUNDING
    failed = await drive(pw.clock, pw.venue.settle(sale))
    assert failed.status == "FAILED" and failed.filled == 0 and pw.ledger.balance(L.PUSD) == FUNDING


async def _send(pw, call, nonce, fee=(100, 10)):
    h, raw = pw.chain.sign({**call, "nonce": nonce, "gas": 200_000, "maxFeePerGas": fee[0] * 10**9,
                            "maxPriorityFeePerGas": fee[1] * 10**9, "chainId": 137, "value": 0, "type": 2})
    assert await pw.chain.send_raw(raw) == h
    return await pw.chain.receipt(h)


async def test_the_paper_chain_mines_in_nonce_order_and_refuses_as_a_node_does(pw):
    split = pw.chain.split_call(C, 2, SIZE)
    later = await _send(pw, split, 1)  # nonce 1 before 0: it waits in the pool
    assert later is None and await pw.chain.transaction_counts() == (0, 2)
    with pytest.raises(PaperChainError, match="underpriced"):
        await _send(pw, pw.chain.merge_call(C, 2, SIZE), 1, fee=(105, 10))
    first = await _send(pw, split, 0)
    assert first.status == 1 and await pw.chain.nonce_latest() == 2  # both mined, in order
    assert pw.ledger.balance(YES) == pw.ledger.balance(NO) == 2 * SIZE
    assert pw.ledger.balance(L.PUSD) == FUNDING - 2 * SIZE
    with pytest.raises(PaperChainError, match="nonce too low"):
        await _send(pw, split, 0, fee=(200, 20))
    # Gas: the configured amount for the step, at base fee + tip under the cap.
    assert first.gas_used == 150_000 and first.effective_gas_price == 40 * 10**9
    # A step the wallet cannot pay reverts: gas spent, nothing moved.
    broke = await _send(pw, pw.chain.merge_call(C, 2, 3 * SIZE), 2)
    assert broke.status == 0 and pw.ledger.balance(YES) == 2 * SIZE


async def test_convert_burns_every_no_and_pays_k_minus_one_less_the_fee(pw, cfg):
    pw.cfg = msgspec.structs.replace(cfg, paper=Paper(convert_fee_bips=100))  # 1%
    nos = [n for _, _, n in Q]
    pw.ledger.db.executemany("INSERT INTO balances VALUES (?, ?)", [(n, SIZE) for n in nos])
    pw.ledger.db.commit()
    assert await pw.chain.convert_terms(EVENT) == (2, 100)
    r = await _send(pw, pw.chain.convert_call(EVENT, 0b11, SIZE), 0)
    assert r.status == 1 and all(pw.ledger.balance(n) == 0 for n in nos)
    assert pw.ledger.balance(L.PUSD) == FUNDING + (SIZE - SIZE // 100)
    assert json.loads(pw.ledger.db.execute("SELECT args FROM txs").fetchone()[0])["fee_bips"] == 100
    assert await pw.chain.question_condition(EVENT, 1) == Q[1][0]


# -- the executor's pipeline on paper
def make_sender(pw):
    retry = RetryPolicy.from_config(pw.cfg.retry_policy, clock=pw.clock, rng=random.Random(1))
    journal = Journal(pw.tmp / "journal.sqlite", pw.clock)
    idem = IdempotencyStore(pw.tmp / "journal.sqlite", clock=pw.clock, db=journal.db)
    breaker = CircuitBreaker.from_config(pw.cfg.circuit_breaker, clock=pw.clock)
    onchain = OnChainSender(pw.chain, pw.nonces, retry, pw.clock, journal, lambda: pw.cfg)
    return TxSender(venue=pw.venue, chain=pw.chain, onchain=onchain, breaker=breaker, retry=retry,
                    idempotency=idem, journal=journal, clock=pw.clock, config=lambda: pw.cfg)


def signal(clock, kind, legs, sid="s1", market=C, **extra):
    now = clock.time_ns()
    return Signal(signal_id=sid, market=market, kind=kind, size=SIZE, expected_profit=1,
                  legs=[Leg(token_id=t, side=side, limit_price=p, size=SIZE, cost=p * SIZE // 10**6, fee=0)
                        for t, side, p in legs],
                  book_ts_ms={t: now // 10**6 - 10 for t, _, _ in legs}, created_ns=now,
                  expires_ns=now + 5 * 10**9, **extra)


async def test_the_pipeline_on_paper_books_what_the_replay_of_its_decisions_gives(pw, tmp_path):
    await pw.nonces.initialize()
    sender = make_sender(pw)
    pw.books.on_book(book(YES, asks=[(450_000, 100_000_000)], bids=[(440_000, 100_000_000)]))
    pw.books.on_book(book(NO, asks=[(500_000, 100_000_000)], bids=[(490_000, 100_000_000)]))
    buy_set = [(YES, "BUY", 450_000), (NO, "BUY", 500_000)]
    buy = await drive(pw.clock, sender.execute(signal(pw.clock, "BUY_SET", buy_set)))
    assert buy.status is TxStatus.SUCCESS, buy.error
    # A SELL_SET splits, then sells both legs into the bids.
    pw.books.on_book(book(YES, bids=[(540_000, 100_000_000)], ts=2_000))
    pw.books.on_book(book(NO, bids=[(490_000, 100_000_000)], ts=2_000))
    sell = await drive(pw.clock, sender.execute(signal(pw.clock, "SELL_SET", [(YES, "SELL", 540_000),
                                                                              (NO, "SELL", 490_000)], sid="s2")))
    assert sell.status is TxStatus.SUCCESS, sell.error
    # A NO basket of the event: both NO bought, converted.
    for _, _, n in Q:
        pw.books.on_book(book(n, asks=[(400_000, 100_000_000)]))
    basket = await drive(pw.clock, sender.execute(signal(
        pw.clock, "NO_BASKET", [(n, "BUY", 400_000) for _, _, n in Q], sid="s3", market=EVENT,
        neg_risk_market_id=EVENT, convert_fee_bips=0)))
    assert basket.status is TxStatus.SUCCESS, basket.error
    # A BUY_SET whose second leg has nothing left: the first is unwound into the bids.
    pw.books.on_book(book(YES, asks=[(450_000, 100_000_000)], bids=[(440_000, 100_000_000)], ts=3_000))
    pw.books.on_book(book(NO, asks=[(500_000, 1_000_000)], ts=3_000))
    partial = await drive(pw.clock, sender.execute(signal(pw.clock, "BUY_SET", [(YES, "BUY", 450_000),
                                                                                (NO, "BUY", 500_000)], sid="s4")))
    assert partial.status is TxStatus.PARTIAL_UNWOUND, partial.error
    await drive(pw.clock, asyncio.sleep(0), step=1.0, limit=10)
    pw.venue.settle_due()

    # The books are the paper wallet's, to the micro-USDC, and every token is flat.
    assert pw.ledger.balance(L.PUSD) == FUNDING + sender.journal.booked()
    assert {a: n for a, n in pw.ledger.balances().items() if a != L.PUSD} == {}
    # The replay of the decision log gives the same fills, balances and P&L as booked.
    sender.journal.db.commit()
    rep = replay(pw.tmp / "paper-ledger.sqlite", pw.tmp / "journal.sqlite")
    assert rep.matches, summary(rep)
    pnl = sum(r.realized_pnl for r in (buy, sell, basket, partial))
    assert rep.journal_pnl == rep.replay_pnl == pnl
    assert rep.orders_by_status["MINED"] >= 8 and rep.txs == 3  # merge, split, convert
    assert "replay MATCHES" in summary(rep) and json.loads(json.dumps(rep.as_dict()))["matches"]

    # A tampered record (a fill the levels it met cannot give) is found.
    db = sqlite3.connect(pw.tmp / "paper-ledger.sqlite")
    db.execute("UPDATE orders SET cost = cost - 1 WHERE seq = 1")
    db.commit()
    bad = replay(pw.tmp / "paper-ledger.sqlite", pw.tmp / "journal.sqlite")
    assert not bad.matches and any("recorded" in p for p in bad.problems)


async def test_a_restart_settles_a_match_the_killed_process_left(tmp_path, cfg):
    clock = TestClock()
    first = Paperworld(tmp_path, cfg, clock)
    first.books.on_book(book(YES, asks=[(450_000, 100_000_000)]))
    await drive(clock, first.venue.place(YES, Side.BUY, 450_000, SIZE, "0xd1", settle=False))
    first.ledger.close()  # the process dies before the settlement is due
    clock.advance(10)
    again = Paperworld(tmp_path, cfg, clock)
    assert again.ledger.balance(YES) == 0
    assert await again.chain.token_balances([YES]) == {YES: SIZE}  # due: mined before any read
    assert again.ledger.order("0xd1").status == "MINED"
