"""The reference kernel set: the plain array step functions from ``minisketch.layers``.

``kernel_set()`` returns a namespace of every step function by name. The Numba (numba_cpu.py) and
CuPy (cupy_gpu.py) kernel sets provide the same names with identical signatures and are tested
against these functions on random inputs. Each function's docstring (in its layers/ module) is the
contract: argument order, shapes, what it writes, what may not alias.

To add step functions, import their module and list the names in ``_MODULES``.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..layers import hyper_lstm, layer_norm_lstm, linear, lstm
from ..layers import mdn
from .. import noise, optim

# module -> names of its step functions in the kernel set
_MODULES = [
    (linear, ("matmul",)),
    (lstm, ("lstm_cell_forward", "lstm_cell_backward")),
    (layer_norm_lstm, ("ln_lstm_cell_forward", "ln_lstm_cell_backward")),
    (hyper_lstm, ("hyper_modulate_forward", "hyper_modulate_backward")),
    (mdn, ("mdn_loss_and_grad", "mdn_loss")),
    (noise, ("hash_uniform",)),
    (optim, ("clip_adam_update",)),
]


def reference_functions() -> dict:
    """{name: function} of every reference step function."""
    return {name: getattr(mod, name) for mod, names in _MODULES for name in names}


def kernel_set() -> SimpleNamespace:
    """A fresh namespace of the reference step functions (safe to modify or extend)."""
    return SimpleNamespace(**reference_functions())
