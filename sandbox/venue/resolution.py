"""Markets that end: a binary market or a whole neg-risk event resolves, on a
schedule from the config (`resolve_after_seconds`) or when the operator asks
(`POST /sandbox/resolve`).

Resolving closes the markets to trading (VenueState.resolve, which sends
`market_resolved` to custom-feature subscribers) and reports the payouts on
chain, so redeem paths can be exercised: a binary market through the CTF
(the operator is its oracle), an event's questions through the NegRiskAdapter
(exactly one YES). The winner is the configured one, else the likelier outcome
at that moment (the simulator's mid).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from actors.domain.money import ONE
from sandbox.venue.state import VenueError

log = logging.getLogger(__name__)

# (question id, is this outcome the winner, neg_risk) -> report it on chain
Report = Callable[[str, bool, bool], Awaitable[None]]


class Resolver:
    def __init__(self, state: Any, sim: Any, venue_config: Callable[[], Any], report: Report | None = None) -> None:
        self.state, self.sim, self.venue_config, self.report = state, sim, venue_config, report
        self.counters = Counter[str]()
        self._started_ns: int | None = None

    def _groups(self) -> dict[str, list[Any]]:
        """key (a binary market's slug, or an event's slug) -> its MarketInfos."""
        out: dict[str, list[Any]] = {}
        for m in self.state.markets:
            out.setdefault(getattr(m, "event_slug", "") or m.slug, []).append(m)
        return out

    def due(self, now_ns: int) -> list[str]:
        """The markets and events whose scheduled resolution time has come (not yet resolved)."""
        if self._started_ns is None:
            self._started_ns = now_ns
        cfg = self.venue_config()
        elapsed = (now_ns - self._started_ns) / 1e9
        groups = self._groups()
        out = []
        for item in [*cfg.markets, *cfg.events]:
            after = item.resolve_after_seconds
            infos = groups.get(item.slug, [])
            if after is not None and elapsed >= after and infos and infos[0].condition_id not in self.state.resolved:
                out.append(item.slug)
        return out

    def _winner_of(self, slug: str, infos: list[Any], outcome: str | None) -> Any:
        """The MarketInfo whose YES wins (events) or the winning token (binary)."""
        cfg = {i.slug: i for i in [*self.venue_config().markets, *self.venue_config().events]}.get(slug)
        outcome = outcome or (cfg.winner if cfg is not None else None)
        if len(infos) == 1 and not getattr(infos[0], "event_slug", ""):
            m = infos[0]
            if outcome is None:
                return m.token_ids[0] if self.sim.mid(m.token_ids[0]) * 2 >= ONE else m.token_ids[1]
            if outcome not in m.outcomes:
                raise VenueError(f"{outcome!r} is not an outcome of {slug}: {', '.join(m.outcomes)}")
            return m.token_ids[m.outcomes.index(outcome)]
        if outcome is None:
            return max(infos, key=lambda i: self.sim.mid(i.token_ids[0]))
        named = [i for i in infos if i.outcome == outcome]
        if not named:
            raise VenueError(f"{outcome!r} is not an outcome of {slug}: {', '.join(i.outcome for i in infos)}")
        return named[0]

    async def resolve(self, slug_or_condition: str, outcome: str | None = None) -> list[dict[str, str]]:
        """Resolve a binary market (by slug or condition id) or an event (by slug):
        [{condition_id, winning_asset_id, winning_outcome}] for each market closed."""
        groups = self._groups()
        infos = groups.get(slug_or_condition)
        if infos is None:
            m = self.state.market_by_id.get(slug_or_condition)
            if m is None:
                raise VenueError(f"no market or event {slug_or_condition!r}")
            infos = groups[getattr(m, "event_slug", "") or m.slug]
            slug_or_condition = getattr(m, "event_slug", "") or m.slug
        winner = self._winner_of(slug_or_condition, infos, outcome)
        done = []
        for m in infos:
            if isinstance(winner, str):  # a binary market: the winning token
                token, yes_wins = winner, winner == m.token_ids[0]
            else:
                yes_wins = m is winner
                token = m.token_ids[0] if yes_wins else m.token_ids[1]
            event = self.state.resolve(m.condition_id, token)
            if event is None:
                continue
            self.counters["markets_resolved"] += 1
            done.append({"condition_id": m.condition_id, "winning_asset_id": token,
                         "winning_outcome": event.winning_outcome})
            if self.report is not None:
                try:
                    await self.report(m.question_id, yes_wins, bool(m.neg_risk))
                    self.counters["payouts_reported"] += 1
                except Exception as exc:  # the market is closed either way; the payout can be reported again
                    self.counters["report_errors"] += 1
                    log.warning("reporting the payout of %s failed: %s", m.condition_id, exc)
        if done:
            log.info("resolved %s: %s", slug_or_condition, ", ".join(d["winning_outcome"] for d in done))
        return done

    def get_stats(self) -> dict[str, Any]:
        return {**dict(self.counters), "resolved": len(self.state.resolved)}
