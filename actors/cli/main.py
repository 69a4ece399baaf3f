"""The `polyarb` command: run an actor, look at the bus, check the system."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from config.loader import ConfigError, load, load_lenient, resolve_path


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    try:
        return load(args.config)
    except ConfigError as exc:
        raise SystemExit(f"polyarb: {exc}") from None


def _endpoints_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    try:
        cfg, error = load_lenient(args.config)
    except ConfigError as exc:
        raise SystemExit(f"polyarb: {exc}") from None
    if error:
        print(f"polyarb: warning: the config file is invalid (running actors keep their last good config): "
              f"{error}", file=sys.stderr)
    return cfg


def _supervised() -> None:
    """A supervised program dies with its supervisor from its first instant: set before the
    imports, which take seconds on a cold start (no bytecode cache), not after them."""
    import signal

    from actors.runtime.parent import die_with_parent

    die_with_parent(signal.SIGTERM)


def cmd_actor(args: argparse.Namespace) -> int:
    _supervised()
    from actors.runtime.launcher import run_actor

    return run_actor(args.name, args.config)


def cmd_sniff(args: argparse.Namespace) -> int:
    from bus.sniffer import sniff

    cfg = _endpoints_config(args)
    try:
        asyncio.run(sniff(cfg, topic=args.topic, count=args.count, seconds=args.seconds, as_json=args.json))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from actors.cli import status
    from config.world import world

    cfg = _endpoints_config(args)
    seconds = args.seconds if args.seconds is not None else 2.5 * cfg.runtime.stats_interval_seconds
    latest = asyncio.run(status.collect(cfg, seconds))
    here = world(cfg, resolve_path(args.config))
    rep = status.report(cfg, latest, time.time_ns(), here)
    print(status.to_json(rep) if args.json else status.render(rep, here))
    return 0 if any(r["up"] for r in rep.values()) else 1


def _executor_call(args: argparse.Namespace, method: str, params: dict) -> dict:
    from actors.runtime.clock import SystemClock
    from bus.codec import Stamper
    from bus.context import destroy, new_context
    from bus.curve import KeyError_ as CurveKeyError
    from bus.curve import for_config
    from bus.sockets import RpcClient, RpcError, RpcTimeout

    cfg = _endpoints_config(args)
    ep = cfg.bus.endpoints["executor"].rpc
    if ep is None:
        raise SystemExit("polyarb: bus.endpoints.executor.rpc is not configured")

    try:
        security = for_config(cfg, "operator")  # halt and resume: the operator's key
    except CurveKeyError as exc:
        raise SystemExit(f"polyarb: bus.security: {exc}") from None

    async def call() -> dict:
        ctx = new_context(security)
        client = RpcClient(ctx, ep, Stamper("cli", SystemClock()), timeout_ms=cfg.bus.rpc_timeout_ms,
                           retries=cfg.bus.rpc_retries)
        try:
            return await client.call(method, params)
        finally:
            client.close()
            destroy(ctx, 0)

    try:
        return asyncio.run(call())
    except (RpcError, RpcTimeout) as exc:
        raise SystemExit(f"polyarb: the executor did not accept {method}: {exc}") from None


def cmd_halt(args: argparse.Namespace) -> int:
    reply = _executor_call(args, "halt", {"reason": args.reason})
    print(f"breaker {reply['state']}: {reply['reason']}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    reply = _executor_call(args, "resume", {"reason": args.reason})
    print(f"breaker {reply['state']}")
    return 0


def cmd_trades(args: argparse.Namespace) -> int:
    from actors.cli import history

    print(history.render_trades(_config(args), journal=args.journal, since=args.since, status=args.status or [],
                                fmt=_format(args), bookkeeping=args.all))
    return 0


def cmd_pnl(args: argparse.Namespace) -> int:
    from actors.cli import history

    print(history.render_pnl(_config(args), journal=args.journal, since=args.since, by=args.by, fmt=_format(args)))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from actors.cli import trace

    text, code = trace.render(_config(args), args.id, logs=args.logs, journal=args.journal, as_json=args.json)
    print(text)
    return code


def cmd_top(args: argparse.Namespace) -> int:
    import asyncio

    from actors.cli import top

    try:
        asyncio.run(top.run(_config(args), once=args.once, seconds=args.seconds, refresh=args.refresh))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from actors.cli import keys

    cfg = _config(args)
    print(keys.init(cfg) if args.action == "init" else keys.show(cfg))
    return 0


def _format(args: argparse.Namespace) -> str:
    return "json" if args.json else "csv" if args.csv else "table"


def _history_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="30m, 3h, 2d, or an ISO date/time (UTC)")
    p.add_argument("--journal", help="the executor's journal file (default: found in executor.state_dir)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")


def cmd_plugin(args: argparse.Namespace) -> int:
    """A command another package registers (`polyarb.commands`), e.g. the sandbox's `chain`."""
    _supervised()
    from importlib.metadata import entry_points

    found = entry_points(group="polyarb.commands", name=args.plugin)
    if not found:
        raise SystemExit(f"polyarb: {args.plugin!r} is not installed (no polyarb.commands entry point)")
    return int(next(iter(found)).load()(_config(args), *getattr(args, "plugin_args", [])) or 0)


def cmd_doctor(args: argparse.Namespace) -> int:
    from actors.cli import doctor

    path = resolve_path(args.config)
    try:
        cfg = load(path)
    except ConfigError as exc:
        print(doctor.Check("config", "FAIL", str(exc), "correct the file; the message names the key").render())
        return 1
    code, text = doctor.run(cfg, path)
    print(text)
    return code


def cmd_supervisor_conf(args: argparse.Namespace) -> int:
    from pathlib import Path

    from actors.cli.supervisor_conf import PAPER_LEFT_OUT, SANDBOX_PROGRAMS, live_conf

    root = Path(args.root)
    if args.paper:
        text = live_conf((root / "supervisord.conf").read_text(), root, args.run_dir or "run/paper", PAPER_LEFT_OUT,
                         "--paper")
    else:
        text = live_conf((root / "supervisord.conf").read_text(), root, args.run_dir or "run/live", SANDBOX_PROGRAMS)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from actors.executor.history import find_journal
    from actors.executor.paper.replay import replay, summary
    from actors.executor.paper.world import ledger_path

    cfg = _config(args)
    ledger = ledger_path(cfg.executor.state_dir)
    if not ledger.is_file():
        raise SystemExit(f"polyarb: no paper ledger at {ledger} (make paper creates it)")
    journal = Path(args.journal) if args.journal else find_journal(cfg.executor.state_dir, cfg.chain.chain_id)
    rep = replay(ledger, journal)
    print(json.dumps(rep.as_dict(), indent=2) if args.json else summary(rep))
    return 0 if rep.matches else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polyarb", description=__doc__)
    p.add_argument("--config", help="config file (default: $POLYARB_CONFIG or config/sandbox.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("actor", help="run one actor process")
    a.add_argument("name")
    a.set_defaults(func=cmd_actor)

    s = sub.add_parser("sniff", help="print bus messages, one line each")
    s.add_argument("--topic", default="", help="topic prefix, e.g. stats. or breaker.")
    s.add_argument("--count", type=int, help="stop after N messages")
    s.add_argument("--seconds", type=float, help="stop after S seconds")
    s.add_argument("--json", action="store_true", help="one JSON object per line")
    s.set_defaults(func=cmd_sniff)

    st = sub.add_parser("status", help="latest stats of every actor")
    st.add_argument("--json", action="store_true")
    st.add_argument("--seconds", type=float, help="how long to listen (default 2.5 stats intervals)")
    st.set_defaults(func=cmd_status)

    t = sub.add_parser("trades", help="finished executions from the executor's books")
    _history_options(t)
    t.add_argument("--status", action="append", help="only this status (repeatable), e.g. SUCCESS, PARTIAL_UNWOUND")
    t.add_argument("--all", action="store_true", help="also the book-keeping records (approvals, sell reserve)")
    t.set_defaults(func=cmd_trades)

    pn = sub.add_parser("pnl", help="realized P&L from the executor's books, grouped")
    _history_options(pn)
    pn.add_argument("--by", choices=["day", "market", "strategy"], default="day")
    pn.set_defaults(func=cmd_pnl)

    tr = sub.add_parser("trace", help="every log line of every actor about one execution")
    tr.add_argument("id", help="a trace id, or an execution's idempotency key (or its first 12 characters)")
    tr.add_argument("--logs", default="run/logs", help="the folder of the actors' logs (default run/logs)")
    tr.add_argument("--journal", help="the executor's journal file (default: found in executor.state_dir)")
    tr.add_argument("--json", action="store_true", help="the lines as they are, one JSON object each")
    tr.set_defaults(func=cmd_trace)

    tp = sub.add_parser("top", help="a live terminal view of the whole system (Ctrl-C ends it)")
    tp.add_argument("--once", action="store_true", help="listen --seconds, print one frame, end")
    tp.add_argument("--seconds", type=float, default=3.0, help="how long --once listens (default 3)")
    tp.add_argument("--refresh", type=float, default=0.5, help="seconds between frames (default 0.5)")
    tp.set_defaults(func=cmd_top)

    k = sub.add_parser("keys", help="the bus's CurveZMQ key pairs: `init` creates the missing ones, `show` prints "
                                    "the public keys")
    k.add_argument("action", choices=["init", "show"])
    k.set_defaults(func=cmd_keys)

    d = sub.add_parser("doctor", help="the preflight before trading: every check OK or FAIL with its fix; "
                                      "sends nothing")
    d.set_defaults(func=cmd_doctor)

    sc = sub.add_parser("supervisor-conf", help="supervisord.conf without the sandbox's programs (make live, "
                                                "make paper)")
    which = sc.add_mutually_exclusive_group(required=True)
    which.add_argument("--live", action="store_true", help="the live profile's programs")
    which.add_argument("--paper", action="store_true", help="paper trading's: no nonce authority either")
    sc.add_argument("--root", default=".", help="the checkout holding supervisord.conf (default .)")
    sc.add_argument("--run-dir", help="logs, socket and pid file under this (default run/live, run/paper)")
    sc.add_argument("--out", help="write it here instead of standard output")
    sc.set_defaults(func=cmd_supervisor_conf)

    pp = sub.add_parser("paper", help="paper trading's P&L report, checked by a replay of its own decisions "
                                      "(exit 1 if the replay differs)")
    pp.add_argument("action", choices=["report"], help="report: the P&L by strategy and the replay's verdict")
    pp.add_argument("--journal", help="the executor's journal file (default: found in executor.state_dir)")
    pp.add_argument("--json", action="store_true")
    pp.set_defaults(func=cmd_paper)

    c = sub.add_parser("chain", help="run the sandbox anvil (exec, keeps the pid)")
    c.set_defaults(func=cmd_plugin, plugin="chain")

    w = sub.add_parser("sandbox", help="the sandbox world: `reset` wipes it (chain state and run/state)")
    w.add_argument("plugin_args", nargs=1, choices=["reset"], metavar="reset")
    w.set_defaults(func=cmd_plugin, plugin="sandbox")

    v = sub.add_parser("venue", help="run the sandbox venue (same as `actor venue`)")
    v.set_defaults(func=cmd_actor, name="venue")

    h = sub.add_parser("halt", help="kill switch: force the executor's breaker open")
    h.add_argument("--reason", default="operator halt")
    h.set_defaults(func=cmd_halt)

    r = sub.add_parser("resume", help="reset the executor's breaker after a halt")
    r.add_argument("--reason", default="operator resume")
    r.set_defaults(func=cmd_resume)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # --config after the subcommand works too.
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
