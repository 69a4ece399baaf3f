"""The live profile: its own ports, folders and endpoints; `make live`'s supervisord file
without the sandbox's programs; `polyarb status` naming the world it looks at."""

import configparser
from pathlib import Path

import pytest

from actors.cli import status
from actors.cli.supervisor_conf import live_conf
from config.loader import load
from config.world import world

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

ROOT = Path(__file__).resolve().parents[3]
LIVE, SANDBOX = ROOT / "config" / "polygon.yaml", ROOT / "config" / "sandbox.yaml"


def test_the_live_profile_is_complete_and_shares_nothing_with_the_sandbox():
    live, sandbox = load(LIVE), load(SANDBOX)
    assert live.sandbox is None and live.chain.chain_id == 137
    assert live.chain.rpc_url_env == "POLYGON_RPC_URL" and type(live.chain.wallet).__name__ == "EnvWallet"
    assert live.feed.ws_url == "wss://ws-subscriptions-clob.polymarket.com/ws/market"
    assert live.executor.user_ws_url == "wss://ws-subscriptions-clob.polymarket.com/ws/user"
    assert {live.feed.clob_url, live.router.clob_url, live.executor.clob_url} == {"https://clob.polymarket.com"}
    ports = {addr.rsplit(":", 1)[1] for cfg in (live,) for e in cfg.bus.endpoints.values()
             for addr in (e.pub, e.rpc, e.metrics) if addr}
    sandbox_ports = {addr.rsplit(":", 1)[1] for e in sandbox.bus.endpoints.values()
                     for addr in (e.pub, e.rpc, e.metrics) if addr}
    assert ports and not ports & sandbox_ports and live.dashboard.listen != sandbox.dashboard.listen
    folders = {live.nonce.state_dir, live.executor.state_dir, live.alerts.state_dir, live.bus.security.keys_dir}
    assert all(f.startswith("run/live/") for f in folders)
    assert live.bus.security.enabled and "venue" not in live.bus.endpoints
    limits = live.risk
    assert None not in (limits.daily_loss_limit, limits.max_exposure, limits.max_unwind_loss.execution,
                        limits.max_unwind_loss.day, limits.min_collateral_balance, limits.max_executions_per_minute)


def test_the_nodes_url_comes_from_the_environment_and_is_never_shown(monkeypatch):
    chain = load(LIVE).chain
    monkeypatch.delenv("POLYGON_RPC_URL", raising=False)
    with pytest.raises(RuntimeError, match="POLYGON_RPC_URL"):
        chain.url()
    assert chain.host() == "$POLYGON_RPC_URL (not set)"
    monkeypatch.setenv("POLYGON_RPC_URL", "https://user:pw@polygon.example.com/v2/SECRETKEY")
    assert chain.url().endswith("SECRETKEY") and chain.host() == "polygon.example.com"


def test_the_live_supervisord_file_runs_only_the_traders_programs_under_run_live():
    text = live_conf((ROOT / "supervisord.conf").read_text(), ROOT)
    parsed = configparser.RawConfigParser()
    parsed.read_string(text)
    programs = {s.removeprefix("program:") for s in parsed.sections() if s.startswith("program:")}
    assert programs == {"nonce", "feed", "router", "executor", "alerts", "dashboard"}
    assert "%(here)s" not in text and "/run/logs" not in text and "/run/supervisor." not in text
    assert parsed.get("supervisord", "pidfile") == f"{ROOT}/run/live/supervisord.pid"
    assert parsed.get("unix_http_server", "file") == f"{ROOT}/run/live/supervisor.sock"
    assert parsed.get("program:executor", "stdout_logfile") == f"{ROOT}/run/live/logs/executor.log"
    sandbox = configparser.RawConfigParser()
    sandbox.read_string((ROOT / "supervisord.conf").read_text())
    for p in programs:  # the same programs, with the same stop and restart settings
        for key in ("command", "stopsignal", "stopwaitsecs", "stopasgroup", "killasgroup", "autorestart"):
            assert parsed.get(f"program:{p}", key) == sandbox.get(f"program:{p}", key).replace("%(here)s", str(ROOT))


def test_status_names_the_world_first_and_flags_actors_of_another():
    cfg = load(LIVE)
    here = world(cfg, LIVE)
    theirs = world(load(SANDBOX), SANDBOX)
    latest = {"executor": {"stats": {"world": here, "summary": {}}, "publish_ns": 10**9, "seq": 1, "boot_id": "a"},
              "feed": {"stats": {"world": theirs, "summary": {}}, "publish_ns": 10**9, "seq": 1, "boot_id": "b"}}
    rep = status.report(cfg, latest, 10**9, here)
    text = status.render(rep, here)
    first = text.splitlines()[0]
    assert first == ("world: polygon.yaml (live) · chain 137 · venue clob.polymarket.com · state run/live/state")
    assert not rep["executor"]["other_world"] and rep["feed"]["other_world"]
    assert "ANOTHER WORLD: world: sandbox.yaml (sandbox)" in text
