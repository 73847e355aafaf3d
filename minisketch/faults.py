"""Fault injection for the tests: make a process fail at a named point, deterministically.

    MINISKETCH_FAULT=ACTION@POINT[@STEP]

ACTION is one of ``kill`` (SIGKILL to itself: nothing after runs, no cleanup), ``stop``
(SIGSTOP: frozen until a SIGCONT), ``sigint2`` (two SIGINTs in a row: a double Ctrl-C),
``sigterm`` (one SIGTERM) or ``enospc`` (an ``OSError`` "No space left on device", as a full disk
gives). POINT is a name passed to :func:`hit`, e.g.
``rename:checkpoint.npz`` (``fileio.atomic_open``: the temporary file is written and fsync'ed,
not yet renamed) or ``eval:logged`` (train.py names its points). With STEP, the fault fires only
while the trainer's current step (:data:`step`) equals it. It fires once per process.

Unset (always, outside the tests), :func:`hit` is one dictionary lookup.
"""
from __future__ import annotations

import errno
import os
import signal

ENV = "MINISKETCH_FAULT"
ACTIONS = ("kill", "stop", "sigint2", "sigterm", "enospc")
step: int | None = None          # the trainer's current step (set by train.py)
_fired = False


def hit(point: str) -> None:
    """Fail here if ``MINISKETCH_FAULT`` names this point (and the current step)."""
    global _fired
    spec = os.environ.get(ENV)
    if not spec or _fired:
        return
    action, _, rest = spec.partition("@")
    where, _, at_step = rest.partition("@")
    if where != point or (at_step and (step is None or int(at_step) != step)):
        return
    if action not in ACTIONS:
        raise ValueError(f"{ENV}: unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    _fired = True
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action == "sigint2":
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    elif action == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    else:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
