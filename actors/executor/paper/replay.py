"""The paper world checked against its own decisions (`polyarb paper replay`).

Every order the paper venue decided is matched again on the levels it met (the decision
log), every transaction's effect is computed again from its arguments, and from these:
- each order's fill must be the one recorded (the matching is deterministic);
- the paper wallet's balances must be the funding plus every settled fill and every mined
  transaction, replayed;
- every cash flow the executor booked must be the replayed amount of the fill or the
  transaction it names (gas apart: the executor prices it at its POL price, which is its
  own input, and a sell-reserve transfer moves no collateral), so the P&L report, which
  sums the executor's books, equals the P&L of the replay.
Read-only: both files are opened with `mode=ro`, so it may run beside a trading executor.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from actors.domain.adapter import BIPS
from actors.domain.money import format_usdc
from actors.executor.history import Trade, grouped, open_read_only, trades
from actors.executor.outcomes import GAS, RESERVE
from actors.executor.paper import ledger as L
from actors.executor.paper.matching import take

SETTLED_SIDE = {"BUY": ("buy", "unwind"), "SELL": ("sell", "unwind", "sale")}


@dataclass
class Report:
    orders: int = 0
    orders_by_status: Counter[str] = field(default_factory=Counter)
    txs: int = 0
    flows: int = 0
    journal_pnl: int = 0  # the sum of the executor's booked P&L (what `polyarb pnl` reports)
    replay_pnl: int = 0  # the same from the replayed fills and transactions (gas as booked)
    gas: int = 0
    balances_replayed: dict[str, int] = field(default_factory=dict)
    balances_ledger: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.problems and self.journal_pnl == self.replay_pnl \
            and self.balances_replayed == self.balances_ledger

    def as_dict(self) -> dict[str, Any]:
        return {"matches": self.matches, "orders": self.orders, "orders_by_status": dict(self.orders_by_status),
                "transactions": self.txs, "cash_flows": self.flows, "journal_pnl_micro": self.journal_pnl,
                "replay_pnl_micro": self.replay_pnl, "gas_micro": self.gas,
                "balances_equal": self.balances_replayed == self.balances_ledger,
                "problems": self.problems[:50], "problem_count": len(self.problems),
                "by_strategy": [asdict(g) for g in grouped(self.trades, "strategy")]}


def _orders(db: sqlite3.Connection) -> list[L.Order]:
    return [L._order(r) for r in db.execute(L._SELECT_ORDERS + " ORDER BY seq")]


def _txs(db: sqlite3.Connection) -> list[L.Tx]:
    return [L._tx(r) for r in db.execute(L._SELECT_TXS + " ORDER BY nonce, sent_ns")]


def tx_effects(t: L.Tx) -> list[tuple[str, int]]:
    """A mined transaction's balance changes, from its arguments and the tokens it names
    (which token is which comes from its record: the listing is not part of the replay)."""
    if t.status != L.MINED:
        return []
    tokens = [a for a, _ in t.effects if a != L.PUSD]
    a = t.args
    if t.op in ("merge", "split"):
        sign = -1 if t.op == "merge" else 1
        amount = int(a["amount"])
        if len(tokens) != int(a["outcomes"]):
            raise ValueError(f"{t.op} {t.hash[:12]}: {len(tokens)} tokens moved, {a['outcomes']} outcomes")
        return [(L.PUSD, -sign * amount), *((tok, sign * amount) for tok in tokens)]
    if t.op == "convert":
        amount, bips = int(a["amount"]), int(a["fee_bips"])
        k = bin(int(a["index_set"])).count("1")
        out = amount - amount * bips // BIPS
        burnt = [tok for tok, d in t.effects if tok != L.PUSD and d < 0]
        minted = [tok for tok, d in t.effects if tok != L.PUSD and d > 0]
        if len(burnt) != k:
            raise ValueError(f"convert {t.hash[:12]}: {len(burnt)} NO burnt, {k} in the index set")
        return [*((tok, -amount) for tok in burnt), *((tok, out) for tok in minted), (L.PUSD, (k - 1) * out)]
    if t.op == "redeem":
        yes, no = (int(x) for x in a["amounts"])
        payouts = a["payouts"]
        named = {tok: d for tok, d in t.effects if tok != L.PUSD}
        return [*((tok, d) for tok, d in named.items()), (L.PUSD, yes * int(payouts[0]) + no * int(payouts[1]))]
    return []


def replay(ledger_path: str | Path, journal_path: str | Path | None) -> Report:
    rep = Report()
    with open_read_only(ledger_path) as db:
        funding = int(db.execute("SELECT value FROM meta WHERE key = 'funding'").fetchone()[0])
        ledger_balances = {a: int(n) for a, n in db.execute("SELECT asset, amount FROM balances WHERE amount != 0")}
        orders, txs = _orders(db), _txs(db)
    balances: Counter[str] = Counter({L.PUSD: funding})
    by_cid: dict[str, Any] = {}
    for o in orders:
        rep.orders += 1
        rep.orders_by_status[o.status] += 1
        again = take(o.levels, o.side, o.limit_price, o.size, all_or_none=not o.fak, fee_rate_ppm=o.fee_rate_ppm)
        if o.status in (L.MATCHED, L.MINED, L.FAILED):
            if (again.filled, again.cost, again.fee, again.fills) != (o.filled, o.cost, o.fee, o.fills):
                rep.problems.append(f"order {o.client_id[:14]}: recorded {o.filled}/{o.cost}/{o.fee}, "
                                    f"replayed {again.filled}/{again.cost}/{again.fee}")
        elif o.status == L.KILLED and again.filled:
            rep.problems.append(f"order {o.client_id[:14]} killed, but the levels it met fill {again.filled}")
        if o.status == L.MINED:
            for asset, d in L.trade_effects(o.token_id, o.side, again.filled, again.cost, again.fee):
                balances[asset] += d
        by_cid[o.client_id] = (o, again)
    by_hash: dict[str, L.Tx] = {}
    for t in txs:
        rep.txs += 1
        by_hash[t.hash] = t
        try:
            again_fx = tx_effects(t)
        except (KeyError, ValueError) as exc:
            rep.problems.append(f"transaction {t.hash[:12]}: {exc}")
            continue
        if sorted(again_fx) != sorted(t.effects):
            rep.problems.append(f"transaction {t.hash[:12]} ({t.op}): recorded {t.effects}, replayed {again_fx}")
        for asset, d in again_fx:
            balances[asset] += d
    rep.balances_replayed = {a: n for a, n in balances.items() if n}
    rep.balances_ledger = ledger_balances
    if rep.balances_replayed != rep.balances_ledger:
        diff = {a: (rep.balances_replayed.get(a, 0), ledger_balances.get(a, 0))
                for a in set(rep.balances_replayed) | set(ledger_balances)
                if rep.balances_replayed.get(a, 0) != ledger_balances.get(a, 0)}
        rep.problems.append(f"balances replayed != the ledger's (replayed, ledger): {dict(list(diff.items())[:5])}")
    if journal_path is not None:
        _flows(rep, journal_path, by_cid, by_hash)
    return rep


def _flows(rep: Report, journal_path: str | Path, by_cid: dict[str, Any], by_hash: dict[str, L.Tx]) -> None:
    with open_read_only(journal_path) as db:
        rep.trades = trades(db, bookkeeping=True)
        rows = db.execute("SELECT key, kind, amount, ref FROM cash_flows ORDER BY key, seq").fetchall()
    rep.journal_pnl = sum(t.pnl for t in rep.trades)
    for key, kind, amount, ref in rows:
        rep.flows += 1
        expected = _expected(kind, amount, ref, by_cid, by_hash)
        if isinstance(expected, str):
            rep.problems.append(f"{key[:24]} {kind} {amount}: {expected}")
            expected = amount  # counted as booked, reported above
        if kind == GAS:
            rep.gas += -amount
        rep.replay_pnl += expected


def _expected(kind: str, amount: int, ref: str, by_cid: dict[str, Any], by_hash: dict[str, L.Tx]) -> int | str:
    """The replayed amount of one booked cash flow, or why it has none."""
    if kind in (GAS, RESERVE):
        if kind == GAS and ref and ref not in by_hash:
            return f"gas of {ref[:12]}, a transaction the paper chain never saw"
        return amount  # the executor's own pricing; a reserve transfer moves no collateral
    if ref in by_cid:
        o, again = by_cid[ref]
        if o.status != L.MINED:
            return f"booked for order {ref[:14]}, which is {o.status}"
        if kind == "fee":
            return -again.fee
        return -again.cost if o.side == "BUY" else again.cost
    if ref in by_hash:
        t = by_hash[ref]
        if t.status != L.MINED:
            return f"{kind} booked for transaction {ref[:12]}, which {t.status}"
        return dict(_sum(tx_effects(t))).get(L.PUSD, 0)
    return f"no paper order or transaction {ref[:14]!r}"


def _sum(effects: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a, d in effects:
        out[a] = out.get(a, 0) + d
    return out


def _signed(micro: int) -> str:
    return ("+" if micro >= 0 else "") + format_usdc(micro)


def summary(rep: Report) -> str:
    """The report as text: the P&L by strategy, then whether the replay agrees."""
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(rep.orders_by_status.items()))
    lines = [f"paper trading: {rep.orders} orders ({statuses}), {rep.txs} transactions, {rep.flows} cash flows"]
    for g in grouped([t for t in rep.trades if t.strategy != "BOOKKEEPING"], "strategy"):
        lines.append(f"  {g.name:<14} {g.successes}/{g.executions} ok  P&L {_signed(g.pnl)}  gas {format_usdc(g.gas)}")
    lines.append(f"P&L as booked {_signed(rep.journal_pnl)} USDC; replayed {_signed(rep.replay_pnl)} USDC")
    lines.append("replay MATCHES: every fill, transaction, balance and cash flow" if rep.matches
                 else f"replay DIFFERS ({len(rep.problems)} problems):")
    lines += [f"  - {p}" for p in rep.problems[:20]]
    return "\n".join(lines)

