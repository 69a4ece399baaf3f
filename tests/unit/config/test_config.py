import os
from decimal import Decimal
from pathlib import Path

import pytest

from config.loader import DEFAULT_PATH, ConfigError, load, parse
from config.runtime import ConfigReloader, ConfigWatcher, get_runtime_config
from tests.helpers import eventually

pytestmark = pytest.mark.unit

SANDBOX = DEFAULT_PATH.read_text()


def test_sandbox_config_has_the_seed_values():
    cfg = load()
    assert cfg.trading.max_position_size == Decimal("100")
    assert isinstance(cfg.trading.max_gas_cost, Decimal)
    cb = cfg.circuit_breaker
    assert (cb.consecutive_failures_threshold, cb.failure_rate_threshold, cb.open_timeout_seconds,
            cb.half_open_max_calls, cb.gas_cost_threshold) == (3, 0.5, 60, 3, Decimal("2.0"))
    rp = cfg.retry_policy
    assert (rp.max_retries, rp.base_delay_ms, rp.max_delay_ms, rp.exponential_backoff, rp.jitter,
            rp.backoff_multiplier) == (3, 1000, 30000, True, True, 2.0)
    assert cfg.chain.chain_id == 137


def test_yaml_floats_for_money_are_exact_decimals():
    cfg = parse(SANDBOX.replace('max_gas_cost: "0.50"', "max_gas_cost: 0.1"), "x.yaml")
    assert cfg.trading.max_gas_cost == Decimal("0.1")


@pytest.mark.parametrize(
    "edit, key",
    [
        (("max_position_size:", "max_position_sise:"), "trading"),
        (("open_timeout_seconds: 60", "open_timeout_seconds: -1"), "circuit_breaker.open_timeout_seconds"),
        (("failure_rate_threshold: 0.5", "failure_rate_threshold: 2"), "circuit_breaker.failure_rate_threshold"),
        (('max_gas_cost: "0.50"', 'max_gas_cost: "-3"'), "trading"),
        (("chain_id: 137", "chain_id: nope"), "chain.chain_id"),
        (("{source: dev_mnemonic, index: 1}", "{source: plaintext, key: 1}"), "chain.wallet"),
        (('pub: "tcp://127.0.0.1:7101"', 'pub: "127.0.0.1:7101"'), "bus.endpoints"),
    ],
)
def test_bad_values_name_the_file_and_the_key(edit, key):
    with pytest.raises(ConfigError) as err:
        parse(SANDBOX.replace(*edit), "/etc/polyarb.yaml")
    assert str(err.value).startswith("/etc/polyarb.yaml: ")
    assert key in str(err.value)


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse("a: [", "f.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        parse("- 1", "f.yaml")


def write(path: Path, text: str) -> None:
    # Save like an editor: write a temp file, rename it over the original.
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_reloader_swaps_keeps_on_error_and_holds_restart_only(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SANDBOX)
    r = ConfigReloader(path)
    seen = []
    r.on_change(lambda old, new: seen.append((old.nonce.lease_seconds, new.nonce.lease_seconds)))

    write(path, SANDBOX.replace("lease_seconds: 30", "lease_seconds: 45"))
    assert r.reload() is True
    write(path, SANDBOX.replace("lease_seconds: 30", "lease_seconds: oops"))
    assert r.reload() is False
    write(path, SANDBOX.replace("lease_seconds: 30", "lease_seconds: 45").replace("chain_id: 137", "chain_id: 1"))
    r.reload()

    assert seen == [(30.0, 45.0)]
    assert get_runtime_config().nonce.lease_seconds == 45.0
    assert r.config.chain.chain_id == 137  # restart-only: reported, not applied
    stats = r.get_stats()
    assert stats["reloads"] == 1 and stats["reload_errors"] == 1
    assert stats["pending_restart"] == ["chain"]


def test_restoring_the_file_after_a_rejected_edit_clears_the_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SANDBOX)
    r = ConfigReloader(path)
    write(path, SANDBOX.replace("lease_seconds: 30", "lease_seconds: oops"))
    assert r.reload() is False and r.get_stats()["last_error"]

    write(path, SANDBOX)  # the original file back: nothing to apply, nothing wrong any more

    assert r.reload() is False
    assert r.get_stats()["last_error"] is None and r.get_stats()["unchanged"] == 1


async def test_watcher_reloads_on_rename_save_and_debounces(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SANDBOX)
    w = ConfigWatcher(path, debounce_seconds=0.05)
    changes = []
    w.on_change(lambda old, new: changes.append(new.nonce.lease_seconds))
    await w.start()
    try:
        for lease in (31, 32, 33):  # a burst: one reload of the final content
            write(path, SANDBOX.replace("lease_seconds: 30", f"lease_seconds: {lease}"))
        await eventually(lambda: changes, what="a reload")
        # A later marker edit proves no straggling reload of the burst came between.
        write(path, SANDBOX.replace("lease_seconds: 30", "lease_seconds: 34"))
        await eventually(lambda: changes[-1] == 34.0, what="the marker reload")
        assert changes == [33.0, 34.0]
        write(path, "not: [valid")
        await eventually(lambda: w.get_stats()["reload_errors"] == 1)
        assert w.config.nonce.lease_seconds == 34.0
        assert "not valid YAML" in w.get_stats()["last_error"]
    finally:
        await w.stop()


def test_live_example_is_valid_and_has_no_key_in_it():
    from config.loader import DEFAULT_PATH as d
    from config.schema import EnvWallet

    cfg = load(d.with_name("polygon.yaml"))
    assert isinstance(cfg.chain.wallet, EnvWallet) and cfg.sandbox is None


async def test_an_edit_between_the_first_read_and_the_watch_is_applied(tmp_path):
    # A chaos run: the venue restarted while a fault was on; the fault was switched off
    # after its config was read but before its watcher ran, and it stayed on for minutes.
    path = tmp_path / "c.yaml"
    path.write_text(SANDBOX)
    w = ConfigWatcher(path, debounce_seconds=0.01)  # reads the file now
    write(path, SANDBOX.replace("lease_seconds: 30", "lease_seconds: 35"))  # no one is watching yet
    await w.start()
    try:
        await eventually(lambda: w.config.nonce.lease_seconds == 35.0, what="the edit made before start()")
    finally:
        await w.stop()
