"""The architecture's rules, checked on the source.

Layers, lowest first; a module imports only its own unit and units of lower
layers (docs/architecture.md, "Layout"):

    config  <  actors.domain  <  bus  <  actors.runtime  <  roles | sandbox  <  actors.cli  <  bench

The roles (feed, router, nonce, executor) never import one another, except the
nonce authority's client; the sandbox never imports a role and nothing under
actors/ imports the sandbox. No import cycle anywhere. Also: zmq only in bus/,
the wall clock only in the clock module (and operator tools), no topic literal
outside topics.py, and the 1e-6 money conversion defined only in the money module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "bus", "config", "sandbox", "bench")
CODE = [p for d in ("actors", "bus", "config", "sandbox") for p in (ROOT / d).rglob("*.py")]
ALL = [p for d in PACKAGES for p in (ROOT / d).rglob("*.py")]
CLOCK_EXEMPT = {"actors/runtime/clock.py", "actors/cli/main.py", "actors/cli/status.py", "actors/cli/history.py",
                "actors/cli/top.py",
                "bus/sniffer.py",
                "actors/runtime/logs.py"}
ROLES = ("actors.feed", "actors.router", "actors.nonce", "actors.executor", "actors.alerts", "actors.dashboard")
# The units of each layer, lowest layer first.
LAYERS: list[tuple[str, ...]] = [
    ("config",),
    ("actors.domain",),
    ("bus",),
    ("actors.runtime",),
    (*ROLES, "sandbox"),
    ("actors.cli",),
    ("bench",),
]
# A published client of another role's service may be used across roles, and the
# executor's books read back (read-only) by the dashboard.
# The paper world runs the nonce authority's manager in the executor's process (actors/executor/paper/).
CROSS_ROLE_ALLOWED = {"actors.nonce.client", "actors.executor.history", "actors.nonce.nonce_manager",
                      "actors.nonce.store"}


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def module_name(p: Path) -> str:
    parts = list(p.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ALL}


def resolve(name: str) -> str | None:
    """The project module an import names (the longest existing prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports_of(p: Path) -> set[str]:
    """Every project module `p` imports, at any depth (lazy and TYPE_CHECKING ones too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            target = resolve(n)
            if target is not None:
                found.add(target)
    found.discard(module_name(p))
    return found


GRAPH = {name: imports_of(p) for name, p in MODULES.items()}


def unit_of(module: str) -> tuple[int, str]:
    """(layer index, unit) of a module; package roots (`actors`) sit below everything."""
    for index, units in enumerate(LAYERS):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                return index, unit
    return -1, module


def test_every_module_belongs_to_a_layer():
    roots = {"actors"}  # the bare namespace package: a docstring only
    assert sorted(m for m in MODULES if unit_of(m)[0] < 0 and m not in roots) == []


def test_imports_go_only_downward():
    offenders = []
    for module, targets in GRAPH.items():
        layer, unit = unit_of(module)
        for target in targets:
            t_layer, t_unit = unit_of(target)
            if t_unit == unit or t_layer < layer or (target in CROSS_ROLE_ALLOWED and unit in ROLES):
                continue
            offenders.append(f"{module} -> {target}")
    assert sorted(offenders) == []


def test_the_sandbox_never_imports_a_role_and_the_trader_never_imports_the_sandbox():
    role = re.compile(r"^actors\.(feed|router|nonce|executor)\b")
    from_sandbox = [f"{m} -> {t}" for m, ts in GRAPH.items() if m.startswith("sandbox") for t in ts
                    if role.match(t)]
    from_actors = [f"{m} -> {t}" for m, ts in GRAPH.items() if m.startswith("actors") for t in ts
                   if t.startswith("sandbox")]
    assert from_sandbox == [] and from_actors == []


def test_no_import_cycle():
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_layout_test_sees_imports_and_cycles():
    # The checks above are only as good as the import scan: prove it finds real edges.
    assert "actors.domain.money" in GRAPH["actors.domain.fees"]
    assert "actors.runtime.actor" in GRAPH["actors.runtime.shell"]
    assert "sandbox.venue.actor" in GRAPH["sandbox.venue"] or "sandbox.venue.actor" in MODULES


def test_zmq_is_imported_only_in_bus():
    offenders = [rel(p) for p in CODE if not rel(p).startswith("bus/")
                 and re.search(r"^\s*(import zmq|from zmq)", p.read_text(), re.M)]
    assert offenders == []


def test_wall_clock_is_read_only_in_the_clock_module():
    pattern = re.compile(
        r"\btime\.(time|time_ns|monotonic|monotonic_ns|perf_counter)\(|datetime\.now\(|asyncio\.sleep\("
    )
    offenders = [rel(p) for p in CODE if rel(p) not in CLOCK_EXEMPT and pattern.search(p.read_text())]
    assert offenders == []


def test_topic_literals_only_in_topics_module():
    pattern = re.compile(r"""b?["'](stats|breaker|book|feed|signal|tx)\.[a-z{]""")
    offenders = [rel(p) for p in CODE if rel(p) != "bus/topics.py" and pattern.search(p.read_text())]
    assert offenders == []


MONEY_MODULE = "actors/domain/money.py"
# What defining the 1e-6 conversion looks like: the constant, a Decimal scaled by
# it, a function named for it, or a hand-made 6-decimal format. (A gas limit of
# 1e6 is gas, not money.)
MONEY_PATTERNS = {
    "a 1e6 constant": re.compile(
        r"^\s*(?!GAS_)[A-Za-z_]\w*\s*(:\s*\w+\s*)?=\s*(1_000_000|1000000|10\s*\*\*\s*6|1e6)\s*(#.*)?$", re.M),
    "a conversion function": re.compile(r"^\s*def\s+\w*(micro|usdc|units)\w*\s*\(", re.M | re.I),
    "a Decimal scaled by hand": re.compile(r"\.scaleb\(\s*-?6\s*\)|to_integral"),
    "a Decimal scaled to micro units": re.compile(r"Decimal\([^\n]*?\)\s*[*/]\s*(MICRO|ONE|1_000_000|10\s*\*\*\s*6)\b"),
    "a micro amount formatted by hand": re.compile(r":06d\}"),
}


def test_money_conversion_is_defined_only_in_the_money_module():
    offenders = [f"{rel(p)}: {what}" for p in ALL if rel(p) != MONEY_MODULE
                 for what, pattern in MONEY_PATTERNS.items() if pattern.search(p.read_text())]
    assert offenders == []


def test_the_money_patterns_match_what_they_forbid():
    text = (ROOT / MONEY_MODULE).read_text()
    for what in ("a 1e6 constant", "a conversion function", "a micro amount formatted by hand",
                 "a Decimal scaled by hand"):
        assert MONEY_PATTERNS[what].search(text), what
    assert MONEY_PATTERNS["a Decimal scaled to micro units"].search("x = int(Decimal(str(v)) * MICRO)")
