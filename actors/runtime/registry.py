"""Actor name -> implementation, found through the `polyarb.actors` entry points
(setup.cfg), so the framework names no role and the sandbox registers its
venue itself. Loaded lazily: one actor never imports another's dependencies."""

from __future__ import annotations

from importlib.metadata import entry_points

from actors.runtime.actor import Actor

GROUP = "polyarb.actors"


def actor_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def actor_class(name: str) -> type[Actor]:
    found = entry_points(group=GROUP, name=name)
    if not found:
        raise SystemExit(f"unknown actor {name!r}; known: {', '.join(actor_names())}")
    cls = next(iter(found)).load()
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise SystemExit(f"entry point {name!r} of {GROUP} is not an Actor: {cls!r}")
    return cls
