"""The process's ZeroMQ context: created inside main(), never across a fork."""

from __future__ import annotations

import zmq
import zmq.asyncio

from bus.curve import BusSecurity, attach


def new_context(security: BusSecurity | None = None) -> zmq.asyncio.Context:
    """A context; with `security`, every bus socket made from it speaks CurveZMQ (bus.curve)."""
    ctx = zmq.asyncio.Context()
    if security is not None:
        attach(ctx, security)
    return ctx


def destroy(ctx: object, linger_ms: int = 200) -> None:
    """Close every socket with a short linger and terminate the context."""
    destroy_ = getattr(ctx, "destroy", None)
    if destroy_ is not None:
        destroy_(linger=linger_ms)
    else:
        ctx.term()  # type: ignore[attr-defined]


def zmq_versions() -> dict[str, str]:
    return {"pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}
