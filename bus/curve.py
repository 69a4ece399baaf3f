"""CurveZMQ on the bus: every process has a long-term key pair; servers (PUB, ROUTER)
admit only the public keys of the configured identities (a ZAP handler), and clients
(SUB, REQ) pin the public key of the actor bound at each endpoint, so a process that
squats a port cannot speak for the actor whose port it took.

    keys = KeyStore("run/keys")
    keys.init(["nonce", "executor", ..., "operator", "reader"])   # `polyarb keys init`
    security = BusSecurity(own=keys.pair("executor"), servers={endpoint: public key},
                           identities={public key: name}, allowed={method: {names}})
    attach(ctx, security)         # every socket made from ctx then uses it

A secret key lives only in its 0600 file and in the socket options of the process
that owns it: never in a log, a stats message or on the bus.
"""

from __future__ import annotations

import logging
import os
import stat
import weakref
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

log = logging.getLogger(__name__)

ZAP_DOMAIN = "polyarb"
# The identity an RPC server's handler runs for (the caller's key, as the ZAP handler named
# it); "" without bus.security. A handler that records who did something reads it.
caller: ContextVar[str] = ContextVar("caller", default="")
KEY_LENGTH = 40  # a z85-encoded Curve25519 key


class KeyError_(ValueError):
    """A key file missing, malformed or readable by others."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: bytes  # z85
    secret: bytes = field(repr=False)  # z85; repr=False: never printed with the pair

    def __str__(self) -> str:
        return f"KeyPair(public={self.public.decode()})"


class KeyStore:
    """`<folder>/<identity>.key` (the secret, mode 0600) and `<identity>.pub` (the public key)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def init(self, identities: Iterable[str]) -> list[str]:
        """Create the pairs that are missing; returns the identities created."""
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        made = []
        for name in identities:
            if (self.folder / f"{name}.key").exists():
                if not (self.folder / f"{name}.pub").exists():  # a crash between the two writes: repaired
                    self._write_public(name, zmq.curve_public(_read_key(self.folder / f"{name}.key", secret=True)))
                continue
            public, secret = zmq.curve_keypair()
            key = self.folder / f"{name}.key"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secret + b"\n")
            self._write_public(name, public)
            made.append(name)
        return made

    def _write_public(self, name: str, public: bytes) -> None:
        tmp = self.folder / f".{name}.pub.tmp"
        tmp.write_bytes(public + b"\n")
        os.replace(tmp, self.folder / f"{name}.pub")

    def public(self, name: str) -> bytes:
        return _read_key(self.folder / f"{name}.pub", secret=False)

    def pair(self, name: str) -> KeyPair:
        secret = _read_key(self.folder / f"{name}.key", secret=True)
        return KeyPair(zmq.curve_public(secret), secret)

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.pub"))


def _read_key(path: Path, *, secret: bool) -> bytes:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes().strip()
    except OSError as exc:
        raise KeyError_(f"{path}: {exc.strerror or exc} (run `polyarb keys init`)") from None
    if secret and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyError_(f"{path}: readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
    if len(data) != KEY_LENGTH:
        raise KeyError_(f"{path}: not a z85 Curve key ({len(data)} characters, want {KEY_LENGTH})")
    return data


@dataclass(slots=True)
class BusSecurity:
    """What one process needs to speak CurveZMQ on the bus."""

    own: KeyPair
    servers: Mapping[str, bytes]  # endpoint -> the public key of the actor bound there
    identities: Mapping[bytes, str]  # public key -> identity name: the keys a server admits
    # Server side, per RPC method: the identities that may call it ("*": any method).
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    denied: int = 0  # connections refused by the ZAP handler (an unknown key)
    refused: int = 0  # RPC calls refused by method (a known key, not allowed that method)

    def serve(self, sock: Any, *, enforce: bool = True) -> None:
        """A bound socket (PUB, ROUTER): a Curve server that asks the ZAP handler. `enforce`:
        with no handler running in the context, refuse every peer (libzmq would admit any
        key); off only for a bench's raw socket."""
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1 if enforce else 0)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.own.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.own.public)
        sock.setsockopt(zmq.CURVE_SERVER, 1)

    def client(self, sock: Any, endpoint: str) -> None:
        """Before each connect: pin the key of the actor bound at `endpoint`."""
        server = self.servers.get(endpoint)
        if server is None:
            raise KeyError_(f"no public key known for {endpoint}: it is no configured actor's endpoint")
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.own.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.own.public)
        sock.setsockopt(zmq.CURVE_SERVERKEY, server)

    def may_call(self, identity: str, method: str) -> bool:
        who = self.allowed.get(method, frozenset()) | self.allowed.get("*", frozenset())
        return identity in who

    def get_stats(self) -> dict[str, Any]:
        return {"enabled": True, "public_key": self.own.public.decode(), "identities": len(self.identities),
                "zap_denied": self.denied, "rpc_refused": self.refused}


_ATTACHED: weakref.WeakKeyDictionary[Any, BusSecurity] = weakref.WeakKeyDictionary()


def attach(ctx: Any, security: BusSecurity) -> None:
    """Every socket made from `ctx` by bus.sockets uses `security` from now on."""
    _ATTACHED[ctx] = security


def security_of(ctx: Any) -> BusSecurity | None:
    try:
        return _ATTACHED.get(ctx)
    except TypeError:  # a context that cannot be weakly referenced (a test fake): no security
        return None


class _Admit:
    """The ZAP handler's credentials provider: the configured identities' keys only."""

    def __init__(self, security: BusSecurity) -> None:
        self.security = security

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.security.identities
        if not ok:
            self.security.denied += 1
            log.warning("bus: a connection with an unknown Curve key was refused (%s...)", key[:8].decode())
        return ok


def start_authenticator(ctx: Any, security: BusSecurity) -> Any:
    """The process's ZAP handler (on the running asyncio loop): admits the configured
    identities and names each connection's peer by its identity (the User-Id of its frames)."""
    from zmq.auth.asyncio import AsyncioAuthenticator

    names = dict(security.identities)

    class Authenticator(AsyncioAuthenticator):
        def curve_user_id(self, client_public_key: bytes) -> str:
            return names.get(zmq.utils.z85.encode(client_public_key), "?")

    auth = Authenticator(ctx, log=logging.getLogger("bus.zap"))
    auth.start()
    auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=_Admit(security))
    logging.getLogger("bus.zap").setLevel(logging.WARNING)  # its DEBUG lines name every key it sees
    return auth


def identities(cfg: Any) -> list[str]:
    """Every identity of a config: its actors and its clients (people and tools)."""
    return sorted({*cfg.bus.endpoints, *cfg.bus.security.clients})


def for_config(cfg: Any, identity: str) -> BusSecurity | None:
    """The security of one identity's process under `cfg`; None when bus.security is off."""
    sec = cfg.bus.security
    if not sec.enabled:
        return None
    store = KeyStore(sec.keys_dir)
    publics: dict[str, bytes] = {}
    for name in identities(cfg):
        given = sec.public_keys.get(name)
        try:
            publics[name] = given.encode() if given else store.public(name)
        except KeyError_ as exc:
            if name in cfg.bus.endpoints:  # an actor we may talk to: its key must be known
                raise
            log.warning("bus: no public key for the client %s, it cannot connect: %s", name, exc)
    shared = {k for k in publics.values() if list(publics.values()).count(k) > 1}
    if shared:
        names = sorted(n for n, k in publics.items() if k in shared)
        raise KeyError_(f"identities {', '.join(names)} share one public key: each needs its own pair")
    servers: dict[str, bytes] = {}
    for name, ep in cfg.bus.endpoints.items():
        for address in (ep.pub, ep.rpc):
            if address:
                servers[address] = publics[name]
    allowed: dict[str, set[str]] = {}
    for client, methods in sec.rpc_allow.get(identity, {}).items():
        for method in methods:
            allowed.setdefault(method, set()).add(client)
    return BusSecurity(own=store.pair(identity), servers=servers, identities={k: n for n, k in publics.items()},
                       allowed={m: frozenset(c) for m, c in allowed.items()})


def for_reader(cfg: Any, identity: str = "reader") -> BusSecurity | None:
    """A tool that only listens (`status`, `sniff`, `top`): without its keys it still runs,
    says why on stderr, and hears nothing of a secured bus (every actor shows silent)."""
    try:
        return for_config(cfg, identity)
    except KeyError_ as exc:
        import sys

        print(f"polyarb: warning: bus.security is on but {exc}: listening without CurveZMQ, no actor will "
              "answer", file=sys.stderr)
        return None
