"""The strict configuration schema.

Every section is a frozen, keyword-only msgspec Struct that rejects unknown
keys, so a typo in the YAML fails at load with the key's path instead of being
ignored. Money is a Decimal in USDC (converted to integer 1e-6 units at use);
YAML floats are read as Decimal by the loader so no money passes through a
binary float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

# Every amount (USDC or shares) is at most this unless its section's `_bounds` says less: far
# above any sane trade, far below a typo or hostile edit ("1e9") applied live.
MAX_AMOUNT = Decimal("1000000")
PLACES = 6  # money is held in 1e-6 units: a seventh decimal cannot be represented


def amount_problem(value: Decimal, bound: Decimal) -> str | None:
    """Why `value` is not a usable amount, or None."""
    if not value.is_finite():
        return "must be a finite amount"
    if value < 0:
        return "must be a non-negative amount"
    if value > bound:
        return f"must be at most {bound}"
    if value.as_tuple().exponent > 0:  # type: ignore[operator]  # finite: an int
        return "must be a plain decimal, not exponent notation"
    if value.normalize().as_tuple().exponent < -PLACES:  # type: ignore[operator]
        return f"has more than {PLACES} decimal places"
    return None


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Upper bounds of this section's amounts tighter than MAX_AMOUNT, by field name.
    _bounds: ClassVar[dict[str, Decimal]] = {}

    def __post_init__(self) -> None:
        # msgspec cannot bound Decimals; a ValueError here names the key (loader._name_key).
        for name in self.__struct_fields__:
            value = getattr(self, name)
            for v in value if isinstance(value, list) else (value,):
                if isinstance(v, Decimal) and (problem := amount_problem(v, self._bounds.get(name, MAX_AMOUNT))):
                    raise ValueError(f"`{name}` {problem}, got {v}")


PosInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
PosFloat = Annotated[float, Meta(gt=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]
Ratio = Annotated[float, Meta(gt=0, le=1)]
Usdc = Decimal  # an amount: finite, >= 0, at most 6 decimals and MAX_AMOUNT (_Section checks them)

Endpoint = Annotated[str, Meta(pattern=r"^(tcp|ipc|inproc)://.+")]
# host:port of an HTTP listener (a name or an IPv4 address; port 1-65535).
_PORT = r"(6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
MetricsAddress = Annotated[str, Meta(pattern=r"^[A-Za-z0-9.\-]+:" + _PORT + "$")]


class Trading(_Section):
    """Sizing and profitability limits of one complete-set trade (USDC)."""

    _bounds: ClassVar[dict[str, Decimal]] = {"min_profit_threshold": Decimal(1), "max_gas_cost": Decimal(100)}

    # Most collateral one trade may commit (USDC, at most 1000000): the asks' cost of a buy-set,
    # the size of a sell-set. The router sizes every signal within it.
    max_position_size: Usdc = Decimal("100")
    # Least expected profit per set (USDC per share, at most 1: a set pays 1), after taker fees,
    # for the router to signal.
    min_profit_threshold: Usdc = Decimal("0.01")
    # Most one on-chain transaction may cost (USDC, at most 100: gas limit x fee cap x
    # executor.pol_usdc_price): a costlier one is not sent, and a buy-set whose merge would be is not started.
    max_gas_cost: Usdc = Decimal("0.50")
    # A signal expires this long after the router made it; the executor drops it unexecuted.
    signal_ttl_ms: PosInt = 2000
    # Signals the executor executes concurrently (worker tasks); read when the executor starts.
    max_in_flight: PosInt = 4
    # Most collateral held in YES baskets waiting for their event's resolution (USDC, at most
    # 1000000): a basket that would lock more is refused before any order.
    max_locked_capital: Usdc = Decimal("200")
    # Complete sets kept split per market that had a SELL_SET (USDC, at most 1000000; one set = 1): the next SELL_SET
    # up to this size sells them at once instead of splitting first, and a background split tops
    # them up. Counted against max_locked_capital; lowering it merges the excess back; 0 = off.
    sell_reserve: Usdc = Decimal("0")


class CircuitBreaker(_Section):
    """Trip conditions and recovery of the executor's breaker (docs/resilience.md)."""

    consecutive_failures_threshold: PosInt = 3  # failed executions in a row that trip the breaker OPEN
    # Failure fraction over the sliding window that trips it, once minimum_number_of_calls are in it.
    failure_rate_threshold: Ratio = 0.5
    sliding_window_size: PosInt = 20  # the last N executions the failure rate (and gas trip) looks at
    # Executions needed in the window before the failure rate counts (capped at sliding_window_size).
    minimum_number_of_calls: PosInt = 10
    # Gas burnt by failed transactions during the window's executions that trips it (USDC, at most
    # 1000000); 0 = off.
    gas_cost_threshold: Usdc = Decimal("2.0")
    open_timeout_seconds: PosFloat = 60.0  # time OPEN (no trading) before HALF_OPEN lets probes through
    # Probe executions allowed in HALF_OPEN: all succeed -> CLOSED, any failure -> OPEN again.
    half_open_max_calls: PosInt = 3
    # A successful execution slower than this counts as a failure; none = no slow-call check.
    slow_call_threshold_seconds: PosFloat | None = None
    # Polly's BreakDurationGenerator: each consecutive trip multiplies the
    # open timeout, up to the cap. 1.0 keeps it constant.
    open_timeout_multiplier: Annotated[float, Meta(ge=1)] = 1.0
    # Cap on the grown open timeout (never below open_timeout_seconds).
    max_open_timeout_seconds: PosFloat = 600.0
    # The broadcast: heartbeat period and how many missed heartbeats make a
    # follower report UNKNOWN.
    heartbeat_interval_seconds: PosFloat = 1.0
    # Silence of heartbeat_interval_seconds x this after which a follower reports UNKNOWN.
    unknown_after_missed_heartbeats: PosInt = 3


class RetryPolicy(_Section):
    """Backoff of retried operations (AWS 'Exponential Backoff And Jitter')."""

    max_retries: NonNegInt = 3  # retries after the first attempt; 0 = no retry
    base_delay_ms: NonNegInt = 1000  # delay ceiling of the first retry (ms)
    max_delay_ms: NonNegInt = 30000  # cap on every retry delay, a server's Retry-After included (ms)
    # true: the ceiling grows as base_delay_ms x backoff_multiplier^retry; false: base_delay_ms every time.
    exponential_backoff: bool = True
    jitter: bool = True  # randomise the delay (see jitter_mode); false: wait the ceiling exactly
    # full: uniform(0, ceiling); decorrelated: uniform(base, 3 x previous delay), capped (needs
    # exponential_backoff; else full).
    jitter_mode: Literal["full", "decorrelated"] = "full"
    backoff_multiplier: Annotated[float, Meta(ge=1)] = 2.0  # growth of the delay ceiling per retry
    # Retry budget per dependency (token bucket): a retry costs one token, a
    # success refunds `budget_refund`; retries stop below half the bucket.
    budget_tokens: PosFloat = 10.0
    budget_refund: NonNegFloat = 0.1  # tokens a success gives back to its dependency's bucket (capped)


class Endpoints(_Section):
    """One actor's sockets: its PUB endpoint and, if it serves requests, its RPC endpoint."""

    pub: Endpoint  # the actor's PUB socket (bound by it; subscribers connect)
    # The actor's RPC server socket (ROUTER, bound by it); none = no RPC server. The executor needs
    # the nonce's; the router uses the feed's for snapshots; the CLI uses them all.
    rpc: Endpoint | None = None
    # Prometheus `/metrics` and `/healthz` over HTTP ("host:port", loopback unless you mean it); none = off.
    metrics: MetricsAddress | None = None


# Who may call what, by server actor: client identity -> its methods ("*": all). The CLI's
# `halt`/`resume` speak as `operator`; `status`, `sniff` and `top` only subscribe.
DEFAULT_RPC_ALLOW: dict[str, dict[str, list[str]]] = {
    "nonce": {"executor": ["*"], "operator": ["stats", "is_pending"]},
    "executor": {"operator": ["halt", "resume", "breaker"], "reader": ["breaker"]},
    # The executor asks for the books only when it trades on paper (the paper venue matches on them).
    "feed": {"router": ["snapshot"], "executor": ["snapshot"], "operator": ["snapshot"], "reader": ["snapshot"]},
}


def _loopback(address: str) -> bool:
    """A tcp:// endpoint on a loopback address (ipc:// and inproc:// never leave the host)."""
    import ipaddress

    host = address.removeprefix("tcp://").rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name or "*": may be reachable from elsewhere
        return False


class BusSecurity(_Section):
    """CurveZMQ on every bus socket (restart-only): each actor and the CLI have a key pair
    (`polyarb keys init`), servers admit only the configured identities' keys and clients
    pin the key of the actor bound at each endpoint."""

    enabled: bool = False  # on: every socket is CurveZMQ; required to bind anything but loopback
    keys_dir: str = "run/keys"  # <identity>.key (secret, 0600) and <identity>.pub (public) of every identity
    # Public keys (z85) given here instead of <keys_dir>/<identity>.pub: the keys of another host's actors.
    public_keys: dict[str, Annotated[str, Meta(pattern=r"^[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")]] = {}
    # Per server actor, which client identity may call which RPC methods ("*": all of them).
    rpc_allow: dict[str, dict[str, list[str]]] = msgspec.field(
        default_factory=lambda: {k: {c: list(m) for c, m in v.items()} for k, v in DEFAULT_RPC_ALLOW.items()})
    # Identities of people and tools, beside the actors.
    clients: list[str] = msgspec.field(default_factory=lambda: ["operator", "reader"])
    # On: a halt is resumed only by the identity that halted (several operators, each their key).
    resume_by_halting_identity: bool = False


class Bus(_Section):
    """ZeroMQ endpoints (restart-only) and socket limits."""

    endpoints: dict[str, Endpoints]  # per actor name: its sockets (each entry below)
    security: BusSecurity = BusSecurity()  # CurveZMQ (below)
    # ZMQ_MAXMSGSIZE of receiving sockets: a larger message drops the sender's connection.
    max_message_bytes: PosInt = 1 << 20
    send_hwm: PosInt = 100_000  # messages a PUB socket queues per subscriber; beyond, sends are dropped (counted)
    rpc_timeout_ms: PosInt = 1000  # wait for an RPC reply, per attempt (ms)
    rpc_retries: NonNegInt = 3  # resends (same request id, fresh socket) after a timeout
    linger_ms: NonNegInt = 200  # at shutdown, how long unsent messages may still be flushed (ms)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.security.enabled:
            return
        for actor, ep in self.endpoints.items():
            for kind, address in (("pub", ep.pub), ("rpc", ep.rpc)):
                if address and address.startswith("tcp://") and not _loopback(address):
                    raise ValueError(f"`endpoints.{actor}.{kind}` is {address}, not loopback: anyone who reaches it "
                                     "could read the bus and call the actors; turn bus.security on (CurveZMQ) "
                                     "to bind it")


class DevMnemonicWallet(_Section, tag="dev_mnemonic", tag_field="source"):
    """anvil's public test mnemonic: for the sandbox only."""

    # Account m/44'/60'/0'/0/index of sandbox.chain.mnemonic (anvil's mnemonic without a sandbox section).
    index: NonNegInt = 0


class EnvWallet(_Section, tag="env", tag_field="source"):
    """The private key is read from an environment variable, never from YAML."""

    env_var: str = "POLYARB_PRIVATE_KEY"  # name of the environment variable holding the hex private key


class KeystoreWallet(_Section, tag="keystore", tag_field="source"):
    """An encrypted JSON keystore; its password comes from the environment."""

    path: str  # the keystore JSON file
    # Name of the environment variable holding the keystore's password.
    password_env_var: str = "POLYARB_KEYSTORE_PASSWORD"  # noqa: S105 - the variable's name, not a password


Wallet = DevMnemonicWallet | EnvWallet | KeystoreWallet


class Chain(_Section):
    """The Ethereum node and the trading wallet (restart-only)."""

    rpc_url: str = "http://127.0.0.1:8545"  # JSON-RPC (HTTP) URL of the node: nonce, executor, sandbox venue
    # The name of an environment variable holding the node's URL instead (a provider's URL carries
    # its API key: kept out of the file, never logged); set, it wins over rpc_url.
    rpc_url_env: str | None = None
    # The node must report this id (else the nonce authority exits); also selects the contract
    # addresses, signs transactions and names the state files.
    chain_id: PosInt = 137
    wallet: Wallet = DevMnemonicWallet()  # where the trading key comes from, by `source` (see below)
    request_timeout_seconds: PosFloat = 10.0  # HTTP timeout of one JSON-RPC request

    def url(self) -> str:
        """The node's URL: from `rpc_url_env` when named, else `rpc_url`."""
        if self.rpc_url_env is None:
            return self.rpc_url
        import os

        value = os.environ.get(self.rpc_url_env, "").strip()
        if not value:
            raise RuntimeError(f"chain.rpc_url_env: the environment variable {self.rpc_url_env} (the node's "
                               "JSON-RPC URL) is not set")
        return value

    def host(self) -> str:
        """The node's host:port for logs and status: a provider's URL carries its key in the path."""
        from urllib.parse import urlsplit

        try:
            return urlsplit(self.url()).netloc.rpartition("@")[2] or "?"
        except RuntimeError:
            return f"${self.rpc_url_env} (not set)"


class Nonce(_Section):
    """The nonce authority."""

    state_dir: str = "run/state"  # directory of the nonce ledger (`nonce-<chain_id>-<address>.sqlite`)
    # An allocated nonce not reported as sent within the lease goes back to the pool.
    lease_seconds: PosFloat = 30.0
    # A free nonce below the highest sent one, unused for this long, is filled
    # with a zero-value self-transfer so later transactions are not stuck.
    gap_fill_after_seconds: PosFloat = 10.0
    # A sent nonce whose every hash the node has not known for this long (evicted, or a chain that
    # never saw it) is recovered: its signed transaction is broadcast again (see noop_after_seconds).
    resend_after_seconds: PosFloat = 15.0
    # A stuck nonce whose signed transaction was re-broadcast (after resend_after_seconds) and is
    # still unknown to the node this long after is replaced by a zero-value self-transfer outbidding
    # every known attempt. Without a journaled signed transaction, or if the re-broadcast is
    # refused, the replacement comes at once.
    noop_after_seconds: PosFloat = 30.0
    # Period of the authority's tick: resync with the chain, reclaim expired leases, fill gaps.
    chain_poll_seconds: PosFloat = 2.0
    # Replies of the nonce RPC server cached by request id (LRU), so a retried request is answered,
    # not redone; read when the nonce process starts.
    request_cache_size: PosInt = 10_000


class Feed(_Section):
    """The market-channel client. Markets are named by condition id, or "all"."""

    ws_url: str = "ws://127.0.0.1:8780/ws/market"  # the market channel (WebSocket)
    clob_url: str = "http://127.0.0.1:8780"  # CLOB REST base: its market listing names the token ids
    markets: list[str] | Literal["all"] = "all"  # active markets to subscribe: "all" or condition ids
    # Token ids per WebSocket connection; more open further connections.
    max_assets_per_connection: Annotated[int, Meta(ge=1, le=500)] = 200
    dedup_cache_size: PosInt = 10_000  # message identities remembered (LRU) to drop duplicate frames
    ping_interval_seconds: PosFloat = 10.0  # period of the PING sent on each connection
    pong_timeout_seconds: PosFloat = 30.0  # no PONG for this long: the connection is closed and reopened
    # Silent-stall watchdog: no data on a connection this long while PONGs
    # still arrive means a stalled stream; only a new connection helps.
    data_timeout_seconds: PosFloat = 30.0
    # Reconnect delay: uniform(0, min(reconnect_max_seconds, this x 2^failures)); data flowing resets it.
    reconnect_base_seconds: PosFloat = 0.5
    reconnect_max_seconds: PosFloat = 30.0  # cap of that reconnect delay
    depth_levels: PosInt = 10  # price levels per side in each published book
    # A crossed book that lasts longer than this is treated as inconsistent.
    crossed_grace_ms: NonNegInt = 500
    # An invalid book is re-requested (unsubscribe + subscribe) after this.
    resubscribe_after_seconds: PosFloat = 1.0
    # Period of re-reading the market listing (after a failure: backoff 0.2-5 s).
    discovery_refresh_seconds: PosFloat = 60.0
    # Larger frames close the connection (websockets max_size): a hostile or
    # broken peer cannot make us buffer without bound.
    max_frame_bytes: PosInt = 8 * 1024 * 1024


class Router(_Section):
    """Books -> complete-set signals."""

    clob_url: str = "http://127.0.0.1:8780"  # market listing: outcome sets and fee rates
    markets: list[str] | Literal["all"] = "all"  # active markets to evaluate: "all" or condition ids
    # A book not updated by the venue for this long is stale: no signal from it.
    stale_book_ms: PosInt = 10_000
    # The same opportunity (market, kind, prices) is not signalled again within
    # this window unless its execution result arrived.
    resignal_after_ms: PosInt = 3_000
    size_step: Usdc = Decimal("0.01")  # order sizes are multiples of this (shares, at most 1000000)
    # Period of re-reading the market listing (after a failure: backoff 0.2-5 s).
    discovery_refresh_seconds: PosFloat = 60.0
    # Signal YES baskets of neg-risk events (buy every YES, hold to the resolution): capital is
    # locked until then (trading.max_locked_capital), so they are off unless asked for.
    yes_baskets: bool = False


class Executor(_Section):
    """Signals -> CLOB orders and on-chain transactions."""

    _bounds: ClassVar[dict[str, Decimal]] = {"pol_usdc_price": Decimal(1000), "unwind_max_price_move": Decimal(1)}

    # Directory of the executor's journal and idempotency store (SQLite, per chain id and address).
    state_dir: str = "run/state"
    clob_url: str = "http://127.0.0.1:8780"  # CLOB REST base the orders go to
    # The venue's user channel: the account's trades as they settle ("" = follow them over REST only).
    user_ws_url: str = "ws://127.0.0.1:8780/ws/user"
    # POL priced in USDC to turn gas into money (at most 1000): the fallback of pol_price_feed,
    # or the price itself without one (live: keep it current).
    pol_usdc_price: Usdc = Decimal("0.50")
    # A Chainlink AggregatorV3 POL / USD feed on this chain (Polygon: 0xAB594600376Ec9fD91F8e885dADF0CE036862dE0):
    # gas is priced at its answer while it is fresh, else at pol_usdc_price; none = pol_usdc_price only.
    pol_price_feed: Annotated[str, Meta(pattern=r"^0x[0-9a-fA-F]{40}$")] | None = None
    pol_price_max_age_seconds: PosFloat = 3600.0  # an answer older than this is stale: pol_usdc_price instead
    pol_price_refresh_seconds: PosFloat = 30.0  # how often the feed is read
    gas_limit_per_outcome: PosInt = 90_000  # merge/split gas budget before estimating
    receipt_timeout_seconds: PosFloat = 20.0  # a tx not mined by then is replaced with higher fees
    # Receipt lookups of a sent transaction: the first after this, then twice as long each time
    # up to receipt_poll_seconds (fast chains answer in ms, Polygon's blocks take ~2 s).
    receipt_poll_first_seconds: PosFloat = 0.005
    receipt_poll_seconds: PosFloat = 0.25  # the longest interval between two receipt lookups
    # Fee-bumped replacements of one transaction at most; after them it is only watched.
    max_fee_bumps: NonNegInt = 3
    fee_bump_percent: Annotated[int, Meta(ge=10, le=200)] = 12  # geth needs >= 10% on fee cap AND tip
    # Fee cap of a new transaction (gwei): min(2 x base fee + tip, this); base fee + tip above it
    # refuses the transaction. Fee bumps may go past it.
    max_fee_per_gas_gwei: PosInt = 2_000
    min_priority_fee_gwei: NonNegInt = 25  # Polygon's floor
    give_up_after_seconds: PosFloat = 300.0  # then the execution is left for reconciliation
    # Unwinding a leg that filled alone: sell it back at most this far below the leg's limit price
    # (USDC per share, at most 1); clearing a position left open widens that by this much per attempt.
    unwind_max_price_move: Usdc = Decimal("0.10")
    # A completed or failed execution's key is kept this long (the same signal is not run again
    # meanwhile); read when the executor starts.
    idempotency_ttl_seconds: PosFloat = 86_400.0
    # An execution IN_PROGRESS for longer is reported stale, for reconciliation (never re-run);
    # read when the executor starts.
    in_progress_lease_seconds: PosFloat = 600.0
    # Period of reconciliation while running: unfinished (PENDING) executions are finished, and
    # the books are compared with the wallet's pUSD and token balances (a difference halts trading).
    reconcile_seconds: PosFloat = 30.0
    # A matched trade not MINED/CONFIRMED (or FAILED) by then, or a DELAYED order not decided,
    # leaves its execution PENDING for reconciliation (never FAILED with its legs unbooked).
    settle_timeout_seconds: PosFloat = 60.0
    # Before a merge/convert, every leg's tokens must show in the wallet's ERC-1155 balance
    # (the node may lag the venue's "mined"): waited for at most this long, then PENDING.
    balance_wait_seconds: PosFloat = 15.0


class UnwindLoss(_Section):
    """What unwinding unhedged legs may cost (USDC, each at most 1000000; none = no limit)."""

    # One execution's unwind losing more halts trading until an operator `resume`: nobody expected it.
    execution: Usdc | None = None
    # Today's unwinds (00:00 UTC on) losing more in total halts trading until the next day or a higher limit.
    day: Usdc | None = None


class Risk(_Section):
    """Portfolio limits (docs/going-live.md), hot-reloadable, checked before every execution,
    after every outcome and each second. A breach forces the breaker open with the limit's
    name and the figures; once back within (a new day, positions sold, a deposit, a quiet
    minute, a raised limit) the executor closes it again. Every limit: none = off."""

    # Realized P&L since 00:00 UTC (fees and gas included) below minus this halts trading (USDC).
    daily_loss_limit: Usdc | None = None
    # Capital in open positions (unhedged legs not sold yet, at their price) plus the legs of
    # running executions (USDC). A signal that would go past it is refused (nothing traded);
    # positions alone past it halt trading.
    max_exposure: Usdc | None = None
    max_unwind_loss: UnwindLoss = UnwindLoss()  # per execution and per day (below)
    # The wallet's pUSD (as the reconciler last read it, plus what was booked since) below this halts trading.
    min_collateral_balance: Usdc | None = None
    # Executions started in the last 60 s at this many halts trading until the minute has fewer (a runaway loop).
    max_executions_per_minute: PosInt | None = None


class Runtime(_Section):
    """What every actor does regardless of its role."""

    stats_interval_seconds: PosFloat = 1.0  # period of each actor's stats message on the bus
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # level of the root logger
    # One actor's level instead, e.g. {feed: DEBUG}: the feed then logs each flush of books with
    # its trace id (`polyarb trace` finds where an execution's books came from).
    log_levels: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = {}
    # Quiet time after the last change to the config file before it is reloaded (ms); read when
    # the process starts.
    config_debounce_ms: NonNegInt = 300


class SandboxChain(_Section):
    """The sandbox's anvil."""

    host: str = "127.0.0.1"  # address anvil listens on
    port: Annotated[int, Meta(ge=0, le=65535)] = 8545  # port anvil listens on
    # 0 = automine (tests); ~2 s is Polygon-like (make run).
    block_time_seconds: NonNegFloat = 2.0
    accounts: PosInt = 10  # funded dev accounts anvil creates
    # Mnemonic of anvil's accounts; also of dev_mnemonic wallets and the venue operator.
    mnemonic: str = "test test test test test test test test test test test junk"
    # The world's file: `polyarb chain` loads it at start and writes it on exit and every
    # state_interval_seconds, so a restart continues the same world; none = a fresh chain each start.
    state_file: str | None = None
    state_interval_seconds: PosInt = 5  # whole seconds (anvil's flag): a kill -9 of anvil loses at most this much


Rate = Annotated[float, Meta(ge=0, le=1)]
# Prices and fee rates are fractions of the 1 USDC a winning share pays; Polymarket's ticks are <= 0.1.
_MARKET_BOUNDS = {"fee_rate": Decimal(1), "tick_size": Decimal("0.1"), "initial_prices": Decimal(1)}


class VenueMarket(_Section):
    """One binary market of the sandbox venue: one condition, a YES and a NO token whose
    books mirror each other (a bid for YES at p is an ask for NO at 1 - p). Its condition
    id and token ids are derived on chain from `slug`."""

    _bounds: ClassVar[dict[str, Decimal]] = _MARKET_BOUNDS

    slug: str  # the market's unique name; its ids are derived from it
    question: str = ""  # the question shown in the market listing
    # Outcome names of the two tokens (YES first). Multi-outcome markets are `events`.
    outcomes: Annotated[list[str], Meta(min_length=2, max_length=2)] = msgspec.field(
        default_factory=lambda: ["Yes", "No"])
    fee_rate: Usdc = Decimal("0.02")  # taker fee (at most 1): shares * fee_rate * (p * (1 - p)) ^ fee_exponent
    fee_exponent: Annotated[int, Meta(ge=1, le=4)] = 1  # the exponent of that formula (the listing's `fd.e`)
    # Price tick and mid step, at most 0.1 (a mid beyond 0.04-0.96 switches to 0.001).
    tick_size: Usdc = Decimal("0.01")
    # Smaller orders are rejected (shares, at most 1000000); published in the listing.
    min_order_size: Usdc = Decimal("5")
    # Mid prices of YES and NO (each at most 1, summing to 1); default 0.5 each.
    initial_prices: list[Usdc] | None = None
    depth_levels: PosInt = 5  # price levels per side of each token's book
    level_size: Usdc = Decimal("200")  # shares per level (at most 1000000)
    # Resolve on its own this long after the venue started (reported on chain, `market_resolved`
    # sent); none = only when the operator asks (POST /sandbox/resolve).
    resolve_after_seconds: PosFloat | None = None
    winner: str | None = None  # the winning outcome of that resolution; none = the likelier one then


class VenueEvent(_Section):
    """A neg-risk event: one binary YES/NO market per outcome, grouped under one
    `neg_risk_market_id` on the NegRiskAdapter and traded on the neg-risk exchange.
    Exactly one outcome resolves YES."""

    _bounds: ClassVar[dict[str, Decimal]] = _MARKET_BOUNDS

    slug: str  # the event's unique name; its market id is derived from it
    outcomes: Annotated[list[str], Meta(min_length=2, max_length=255)]  # named outcomes, one binary market each
    title: str = ""  # the event's title; each outcome's question is "<title>: <outcome>?"
    # Augmented events: placeholder outcomes (named later) and an "Other" outcome whose meaning
    # changes as placeholders are named. Named YES prices then sum below 1 by design.
    placeholders: Annotated[int, Meta(ge=0, le=64)] = 0
    other: bool = False  # an "Other" outcome (augmented events)
    fee_rate: Usdc = Decimal("0.02")  # taker fee rate of every outcome's market (at most 1)
    fee_exponent: Annotated[int, Meta(ge=1, le=4)] = 1  # its exponent
    convert_fee_bips: Annotated[int, Meta(ge=0, le=10_000)] = 0  # NegRiskAdapter feeBips of convertPositions
    tick_size: Usdc = Decimal("0.01")  # price tick of every outcome's market (at most 0.1)
    min_order_size: Usdc = Decimal("5")  # minimum order size (shares, at most 1000000)
    # YES mid prices (each at most 1) of the named outcomes, then the placeholders and Other; default: equal shares.
    initial_prices: list[Usdc] | None = None
    depth_levels: PosInt = 5  # price levels per side of each token's book
    level_size: Usdc = Decimal("200")  # shares per level (at most 1000000)
    resolve_after_seconds: PosFloat | None = None  # as for markets: resolve on its own after this
    winner: str | None = None  # the outcome that resolves YES then; none = the likeliest one then


class VenueArbitrage(_Section):
    """Gaps where real prices open them: on neg-risk events, the YES asks sum below 1 (a
    YES basket) or the YES bids above 1 (so the NO asks sum below m - 1: a NO basket), by
    `margin`. Binary markets get gaps only while `faults.inject_binary_gap` is on."""

    _bounds: ClassVar[dict[str, Decimal]] = {"margin": Decimal(1)}

    rate_per_minute: NonNegFloat = 6.0  # mean gaps opened per minute (Poisson), on a random market; 0 = none
    margin: Usdc = Decimal("0.04")  # distance of the sum from 1 (USDC, at most 1), rounded up to whole ticks
    lifetime_seconds: PosFloat = 5.0  # a gap not fully taken ends after this
    sell_side_share: Rate = 0.3  # fraction of gaps that are bids-above-1 (NO baskets; binary sell sets)


class VenueFaults(_Section):
    """Fault injection; every knob hot-reloadable. Rates are per message / request."""

    duplicate_rate: Rate = 0.0  # share of data frames sent twice
    reorder_rate: Rate = 0.0  # an older-timestamped frame delivered after a newer one
    drop_price_change_rate: Rate = 0.0  # share of price_change frames not sent: the client's book diverges
    # Each WebSocket connection is closed this long after it opened; none = never.
    disconnect_every_seconds: PosFloat | None = None
    stall: bool = False  # silent stall: PONG keeps coming, data stops
    malformed_rate: Rate = 0.0  # broken JSON, unknown event types, missing fields
    huge_frame_rate: Rate = 0.0  # share of data frames that come with an extra frame of huge_frame_bytes
    huge_frame_bytes: PosInt = 2_000_000  # size of those huge frames
    http_429_rate: Rate = 0.0  # share of requests answered 429 with Retry-After
    retry_after_seconds: PosInt = 1  # the Retry-After of the injected 429s
    http_5xx_rate: Rate = 0.0  # share of requests that start a burst of 500/502/503 answers
    http_5xx_burst: PosInt = 1  # consecutive 5xx once a burst starts
    slow_response_rate: Rate = 0.0  # share of requests delayed by slow_response_ms
    slow_response_ms: NonNegInt = 0  # that delay (ms); 0 = no slow responses
    reject_orders: bool = False  # the order endpoints answer 503 to every POST /order and POST /orders
    # Binary complete-set gaps (ask YES + ask NO < 1) do not rest on the real venue: matching
    # closes them. On, the simulator opens them on binary markets too (at the arbitrage rate).
    inject_binary_gap: bool = False
    # Settlement: a matched trade is mined this long after its match (MATCHED -> MINED), then
    # CONFIRMED after as long again.
    settlement_latency_ms: NonNegInt = 2000
    trade_fail_rate: Rate = 0.0  # share of matched trades that end FAILED (nothing moves on chain)
    trade_retry_rate: Rate = 0.0  # share that go RETRYING (a reverted settlement resubmitted), then CONFIRMED
    delayed_rate: Rate = 0.0  # share of orders answered `delayed`: matched (or not) after the delay
    delayed_unmatched_share: Rate = 0.5  # of those, the share that end UNMATCHED instead
    delay_ms: NonNegInt = 1000  # the matching delay of a `delayed` order
    # The weekly matching-engine restart: every this many seconds (none = never) the order
    # endpoints answer 425 for engine_restart_seconds, then accept only post-only orders
    # for post_only_seconds.
    engine_restart_every_seconds: PosFloat | None = None
    engine_restart_seconds: PosFloat = 90.0  # how long each restart answers 425
    post_only_seconds: PosFloat = 120.0  # then how long only post-only orders are accepted


class Venue(_Section):
    """The local Polymarket: market WebSocket + CLOB REST + on-chain settlement."""

    _bounds: ClassVar[dict[str, Decimal]] = {"pol_usdc_price": Decimal(1000)}

    host: str = "127.0.0.1"  # address of the venue's HTTP + WebSocket server
    port: Annotated[int, Meta(ge=0, le=65535)] = 8780  # its port; 0 = any free port (see ws_url in the stats)
    seed: int = 42  # seed of the simulator and fault injector: the same seed, the same events
    operator_index: NonNegInt = 0  # dev mnemonic account of the venue operator
    updates_per_second: NonNegFloat = 20.0  # book changes, across all markets
    markets: list[VenueMarket] = []  # the venue's binary markets (each entry below)
    events: list[VenueEvent] = []  # the venue's neg-risk events (each entry below)
    state_dir: str = "run/state"  # the venue's SQLite store: orders, trades, client ids (survive a restart)
    # Dead-man switch: an account that sent heartbeats and then none for this long has its
    # resting orders cancelled.
    heartbeat_timeout_seconds: PosFloat = 10.0
    arbitrage: VenueArbitrage = VenueArbitrage()
    faults: VenueFaults = VenueFaults()
    # The POL / USD answer of the sandbox's price feed, placed at executor.pol_price_feed (at most 1000).
    pol_usdc_price: Usdc = Decimal("0.50")
    # Collateral minted to the trading wallet once, when the sandbox world (a fresh chain) is created
    # (USDC, at most 1000000).
    trader_funding: Usdc = Decimal("10000")
    # Complete sets the operator holds per market (split at bootstrap, at most 1000000), plus as much
    # collateral besides.
    operator_inventory: Usdc = Decimal("100000")


class Sandbox(_Section):
    """The local world `make run` trades in: anvil and the venue. Absent in a live config."""

    chain: SandboxChain = SandboxChain()
    venue: Venue = Venue()


WebhookUrl = Annotated[str, Meta(pattern=r"^https?://[^\s]+$", max_length=2048)]


class Alerts(_Section):
    """Alerts to webhooks (Slack and Discord incoming webhooks accept them), sent by the
    `alerts` program: a breaker transition, the books apart from the chain, a position
    left open, an actor gone silent, a nonce stuck. Hot-reloadable."""

    webhooks: list[WebhookUrl] = []  # URLs each alert is POSTed to as JSON; none = alerts kept, not sent
    state_dir: str = "run/state"  # directory of the alert outbox (`alerts.sqlite`): unsent alerts survive restarts
    actor_silent_seconds: PosFloat = 30.0  # an actor whose stats were not heard for this long
    position_open_minutes: PosFloat = 10.0  # an open position (an unsold unhedged leg) held this long
    nonce_stuck_seconds: PosFloat = 120.0  # a nonce pending at the authority this long
    max_per_minute: PosInt = 20  # sends per webhook per minute; beyond, alerts wait their turn (never dropped)
    timeout_seconds: PosFloat = 5.0  # one POST
    max_backoff_seconds: PosFloat = 300.0  # a failed POST is retried with doubling waits up to this


class Dashboard(_Section):
    """The `dashboard` program: one live web page of the whole system, fed from the bus."""

    listen: MetricsAddress = "127.0.0.1:7160"  # host:port of the page (loopback: a proxy with auth to share it)
    silent_seconds: PosFloat = 5.0  # an actor whose stats were not heard for this long is shown silent
    push_interval_seconds: PosFloat = 0.5  # how often the page is sent the state
    pnl_points: PosInt = 5000  # points of the P&L chart kept
    executions_shown: PosInt = 50  # latest executions listed
    transitions_shown: PosInt = 50  # latest breaker transitions listed


class PaperGas(_Section):
    """Gas a paper transaction burns, by step (the executor prices it as live: fee x POL price)."""

    merge: PosInt = 150_000  # a merge of a full set into pUSD
    split: PosInt = 150_000  # a split of pUSD into a full set
    convert: PosInt = 250_000  # the NegRiskAdapter's convertPositions
    redeem: PosInt = 150_000  # the redemption of a resolved question
    other: PosInt = 60_000  # approvals, the nonce authority's no-op replacements
    base_fee_gwei: NonNegInt = 30  # the base fee of every paper block
    priority_fee_gwei: NonNegInt = 30  # the tip the paper chain suggests


class Paper(_Section):
    """Paper trading (docs/paper-trading.md): the executor's orders go to a paper venue that
    matches them against the live books the feed publishes, and its transactions to a paper
    chain kept in SQLite: no wallet, no key, nothing sent. Present: the executor trades on paper
    (adding or removing the section takes effect when the executor starts; its keys are hot)."""

    funding: Usdc = Decimal("1000")  # the paper wallet's pUSD when its ledger is created (read then only)
    # An order reaches the venue this long after it is sent: it matches the book as it is then
    # (the feed's latest), not as it was when the signal left (live: your round trip to the CLOB).
    order_latency_ms: NonNegInt = 50
    # A matched trade is MINED this long after the match (Polygon: a few blocks); its tokens and
    # pUSD move then, as they do on chain.
    settlement_latency_ms: NonNegInt = 3_000
    gas: PaperGas = PaperGas()
    # The NegRiskAdapter's convert fee (bips) of every event; none = read from chain.rpc_url (read-only).
    convert_fee_bips: Annotated[int, Meta(ge=0, lt=10_000)] | None = None
    listing_refresh_seconds: PosFloat = 60.0  # the market listing (token ids, fee rates) is read again this often


class Config(_Section):
    """The whole file."""

    bus: Bus
    trading: Trading = Trading()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    retry_policy: RetryPolicy = RetryPolicy()
    chain: Chain = Chain()
    nonce: Nonce = Nonce()
    feed: Feed = Feed()
    router: Router = Router()
    executor: Executor = Executor()
    risk: Risk = Risk()
    runtime: Runtime = Runtime()
    alerts: Alerts = Alerts()
    dashboard: Dashboard = Dashboard()
    sandbox: Sandbox | None = None
    paper: Paper | None = None  # present: the executor trades on paper (no wallet, no chain)


# Sections whose change at run time would be unsafe: reported, not applied.
# (The venue's faults, rates and arbitrage are hot: the venue applies them itself.)
RESTART_ONLY = ("bus", "chain")
# Keys swapped in by a reload but read only when their process starts (files,
# listening sockets, the sandbox world): a change takes effect at the next start.
READ_AT_START: dict[str, tuple[str, ...]] = {
    "nonce": ("state_dir", "request_cache_size"),
    "executor": ("state_dir", "clob_url", "user_ws_url", "idempotency_ttl_seconds", "in_progress_lease_seconds"),
    "trading": ("max_in_flight",),
    "runtime": ("config_debounce_ms",),
    "feed": ("ws_url",),
    "alerts": ("state_dir",),
    "dashboard": ("listen",),
    "paper": ("funding",),
    "sandbox": ("chain",),
    "sandbox.venue": ("host", "port", "seed", "operator_index", "markets", "events", "state_dir", "trader_funding",
                      "operator_inventory"),
}
