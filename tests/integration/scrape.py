"""Reading an actor's `/metrics` and `/healthz` from a test (plain urllib: tests poll)."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from config.schema import Config


def _url(cfg: Config, actor: str, path: str) -> str:
    address = cfg.bus.endpoints[actor].metrics
    assert address, f"bus.endpoints.{actor}.metrics is not set"
    return f"http://{address}{path}"


def metrics(cfg: Config, actor: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels without `actor`) -> value."""
    with urllib.request.urlopen(_url(cfg, actor, "/metrics"), timeout=5) as r:  # noqa: S310 - loopback http
        text = r.read().decode()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "actor"))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def breaker(cfg: Config, actor: str) -> str | None:
    """The state `polyarb_breaker_state` says is the current one."""
    on = [dict(labels)["state"] for (name, labels), v in metrics(cfg, actor).items()
          if name == "polyarb_breaker_state" and v == 1]
    return on[0] if on else None


def health(cfg: Config, actor: str) -> int:
    try:
        with urllib.request.urlopen(_url(cfg, actor, "/healthz"), timeout=5) as r:  # noqa: S310
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def missing(cfg: Config, actor: str, series) -> list[str]:  # type: ignore[no-untyped-def]
    """The unlabelled series (and COMMON ones) of `actor` with no sample in its /metrics:
    a stats path that does not exist (a labelled family may be empty until used)."""
    from actors.runtime.metrics import COMMON

    have = {name for name, _ in metrics(cfg, actor)}
    out = []
    for s in (*COMMON, *series):
        exposed = s.name if s.kind != "counter" or s.name.endswith("_total") else s.name + "_total"
        if s.label is None and exposed not in have:
            out.append(exposed)
    return out
