"""Hostile market-channel input, generated and mutated in bulk (>= 100,000 frames):
every input is applied or counted, nothing escapes `FeedCore.on_frame`, no
valid book holds a size or price it must not (or stays crossed past the grace
period), and every book the feed would publish encodes on the bus.

Hypothesis draws the seeds, hostile values and mutation mixes (fixed settings,
derandomized: the same frames in every run); a seeded mutator makes a batch
of frames from each draw, which keeps 100,000 frames inside a few seconds.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain.money import MICRO
from actors.feed import wire
from actors.feed.actor import book_update
from actors.feed.core import FUTURE_TOLERANCE_MS, FeedCore
from actors.runtime.clock import TestClock
from bus import topics
from bus.codec import Stamper, encode

pytestmark = pytest.mark.unit

M = "0xmarket"
TRACKED = ("111", "222", "333")
TOKENS = (*TRACKED, "999")  # one the feed does not track
NOW_MS = 1_750_000_000_000
GRACE_MS = 500
FRAMES_PER_BATCH = 1_000
BATCHES = 100  # x FRAMES_PER_BATCH frames from the mutator

# One message is exactly one of these (untracked: a snapshot's; a price change's
# entries for untracked tokens count too, without making their message one).
OUTCOMES = ("malformed", "ignored_events", "unknown_events", "duplicates", "future_stamped", "snapshots",
            "price_changes", "tick_size_changes", "trades")

HOSTILE_TEXT = [
    "1e5", "1E-2", "5e-1", "NaN", "Infinity", "-Infinity", "nan", "inf", "0.1234567", "0.00000001", "-0.5", "-1",
    "+0.5", " 0.5", "0.5 ", "9" * 50, "1" * 5000, "\u00b2", "\u2460", "\u0663", "0.\u0664", "\uff11", "0x1f", "",
    ".", "0.", ".5", "1_000", "1,5", "0.5.5", "1" + "0" * 20, str(2**64), str(2**63), "0", "1", "1.0", "1.5",
    "0.405", "0.001", "\x00", "\U0001f4a5", "999999999999999", "9" * 16, "BUY ", "buy", "SELL\n", "LTE=",
]
HOSTILE_VALUES: list[Any] = [None, True, False, 0, -1, 1.5, 2**64, 10**30, -(10**30), [], {}, ["BUY"], {"a": 1},
                             [[[[[]]]]], "x" * 300, 1e308, -0.0]
RAW_LITERALS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 5000, "0x10", "01", "undefined", "'x'",
                "[" * 50_000, "[" * 2_000 + "]" * 2_000, '{"a":' * 3_000 + "1" + "}" * 3_000, '"\\ud800"', '"\\u0000"']
CHARS = '{}[]":,0123456789eE.-+ \\xn\u00b2\u0663'


def _price(rng: random.Random) -> str:
    if rng.random() < 0.03:
        return f"0.{rng.randint(1, 999):03d}"  # off the 0.01 tick (on the 0.001 one)
    return f"0.{rng.randint(1, 99):02d}"


def _ts(rng: random.Random, t: int) -> str:
    r = rng.random()
    if r < 0.9:
        return str(t)
    if r < 0.95:
        return str(t - rng.randint(1, 5_000))  # late
    return str(t + rng.choice([FUTURE_TOLERANCE_MS + 1, 10**10, FUTURE_TOLERANCE_MS - 1]))  # early


def honest(rng: random.Random, t: int) -> dict[str, Any]:
    """A message of the venue's shape; levels on the 0.01 tick, sizes within bounds."""
    token = rng.choice(TOKENS)
    kind = rng.random()
    if kind < 0.25:
        mid = rng.randint(10, 90)
        return {"event_type": "book", "asset_id": token, "market": M, "timestamp": _ts(rng, t), "hash": f"h{t}",
                "tick_size": "0.01",
                "bids": [{"price": f"0.{p:02d}", "size": str(rng.randint(1, 500))} for p in range(mid - 3, mid)],
                "asks": [{"price": f"0.{p:02d}", "size": str(rng.randint(1, 500))} for p in range(mid + 1, mid + 4)]}
    if kind < 0.85:
        entries = []
        for _ in range(rng.randint(1, 3)):
            e = {"asset_id": rng.choice(TOKENS), "price": _price(rng), "size": str(rng.randint(0, 300)),
                 "side": rng.choice(["BUY", "SELL"]), "hash": f"x{rng.randint(0, 50)}"}
            if rng.random() < 0.1:
                e["best_bid"], e["best_ask"] = _price(rng), _price(rng)
            entries.append(e)
        return {"event_type": "price_change", "market": M, "timestamp": _ts(rng, t), "price_changes": entries}
    if kind < 0.9:
        return {"event_type": "tick_size_change", "asset_id": token, "market": M, "old_tick_size": "0.01",
                "new_tick_size": rng.choice(["0.01", "0.001"]), "timestamp": _ts(rng, t)}
    if kind < 0.95:
        return {"event_type": "last_trade_price", "asset_id": token, "market": M, "price": _price(rng),
                "size": "1", "side": "BUY", "fee_rate_bps": "0", "timestamp": _ts(rng, t)}
    return {"event_type": rng.choice(["best_bid_ask", "new_market", "market_resolved", "surprise"]), "market": M}


def _leaves(obj: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(obj, dict):
        return [path] + [p for k, v in obj.items() for p in _leaves(v, (*path, k))]
    if isinstance(obj, list):
        return [path] + [p for i, v in enumerate(obj) for p in _leaves(v, (*path, i))]
    return [path]


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    obj[path[0]] = _set(obj[path[0]], path[1:], value)
    return obj


def _pairs(msg: dict[str, Any], rng: random.Random) -> str:
    """The message with one of its keys twice (JSON allows it; the last one wins)."""
    items = list(msg.items())
    k, _ = rng.choice(items)
    items.insert(rng.randint(0, len(items)), (k, rng.choice(HOSTILE_TEXT)))
    return "{" + ",".join(f"{json.dumps(a)}:{json.dumps(b)}" for a, b in items) + "}"


def mutate(rng: random.Random, msg: dict[str, Any], values: list[Any]) -> str | bytes:
    r = rng.random()
    if r < 0.35:  # one leaf (or container) becomes a hostile value
        path = rng.choice(_leaves(msg))
        return json.dumps(_set(msg, path, rng.choice(values + HOSTILE_VALUES + HOSTILE_TEXT)))
    if r < 0.45:  # a raw literal JSON does not have, or deep nesting, in place of a value
        path = rng.choice(_leaves(msg)[1:] or [("x",)])
        marker = "\u2603MARK\u2603"
        text = json.dumps(_set(msg, path, marker))
        return text.replace(json.dumps(marker), rng.choice(RAW_LITERALS), 1)
    if r < 0.55:
        return _pairs(msg, rng)
    text = json.dumps(msg)
    if r < 0.7:  # truncated
        return text[:rng.randint(0, len(text))]
    if r < 0.85:  # characters flipped, inserted, deleted
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                chars[i] = rng.choice(CHARS)
            elif op < 0.7:
                chars.insert(i, rng.choice(CHARS))
            else:
                del chars[i]
        return "".join(chars)
    if r < 0.9:  # a key dropped or an unknown one added
        if rng.random() < 0.5 and len(msg) > 1:
            del msg[rng.choice(list(msg))]
        else:
            msg[rng.choice(["surprise", "price", "bids", "asset_id", "x" * 40])] = rng.choice(values)
        return json.dumps(msg)
    if r < 0.95:  # an array of messages, some broken
        return "[" + ",".join(json.dumps(honest(rng, NOW_MS)) if rng.random() < 0.7
                              else rng.choice(["1", "null", '"x"', "[]", "{}"]) for _ in range(rng.randint(0, 4))) + "]"
    raw = text.encode()
    if rng.random() < 0.5:  # bytes, invalid UTF-8 among them
        return raw[:rng.randint(0, len(raw))] + bytes([rng.randrange(256) for _ in range(rng.randint(0, 3))])
    return raw


def tracked_core() -> FeedCore:
    c = FeedCore(dedup_size=256, crossed_grace_ms=GRACE_MS, max_future_ms=FUTURE_TOLERANCE_MS)
    for t in TRACKED:
        c.track(t, M)
    return c


def feed(c: FeedCore, text: str | bytes, recv_ns: int) -> None:
    """One frame: nothing raises, and it is applied or counted."""
    before = dict(c.counts)
    c.on_frame(text, recv_ns)  # anything raised fails the test
    d = {k: c.counts[k] - before[k] for k in c.counts}
    assert d["frames"] == 1
    outcomes = sum(d[k] for k in OUTCOMES)
    if d["messages"] == 0:  # nothing readable: counted malformed, unless an empty array
        assert d["malformed"] == 1 or _empty_array(text), text[:200]
    else:
        assert outcomes <= d["messages"] <= outcomes + d["untracked"], (d, text[:200])


def _empty_array(text: str | bytes) -> bool:
    try:
        return json.loads(text) == []
    except ValueError:
        return False


def check_books(c: FeedCore, now_ns: int, stamper: Stamper) -> None:
    for token, s in c.tokens.items():
        if s.valid:
            book = s.book
            for side in (book.bids, book.asks):
                for price, (size, _) in side.items():
                    assert 0 < size < wire.MAX_SIZE and 0 < price < MICRO, (token, price, size)
                    assert not book.tick_size or price % book.tick_size == 0, (token, price, book.tick_size)
            assert book.last_ts * 1_000_000 <= s.recv_ns + FUTURE_TOLERANCE_MS * 1_000_000
            assert not book.crossed() or s.crossed_since_ns is not None  # the grace period's clock runs
        body = book_update(token, s, 10)
        assert isinstance(encode(topics.book(token), stamper.stamp(topics.book(token), body))[1], bytes)
    c.check(now_ns + (GRACE_MS + 10) * 1_000_000)  # past the grace period (and recv jitter): none crossed
    assert not any(s.valid and s.book.crossed() for s in c.tokens.values())
    assert c.valid_count() == sum(s.valid for s in c.tokens.values())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from(HOSTILE_TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)

_TOTAL = {"frames": 0}


@settings(max_examples=BATCHES, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**32 - 1), values=st.lists(json_values, min_size=1, max_size=10),
       hostile_share=st.floats(0.2, 0.8))
def test_mutated_frames_are_applied_or_counted_and_never_make_a_bad_valid_book(seed, values, hostile_share):
    rng = random.Random(seed)
    c = tracked_core()
    stamper = Stamper("feed", TestClock())
    t = NOW_MS
    for i in range(FRAMES_PER_BATCH):
        t += rng.randint(0, 3)
        msg = honest(rng, t)
        text = mutate(rng, msg, values) if rng.random() < hostile_share else json.dumps(msg)
        feed(c, text, t * 1_000_000 + rng.randint(0, 2_000_000))
        if i % 100 == 99:
            check_books(c, t * 1_000_000, stamper)
    check_books(c, t * 1_000_000, stamper)
    _TOTAL["frames"] += FRAMES_PER_BATCH


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(msgs=st.lists(st.fixed_dictionaries(
    {"event_type": st.sampled_from(["book", "price_change", "tick_size_change", "last_trade_price"])},
    optional={"asset_id": st.sampled_from(TOKENS) | json_values, "market": st.just(M) | json_values,
              "timestamp": st.integers(NOW_MS - 10, NOW_MS + 10).map(str) | json_values,
              "hash": json_values, "tick_size": st.sampled_from(["0.01", "0.001"]) | json_values,
              "new_tick_size": st.sampled_from(["0.01", "0.001"]) | json_values,
              "price": st.sampled_from(["0.40", "0.45"]) | json_values, "size": json_values,
              "bids": st.lists(st.fixed_dictionaries({"price": st.sampled_from(["0.40", "0.405"]) | json_values,
                                                      "size": st.sampled_from(["1", "0"]) | json_values}),
                               max_size=3) | json_values,
              "asks": st.lists(st.fixed_dictionaries({"price": st.sampled_from(["0.45", "1"]) | json_values,
                                                      "size": json_values}), max_size=3),
              "price_changes": st.lists(st.fixed_dictionaries(
                  {"asset_id": st.sampled_from(TOKENS), "price": st.sampled_from(["0.41", "0.44"]) | json_values,
                   "size": st.sampled_from(["3", "0"]) | json_values,
                   "side": st.sampled_from(["BUY", "SELL"]) | json_values},
                  optional={"hash": json_values, "best_bid": json_values, "best_ask": json_values}), max_size=3)}),
    min_size=1, max_size=40))
def test_structured_hostile_messages_are_applied_or_counted(msgs):
    c = tracked_core()
    stamper = Stamper("feed", TestClock())
    for i, m in enumerate(msgs):
        feed(c, json.dumps(m), (NOW_MS + i) * 1_000_000)
    check_books(c, (NOW_MS + len(msgs)) * 1_000_000, stamper)
    _TOTAL["frames"] += len(msgs)


@pytest.mark.parametrize("field", ["price", "asset_id", "market", "hash", "surprise", "timestamp"])
def test_a_10_mb_string_anywhere_is_applied_or_counted(field):
    c = tracked_core()
    big = ("9" if field in ("price", "timestamp") else "x") * (10 * 1024 * 1024)
    snap = {"event_type": "book", "asset_id": TRACKED[0], "market": M, "timestamp": str(NOW_MS), "hash": "h",
            "bids": [{"price": "0.40", "size": "1"}], "asks": [{"price": "0.45", "size": "1"}]}
    if field == "price":
        snap["bids"][0]["price"] = big
    else:
        snap[field] = big
    feed(c, json.dumps(snap), NOW_MS * 1_000_000)
    check_books(c, NOW_MS * 1_000_000, Stamper("feed", TestClock()))
    assert c.tokens[TRACKED[0]].valid == (field in ("market", "hash", "surprise"))
    assert c.tokens[TRACKED[0]].market == M


def test_at_least_100_000_frames_were_fed():
    # Runs after the suites above (file order): the bulk really was fed.
    if _TOTAL["frames"] == 0:
        pytest.skip("run with the rest of the file")
    assert _TOTAL["frames"] >= 100_000
