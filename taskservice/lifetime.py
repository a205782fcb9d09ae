"""Tie a process's life to its parent's (Linux PR_SET_PDEATHSIG): when the parent dies — even by SIGKILL — the
kernel sends the child a signal. Used for handler processes, a worker's pool processes and `taskservice dev`'s
children, so that killing the process above never leaves work running unsupervised."""
from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, *, parent_pid: int | None = None) -> bool:
    """Ask for `sig` when the parent dies; returns False where the kernel cannot do it (not Linux). When
    `parent_pid` is given and the parent is already gone (it died before the request took effect), the signal is
    raised at once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig)) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return True
