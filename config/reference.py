"""docs/configuration.md, generated from the schema: every key with its type,
default, when a change takes effect, and what it does.

    python -m config.reference            # print the document
    python -m config.reference --write    # (re)write docs/configuration.md
    python -m config.reference --check    # exit 1 if the file is out of date

Descriptions come from the schema itself: a section's docstring, and for a key
the comment on its line or the comment block right above it. A key without
either is listed with an empty description (write the comment in schema.py).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from config import schema

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

# How the schema's aliases read to a user.
ALIASES = {
    "PosInt": "int >= 1",
    "NonNegInt": "int >= 0",
    "PosFloat": "number > 0",
    "NonNegFloat": "number >= 0",
    "Ratio": "number in (0, 1]",
    "Rate": "number in [0, 1]",
    "Usdc": "decimal",
    "Endpoint": "endpoint (tcp:// ipc:// inproc://)",
    "MetricsAddress": "host:port",
    "str": "string",
    "bool": "bool",
    "int": "int",
    "float": "number",
}


class _Comments(ast.NodeVisitor):
    """(class name, field name) -> the comment describing that field in schema.py."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines()
        self.found: dict[tuple[str, str], str] = {}

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                self.found[(node.name, item.target.id)] = self._comment(item.lineno - 1)

    def _comment(self, index: int) -> str:
        line = self.lines[index]
        trailing = _trailing_comment(line)
        if trailing:
            return trailing
        above: list[str] = []
        i = index - 1
        while i >= 0 and self.lines[i].strip().startswith("#"):
            above.insert(0, self.lines[i].strip().lstrip("#").strip())
            i -= 1
        return " ".join(above)


def _trailing_comment(line: str) -> str:
    # A '#' outside string literals; the schema's strings hold no '#'.
    _code, sep, comment = line.partition("  #")
    if not sep or comment.lstrip().startswith("noqa"):
        return ""
    return comment.split("# noqa")[0].strip()


def _annotations(cls: type) -> dict[str, str]:
    """Field -> its annotation as written in schema.py."""
    tree = ast.parse(inspect.getsource(cls))
    out: dict[str, str] = {}
    for item in tree.body[0].body:  # type: ignore[attr-defined]
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            out[item.target.id] = _render_type(item.annotation)
    return out


def _render_type(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        if node.id in ALIASES:
            return ALIASES[node.id]
        target = getattr(schema, node.id, None)
        if target is schema.Wallet:
            return "wallet (by `source`: dev_mnemonic, env, keystore)"
        if isinstance(target, type) and issubclass(target, msgspec.Struct):
            return "section"
        return node.id
    if isinstance(node, ast.Constant):
        return "none" if node.value is None else repr(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return f"{_render_type(node.left)} or {_render_type(node.right)}"
    if isinstance(node, ast.Subscript):
        base = ast.unparse(node.value)
        if base == "Annotated":
            elts = node.slice.elts  # type: ignore[attr-defined]
            return f"{_render_type(elts[0])} {_bounds(elts[1])}".strip()
        if base == "Literal":
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return " or ".join(f"`{ast.literal_eval(e)}`" for e in elts)
        if base == "list":
            return f"list of {_render_type(node.slice)}"
        if base == "dict":
            key, value = node.slice.elts  # type: ignore[attr-defined]
            return f"map of {_render_type(key)} to {_render_type(value)}"
    return ast.unparse(node)


def _bounds(meta: ast.expr) -> str:
    if not isinstance(meta, ast.Call):
        return ""
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "pattern": "matching"}
    parts = [f"{words.get(k.arg or '', k.arg)} {ast.literal_eval(k.value)}" for k in meta.keywords]
    return f"({', '.join(parts)})"


def _default(field: msgspec.structs.FieldInfo) -> str:
    if field.required:
        return "required"
    value = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
    if isinstance(value, msgspec.Struct):
        tag = type(value).__struct_config__.tag
        return f"`source: {tag}`" if tag else "(section)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Decimal | int | float | str):
        return f"`{value}`" if value != "" else '`""`'
    return f"`{msgspec.json.encode(value).decode()}`"


def _reload(path: str) -> str:
    top = path.split(".")[0]
    if top in schema.RESTART_ONLY:
        return "restart-only"
    section, _, key = path.rpartition(".")
    while section:
        if key.split(".")[0].removesuffix("[]") in schema.READ_AT_START.get(section, ()):
            return "at start"
        section, _, head = section.rpartition(".")
        key = f"{head}.{key}"
    return "hot"


def _section_rows(cls: type, prefix: str, comments: dict[tuple[str, str], str],
                  sections: list[tuple[str, type]]) -> list[str]:
    rows = []
    types = _annotations(cls)
    for f in msgspec.structs.fields(cls):
        path = f"{prefix}{f.name}"
        sub = _struct_of(f.type)
        if sub is not None:
            sections.append((path, sub))
        what = comments.get((cls.__name__, f.name), "")
        if sub is not None and not what:
            what = f"see [`{path}`](#{path.replace('.', '')})"
        rows.append(f"| `{path}` | {types[f.name]} | {_default(f)} | {_reload(path)} | {what} |")
    return rows


def _struct_of(tp: Any) -> type | None:
    """The section type of a field (a Struct, or a Struct-or-None), if it is one."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct) and tp.__struct_config__.tag is None:
        return tp
    args = getattr(tp, "__args__", ())
    if getattr(tp, "__origin__", None) is not None:  # list[...], dict[...]: listed as "each entry of"
        return None
    structs = [a for a in args if isinstance(a, type) and issubclass(a, msgspec.Struct)]
    if len(structs) == 1 and len(args) == 2 and type(None) in args and structs[0].__struct_config__.tag is None:
        return structs[0]
    return None


def render() -> str:
    source = Path(schema.__file__).read_text()
    visitor = _Comments(source)
    visitor.visit(ast.parse(source))
    out = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m config.reference --write` from config/schema.py; do not edit by hand."
        " tests/unit/config/test_reference.py fails when it is out of date. -->",
        "",
        "One YAML file configures every process: `config/sandbox.yaml` (the default, a local world) or",
        "`config/polygon.yaml` (live). Pick it with `--config` or `POLYARB_CONFIG`. The schema is strict:",
        "an unknown key or a bad value is rejected with its path (`key 'nonce.lease_seconds': Expected",
        "float > 0.0`). YAML numbers are read as Decimal, so no money passes through a float.",
        "",
        "Every actor watches the file. A change is validated as a whole and swapped in at once:",
        "",
        "- **hot**: in force from the next use, in every actor;",
        "- **at start**: swapped in, but read only when its process starts (files, sockets, the",
        "  sandbox world): restart that process to apply it;",
        "- **restart-only**: kept at its old value and reported in the actor's stats",
        "  (`config.pending_restart`) until the process restarts.",
        "",
        "A file that fails validation changes nothing: the running config stays, the error is counted",
        "and shown by `polyarb status`. Amounts marked decimal are USDC or shares, written as decimals",
        "(`0.01`); the wallet key never appears in the file (see `chain.wallet`).",
    ]
    sections: list[tuple[str, type]] = [("", schema.Config)]
    seen = 0
    while seen < len(sections):
        path, cls = sections[seen]
        seen += 1
        title = path or "top level"
        out += ["", f"## {title}" if path else "## Top level", ""]
        doc = inspect.getdoc(cls)
        if doc and path:
            out += [" ".join(doc.split()), ""]
        out += ["| key | type | default | change | what it does |", "|---|---|---|---|---|"]
        out += _section_rows(cls, f"{path}." if path else "", visitor.found, sections)
        if cls is schema.Bus:
            out += ["", "Each entry of `bus.endpoints` (one per actor):", "",
                    "| key | type | default | change | what it does |", "|---|---|---|---|---|"]
            out += _section_rows(schema.Endpoints, "bus.endpoints.NAME.", visitor.found, [])
        if cls is schema.Chain:
            for variant in (schema.DevMnemonicWallet, schema.EnvWallet, schema.KeystoreWallet):
                tag = variant.__struct_config__.tag
                out += ["", f"`chain.wallet` with `source: {tag}`: {' '.join(inspect.getdoc(variant).split())}", ""]
                out += ["| key | type | default | change | what it does |", "|---|---|---|---|---|"]
                out += _section_rows(variant, "chain.wallet.", visitor.found, [])
        if cls is schema.Venue:
            out += ["", "Each entry of `sandbox.venue.markets`:", "",
                    "| key | type | default | change | what it does |", "|---|---|---|---|---|"]
            out += _section_rows(schema.VenueMarket, "sandbox.venue.markets[].", visitor.found, [])
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m config.reference", description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help=f"write {DOC_PATH.name}")
    g.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(text)
        return 0
    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is out of date: run `python -m config.reference --write`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
