"""An actor never outlives its supervisor.

If supervisord dies (SIGKILL, a terminal closed under `make run | tee`), its
programs must stop trading, not run on unsupervised with nobody to restart or
stop them. Two layers: the kernel's parent-death signal (Linux prctl
PR_SET_PDEATHSIG: SIGTERM the moment the parent thread exits; it survives
execve, so `polyarb chain` passes it on to anvil), and a watch of the parent
pid for platforms without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` when the parent exits; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except OSError:
        return False
    # The parent may have died before prctl: then we are orphaned already.
    if os.getppid() == 1:
        os.kill(os.getpid(), sig)
    return True


class ParentWatch:
    """True from `gone()` once the process that started us is no longer our parent."""

    def __init__(self) -> None:
        self.parent = os.getppid()

    def gone(self) -> bool:
        return os.getppid() != self.parent
