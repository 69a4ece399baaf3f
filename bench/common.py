"""Shared bench helpers: percentiles, result files and a world of real actors."""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] / 1000  # noqa: E731
    return {"p50_us": round(pick(0.50), 1), "p99_us": round(pick(0.99), 1), "n": len(s)}


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()}, **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


@contextmanager
def actor_world(names: tuple[str, ...], *, metrics: bool = True,
                **sections: dict[str, Any]) -> Iterator[tuple[Any, Path]]:
    """A sandbox world for a bench: anvil, a config from the test bed with `sections`
    over it, and the real actor processes `names`, each logging to `<folder>/<name>.log`
    (kept for a look after the run). Yields (config, folder). Stopped with SIGTERM; a
    process still there after 30 s is said and killed, never left running.
    `metrics=False`: no actor serves /metrics (the baseline of the metrics' cost)."""
    from config.loader import load
    from sandbox.chain import start_anvil
    from sandbox.testbed import write_config

    folder = Path(tempfile.mkdtemp())
    anvil, url = start_anvil(load().sandbox.chain.__class__(block_time_seconds=0), 137)  # type: ignore[union-attr]
    logs = {name: (folder / f"{name}.log").open("wb") for name in names}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        path = write_config(folder, url, anvil_port=int(url.rsplit(":", 1)[1]), **sections)
        if not metrics:
            import yaml

            raw = yaml.safe_load(path.read_text())
            for endpoint in raw["bus"]["endpoints"].values():
                endpoint.pop("metrics", None)
            path.write_text(yaml.safe_dump(raw, sort_keys=False))
        polyarb = str(Path(sys.executable).with_name("polyarb"))
        procs = [subprocess.Popen([polyarb, "--config", str(path), "actor", name], stdout=log,
                                  stderr=subprocess.STDOUT) for name, log in logs.items()]
        yield load(path), folder
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in [*procs, anvil]:
            if p is anvil:
                anvil.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                print(f"{p.args[-1]} did not stop on SIGTERM within 30 s: killed", file=sys.stderr)
                p.kill()
                p.wait(10)
        for log in logs.values():
            log.close()
