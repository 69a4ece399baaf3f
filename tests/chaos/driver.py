"""The chaos driver: the real system under arbitrage load and a seeded storm of faults,
then every fault off, the breaker closed, trading halted, and the books checked
against the chain.

    python -m tests.chaos --seconds 600 --seed 7      # make chaos SEED=7
    python -m tests.chaos --seconds 130 --seed 1      # the CI profile: every kind once

Exit status 0 only if every check holds. The JSON report (faults with their
times, every figure, each check, the command that reruns the seed) is written
under run/chaos/; the world's folder (logs, state) is kept when a check fails.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from web3 import Web3

from config.loader import load
from sandbox.deploy import Deployment, MarketInfo, balances
from tests.chaos import checks
from tests.chaos.faults import CONFIG_BREAKS, SIGCONT, SIGKILL, SIGSTOP, VENUE_FAULTS, Planned, schedule
from tests.chaos.observer import Observer
from tests.chaos.world import ACTORS, BIN, PROGRAMS, ROOT, World

ARBITRAGE_PER_MINUTE = 40
REJECT_MAX_SECONDS = 40  # reject_orders stays on at most this long waiting for the breaker to trip
REPORTS = ROOT / "run" / "chaos"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} chaos: {msg}", flush=True)


def wait(check, timeout: float, what: str, interval: float = 0.25) -> bool:
    """Poll `check` until it holds or `timeout` passes; False (and said) if it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: S110 - a node restarting, a stats field not there yet: poll again
            pass
        time.sleep(interval)
    log(f"gave up waiting {timeout:.0f} s for {what}")
    return False


class Run:
    def __init__(self, seconds: float, seed: int, folder: Path) -> None:
        self.seconds, self.seed = seconds, seed
        self.world = World(folder, seed, ARBITRAGE_PER_MINUTE)
        self.cfg = load(self.world.config_path)
        self.events: list[dict[str, Any]] = []  # what was injected, when
        self.kills: list[tuple[float, str]] = []
        self.reject_windows: list[list[float]] = []
        self._stopped_chain = 0
        self.t0 = time.time()

    def note(self, what: str, **fields: Any) -> None:
        self.events.append({"t": round(time.time() - self.t0, 2), "event": what, **fields})
        log(f"{what} {fields if fields else ''}")

    # -- faults
    def begin(self, p: Planned) -> None:
        kind, w = p.kind, self.world
        if kind.startswith("kill:"):
            program = kind.split(":", 1)[1]
            pid = w.signal(program, SIGKILL)
            self.kills.append((time.time(), program))
            self.note(kind, pid=pid)
        elif kind == "stall:chain":
            self._stopped_chain = w.signal("chain", SIGSTOP)
            self.note(kind, pid=self._stopped_chain, seconds=p.duration)
        elif kind in VENUE_FAULTS:
            w.venue_faults[kind] = VENUE_FAULTS[kind]
            w.render()
            if kind == "reject_orders":
                self.reject_windows.append([time.time(), time.time() + p.duration])
            self.note(kind, seconds=p.duration, settings=VENUE_FAULTS[kind])
        else:
            w.broken = self._broken_text(kind.split(":", 1)[1])
            w.render()
            self.note(kind, seconds=p.duration)

    def end(self, kind: str) -> None:
        w = self.world
        if kind == "stall:chain":
            self._resume_chain()
        elif kind in VENUE_FAULTS:
            w.venue_faults.pop(kind, None)
            w.render()
            if kind == "reject_orders" and self.reject_windows:
                self.reject_windows[-1][1] = time.time()
        elif kind.startswith("config:"):
            w.broken = None
            w.render()
        else:
            return
        self.note(f"{kind} off")

    def _resume_chain(self) -> None:
        if self._stopped_chain:
            try:
                os.kill(self._stopped_chain, SIGCONT)
            except ProcessLookupError:
                pass
            self._stopped_chain = 0

    def _broken_text(self, how: str) -> str:
        assert how in CONFIG_BREAKS
        w = self.world
        # The good file (base, load, venue faults): the break changes one thing of it. Never
        # the file as it is: another break may hold it (seed 46: a second invalid_yaml while
        # one was in place made the driver's own YAML read fail and end the run).
        w.broken = None
        w.render()
        raw = yaml.safe_load(w.config_path.read_text())
        if how == "invalid_yaml":
            return yaml.safe_dump(raw, sort_keys=False) + "trading: [unclosed\n"
        if how == "unknown_key":
            raw["trading"]["chaos_unknown_key"] = 1
        else:
            raw["trading"]["max_position_size"] = "-5"
        return yaml.safe_dump(raw, sort_keys=False)

    # -- the phases
    def setup(self, obs: Observer) -> dict[str, Any]:
        w = self.world
        w.start()
        ok = wait(lambda: all(obs.stats(a) for a in ACTORS)
                  and (obs.stats("venue") or {}).get("venue", {}).get("chain_ready"), 240, "every actor up")
        if not ok:
            raise RuntimeError(f"the world did not come up: {w.statuses()}")
        out = subprocess.run([str(BIN / "python"), "-m", "sandbox.deploy", "--config", str(w.config_path)],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
        raw = json.loads(out.stdout)
        self.dep = Deployment(**{**raw, "markets": [MarketInfo(**m) for m in raw["markets"]]})
        self.w3 = Web3(Web3.HTTPProvider(w.rpc_url, request_kwargs={"timeout": 30}))
        wait(lambda: (obs.stats("executor") or {}).get("executor", {}).get("ready"), 180, "executor ready")
        self.start_collateral = balances(self.w3, self.dep, self.dep.trader)["collateral"]
        self.start_block = self.w3.eth.block_number
        w.load = True
        w.render()
        self.note("load on", arbitrage_per_minute=ARBITRAGE_PER_MINUTE)
        return {"trader": self.dep.trader, "start_collateral_micro": self.start_collateral,
                "start_block": self.start_block, "venue_funding_usdc": str(self.cfg.sandbox.venue.trader_funding)}

    def _tripped_since(self, obs: Observer, since: float) -> bool:
        """Whether the executor's breaker opened after `since` (or was open then)."""
        heard = obs.snapshot()
        before = [s for t, s, _ in heard.transitions if t <= since]
        return (bool(before) and before[-1] in checks.OPENISH) or any(
            t > since and s in checks.OPENISH for t, s, _ in heard.transitions)

    def storm(self, obs: Observer) -> list[Planned]:
        plan = schedule(self.seed, self.seconds)
        start = time.time()
        queue: list[tuple[float, int, str, Planned | str]] = []
        for i, p in enumerate(plan):
            heapq.heappush(queue, (start + p.at, i, "begin", p))
        n = len(plan)
        active: set[str] = set()
        while queue:
            at, _, action, item = heapq.heappop(queue)
            time.sleep(max(0.0, at - time.time()))  # the schedule's own clock, not a wait for a state
            if action == "begin":
                assert isinstance(item, Planned)
                self.begin(item)
                if item.duration > 0:
                    active.add(item.kind)
                    n += 1
                    heapq.heappush(queue, (time.time() + item.duration, n, "end", item.kind))
            else:
                assert isinstance(item, str)
                if item == "reject_orders" and self.reject_windows:
                    # On until the breaker trips (the "long enough"): successes of
                    # executions placed before it, or few signals, can delay the third failure.
                    began = self.reject_windows[-1][0]
                    if not self._tripped_since(obs, began) and time.time() - began < REJECT_MAX_SECONDS:
                        n += 1
                        heapq.heappush(queue, (time.time() + 1.0, n, "end", item))
                        continue
                active.discard(item)
                self.end(item)
        return plan

    def recover(self, obs: Observer) -> dict[str, Any]:
        w = self.world
        self._resume_chain()
        w.venue_faults.clear()
        w.broken = None
        w.render()
        t_recover = time.time()
        self.note("every fault off")
        running = wait(lambda: all(s == "RUNNING" for s in w.statuses().values())
                       and len(w.statuses()) == len(PROGRAMS), 120, "every program RUNNING")
        closed = wait(lambda: all(obs.view(a) == "CLOSED" for a in ACTORS), 300, "the breaker CLOSED at every actor")
        heard = obs.snapshot()
        closed_at = None
        if closed:
            closed_at = {}
            for a in ACTORS:
                views = heard.views.get(a, [])
                last_closed = next((t for t, v in reversed(views) if v != "CLOSED"), t_recover)
                closed_at[a] = round(max(0.0, next((t for t, v in views if t >= last_closed and v == "CLOSED"),
                                                   t_recover) - t_recover), 2)
        self.note("breaker closed everywhere" if closed else "breaker NOT closed everywhere", closed_after=closed_at)
        w.load = False
        w.render()
        halt = subprocess.run([str(BIN / "polyarb"), "--config", str(w.config_path), "halt", "--reason",
                               "chaos: the final check"], capture_output=True, text=True, timeout=60)
        self.note("halt", answer=(halt.stdout or halt.stderr).strip()[:200])
        quiet = wait(lambda: self._quiet(obs), 300, "nothing in flight, nothing pending", interval=0.5)
        self.note("quiet" if quiet else "NOT quiet")
        return {"running": running, "closed": closed, "closed_at": closed_at, "quiet": quiet}

    def _quiet(self, obs: Observer) -> bool:
        ex = (obs.stats("executor") or {}).get("executor")
        nonce = (obs.stats("nonce") or {}).get("nonce")
        if not ex or not nonce or not ex.get("ready"):
            return False
        if ex["queue_size"] or ex["in_flight"] or ex["idempotency"]["records"]["IN_PROGRESS"]:
            return False
        if ex["sell_reserve"]["busy"] or nonce["pending_count"]:
            return False
        trader = self.dep.trader
        if self.w3.eth.get_transaction_count(trader, "latest") != self.w3.eth.get_transaction_count(trader, "pending"):
            return False
        pool = self.w3.provider.make_request("txpool_status", [])["result"]  # type: ignore[arg-type]
        if int(pool["pending"], 16) + int(pool["queued"], 16):
            return False
        return not checks.finished(self.journal_db()).figures["unfinished"]

    def journal_db(self) -> Path:
        [path] = (self.world.folder / "state").glob("executor-*.sqlite")
        return path

    def venue_db(self) -> Path | None:
        found = sorted((self.world.folder / "state").glob("venue*.sqlite"))
        return found[0] if found else None

    def judge(self, obs: Observer, closed_at: dict[str, float] | None) -> list[checks.Check]:
        from actors.executor.journal import Journal
        from actors.runtime.clock import SystemClock

        w, trader = self.world, self.dep.trader
        heard = obs.snapshot()
        logs = {p: w.log_text(p) for p in PROGRAMS}
        chain = balances(self.w3, self.dep, trader)
        journal = Journal(self.journal_db(), SystemClock())
        try:
            booked = sum(pnl + gas for _, _, pnl, gas in journal.outcomes()) - journal.reserved()
            held = journal.held_tokens()
            reserved = journal.reserved()
        finally:
            journal.close()
        nonce = (obs.stats("nonce", fresh_seconds=10) or {}).get("nonce", {})
        pool = self.w3.provider.make_request("txpool_status", [])["result"]  # type: ignore[arg-type]
        down = []
        for t, program in self.kills:
            back = next((at for at, _ in heard.boots.get(program, []) if at > t), t + 60)
            down.append((program, t, back))
        windows = [(a, b) for a, b in self.reject_windows]
        return [
            checks.programs(w.statuses(), logs),
            checks.collateral(chain["collateral"] - self.start_collateral, booked, reserved),
            checks.tokens({k: v for k, v in chain.items() if k != "collateral"}, held),
            checks.once(heard.results, self.venue_db(), trader, self.journal_db(), w.rpc_url, self.start_block),
            checks.nonces(self.w3.eth.get_transaction_count(trader, "latest"),
                          self.w3.eth.get_transaction_count(trader, "pending"), pool, nonce),
            checks.finished(self.journal_db()),
            checks.breaker(heard, windows, closed_at, down,
                           self.cfg.circuit_breaker.consecutive_failures_threshold),
            checks.restarts(self.kills, heard),
        ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600, help="length of the fault phase")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the world's folder even if every check holds")
    a = ap.parse_args(argv)
    # SIGTERM (a CI timeout, Ctrl-C's cousin) still stops the world and writes the report.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = Path(tempfile.mkdtemp(prefix=f"polyarb-chaos-{a.seed}-"))
    run = Run(a.seconds, a.seed, folder)
    rerun = f"python -m tests.chaos --seconds {a.seconds:g} --seed {a.seed}"
    report: dict[str, Any] = {"seed": a.seed, "seconds": a.seconds, "rerun": rerun, "world": str(folder)}
    obs = Observer(run.cfg)
    code = 1
    try:
        report["setup"] = run.setup(obs)
        plan = run.storm(obs)
        report["faults_planned"] = [[p.at, p.kind, p.duration] for p in plan]
        report["fault_kinds"] = sorted({p.kind for p in plan})
        report["recovery"] = recovered = run.recover(obs)
        results = run.judge(obs, recovered["closed_at"])
        report["checks"] = [vars(c) for c in results]
        code = 0 if all(c.ok for c in results) else 1
        for c in results:
            log(f"check {c.number} {'OK  ' if c.ok else 'FAIL'} {c.name}: {json.dumps(c.figures)[:600]}")
    except (Exception, SystemExit) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        log(f"run failed: {report['error']}")
    finally:
        run._resume_chain()
        obs.stop()
        report["events"] = run.events
        report["supervisord_exit"] = run.world.stop()
        REPORTS.mkdir(parents=True, exist_ok=True)
        out = REPORTS / f"{time.strftime('%Y%m%dT%H%M%S')}-seed{a.seed}.json"
        report["ok"] = code == 0
        out.write_text(json.dumps(report, indent=1, default=str))
        log(f"report {out}; {'every check holds' if code == 0 else 'FAILED: world kept in ' + str(folder)}")
        log(f"rerun: {rerun}")
        if code == 0 and not a.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
