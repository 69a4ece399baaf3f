"""Actor name -> implementation, imported lazily so one actor never loads another's deps."""

from __future__ import annotations

import importlib

from actors.base import Actor

ACTORS = {
    "nonce": "actors.nonce.actor:NonceActor",
    "venue": "sandbox.venue.actor:VenueActor",
    "feed": "actors.feed.actor:FeedActor",
    "router": "actors.router.actor:RouterActor",
    "executor": "actors.executor.actor:ExecutorActor",
}


def actor_class(name: str) -> type[Actor]:
    try:
        module, cls = ACTORS[name].split(":")
    except KeyError:
        raise SystemExit(f"unknown actor {name!r}; known: {', '.join(sorted(ACTORS))}") from None
    return getattr(importlib.import_module(module), cls)
