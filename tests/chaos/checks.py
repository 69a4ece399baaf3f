"""The chaos run's checks, each a named result with the figures it saw.

1 programs up, no unexpected Traceback; 2 pUSD equals the books; 3 every
token balance equals the books; 4 nothing executed twice (results, client
ids, on-chain steps); 5 nonces clean (latest = pending, txpool empty, the
authority holds nothing); 6 no execution left unfinished; 7 the breaker
opened under rejected orders at every actor within 2 s and closed again;
8 each killed actor published again (median, max).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.executor import web3_chain
from tests.chaos.observer import Heard
from tests.chaos.world import ACTORS

FINAL = {"SUCCESS", "PARTIAL_UNWOUND", "FAILED", "STALE"}  # one per execution, ever
OPENISH = {"OPEN", "HALF_OPEN", "FORCED_OPEN"}
STEP_SELECTORS = {getattr(web3_chain, n).hex() for n in ("_SPLIT", "_MERGE", "_CONVERT", "_REDEEM")}


@dataclass
class Check:
    number: int
    name: str
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def programs(statuses: dict[str, str], logs: dict[str, str]) -> Check:
    tracebacks = {p: text.count("Traceback (most recent call last)") for p, text in logs.items()}
    first = {p: _first_traceback(logs[p]) for p, n in tracebacks.items() if n}
    ok = all(s == "RUNNING" for s in statuses.values()) and not any(tracebacks.values())
    return Check(1, "every program RUNNING, no Traceback in any log", ok,
                 {"status": statuses, "tracebacks": tracebacks, "first_traceback": first})


def _first_traceback(text: str) -> str:
    i = text.find("Traceback (most recent call last)")
    start = text.rfind("\n", 0, i) + 1
    return text[start:i + 1500]


def collateral(delta: int, booked: int, reserved: int) -> Check:
    return Check(2, "wallet pUSD delta equals the books", delta == booked,
                 {"wallet_delta_micro": delta, "books_micro": booked, "difference_micro": delta - booked,
                  "sell_reserve_sets_micro": reserved})


def tokens(chain: dict[str, int], books: dict[str, int]) -> Check:
    differ = {t: {"chain": chain.get(t, 0), "books": books.get(t, 0)}
              for t in sorted(set(chain) | set(books)) if chain.get(t, 0) != books.get(t, 0)}
    return Check(3, "every ERC-1155 balance equals the books", not differ,
                 {"tokens": len(set(chain) | set(books)), "held": sum(1 for v in books.values() if v),
                  "differences": differ})


def once(results: list[Any], venue_db: Path | None, trader: str, journal_db: Path, rpc_url: str,
         from_block: int) -> Check:
    # A key may be tried again only after an attempt that did nothing (no leg out, no money):
    # twice = an attempt that traded (or moved money) and another final outcome of its key.
    by_key: dict[str, list[Any]] = {}
    for r in results:
        if str(r.status) in FINAL:
            by_key.setdefault(r.idempotency_key, []).append(r)
    finals = Counter({k: len(v) for k, v in by_key.items()})
    twice = sorted(k for k, rs in by_key.items() if len(rs) > 1 and any(
        str(r.status) in ("SUCCESS", "PARTIAL_UNWOUND") or r.realized_pnl or r.gas_cost for r in rs[:-1]))
    dup_ids: list[str] = []
    if venue_db is not None:
        with read_only(venue_db) as db:
            dup_ids = [m for (m,) in db.execute(
                "SELECT lower(metadata) FROM orders WHERE lower(maker)=? GROUP BY lower(metadata) HAVING COUNT(*) > 1",
                (trader.lower(),))]
    steps, mined_twice, unrecorded = _steps(journal_db, trader, rpc_url, from_block)
    ok = not twice and not dup_ids and not mined_twice and not unrecorded
    return Check(4, "no key executed twice, no client id twice, no on-chain step mined twice", ok,
                 {"final_results": sum(finals.values()), "keys_retried_after_nothing_happened":
                  sum(1 for n in finals.values() if n > 1), "keys_executed_twice": twice,
                  "client_ids_twice": dup_ids, "onchain_steps_mined": steps,
                  "steps_mined_twice": mined_twice, "mined_steps_not_in_the_books": unrecorded})


def _steps(journal_db: Path, trader: str, rpc_url: str, from_block: int) -> tuple[int, list[str], list[str]]:
    """The wallet's mined split/merge/convert/redeem transactions against the journal's
    record of each step's signed hashes: each step mined at most once, each mined step recorded."""
    owner: dict[str, str] = {}  # tx hash -> "key:purpose"
    with read_only(journal_db) as db:
        for key, data in db.execute("SELECT key, data FROM executions"):
            for purpose, st in json.loads(data).items():
                if isinstance(st, dict) and isinstance(st.get("hashes"), list):
                    for h in st["hashes"]:
                        owner[str(h).lower()] = f"{key}:{purpose}"
    latest = int(_rpc(rpc_url, [("eth_blockNumber", [])])[0], 16)
    mined: list[str] = []
    for start in range(from_block + 1, latest + 1, 200):
        blocks = _rpc(rpc_url, [("eth_getBlockByNumber", [hex(n), True])
                                for n in range(start, min(start + 200, latest + 1))])
        for b in blocks:
            for tx in (b or {}).get("transactions", []):
                if tx["from"].lower() == trader.lower() and tx["input"][2:10] in STEP_SELECTORS:
                    mined.append(tx["hash"].lower())
    receipts = _rpc(rpc_url, [("eth_getTransactionReceipt", [h]) for h in mined]) if mined else []
    ok = [h for h, r in zip(mined, receipts, strict=True) if r and int(r["status"], 16) == 1]
    per_step = Counter(owner.get(h, "") for h in ok)
    return len(ok), sorted(s for s, n in per_step.items() if s and n > 1), [h for h in ok if h not in owner]


def _rpc(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    body = json.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)])
    req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - the local anvil
        answers = sorted(json.loads(resp.read()), key=lambda a: a["id"])
    return [a.get("result") for a in answers]


def nonces(latest: int, pending: int, txpool: dict[str, Any], authority: dict[str, Any]) -> Check:
    pool = int(txpool.get("pending", "0x0"), 16) + int(txpool.get("queued", "0x0"), 16)
    ok = latest == pending and pool == 0 and authority.get("pending_count") == 0
    return Check(5, "latest nonce = pending nonce, txpool empty, nothing SENT or leased", ok,
                 {"latest": latest, "pending": pending, "txpool": pool,
                  "authority_pending": authority.get("pending_nonces"), "next_nonce": authority.get("next_nonce")})


def finished(journal_db: Path) -> Check:
    with read_only(journal_db) as db:
        left = db.execute("SELECT key, state FROM executions WHERE state != 'done'").fetchall()
        pending = [k for k, d in db.execute("SELECT key, data FROM executions WHERE state='done'")
                   if json.loads(d).get("status") in ("PENDING", "IN_PROGRESS")]
        by_status = Counter(json.loads(d).get("status") for (d,) in db.execute(
            "SELECT data FROM executions WHERE state='done'"))
        has_doubts = db.execute("SELECT 1 FROM sqlite_master WHERE name='sales_in_doubt'").fetchone()
        doubts = db.execute("SELECT cid, token_id FROM sales_in_doubt").fetchall() if has_doubts else []
    return Check(6, "no execution left IN_PROGRESS or PENDING, no sale in doubt",
                 not left and not pending and not doubts,
                 {"unfinished": left[:20], "pending": pending[:20], "sales_in_doubt": doubts[:20],
                  "outcomes": dict(by_status)})


def failures_in_a_row(heard: Heard, w0: float, w1: float) -> int:
    """The longest run of FAILED results heard in [w0, w1] with no SUCCESS between: what the
    breaker's consecutive-failure trip counts (a leg placed before the window may still
    settle SUCCESS in it, and resets the run, as it does the breaker's)."""
    run = longest = 0
    for at, r in zip(heard.result_times, heard.results, strict=True):
        if not w0 <= at <= w1:
            continue
        if str(r.status) == "FAILED":
            run += 1
            longest = max(longest, run)
        elif str(r.status) == "SUCCESS":
            run = 0
    return longest


def breaker(heard: Heard, windows: list[tuple[float, float]], closed_at: dict[str, float] | None,
            down: list[tuple[str, float, float]], threshold: int = 3) -> Check:
    """Under each reject_orders window that failed `threshold` executions in a row the
    executor's breaker opened; each actor up at the time saw it within 2 s; after
    recovery every actor saw CLOSED. A window with fewer failures (few signals came) could
    not trip it and is reported, not failed; at least one window must have tripped it."""
    opened = [(t, s, r) for t, s, r in heard.transitions if s in OPENISH]
    seen: list[dict[str, Any]] = []
    ok, exercised = bool(windows), 0
    for w0, w1 in windows:
        before = [(t, s, r) for t, s, r in heard.transitions if t <= w0]
        already = before[-1] if before and before[-1][1] in OPENISH else None  # open when it began
        trip = already or next(((t, s, r) for t, s, r in opened if w0 <= t <= w1 + 5), None)
        if trip is None:
            in_a_row = failures_in_a_row(heard, w0, w1 + 5)
            if in_a_row >= threshold:
                ok = False  # enough failures to trip, and it did not
            seen.append({"window": [w0, w1], "opened": None, "failed_in_a_row": in_a_row,
                         "exercised": in_a_row >= threshold})
            continue
        exercised += 1
        t_open = trip[0]
        delays: dict[str, float | None] = {}
        for actor in ACTORS:
            if any(a == actor and s <= t_open + 2 and e >= t_open for a, s, e in down):
                continue  # killed or restarting at that moment: not up to see it
            first = next((t for t, v in heard.views.get(actor, []) if t >= t_open - 0.05 and v in OPENISH), None)
            delays[actor] = None if first is None else round(max(0.0, first - t_open), 3)
        late = {a: d for a, d in delays.items() if d is None or d > 2.0}
        ok = ok and not late
        seen.append({"window": [round(w0, 2), round(w1, 2)], "opened_at": round(t_open, 3), "reason": trip[2],
                     "seen_after_seconds": delays, "late": late})
    if closed_at is None or not exercised:
        ok = False
    return Check(7, "breaker OPEN under rejected orders at every actor within 2 s, then CLOSED everywhere", ok,
                 {"trips": seen, "closed_at_each_actor": closed_at,
                  "executor_transitions": [[round(t, 3), s, r[:120]] for t, s, r in heard.transitions]})


def restarts(kills: list[tuple[float, str]], heard: Heard) -> Check:
    """After each SIGKILL of an actor, how long until its next boot published stats."""
    times: dict[str, list[float]] = {}
    missing: list[str] = []
    for t, program in kills:
        if program not in ACTORS:
            continue
        back = next((at for at, _ in heard.boots.get(program, []) if at > t), None)
        if back is None:
            missing.append(f"{program}@{t:.1f}")
        else:
            times.setdefault(program, []).append(back - t)
    figures = {p: {"kills": len(v), "median_s": round(statistics.median(v), 2), "max_s": round(max(v), 2)}
               for p, v in times.items()}
    return Check(8, "every killed actor published stats again", not missing,
                 {"by_actor": figures, "never_back": missing})
