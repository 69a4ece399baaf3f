"""The sandbox chain's block log: the mined blocks its state file has not caught yet.

anvil writes its state every state_interval_seconds, so a SIGKILL loses the
blocks mined since (and a dump cut by the kill costs back to the last good
copy). A real chain never loses mined blocks to a node restart, and reorged
transactions return and mine again in their order. Re-broadcast by each sender
instead, they came back in another order: in a chaos run the venue's
settlements of our SELLs were re-sent 15 s before the splits that had minted
the shares, 12 reverted, and the books stood 624 pUSD away from the chain.

So the chain's copier records each mined block's raw transactions here (one
JSON line per block with transactions, `<state>.blocks`), and before anvil
loads its state, the blocks past the state's best block are mined again in
their order (sandbox/chain.py). Lines at or below the last good copy's best
block are pruned. Plain JSON-RPC over urllib: this runs in the copier, a small
child of the chain process, and at every chain start.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any


def block_log(state_file: str | os.PathLike[str]) -> Path:
    return Path(str(state_file) + ".blocks")


def best_block(state: dict[str, Any]) -> int:
    """A loaded anvil state's best block number (-1 when it does not say)."""
    best = state.get("best_block_number")
    return best if isinstance(best, int) else -1


def read_blocks(path: Path) -> list[tuple[int, list[str]]]:
    """(block number, raw transactions) in the log's order; a line cut by a kill (the
    copier dies with anvil, in the middle of a write at worst) or unreadable is skipped."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    blocks = []
    for line in lines:
        try:
            entry = json.loads(line)
            number, raws = entry["n"], entry["raws"]
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(number, int) and isinstance(raws, list) and all(isinstance(r, str) for r in raws):
            blocks.append((number, raws))
    return blocks


def prune(path: Path, upto: int) -> None:
    """Keep only the blocks past `upto` (the good copy has the rest)."""
    kept = [(n, raws) for n, raws in read_blocks(path) if n > upto]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(_line(n, raws) for n, raws in kept))
    os.replace(tmp, path)


def _line(number: int, raws: list[str]) -> str:
    return json.dumps({"n": number, "raws": raws}, separators=(",", ":")) + "\n"


class RpcFailed(Exception):
    """The node did not answer, or answered an error."""


def rpc(url: str, calls: list[tuple[str, list[Any]]], timeout: float = 5.0) -> list[Any]:
    """One batched JSON-RPC request; the results in order (RpcFailed on any error)."""
    body = json.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                       for i, (m, p) in enumerate(calls)]).encode()
    if not url.startswith("http://"):
        raise RpcFailed(f"not the sandbox chain's http URL: {url}")
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})  # noqa: S310 - http only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own anvil
            answers = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise RpcFailed(str(exc)) from exc
    if not isinstance(answers, list):
        raise RpcFailed(f"not a batch answer: {str(answers)[:200]}")
    by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
    results = []
    for i in range(len(calls)):
        answer = by_id.get(i, {})
        if "error" in answer or "result" not in answer:
            raise RpcFailed(str(answer.get("error", "no answer"))[:300])
        results.append(answer["result"])
    return results


class BlockRecorder:
    """Appends each block mined after `after` to the log, polled by the copier."""

    def __init__(self, url: str, path: Path, after: int) -> None:
        self.url, self.path, self.last = url, path, after

    def poll(self) -> int:
        """Record the blocks mined since the last poll; how many were read. A node that
        does not answer is read again at the next poll, from the same block."""
        try:
            head = int(rpc(self.url, [("eth_blockNumber", [])])[0], 16)
        except (RpcFailed, ValueError, TypeError):
            return 0
        read = 0
        with open(self.path, "a") as log:
            for number in range(self.last + 1, head + 1):
                try:
                    [block] = rpc(self.url, [("eth_getBlockByNumber", [hex(number), False])])
                    hashes = block["transactions"] if block else None
                    raws = rpc(self.url, [("eth_getRawTransactionByHash", [h]) for h in hashes]) if hashes else []
                except (RpcFailed, KeyError, TypeError):
                    return read
                if block is None:
                    return read
                if raws:
                    log.write(_line(number, raws))
                    log.flush()  # in the page cache: survives this process's SIGKILL
                self.last, read = number, read + 1
        return read
