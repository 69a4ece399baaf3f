"""The architecture's rules, checked: zmq only in bus/, the wall clock only in
actors/clock.py (and the operator CLI tools), no topic literal outside topics.py."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CODE = [p for d in ("actors", "bus", "config", "sandbox") for p in (ROOT / d).rglob("*.py")]
CLOCK_EXEMPT = {"actors/clock.py", "actors/cli.py", "actors/status.py", "bus/sniffer.py", "actors/logs.py"}


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


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
