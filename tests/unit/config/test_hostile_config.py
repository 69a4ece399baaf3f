"""Hostile or broken config files: every one is a ConfigError naming the file
(and the key when known), found before anything unbounded happens."""

import os
from decimal import Decimal

import msgspec
import pytest

from config.loader import DEFAULT_PATH, MAX_BYTES, MAX_DEPTH, ConfigError, load, parse
from config.schema import MAX_AMOUNT, Trading, VenueMarket

pytestmark = pytest.mark.unit

SANDBOX = DEFAULT_PATH.read_text()
SRC = "/etc/polyarb.yaml"


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse(text, SRC)
    assert str(err.value).startswith(f"{SRC}: ")
    return str(err.value)


# --- 1. numbers and files Python itself chokes on -------------------------------------------


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "!!float .nan", "190:20:30.15", "1.0e+400"])
def test_unreadable_floats_name_the_key(value):
    # Decimal(".nan") and Decimal("190:20:30.15") raise InvalidOperation; 1e400 would be a float inf.
    text = SANDBOX.replace("budget_tokens: 10", f"budget_tokens: {value}")
    assert "key 'retry_policy.budget_tokens'" in refused(text)


@pytest.mark.parametrize("value", ["9" * 5000, "1:30", "!!int " + "1" * 5000])
def test_unreadable_ints_name_the_key(value):
    # int() of > 4300 digits raises ValueError; 1:30 is YAML 1.1 base 60 (= 90).
    assert "key 'trading.signal_ttl_ms'" in refused(SANDBOX.replace("signal_ttl_ms: 2000", f"signal_ttl_ms: {value}"))


def test_exponent_floats_stay_fine_for_seconds():
    cfg = parse(SANDBOX.replace("lease_seconds: 30", "lease_seconds: 3.0e+1"), SRC)
    assert cfg.nonce.lease_seconds == 30.0


def test_binary_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"trading:\n  max_gas_cost: \xff\xfe\x00\x81\n")
    with pytest.raises(ConfigError, match=f"^{path}: not UTF-8"):
        load(path)


@pytest.mark.parametrize("text", ["a: " + "[" * 10_000 + "]" * 10_000,
                                  "a: " + "{a: " * 10_000 + "1" + "}" * 10_000,
                                  # below libyaml's own limit of 1000: our bound, not the parser's
                                  "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
                                  "".join(f"{' ' * 2 * i}a:\n" for i in range(MAX_DEPTH + 1)) + " " * 80 + "b: 1\n"])
def test_deep_nesting_is_refused_before_composing(text):
    # Not a RecursionError: web3 (py_ecc) raises the recursion limit to 100,000.
    assert "nest" in refused(text)


def test_nesting_up_to_the_bound_is_only_checked_by_the_schema():
    message = refused("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))
    assert "nest" not in message and "unknown field `a`" in message


def test_a_symlink_to_dev_zero_and_a_fifo_are_not_read(tmp_path):
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")  # read_text() reads it until MemoryError
    with pytest.raises(ConfigError, match="not a regular file"):
        load(zero)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer
    with pytest.raises(ConfigError, match="not a regular file"):
        load(fifo)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml")


# --- 2. YAML bombs and size -----------------------------------------------------------------


def bomb(levels: int, width: int = 10) -> str:
    # Few aliases, exponential expansion: width^levels nodes.
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_by_its_expanded_size():
    assert "once aliases are expanded" in refused(bomb(9))


def test_a_recursive_alias_is_refused():
    assert "recursive" in refused("feed: &a {markets: [*a]}\n")


def test_ordinary_anchors_are_accepted():
    text = SANDBOX.replace("markets: all                 # or", 'markets: &m ["0x1", "0x2"]  # or')
    cfg = parse(text.replace("  markets: all\n", "  markets: *m\n"), SRC)
    assert cfg.feed.markets == cfg.router.markets == ["0x1", "0x2"]


def test_a_file_over_the_size_bound_is_refused_unparsed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SANDBOX + "#" * MAX_BYTES)
    with pytest.raises(ConfigError, match=f"{path}: larger than {MAX_BYTES} bytes"):
        load(path)


# --- 3. absurd amounts ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    '"1e9"', '"1E+2"', "1.0e+9", "1.5e+1", '"1_000"', '" 1"', '"NaN"', '"Infinity"', "-.inf",
    '"-1"', '"0.0000001"', "1000000000", '"1000000.000001"',
])
def test_absurd_or_non_plain_amounts_are_refused(value):
    text = SANDBOX.replace('max_position_size: "100"', f"max_position_size: {value}")
    assert "key 'trading.max_position_size'" in refused(text)


@pytest.mark.parametrize("edit, key", [
    (('min_profit_threshold: "0.01"', 'min_profit_threshold: "1.5"'), "trading.min_profit_threshold"),
    (('max_gas_cost: "0.50"', 'max_gas_cost: "101"'), "trading.max_gas_cost"),
    (('pol_usdc_price: "0.50"', 'pol_usdc_price: "5000"'), "executor.pol_usdc_price"),
    (('initial_prices: ["0.62"', 'initial_prices: ["1.62"'), "sandbox.venue.markets[0].initial_prices"),
    (('fee_rate: "0.01"', 'fee_rate: "2"'), "sandbox.venue.events[0].fee_rate"),
    (('margin: "0.04"', 'margin: "0.04e1"'), "sandbox.venue.arbitrage.margin"),
])
def test_price_like_amounts_have_tight_bounds(edit, key):
    assert f"key '{key}'" in refused(SANDBOX.replace(*edit))


@pytest.mark.parametrize("value, expected", [
    ('"1000000"', MAX_AMOUNT), ("250", Decimal(250)), ("0.5", Decimal("0.5")), ('"0.000001"', Decimal("0.000001")),
])
def test_plain_amounts_up_to_the_bound_are_accepted(value, expected):
    cfg = parse(SANDBOX.replace('max_position_size: "100"', f"max_position_size: {value}"), SRC)
    assert cfg.trading.max_position_size == expected and isinstance(cfg.trading.max_position_size, Decimal)


def test_structs_built_in_code_are_bounded_too():
    with pytest.raises(ValueError, match="at most"):
        Trading(max_position_size=Decimal("1E+9"))
    with pytest.raises(ValueError, match="decimal places"):
        msgspec.structs.replace(Trading(), max_gas_cost=Decimal("0.1234567"))
    with pytest.raises(ValueError, match="non-negative"):
        VenueMarket(slug="m", initial_prices=[Decimal("0.5"), Decimal("-0.5")])
