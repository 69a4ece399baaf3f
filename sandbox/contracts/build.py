"""Compile the sandbox contracts with solcjs (npm `solc`, compiler bundled: offline).

    python -m sandbox.contracts.build --out DIR

writes DIR/<Name>.json = {"abi": [...], "bytecode": "0x...", "deployedBytecode": "0x..."}
for each contract of CONTRACTS. The sandbox places the *deployed* (runtime) bytecode with
anvil_setCode, which runs no constructor: the contracts have `initialize` functions instead.

`load_artifact(name)` reads the default out dir and rebuilds first when an artifact is
missing or older than its sources, so tests never run stale code even if `make install`
was not re-run after a contract changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.chain import TOOLS

SRC_DIR = Path(__file__).resolve().parent
CONTRACTS = ("Collateral", "ConditionalTokens", "Settlement", "WrappedCollateral", "NegRiskAdapter", "PriceFeed")
DEFAULT_OUT = TOOLS / "contracts"
SOLC_JS = TOOLS / "node_modules" / "solc"
# Cancun: every opcode solc emits for it runs on anvil 1.7.1's default (latest) hardfork,
# and it stays valid if anvil is pinned to an older post-Cancun fork.
EVM_VERSION = "cancun"
COMPILE_TIMEOUT_SECONDS = 300

# A tiny driver: standard-JSON in on stdin, standard-JSON out on stdout. (The `solcjs`
# CLI's --standard-json works too, but needs the wrapper's commander and prints its
# own noise on some versions; calling `compile` directly is the stable API.)
_DRIVER = """
const solc = require(process.argv[1]);
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => { process.stdout.write(solc.compile(input)); });
"""


class BuildError(RuntimeError):
    """The contracts cannot be compiled; the message carries the compiler's errors."""


def _sources() -> list[Path]:
    return [SRC_DIR / f"{name}.sol" for name in CONTRACTS]


def standard_input() -> dict:
    return {
        "language": "Solidity",
        "sources": {p.name: {"content": p.read_text()} for p in _sources()},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": EVM_VERSION,
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }


def compile_standard(input_json: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        raise BuildError("node is not on PATH: it runs solcjs (install Node.js, then `make install`)")
    if not (SOLC_JS / "package.json").exists():
        raise BuildError(f"solcjs not installed at {SOLC_JS}: run `make install`")
    try:
        proc = subprocess.run(
            [node, "-e", _DRIVER, str(SOLC_JS)], input=json.dumps(input_json), capture_output=True, text=True,
            timeout=COMPILE_TIMEOUT_SECONDS, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"solcjs did not finish within {COMPILE_TIMEOUT_SECONDS}s") from exc
    if proc.returncode != 0:
        raise BuildError(f"solcjs exited with {proc.returncode}:\n{proc.stderr.strip()}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise BuildError(f"solcjs printed no JSON: {proc.stdout[:500]!r} {proc.stderr[:500]!r}") from exc


def _artifacts(output: dict) -> dict[str, dict]:
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("solc failed:\n" + "\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    artifacts = {}
    for name in CONTRACTS:
        try:
            c = output["contracts"][f"{name}.sol"][name]
        except KeyError as exc:
            raise BuildError(f"solc produced no contract {name} in {name}.sol") from exc
        artifacts[name] = {
            "abi": c["abi"],
            "bytecode": "0x" + c["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
        }
    return artifacts


def _write_atomic(path: Path, text: str) -> None:
    # Concurrent test processes may build at once: each writes a temp file and renames it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are world-readable build output
    os.replace(tmp, path)


def build(out: Path = DEFAULT_OUT) -> dict[str, dict]:
    """Compile every contract and write its artifact under `out`; returns the artifacts."""
    artifacts = _artifacts(compile_standard(standard_input()))
    out.mkdir(parents=True, exist_ok=True)
    for name, art in artifacts.items():
        _write_atomic(out / f"{name}.json", json.dumps(art, indent=1) + "\n")
    return artifacts


def _stale(path: Path) -> bool:
    if not path.exists():
        return True
    built = path.stat().st_mtime
    return any(src.stat().st_mtime > built for src in [*_sources(), Path(__file__)])


def load_artifact(name: str, out: Path | None = None) -> dict:
    """The artifact of contract `name` ({"abi", "bytecode", "deployedBytecode"}), built on demand."""
    if name not in CONTRACTS:
        raise KeyError(f"unknown contract {name!r}; known: {', '.join(CONTRACTS)}")
    path = (out or DEFAULT_OUT) / f"{name}.json"
    if _stale(path):
        return build(path.parent)[name]
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.contracts.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"artifact directory (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        artifacts = build(args.out)
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, art in artifacts.items():
        print(f"{name}: {(len(art['deployedBytecode']) - 2) // 2} bytes runtime -> {args.out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
