"""The execution journal: where each execution got to, in SQLite (WAL).

The idempotency store says WHETHER a signal is being executed; the journal
says HOW FAR: the signal itself, the client ids of its orders and what they
filled, the nonce and every hash sent for its transaction. A restarted
executor reads it to reconcile instead of guessing. Each step is one
committed transaction, so a SIGKILL loses at most the step in flight, whose
effects the reconciliation finds on the venue (by client id) or the chain
(by hash and nonce).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import msgspec

from actors.executor.legs import LegEvent, LegState, may_move
from actors.executor.outcomes import GAS, RESERVE, Flow
from actors.runtime.storage import immediate, open_wal
from bus import trace
from bus.messages import Signal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    key TEXT PRIMARY KEY,
    signal BLOB NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_end ON executions (state, updated_ns);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    token_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    ref_price INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS holdings (
    source TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    ref_price INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS position_tries (token_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS legs (
    client_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    token_id TEXT NOT NULL,
    side TEXT NOT NULL,
    state TEXT NOT NULL,
    order_id TEXT NOT NULL DEFAULT '',
    filled INTEGER NOT NULL DEFAULT 0,
    cost INTEGER NOT NULL DEFAULT 0,
    fee INTEGER NOT NULL DEFAULT 0,
    trades TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    updated_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS legs_by_key ON legs (key, idx);
CREATE TABLE IF NOT EXISTS cash_flows (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    ref TEXT NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE IF NOT EXISTS reserve (
    ref TEXT PRIMARY KEY,
    market TEXT NOT NULL,
    sets INTEGER NOT NULL,
    tokens TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reserve_by_market ON reserve (market);
CREATE TABLE IF NOT EXISTS baskets (
    key TEXT PRIMARY KEY,
    market_id TEXT NOT NULL,
    tokens TEXT NOT NULL,
    size INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    state TEXT NOT NULL,
    payout INTEGER NOT NULL DEFAULT 0,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sales_in_doubt (
    cid TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    token_id TEXT NOT NULL,
    size INTEGER NOT NULL
);
"""
_sig_decoder = msgspec.msgpack.Decoder(Signal)


class Journal:
    def __init__(self, path: str | Path, clock: Any) -> None:
        self._db = open_wal(path)
        self._db.executescript(_SCHEMA)
        self._clock = clock
        self._migrate_positions()

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, shared with the idempotency claims (one file, one commit per step)."""
        return self._db

    def step(self) -> AbstractContextManager[None]:
        """One transaction around several writes (claims and journal alike)."""
        return immediate(self._db)

    def begin(self, key: str, signal: Signal) -> None:
        """The execution's row; with the trace id it runs under (`polyarb trace`, a resume's logs)."""
        tid = trace.current.get()
        self._db.execute(
            "INSERT OR IGNORE INTO executions VALUES (?, ?, 'started', ?, ?)",
            (key, msgspec.msgpack.encode(signal), json.dumps({"trace_id": tid}) if tid else "{}",
             self._clock.time_ns()),
        )

    def trace_of(self, key: str) -> str:
        row = self._db.execute("SELECT json_extract(data, '$.trace_id') FROM executions WHERE key=?",
                               (key,)).fetchone()
        return str(row[0]) if row and row[0] else ""

    def update(self, key: str, state: str, **data: Any) -> None:
        """Merge `data` into the execution's record and set its state, atomically."""
        with immediate(self._db):
            row = self._db.execute("SELECT data FROM executions WHERE key=?", (key,)).fetchone()
            merged = {**(json.loads(row[0]) if row else {}), **data}
            self._db.execute("UPDATE executions SET state=?, data=?, updated_ns=? WHERE key=?",
                             (state, json.dumps(merged), self._clock.time_ns(), key))

    def finish(self, key: str, status: str, pnl: int, gas: int, flows: Iterable[Flow] = ()) -> None:
        """The final outcome, for an execution that got as far as its claim: the
        executor's durable books (the bus stream of results is lossy on a crash),
        with every cash flow it caused, each tied to its fill or transaction."""
        if self._db.execute("SELECT 1 FROM executions WHERE key=?", (key,)).fetchone():
            with immediate(self._db):
                self.update(key, "done", status=status, pnl=pnl, gas=gas)
                self._flows(key, flows)

    def _flows(self, key: str, flows: Iterable[Flow]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO cash_flows VALUES (?, ?, ?, ?, ?)",
                             [(key, i, f.kind, f.amount, f.ref) for i, f in enumerate(flows)])

    def flows(self, key: str) -> list[Flow]:
        return [Flow(k, a, r) for k, a, r in self._db.execute(
            "SELECT kind, amount, ref FROM cash_flows WHERE key=? ORDER BY seq", (key,))]

    def outcomes(self) -> list[tuple[str, str, int, int]]:
        """(key, status, pnl, gas) of every finished execution."""
        rows = self._db.execute("SELECT key, data FROM executions WHERE state='done'").fetchall()
        return [(k, d["status"], d.get("pnl", 0), d.get("gas", 0)) for k, d in ((k, json.loads(v)) for k, v in rows)]

    def day_figures(self, since_ns: int) -> tuple[int, int]:
        """(P&L, what unwinds lost) of the executions finished since `since_ns`, micro-USDC
        (the risk limits' day; an indexed range, not the whole journal)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(json_extract(data, '$.pnl')), 0), COALESCE(SUM(CASE WHEN json_extract(data, "
            "'$.status') = 'PARTIAL_UNWOUND' AND json_extract(data, '$.pnl') < 0 THEN -json_extract(data, '$.pnl') "
            "ELSE 0 END), 0) FROM executions WHERE state = 'done' AND updated_ns >= ?", (since_ns,)).fetchone()
        return int(row[0]), int(row[1])

    def booked(self) -> int:
        """The collateral every booked outcome moved, micro-USDC: the sum of the recorded
        cash flows, gas apart (it is paid in POL) and the sell reserve's transfers apart
        (sets moving in or out of it move no collateral). An outcome an older version booked
        without flows counts as its P&L plus gas."""
        flowed = self._db.execute("SELECT COALESCE(SUM(amount), 0) FROM cash_flows WHERE kind NOT IN (?, ?)",
                                  (GAS, RESERVE)).fetchone()[0]
        with_flows = {k for (k,) in self._db.execute("SELECT DISTINCT key FROM cash_flows")}
        legacy = sum(pnl + gas for k, _, pnl, gas in self.outcomes() if k not in with_flows)
        return int(flowed) + legacy

    def traded_tokens(self) -> list[str]:
        """Every token the books hold or a leg ever traded: the balances the reconciler
        compares (each should be what the books hold). Read from two indexed tables, not
        by decoding the journaled signals."""
        rows = self._db.execute("SELECT token_id FROM holdings UNION SELECT token_id FROM legs").fetchall()
        return sorted(t for (t,) in rows if t.isdigit())

    def get(self, key: str) -> tuple[Signal, str, dict[str, Any]] | None:
        row = self._db.execute("SELECT signal, state, data FROM executions WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        return _sig_decoder.decode(row[0]), row[1], json.loads(row[2])

    # -- legs: each order's state at the venue (actors/executor/legs.py), one row per client id.
    def place_legs(self, key: str, legs: list[tuple[str, str, str]]) -> None:
        """(client id, token, side) of every leg, PLACED, before their request goes out."""
        now = self._clock.time_ns()
        with immediate(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO legs (client_id, key, idx, token_id, side, state, updated_ns) "
                "VALUES (?, ?, ?, ?, ?, 'placed', ?)",
                [(cid, key, i, token, side, now) for i, (cid, token, side) in enumerate(legs)])

    def leg_event(self, ev: LegEvent) -> bool:
        """Apply what the venue said about a leg, if it moves the leg forward (late or
        repeated news from the other source is ignored): False if nothing changed."""
        with immediate(self._db):
            row = self._db.execute("SELECT state, order_id, trades, detail, filled, cost, fee FROM legs "
                                   "WHERE client_id=?", (ev.client_id,)).fetchone()
            if row is None or not may_move(LegState(row[0]), ev.state):
                return False
            _, order_id, trades, detail, filled, cost, fee = row
            if ev.filled or ev.state in (LegState.FAILED, LegState.UNMATCHED, LegState.KILLED):
                filled, cost, fee = ev.filled, ev.cost, ev.fee  # what traded, as far as we know now
            self._db.execute(
                "UPDATE legs SET state=?, order_id=?, trades=?, detail=?, filled=?, cost=?, fee=?, updated_ns=? "
                "WHERE client_id=?", (ev.state.value, ev.order_id or order_id, ",".join(ev.trades) or trades,
                                      ev.detail[:300] or detail, filled, cost, fee, self._clock.time_ns(),
                                      ev.client_id))
            return True

    def legs(self, key: str) -> list[tuple[str, LegState, str, int, int, int]]:
        """(client id, state, order id, filled, cost, fee) of an execution's legs, in order."""
        rows = self._db.execute("SELECT client_id, state, order_id, filled, cost, fee FROM legs WHERE key=? "
                                "ORDER BY idx", (key,)).fetchall()
        return [(c, LegState(s), o, f, co, fe) for c, s, o, f, co, fe in rows]

    def legs_in_flight(self) -> dict[str, int]:
        """Legs of unfinished executions by state, before their tokens are on chain (status)."""
        rows = self._db.execute(
            "SELECT l.state, COUNT(*) FROM legs l JOIN executions e ON e.key = l.key WHERE e.state != 'done' "
            "AND l.state IN ('placed', 'delayed', 'matched', 'retrying') GROUP BY l.state").fetchall()
        return dict(rows)

    # -- open positions: tokens we hold outside a complete set, until they are sold.
    # Each change is a row keyed by what caused it (an unwind leg, a failed merge, a
    # sale), written with INSERT OR IGNORE: a step replayed after a crash finds its
    # row and adds nothing twice. A position is the sum of its token's rows.
    def hold(self, source: str, token_id: str, size: int, ref_price: int) -> bool:
        """Record `size` tokens held because of `source`; False if already recorded."""
        cur = self._db.execute("INSERT OR IGNORE INTO holdings VALUES (?, ?, ?, ?)",
                               (source, token_id, size, ref_price))
        return cur.rowcount == 1

    def positions(self) -> list[tuple[str, int, int, int]]:
        """(token_id, size, ref_price, attempts) of every open position for sale (the
        tokens of YES baskets are held to their resolution, the sell reserve's for sale
        sets: neither is for sale)."""
        return self._db.execute(
            "SELECT h.token_id, SUM(h.size), MAX(h.ref_price), COALESCE(t.attempts, 0) FROM holdings h "
            "LEFT JOIN position_tries t ON t.token_id = h.token_id WHERE h.source NOT LIKE 'basket:%' "
            "AND h.source NOT LIKE 'redeemed:%' AND h.source NOT LIKE 'reserve:%' "
            "GROUP BY h.token_id HAVING SUM(h.size) > 0"
        ).fetchall()

    def held_tokens(self) -> dict[str, int]:
        """Every token the books say the wallet holds, baskets included (the reconciler's view)."""
        return dict(self._db.execute("SELECT token_id, SUM(size) FROM holdings GROUP BY token_id "
                                     "HAVING SUM(size) != 0").fetchall())

    # -- YES baskets, held until their event resolves: one row each, and their tokens as holdings.
    def lock_basket(self, key: str, market_id: str, tokens: list[str], size: int, cost: int) -> None:
        """A bought YES basket, once (a replay after a crash adds nothing)."""
        with immediate(self._db):
            if self._db.execute("INSERT OR IGNORE INTO baskets VALUES (?, ?, ?, ?, ?, 'held', 0, ?)",
                                (key, market_id, json.dumps(tokens), size, cost, self._clock.time_ns())).rowcount:
                for i, token in enumerate(tokens):
                    self.hold(f"basket:{key}:{i}", token, size, 0)

    def baskets_held(self) -> list[tuple[str, str, list[str], int, int]]:
        """(key, adapter market id, YES tokens in question order, size, cost) of each held basket."""
        rows = self._db.execute("SELECT key, market_id, tokens, size, cost FROM baskets WHERE state='held' "
                                "ORDER BY updated_ns").fetchall()
        return [(k, m, json.loads(t), n, c) for k, m, t, n, c in rows]

    def locked_capital(self) -> int:
        """What the held baskets cost and the sell reserve's sets are worth (micro-USDC):
        capital that is not collateral until the events resolve or the sets are sold."""
        baskets = self._db.execute("SELECT COALESCE(SUM(cost), 0) FROM baskets WHERE state='held'").fetchone()[0]
        return int(baskets) + self.reserved()

    # -- the sell reserve: complete sets split ahead of SELL_SETs (actors/executor/reserve.py).
    # Each move is a row keyed by its cause (a top-up, a draw, a restock, a release), and its
    # tokens are holdings rows `reserve:<ref>:<i>`: INSERT OR IGNORE, so a replay adds nothing.
    def reserve_move(self, ref: str, market: str, tokens: list[str], sets: int) -> bool:
        """`sets` complete sets of `market` into (+) or out of (-) the reserve, once."""
        with immediate(self._db):
            if not self._db.execute("INSERT OR IGNORE INTO reserve VALUES (?, ?, ?, ?)",
                                    (ref, market, sets, json.dumps(tokens))).rowcount:
                return False
            for i, token in enumerate(tokens):
                self.hold(f"reserve:{ref}:{i}", token, sets, 0)
            return True

    def reserved(self, market: str | None = None) -> int:
        """Sets in the reserve: of one market, or of all."""
        if market is None:
            return int(self._db.execute("SELECT COALESCE(SUM(sets), 0) FROM reserve").fetchone()[0])
        return int(self._db.execute("SELECT COALESCE(SUM(sets), 0) FROM reserve WHERE market=?",
                                    (market,)).fetchone()[0])

    def reserves(self) -> dict[str, int]:
        """Sets in the reserve by market (markets with none left out)."""
        return dict(self._db.execute("SELECT market, SUM(sets) FROM reserve GROUP BY market "
                                     "HAVING SUM(sets) != 0").fetchall())

    def reserve_tokens(self, market: str) -> list[str]:
        """The market's tokens in outcome order, as its reserve moves recorded them."""
        row = self._db.execute("SELECT tokens FROM reserve WHERE market=? LIMIT 1", (market,)).fetchone()
        return json.loads(row[0]) if row else []

    def unfinished(self, prefix: str) -> list[str]:
        """Keys starting with `prefix` whose record is not done (oldest first)."""
        return [k for (k,) in self._db.execute("SELECT key FROM executions WHERE key >= ? AND key < ? "
                                               "AND state != 'done' ORDER BY updated_ns",
                                               (prefix, prefix + "\uffff")).fetchall()]

    def basket_ended(self, key: str, state: str, payout: int, burnt: list[tuple[str, int]]) -> None:
        """A held basket redeemed (or its redemption failed): the tokens the redemption
        burnt leave the holdings. Inside the step that books its outcome."""
        with immediate(self._db):
            self._db.execute("UPDATE baskets SET state=?, payout=?, updated_ns=? WHERE key=?",
                             (state, payout, self._clock.time_ns(), key))
            for i, (token, size) in enumerate(burnt):
                self.hold(f"redeemed:{key}:{i}", token, -size, 0)

    def sale_attempt(self, token_id: str) -> int:
        """The number of this token's next sale attempt: never reused, so each attempt
        has its own client id and a replay after a crash has the same one."""
        row = self._db.execute("SELECT attempts FROM position_tries WHERE token_id=?", (token_id,)).fetchone()
        return int(row[0]) if row else 0

    # -- sales whose outcome is not known yet: placed (or errored) and not booked. While
    # one is, the books may be behind the chain by exactly that sale, so the reconciler
    # waits and no other sale of the token is placed.
    def doubt_sale(self, cid: str, key: str, token_id: str, size: int) -> None:
        self._db.execute("INSERT OR IGNORE INTO sales_in_doubt VALUES (?, ?, ?, ?)", (cid, key, token_id, size))

    def sales_in_doubt(self) -> list[tuple[str, str, str, int]]:
        """(client id, key to book it under, token, size) of each."""
        return self._db.execute("SELECT cid, key, token_id, size FROM sales_in_doubt ORDER BY cid").fetchall()

    def drop_doubt(self, cid: str) -> None:
        """The venue does not have it: nothing was sold."""
        self._db.execute("DELETE FROM sales_in_doubt WHERE cid=?", (cid,))

    def record_sale(self, key: str, signal: Signal, token_id: str, sold: int, proceeds: int,
                    flows: Iterable[Flow] = (), cid: str = "") -> None:
        """One sale attempt's outcome, in ONE transaction: the tokens gone, the attempt
        counted, its doubt (`cid`) resolved and, if anything sold, the proceeds booked
        as an outcome of its own."""
        with immediate(self._db):
            if cid:
                self.drop_doubt(cid)
            self._db.execute("INSERT INTO position_tries VALUES (?, 1) ON CONFLICT(token_id) "
                             "DO UPDATE SET attempts = attempts + 1", (token_id,))
            if sold:
                self._db.execute("INSERT OR IGNORE INTO holdings VALUES (?, ?, ?, 0)", (key, token_id, -sold))
                self._db.execute(
                    "INSERT OR IGNORE INTO executions VALUES (?, ?, 'done', ?, ?)",
                    (key, msgspec.msgpack.encode(signal),
                     json.dumps({"status": "POSITION_SOLD", "pnl": proceeds, "gas": 0, "sold": sold}),
                     self._clock.time_ns()))
                self._flows(key, flows)

    def _migrate_positions(self) -> None:
        """Positions of the old aggregated table become holdings rows, once."""
        with immediate(self._db):
            for token_id, size, ref_price, attempts in self._db.execute(
                    "SELECT token_id, size, ref_price, attempts FROM positions").fetchall():
                self._db.execute("INSERT OR IGNORE INTO holdings VALUES (?, ?, ?, ?)",
                                 (f"migrated:{token_id}", token_id, size, ref_price))
                self._db.execute("INSERT OR IGNORE INTO position_tries VALUES (?, ?)", (token_id, attempts))
            self._db.execute("DELETE FROM positions")

    def put_value(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))

    def get_value(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        self._db.close()
