"""`polyarb supervisor-conf --live` (or `--paper`): the trader's programs of supervisord.conf,
without the sandbox's (chain, venue), with the logs, socket and pid file under their own
folder. Paper trading leaves out the nonce authority too: its executor runs the paper
chain's authority in process, and nothing it does needs a wallet.

Written from supervisord.conf at each `make live`, so the two never drift apart; a live
supervisord never starts an anvil or a local venue, and never shares the sandbox's socket."""

from __future__ import annotations

import re
from pathlib import Path

SANDBOX_PROGRAMS = ("chain", "venue")
PAPER_LEFT_OUT = (*SANDBOX_PROGRAMS, "nonce")
_SECTION = re.compile(r"^\[([^\]]+)\]\s*$", re.MULTILINE)


def sections(text: str) -> list[tuple[str, str]]:
    """(name, text) of each section, in order; the text before the first section under ''."""
    out, starts = [], [(m.start(), m.group(1)) for m in _SECTION.finditer(text)]
    out.append(("", text[:starts[0][0]] if starts else text))
    for i, (at, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        out.append((name, text[at:end]))
    return out


def live_conf(source: str, root: Path, run_dir: str = "run/live", left_out: tuple[str, ...] = SANDBOX_PROGRAMS,
              how: str = "--live") -> str:
    """supervisord.conf's text (at `root`) as the live profile's: paths absolute (the file is
    written under run_dir), run/logs -> <run_dir>/logs, the socket and pid file in run_dir."""
    keep = [body for name, body in sections(source)
            if name.removeprefix("program:") not in left_out or not name.startswith("program:")]
    text = "".join(keep)
    text = text.replace("%(here)s/run/logs", f"%(here)s/{run_dir}/logs")
    text = text.replace("%(here)s/run/supervisor", f"%(here)s/{run_dir}/supervisor")
    text = text.replace("%(here)s", str(root.resolve()))
    header = (f"; Written by `polyarb supervisor-conf {how}` from {root.resolve() / 'supervisord.conf'}: the trader's "
              f"programs only ({', '.join(left_out)} left out). Do not edit: edit supervisord.conf.\n")
    return header + text
