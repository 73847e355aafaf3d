"""The checks behind ``python lessons/grade.py NN``: one module per graded exercise.

``lessons/grading/exNN.py`` holds ``CHECKS``, a list of :class:`Check`: the name of a function
the learner writes in ``lessons/exercises/NN_*.py``, the check (the lesson's own comparison with
the library, with the lesson's tolerance, and its gradient check) and hints, weakest first.
A check calls the learner's function on fresh inputs it builds itself (from the library, never
from the learner's other functions), so each function is graded on its own, and raises
:class:`Wrong` naming the tensor, its worst error, where, and the tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from minisketch import gradcheck


class Wrong(AssertionError):
    """The learner's function ran but gave a wrong answer (the message says where)."""


@dataclass
class Check:
    name: str                              # the function in the exercise file
    run: Callable                          # run(fn) -> None, or raises Wrong
    hints: list = field(default_factory=list)


def compare(what: str, got, want, tol: float, relative: bool = False) -> None:
    """Raise Wrong unless ``got`` has ``want``'s shape and every entry is within ``tol`` of it
    (absolute, or relative to the largest |want| when ``relative``)."""
    want = np.asarray(want, dtype=np.float64)
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise Wrong(f"{what}: expected a float array of shape {want.shape}, got "
                    f"{type(got).__name__} ({e})") from None
    if got.shape != want.shape:
        raise Wrong(f"{what} has shape {got.shape}, expected {want.shape}")
    if got.size == 0:
        return
    if not np.all(np.isfinite(got)):
        k = np.unravel_index(int(np.argmax(~np.isfinite(got))), got.shape)
        raise Wrong(f"{what} contains {got[k]} at index {tuple(int(i) for i in k)}")
    err = np.abs(got - want)
    scale = max(float(np.abs(want).max()), 1e-300) if relative else 1.0
    k = np.unravel_index(int(np.argmax(err)), err.shape)
    worst = float(err[k]) / scale
    if worst > tol:
        where = f" at index {tuple(int(i) for i in k)}" if got.ndim else ""
        kind = "relative error" if relative else "error"
        raise Wrong(f"{what} is wrong: worst {kind} {worst:.2e}{where} (got {got[k]:+.6g}, "
                    f"expected {want[k]:+.6g}; tolerance {tol:.0e})")


def compare_all(got: dict, want: dict, tol: float, label: str = "{}", relative: bool = False):
    """compare() every name of ``want`` (a dict of tensors) in the dict ``got``; ``label``
    formats a name for the messages ("d{} (B=1)" -> "dW_hh (B=1)")."""
    if not isinstance(got, dict):
        raise Wrong(f"expected a dict with keys {', '.join(want)}, got {type(got).__name__}")
    missing = [k for k in want if k not in got]
    if missing:
        raise Wrong(f"the result has no {', '.join(missing)} (its keys: {', '.join(got)})")
    for k in want:
        compare(label.format(k), got[k], want[k], tol, relative)


def unpack(result, n: int, names: str):
    """A tuple of n results, or Wrong saying what was expected."""
    if not isinstance(result, tuple) or len(result) != n:
        raise Wrong(f"expected a tuple of {n} ({names}), got {type(result).__name__}"
                    + (f" of {len(result)}" if isinstance(result, tuple) else ""))
    return result


def gradient_check(f, params: dict, grads: dict, tol: float = 1e-6, **kw) -> None:
    """The lessons' central-difference check (float64); Wrong names the failing tensor."""
    try:
        gradcheck.check_gradients(f, params, grads, tol=tol, **kw)
    except AssertionError as e:
        lines = str(e).splitlines()
        raise Wrong("central differences disagree: " + "; ".join(
            line.strip() for line in lines[1:3])) from None
