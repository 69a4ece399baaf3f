"""The strict configuration schema.

Every section is a frozen, keyword-only msgspec Struct that rejects unknown
keys, so a typo in the YAML fails at load with the key's path instead of being
ignored. Money is a Decimal in USDC (converted to integer 1e-6 units at use);
YAML floats are read as Decimal by the loader so no money passes through a
binary float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, Decimal) and (not value.is_finite() or value < 0):
                raise ValueError(f"`{name}` must be a non-negative amount, got {value}")


PosInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
PosFloat = Annotated[float, Meta(gt=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]
Ratio = Annotated[float, Meta(gt=0, le=1)]
Usdc = Decimal  # msgspec cannot bound Decimals: _Section checks them

Endpoint = Annotated[str, Meta(pattern=r"^(tcp|ipc|inproc)://.+")]


class Trading(_Section):
    """Sizing and profitability limits of one complete-set trade (USDC)."""

    max_position_size: Usdc = Decimal("100")
    min_profit_threshold: Usdc = Decimal("0.01")
    max_gas_cost: Usdc = Decimal("0.50")
    signal_ttl_ms: PosInt = 2000
    max_in_flight: PosInt = 4


class CircuitBreaker(_Section):
    """Trip conditions and recovery of the executor's breaker (resilience.md)."""

    consecutive_failures_threshold: PosInt = 3
    failure_rate_threshold: Ratio = 0.5
    sliding_window_size: PosInt = 20
    minimum_number_of_calls: PosInt = 10
    gas_cost_threshold: Usdc = Decimal("2.0")
    open_timeout_seconds: PosFloat = 60.0
    half_open_max_calls: PosInt = 3
    slow_call_threshold_seconds: PosFloat | None = None
    # Polly's BreakDurationGenerator: each consecutive trip multiplies the
    # open timeout, up to the cap. 1.0 keeps it constant.
    open_timeout_multiplier: Annotated[float, Meta(ge=1)] = 1.0
    max_open_timeout_seconds: PosFloat = 600.0
    # The broadcast: heartbeat period and how many missed heartbeats make a
    # follower report UNKNOWN.
    heartbeat_interval_seconds: PosFloat = 1.0
    unknown_after_missed_heartbeats: PosInt = 3


class RetryPolicy(_Section):
    """Backoff of retried operations (AWS 'Exponential Backoff And Jitter')."""

    max_retries: NonNegInt = 3
    base_delay_ms: NonNegInt = 1000
    max_delay_ms: NonNegInt = 30000
    exponential_backoff: bool = True
    jitter: bool = True
    jitter_mode: Literal["full", "decorrelated"] = "full"
    backoff_multiplier: Annotated[float, Meta(ge=1)] = 2.0
    # Retry budget per dependency (token bucket): a retry costs one token, a
    # success refunds `budget_refund`; retries stop below half the bucket.
    budget_tokens: PosFloat = 10.0
    budget_refund: NonNegFloat = 0.1


class Endpoints(_Section):
    pub: Endpoint
    rpc: Endpoint | None = None


class Bus(_Section):
    """ZeroMQ endpoints (restart-only) and socket limits."""

    endpoints: dict[str, Endpoints]
    max_message_bytes: PosInt = 1 << 20
    send_hwm: PosInt = 100_000
    rpc_timeout_ms: PosInt = 1000
    rpc_retries: NonNegInt = 3
    linger_ms: NonNegInt = 200


class DevMnemonicWallet(_Section, tag="dev_mnemonic", tag_field="source"):
    """anvil's public test mnemonic: for the sandbox only."""

    index: NonNegInt = 0


class EnvWallet(_Section, tag="env", tag_field="source"):
    """The private key is read from an environment variable, never from YAML."""

    env_var: str = "POLYARB_PRIVATE_KEY"


class KeystoreWallet(_Section, tag="keystore", tag_field="source"):
    """An encrypted JSON keystore; its password comes from the environment."""

    path: str
    password_env_var: str = "POLYARB_KEYSTORE_PASSWORD"  # noqa: S105 - the variable's name, not a password


Wallet = DevMnemonicWallet | EnvWallet | KeystoreWallet


class Chain(_Section):
    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: PosInt = 137
    wallet: Wallet = DevMnemonicWallet()
    request_timeout_seconds: PosFloat = 10.0


class Nonce(_Section):
    """The nonce authority."""

    state_dir: str = "run/state"
    # An allocated nonce not reported as sent within the lease goes back to the pool.
    lease_seconds: PosFloat = 30.0
    # A free nonce below the highest sent one, unused for this long, is filled
    # with a zero-value self-transfer so later transactions are not stuck.
    gap_fill_after_seconds: PosFloat = 10.0
    chain_poll_seconds: PosFloat = 2.0
    request_cache_size: PosInt = 10_000


class Feed(_Section):
    """The market-channel client. Markets are named by condition id, or "all"."""

    ws_url: str = "ws://127.0.0.1:8780/ws/market"
    clob_url: str = "http://127.0.0.1:8780"
    markets: list[str] | Literal["all"] = "all"
    max_assets_per_connection: Annotated[int, Meta(ge=1, le=500)] = 200
    dedup_cache_size: PosInt = 10_000
    ping_interval_seconds: PosFloat = 10.0
    pong_timeout_seconds: PosFloat = 30.0
    # Silent-stall watchdog: no data on a connection this long while PONGs
    # still arrive means a stalled stream; only a new connection helps.
    data_timeout_seconds: PosFloat = 30.0
    reconnect_base_seconds: PosFloat = 0.5
    reconnect_max_seconds: PosFloat = 30.0
    depth_levels: PosInt = 10
    # A crossed book that lasts longer than this is treated as inconsistent.
    crossed_grace_ms: NonNegInt = 500
    # An invalid book is re-requested (unsubscribe + subscribe) after this.
    resubscribe_after_seconds: PosFloat = 1.0
    discovery_refresh_seconds: PosFloat = 60.0
    # Larger frames close the connection (websockets max_size): a hostile or
    # broken peer cannot make us buffer without bound.
    max_frame_bytes: PosInt = 8 * 1024 * 1024


class Router(_Section):
    """Books -> complete-set signals."""

    clob_url: str = "http://127.0.0.1:8780"  # market listing: outcome sets and fee rates
    markets: list[str] | Literal["all"] = "all"
    # A book not updated by the venue for this long is stale: no signal from it.
    stale_book_ms: PosInt = 10_000
    # The same opportunity (market, kind, prices) is not signalled again within
    # this window unless its execution result arrived.
    resignal_after_ms: PosInt = 3_000
    size_step: Usdc = Decimal("0.01")  # order sizes are multiples of this (shares)
    discovery_refresh_seconds: PosFloat = 60.0


class Executor(_Section):
    """Signals -> CLOB orders and on-chain transactions."""

    state_dir: str = "run/state"
    clob_url: str = "http://127.0.0.1:8780"
    # POL priced in USDC to turn gas into money (live: keep it current).
    pol_usdc_price: Usdc = Decimal("0.50")
    gas_limit_per_outcome: PosInt = 90_000  # merge/split gas budget before estimating
    receipt_timeout_seconds: PosFloat = 20.0  # a tx not mined by then is replaced with higher fees
    receipt_poll_seconds: PosFloat = 0.25
    max_fee_bumps: NonNegInt = 3
    fee_bump_percent: Annotated[int, Meta(ge=10, le=200)] = 12  # geth needs >= 10% on fee cap AND tip
    max_fee_per_gas_gwei: PosInt = 2_000
    min_priority_fee_gwei: NonNegInt = 25  # Polygon's floor
    give_up_after_seconds: PosFloat = 300.0  # then the execution is left for reconciliation
    # Unwinding a leg that filled alone: sell it back no lower than this below its fill.
    unwind_max_price_move: Usdc = Decimal("0.10")
    idempotency_ttl_seconds: PosFloat = 86_400.0
    in_progress_lease_seconds: PosFloat = 600.0


class Runtime(_Section):
    """What every actor does regardless of its role."""

    stats_interval_seconds: PosFloat = 1.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    config_debounce_ms: NonNegInt = 300


class SandboxChain(_Section):
    """The sandbox's anvil."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8545
    # 0 = automine (tests); ~2 s is Polygon-like (make run).
    block_time_seconds: NonNegFloat = 2.0
    accounts: PosInt = 10
    mnemonic: str = "test test test test test test test test test test test junk"


Rate = Annotated[float, Meta(ge=0, le=1)]


class VenueMarket(_Section):
    """One market of the sandbox venue. Two outcomes = binary; more = multi-outcome
    (neg risk). Its condition id and token ids are derived on chain from `slug`."""

    slug: str
    question: str = ""
    outcomes: Annotated[list[str], Meta(min_length=2)] = msgspec.field(default_factory=lambda: ["Yes", "No"])
    fee_rate: Usdc = Decimal("0.02")  # taker fee: shares * fee_rate * p * (1 - p)
    tick_size: Usdc = Decimal("0.01")
    min_order_size: Usdc = Decimal("5")
    initial_prices: list[Usdc] | None = None  # mid prices; default 1/n each
    depth_levels: PosInt = 5
    level_size: Usdc = Decimal("200")  # shares per level


class VenueArbitrage(_Section):
    """Gaps: the asks of a market sum below 1 (or bids above 1) by `margin`."""

    rate_per_minute: NonNegFloat = 6.0
    margin: Usdc = Decimal("0.04")
    lifetime_seconds: PosFloat = 5.0
    sell_side_share: Rate = 0.3  # fraction of gaps that are bids-above-1


class VenueFaults(_Section):
    """Fault injection; every knob hot-reloadable. Rates are per message / request."""

    duplicate_rate: Rate = 0.0
    reorder_rate: Rate = 0.0  # an older-timestamped frame delivered after a newer one
    drop_price_change_rate: Rate = 0.0
    disconnect_every_seconds: PosFloat | None = None
    stall: bool = False  # silent stall: PONG keeps coming, data stops
    malformed_rate: Rate = 0.0  # broken JSON, unknown event types, missing fields
    huge_frame_rate: Rate = 0.0
    huge_frame_bytes: PosInt = 2_000_000
    http_429_rate: Rate = 0.0
    retry_after_seconds: PosInt = 1
    http_5xx_rate: Rate = 0.0
    http_5xx_burst: PosInt = 1  # consecutive 5xx once a burst starts
    slow_response_rate: Rate = 0.0
    slow_response_ms: NonNegInt = 0
    reject_orders: bool = False  # the order endpoint answers 5xx to every POST /order


class Venue(_Section):
    """The local Polymarket: market WebSocket + CLOB REST + on-chain settlement."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8780
    seed: int = 42
    operator_index: NonNegInt = 0  # dev mnemonic account of the venue operator
    updates_per_second: NonNegFloat = 20.0  # book changes, across all markets
    markets: list[VenueMarket] = []
    arbitrage: VenueArbitrage = VenueArbitrage()
    faults: VenueFaults = VenueFaults()
    trader_funding: Usdc = Decimal("10000")  # collateral minted to the trading wallet at bootstrap
    operator_inventory: Usdc = Decimal("100000")  # complete sets split for the operator per market


class Sandbox(_Section):
    chain: SandboxChain = SandboxChain()
    venue: Venue = Venue()


class Config(_Section):
    bus: Bus
    trading: Trading = Trading()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    retry_policy: RetryPolicy = RetryPolicy()
    chain: Chain = Chain()
    nonce: Nonce = Nonce()
    feed: Feed = Feed()
    router: Router = Router()
    executor: Executor = Executor()
    runtime: Runtime = Runtime()
    sandbox: Sandbox | None = None


# Sections whose change at run time would be unsafe: reported, not applied.
# (The venue's faults, rates and arbitrage are hot: the venue applies them itself.)
RESTART_ONLY = ("bus", "chain")
