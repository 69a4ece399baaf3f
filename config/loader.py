"""Loading and validating a config file.

YAML floats are read as Decimal so money never passes through a binary float;
msgspec then validates the whole document against `config.schema.Config` and
any error names the file and the key path.

The file may be hostile or broken, so everything before msgspec is bounded: the
file's size (a regular file only, read at most MAX_BYTES + 1 bytes), then one
pass over the YAML event stream (iterative, so no recursion limit is involved)
that refuses nesting deeper than MAX_DEPTH, alias expansion beyond MAX_NODES
nodes ("billion laughs"), and numbers Python would choke on, before anything is
composed. Any failure is a ConfigError naming the file (and the key when known).
"""

from __future__ import annotations

import os
import re
import stat
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import yaml
from yaml.nodes import ScalarNode

from config.schema import Config

DEFAULT_PATH = Path(__file__).with_name("sandbox.yaml")
ENV_VAR = "POLYARB_CONFIG"

MAX_BYTES = 1 << 20  # a real config is a few KB
MAX_DEPTH = 32  # nested collections; the schema needs 6
MAX_NODES = 100_000  # nodes of the document with every alias expanded
MAX_NUMBER_CHARS = 64  # Python's int() refuses > 4300 digits (ValueError); no real value is this long

_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_PLAIN = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # how an amount is written: "12.5", not "1e9", "1_000" or " 1"


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and key."""


# libyaml's parser when built: the same YAML, 20x faster over a hostile 1 MiB.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # The Decimals written with an exponent, by id (kept alive so no id is reused): fine for
        # seconds, refused for money.
        self.exponents: dict[int, Decimal] = {}


def _decimal(loader: _Loader, node: yaml.Node) -> Decimal:
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    value = Decimal(text)  # _check_events has refused what Decimal cannot read (.inf, .nan, 1:30.5)
    if "e" in text.lower():
        loader.exponents[id(value)] = value
    return value


_Loader.add_constructor(_FLOAT, _decimal)


def _dec_hook(tp: type, obj: object) -> object:
    # Decimal read from YAML where the schema wants a float (ratios, seconds).
    if tp is float and isinstance(obj, Decimal):
        return float(obj)
    raise NotImplementedError


def resolve_path(path: str | os.PathLike[str] | None = None) -> Path:
    """--config PATH, else $POLYARB_CONFIG, else the sandbox default."""
    if path:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def read(path: Path) -> str:
    """The file's text: a regular file of at most MAX_BYTES of UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path}: not a regular file (a device, FIFO or directory)")
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES} bytes: not a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): not a config file") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # One line with the position, not PyYAML's multi-line excerpt.
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        m = exc.problem_mark
        return f"line {m.line + 1}, column {m.column + 1}: {exc.problem or exc.context}"
    return str(exc).replace("\n", " ")


def _number_problem(text: str, tag: str) -> str | None:
    if len(text) > MAX_NUMBER_CHARS:
        return f"a number longer than {MAX_NUMBER_CHARS} characters"
    if ":" in text:
        return f"{text!r} is a YAML 1.1 base-60 number: write it in decimal (quote it if it is text)"
    if tag == _FLOAT:
        try:
            value = Decimal(text)
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite() or value.adjusted() > 300:  # 1.0e+400 would be a float inf
            return f"{text!r} is not a finite decimal number"
    return None


class _Walk:
    """One pass over the event stream: depth, expanded size and numbers, with the key path."""

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []  # per open collection: [anchor, first node, height, is map, items, key]
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)
        self.nodes = 0

    def where(self) -> str:
        parts = [str(f[5]) if f[3] else f"[{f[4]}]" for f in self.stack]
        key = ".".join(parts).replace(".[", "[")
        return f"key '{key[:200]}': " if key else ""

    def done(self, height: int, scalar: Any = None) -> None:
        if self.stack:
            parent = self.stack[-1]
            parent[2] = max(parent[2], height + 1)
            if parent[3] and parent[4] % 2 == 0:  # a mapping key: the path's next label
                parent[5] = scalar if scalar is not None else "?"
            parent[4] += 1

    def event(self, ev: yaml.Event, loader: _Loader) -> str | None:
        """The problem with this event, or None."""
        if isinstance(ev, yaml.AliasEvent):
            if any(f[0] == ev.anchor for f in self.stack):
                return f"alias *{ev.anchor} refers to its own enclosing node (a recursive document)"
            size, height = self.anchors.get(ev.anchor, (1, 0))  # undefined: the composer will say so
            self.nodes += size
            if len(self.stack) + height > MAX_DEPTH:
                return f"alias *{ev.anchor} nests deeper than {MAX_DEPTH} levels"
            self.done(height)
        elif isinstance(ev, yaml.ScalarEvent):
            self.nodes += 1
            tag = ev.tag if ev.tag not in (None, "!") else loader.resolve(ScalarNode, ev.value, ev.implicit)
            if tag in (_INT, _FLOAT) and (problem := _number_problem(ev.value, tag)):
                return problem
            if ev.anchor:
                self.anchors[ev.anchor] = (1, 0)
            self.done(0, ev.value)
        elif isinstance(ev, yaml.CollectionStartEvent):
            if len(self.stack) == MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            self.nodes += 1
            self.stack.append([ev.anchor, self.nodes, 0, isinstance(ev, yaml.MappingStartEvent), 0, "?"])
        elif isinstance(ev, yaml.CollectionEndEvent):
            anchor, first, height, *_ = self.stack.pop()
            if anchor:
                self.anchors[anchor] = (self.nodes - first + 1, height)
            self.done(height)
        if self.nodes > MAX_NODES:
            return f"more than {MAX_NODES} nodes once aliases are expanded"
        return None


def _check_events(text: str, source: str) -> None:
    walk = _Walk()
    try:
        loader = _Loader(text)  # PyYAML's own reader refuses control characters here
        try:
            while loader.check_event():
                if problem := walk.event(loader.get_event(), loader):
                    raise ConfigError(f"{source}: {walk.where()}{problem}")
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from exc


def _document(text: str, source: str) -> tuple[dict[str, Any], dict[int, Decimal]]:
    """The YAML document, checked by _check_events before it is composed, and the ids of
    its Decimals written with an exponent."""
    _check_events(text, source)
    loader = _Loader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from exc
    except (ValueError, ArithmeticError, RecursionError) as exc:  # a constructor's (e.g. !!timestamp 2020-13-45)
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    return raw, loader.exponents


@cache
def _schema() -> mi.Type:
    return mi.type_info(Config)


def _amount_text(value: Any, t: mi.Type, key: str, exponents: dict[int, Decimal]) -> str | None:
    """The key of an amount not written as a plain decimal, following the schema (no recursion
    beyond its few levels: a value that does not match the type's shape is left to msgspec)."""
    if isinstance(t, mi.DecimalType):
        bad = _PLAIN.fullmatch(value) is None if isinstance(value, str) else id(value) in exponents
        return key if bad else None
    children: list[tuple[Any, mi.Type, str]] = []
    if isinstance(t, mi.StructType) and isinstance(value, dict):
        children = [(value[f.encode_name], f.type, f"{key}.{f.name}") for f in t.fields if f.encode_name in value]
    elif isinstance(t, mi.UnionType):
        children = [(value, m, key) for m in t.types]
    elif isinstance(t, mi.ListType) and isinstance(value, list):
        children = [(v, t.item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    elif isinstance(t, mi.DictType) and isinstance(value, dict):
        children = [(v, t.value_type, f"{key}.{k}") for k, v in value.items()]
    return next((bad for v, ct, k in children if (bad := _amount_text(v, ct, k, exponents))), None)


def _convert(raw: dict[str, Any], source: str, exponents: dict[int, Decimal]) -> Config:
    if bad := _amount_text(raw, _schema(), "", exponents):
        raise ConfigError(f"{source}: key '{bad.lstrip('.')}': an amount must be a plain decimal like "
                          f"\"12.5\" (no exponent, underscores or spaces)")
    try:
        return msgspec.convert(raw, Config, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_name_key(str(exc))}") from exc


def parse(text: str, source: str = "<string>") -> Config:
    raw, exponents = _document(text, source)
    return _convert(raw, source, exponents)


def _name_key(message: str) -> str:
    # msgspec says "... - at `$.trading.max_position_size`"; lead with the key. A section's own
    # check says "`max_gas_cost` must be ... - at `$.trading`": the key is section + field.
    if " - at `$." in message:
        what, where = message.rsplit(" - at `$.", 1)
        where = where.rstrip("`")
        if m := re.fullmatch(r"`(\w+)` (.*)", what, re.S):
            where, what = f"{where}.{m[1]}", m[2]
        return f"key '{where}': {what}"
    return message


def load(path: str | os.PathLike[str] | None = None) -> Config:
    p = resolve_path(path)
    return parse(read(p), str(p))


def load_lenient(path: str | os.PathLike[str] | None = None) -> tuple[Config, str | None]:
    """For tools that only need the endpoints (status, sniff): a broken edit
    elsewhere in the file must not blind the operator. Returns the config built
    from the valid `bus` section (other sections default) and the error; a file
    that cannot be parsed at all, or whose `bus` is unusable, gives the default
    file's endpoints. Only a file that cannot be opened raises."""
    p = resolve_path(path)
    try:
        return load(p), None
    except ConfigError as exc:
        if isinstance(exc.__cause__, OSError):
            raise
        error = str(exc)
    try:
        raw, _ = _document(read(p), str(p))
    except ConfigError:
        raw = {}  # not a YAML mapping at all
    bus, runtime = raw.get("bus"), raw.get("runtime", {})
    for doc in ({"bus": bus, "runtime": runtime}, {"bus": bus}):
        try:
            return _convert(doc, str(p), {}), error
        except ConfigError:
            pass
    return Config(bus=load(DEFAULT_PATH).bus), f"{error} (showing the endpoints of {DEFAULT_PATH})"
