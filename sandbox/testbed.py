"""A whole sandbox world on free ports, for tests and benchmarks.

`write_config()` writes a copy of the default sandbox config with every bus
endpoint and the venue on a free port, the feed/router/executor pointed at
that venue, state under the given folder and the chain at `rpc_url`.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
from typing import Any

import yaml

from config.loader import DEFAULT_PATH

_HANDED_OUT: set[int] = set()
LOWEST_PORT = 10_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_port() -> int:
    """A loopback port nobody listens on, for a test or bench to bind later.

    Never from bind(0): that hands out an EPHEMERAL port, which any outgoing
    connection (an HTTP call to anvil, a websocket) may take before the actor
    binds it ("Address already in use": an actor died of it during a bench).
    The ports below the kernel's ephemeral range are only ever bound on purpose.
    A port is handed out once per process, from a random start, so concurrent
    callers rarely even try the same one; it is checked bindable when handed out.
    """
    low = _ephemeral_range()[0]
    top = max(LOWEST_PORT + 1000, low)
    span = top - LOWEST_PORT
    start = random.randrange(span)
    for i in range(span):
        port = LOWEST_PORT + (start + i) % span
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken, or in TIME_WAIT
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {LOWEST_PORT}..{top - 1}")


def write_config(folder: Path, rpc_url: str, anvil_port: int = 0, *, own_hosts: bool = False,
                 **sections: dict[str, Any]) -> Path:
    """A test's config on free ports. `own_hosts`: each actor's bus sockets on an address of
    its own (127.0.0.2, 127.0.0.3, ...), as on separate hosts."""
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    for i, name in enumerate(raw["bus"]["endpoints"]):
        host = f"127.0.0.{i + 2}" if own_hosts else "127.0.0.1"
        raw["bus"]["endpoints"][name] = {"pub": f"tcp://{host}:{free_port()}",
                                         "rpc": f"tcp://{host}:{free_port()}",
                                         "metrics": f"127.0.0.1:{free_port()}"}
    raw["chain"]["rpc_url"] = rpc_url
    raw["nonce"]["state_dir"] = str(folder / "state")
    raw["nonce"]["chain_poll_seconds"] = 0.2
    raw["runtime"]["stats_interval_seconds"] = 0.2
    raw["runtime"]["config_debounce_ms"] = 50
    raw["sandbox"]["chain"]["port"] = anvil_port
    raw["sandbox"]["chain"]["block_time_seconds"] = 0
    raw["sandbox"]["chain"]["state_file"] = str(folder / "state" / "anvil-state.json")
    raw["sandbox"]["venue"]["state_dir"] = str(folder / "state")  # never the repo's run/state
    raw.setdefault("alerts", {})["state_dir"] = str(folder / "state")
    raw.setdefault("dashboard", {})["listen"] = f"127.0.0.1:{free_port()}"
    raw["bus"].setdefault("security", {})["keys_dir"] = str(folder / "keys")  # CurveZMQ as configured, own keys
    venue = free_port()
    raw["sandbox"]["venue"]["port"] = venue
    raw["feed"]["ws_url"] = f"ws://127.0.0.1:{venue}/ws/market"
    for section in ("feed", "router", "executor"):
        raw[section]["clob_url"] = f"http://127.0.0.1:{venue}"
    raw["executor"]["user_ws_url"] = f"ws://127.0.0.1:{venue}/ws/user"
    raw["executor"]["state_dir"] = str(folder / "state")
    for name, values in sections.items():
        if name == "sandbox":  # merge one level deeper: chain / venue
            for sub, vals in values.items():
                raw["sandbox"].setdefault(sub, {}).update(vals)
        else:
            raw.setdefault(name, {}).update(values)
    path = folder / "config.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.replace(tmp, path)
    from bus.curve import KeyStore, identities
    from config.loader import load

    cfg = load(path)
    KeyStore(cfg.bus.security.keys_dir).init(identities(cfg))  # every identity's pair, as `polyarb keys init`
    return path


def context_as(cfg: Any, identity: str) -> Any:
    """A ZeroMQ context whose bus sockets speak as `identity` (its Curve keys when
    bus.security is on): a test's own publishers, subscribers and clients. A server
    (PUB, ROUTER) bound in it admits no one until `bus.curve.start_authenticator` runs."""
    from bus.context import new_context
    from bus.curve import for_config

    return new_context(for_config(cfg, identity))
