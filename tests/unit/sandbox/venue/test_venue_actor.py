"""VenueActor without a process: a fake runtime, a TestClock, a free port,
a fake deploy module for the background chain bootstrap."""

from __future__ import annotations

import sys
import types

import aiohttp
import msgspec
import pytest

from actors.runtime.clock import TestClock
from config.schema import VenueFaults
from sandbox.venue import actor as venue_actor
from sandbox.venue.actor import VenueActor, discover_installers
from tests.helpers import eventually

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


class FakeRuntime:
    def __init__(self, config, clock):
        self.config = config
        self.clock = clock


def with_venue(cfg, **changes):
    venue = msgspec.structs.replace(cfg.sandbox.venue, **changes)
    return msgspec.structs.replace(cfg, sandbox=msgspec.structs.replace(cfg.sandbox, venue=venue))


@pytest.fixture
async def make_actor(sandbox_config, monkeypatch):
    made = []

    async def make(deploy=None, installers=()):
        monkeypatch.setattr(venue_actor, "deploy_module", lambda: deploy)
        a = VenueActor(FakeRuntime(with_venue(sandbox_config, port=0), TestClock()), installers=list(installers))
        a.chain_probe = lambda cfg: None
        await a.start()
        made.append(a)
        return a

    yield make
    for a in made:
        await a.stop()


async def test_start_serves_markets_on_a_free_port_and_calls_the_installers(make_actor):
    calls = []
    a = await make_actor(installers=[lambda app, venue: calls.append(venue)])

    stats = a.get_stats()
    assert calls == [a]
    assert stats["ws_url"].startswith("ws://127.0.0.1:") and stats["ws_url"].endswith("/ws/market")
    assert not stats["ws_url"].endswith(":0/ws/market")
    async with aiohttp.ClientSession() as http:
        markets = await (await http.get(f"{stats['http_url']}/markets")).json()
        token = markets["data"][0]["tokens"][0]["token_id"]
        book = await (await http.get(f"{stats['http_url']}/book", params={"token_id": token})).json()
    assert len(markets["data"]) == 2 + 4 + 5 and book["asset_id"] == token  # binary markets + every event outcome
    await eventually(lambda: a.get_stats()["chain_status"] == "skipped: sandbox.deploy not found", timeout=5)
    assert not a.get_stats()["chain_ready"]
    assert set(a.summary()) == {"conns", "frames", "gaps", "taken", "faults", "chain"}


async def test_hot_reload_applies_faults_and_rates_and_reports_restart_only_keys(make_actor, sandbox_config):
    a = await make_actor()
    old = a.rt.config
    new = with_venue(old, updates_per_second=5, faults=VenueFaults(duplicate_rate=0.5, stall=True), seed=99)

    a.on_config(old, new)

    assert a.faults.current.duplicate_rate == 0.5
    assert a.sim.updates_per_second == 5
    stats = a.get_stats()
    assert stats["faults"]["config"]["duplicate_rate"] == 0.5
    assert stats["restart_only_changes"] == 1


async def test_inject_binary_gap_edited_live_reaches_the_simulator(make_actor):
    a = await make_actor()
    old = a.rt.config
    flipped = not old.sandbox.venue.faults.inject_binary_gap

    a.on_config(old, with_venue(old, faults=VenueFaults(inject_binary_gap=flipped)))

    assert a.sim.binary_gaps is flipped and a.get_stats()["faults"]["config"]["inject_binary_gap"] is flipped


async def test_the_chain_bootstrap_retries_in_the_background(make_actor):
    attempts = []

    def bootstrap(cfg):
        attempts.append(cfg)
        if len(attempts) < 3:
            raise ConnectionError("anvil not up yet")
        return "the deployment"

    a = await make_actor(deploy=types.SimpleNamespace(bootstrap=bootstrap))
    clock = a.rt.clock
    for _ in range(2):
        await eventually(lambda: clock.sleepers == 1, timeout=5)
        assert a.get_stats()["chain_status"] == "waiting for the chain"
        assert "anvil not up yet" in a.get_stats()["chain_error"]
        clock.advance(5)

    await eventually(lambda: a.chain_ready, timeout=5)
    assert a.deployment == "the deployment" and a.get_stats()["chain_attempts"] == 3


def test_installers_are_discovered_from_the_clob_package(monkeypatch):
    assert discover_installers() == [] or "sandbox.venue.clob" in sys.modules

    def install(app, venue):
        pass

    monkeypatch.setitem(sys.modules, "sandbox.venue.clob", types.SimpleNamespace(install=install))
    assert discover_installers() == [install]
    monkeypatch.setitem(sys.modules, "sandbox.venue.clob", types.SimpleNamespace(install=[install, install]))
    assert discover_installers() == [install, install]
