"""Live reload and `polyarb status` against hostile or broken config files."""

import os
import threading
from pathlib import Path

import pytest

import config.runtime
from actors.cli.main import main
from config.loader import DEFAULT_PATH, MAX_BYTES, ConfigError, load, load_lenient
from config.runtime import ConfigReloader, ConfigWatcher
from tests.helpers import eventually

pytestmark = pytest.mark.unit

SANDBOX = DEFAULT_PATH.read_text()
LEASE = "lease_seconds: 30"


def write(path: Path, text: str | bytes) -> None:
    # Save like an editor: write a temp file, rename it over the original.
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.replace(tmp, path)


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(SANDBOX)
    return p


# --- 4. every rejection is counted, and parsing is off the loop -----------------------------


def test_every_kind_of_rejection_is_counted_with_its_own_error(path):
    r = ConfigReloader(path)
    bad = [
        (SANDBOX.replace(LEASE, "lease_seconds: .nan"), "nonce.lease_seconds"),  # was InvalidOperation
        (b"\xff\xfe" * 100, "not UTF-8"),  # was UnicodeDecodeError
        ("a: " + "[" * 10_000 + "]" * 10_000, "nest"),  # was RecursionError
        (SANDBOX.replace("signal_ttl_ms: 2000", "signal_ttl_ms: " + "9" * 5000), "trading.signal_ttl_ms"),  # ValueError
        (SANDBOX + "#" * MAX_BYTES, "larger than"),
    ]
    for n, (text, what) in enumerate(bad, 1):
        write(path, text)
        assert r.reload() is False
        stats = r.get_stats()
        assert stats["reload_errors"] == n and what in stats["last_error"]  # never the previous error
        assert str(path) in stats["last_error"]
    assert r.config.nonce.lease_seconds == 30.0


def test_an_unexpected_loader_exception_is_a_counted_rejection(path, monkeypatch):
    r = ConfigReloader(path)

    def broken(p):
        raise RuntimeError("loader bug")

    monkeypatch.setattr(config.runtime, "load", broken)
    assert r.reload() is False
    assert r.get_stats()["reload_errors"] == 1
    assert r.get_stats()["last_error"] == f"{path}: RuntimeError: loader bug"


async def test_the_watcher_parses_in_a_worker_thread_and_swaps_on_the_loop(path, monkeypatch):
    loop_thread = threading.get_ident()
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def slow_load(p):  # a slow parse: the loop must keep running meanwhile
        seen["load"] = threading.get_ident()
        entered.set()
        release.wait(2)  # on the loop, nobody could release it
        return load(p)

    w = ConfigWatcher(path, debounce_seconds=0.01)
    w.on_change(lambda old, new: seen.setdefault("callback", threading.get_ident()))
    monkeypatch.setattr(config.runtime, "load", slow_load)
    await w.start()
    try:
        write(path, SANDBOX.replace(LEASE, "lease_seconds: 45"))
        await eventually(entered.is_set, timeout=5, what="the reload started")
        assert w.config.nonce.lease_seconds == 30.0  # the loop runs while the file is parsed
        release.set()
        await eventually(lambda: w.config.nonce.lease_seconds == 45.0, timeout=5, what="the reload")
    finally:
        release.set()
        await w.stop()
    assert seen["load"] != loop_thread and seen["callback"] == loop_thread


async def test_the_watcher_counts_a_rejection_of_any_kind(path):
    w = ConfigWatcher(path, debounce_seconds=0.01)
    await w.start()
    try:
        write(path, SANDBOX.replace(LEASE, "lease_seconds: .inf"))  # escaped as InvalidOperation before
        await eventually(lambda: w.get_stats()["reload_errors"] == 1, timeout=5, what="the rejection")
        assert "nonce.lease_seconds" in w.get_stats()["last_error"]
        write(path, SANDBOX + "#" * MAX_BYTES)  # was parsed on the loop, then accepted
        await eventually(lambda: w.get_stats()["reload_errors"] == 2, timeout=5, what="the size rejection")
        assert "larger than" in w.get_stats()["last_error"]
        assert w.config.nonce.lease_seconds == 30.0 and w.get_stats()["reloads"] == 0
    finally:
        await w.stop()


# --- 5. status with a file that is not YAML at all ------------------------------------------


def test_lenient_load_falls_back_to_the_default_endpoints(tmp_path):
    for text in ("bus: [\n", "bus: {endpoints: 3}\n", "\x00\x01"):
        bad = tmp_path / "c.yaml"
        bad.write_text(text)
        cfg, error = load_lenient(bad)
        assert cfg.bus.endpoints == load(DEFAULT_PATH).bus.endpoints
        assert error.startswith(f"{bad}: ") and str(DEFAULT_PATH) in error
    with pytest.raises(ConfigError, match="cannot read"):  # no file at all: nothing to fall back from
        load_lenient(tmp_path / "missing.yaml")


def test_lenient_load_keeps_a_valid_bus_section(path):
    write(path, SANDBOX.replace('"tcp://127.0.0.1:7101"', '"tcp://127.0.0.1:9101"').replace(LEASE, "lease_seconds: -1"))
    cfg, error = load_lenient(path)
    assert cfg.bus.endpoints["nonce"].pub == "tcp://127.0.0.1:9101"
    assert error.startswith(f"{path}: ") and str(DEFAULT_PATH) not in error


def test_status_shows_the_default_actors_and_the_error_on_a_yaml_syntax_error(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("trading: {max_position_size: [\n")
    main(["--config", str(bad), "status", "--seconds", "0"])  # raised SystemExit before
    out, err = capsys.readouterr()
    assert err.startswith("polyarb: warning: ") and f"{bad}: not valid YAML: line " in err
    # one line, not PyYAML's excerpt (and, without `polyarb keys init` here, the bus keys' warning)
    assert len([line for line in err.splitlines() if "bus.security" not in line]) == 1
    for actor in load(DEFAULT_PATH).bus.endpoints:
        assert actor in out
