"""Loading and validating a config file.

YAML floats are read as Decimal so money never passes through a binary float;
msgspec then validates the whole document against `config.schema.Config` and
any error names the file and the key path.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import msgspec
import yaml

from config.schema import Config

DEFAULT_PATH = Path(__file__).with_name("sandbox.yaml")
ENV_VAR = "POLYARB_CONFIG"


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and key."""


class _Loader(yaml.SafeLoader):
    pass


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    return Decimal(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)


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


def parse(text: str, source: str = "<string>") -> Config:
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        return msgspec.convert(raw, Config, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_name_key(str(exc))}") from exc


def _name_key(message: str) -> str:
    # msgspec says "... - at `$.trading.max_position_size`"; lead with the key.
    if " - at `$." in message:
        what, where = message.rsplit(" - at `$.", 1)
        return f"key '{where.rstrip('`')}': {what}"
    return message


def load(path: str | os.PathLike[str] | None = None) -> Config:
    p = resolve_path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    return parse(text, str(p))


def load_lenient(path: str | os.PathLike[str] | None = None) -> tuple[Config, str | None]:
    """For tools that only need the endpoints (status, sniff): a broken edit
    elsewhere in the file must not blind the operator. Returns the config built
    from the valid `bus` section (other sections default) and the error."""
    try:
        return load(path), None
    except ConfigError as exc:
        p = resolve_path(path)
        try:
            raw = yaml.load(p.read_text(), Loader=_Loader)  # noqa: S506
            bus = raw["bus"] if isinstance(raw, dict) else None
            runtime = raw.get("runtime", {}) if isinstance(raw, dict) else {}
            cfg = msgspec.convert({"bus": bus}, Config, dec_hook=_dec_hook)
            try:
                cfg = msgspec.convert({"bus": bus, "runtime": runtime}, Config, dec_hook=_dec_hook)
            except msgspec.ValidationError:
                pass
        except Exception:
            raise exc from None
        return cfg, str(exc)
