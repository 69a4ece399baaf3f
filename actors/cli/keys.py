"""`polyarb keys init|show`: the bus's Curve key pairs (bus.curve), one per identity
(every actor of bus.endpoints, and the clients: `operator`, `reader`).

`init` creates the pairs that are missing in bus.security.keys_dir (secrets 0600),
never overwriting one; `show` prints each identity's public key, to copy to another
host's `bus.security.public_keys`. A secret key is never printed.

Rotating a key: stop the system, delete `<identity>.key` and `<identity>.pub`, run
`polyarb keys init`, copy the new public key wherever it is configured, start again.
"""

from __future__ import annotations

from bus.curve import KeyError_, KeyStore, identities
from config.schema import Config


def init(cfg: Config) -> str:
    store = KeyStore(cfg.bus.security.keys_dir)
    made = store.init(identities(cfg))
    state = "on" if cfg.bus.security.enabled else "off (bus.security.enabled: false)"
    if not made:
        return f"every key pair is in {store.folder} already (CurveZMQ {state})"
    return f"created in {store.folder}: {', '.join(made)} (CurveZMQ {state})"


def show(cfg: Config) -> str:
    store = KeyStore(cfg.bus.security.keys_dir)
    rows = []
    for name in identities(cfg):
        try:
            rows.append(f"{name:<10} {store.public(name).decode()}")
        except KeyError_ as exc:
            rows.append(f"{name:<10} missing: {exc}")
    return "\n".join(rows)
