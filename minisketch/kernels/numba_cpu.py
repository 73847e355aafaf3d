"""The Numba CPU kernel set: the reference step functions replaced by compiled ones.

``kernel_set()`` returns the reference set (``kernels/reference.py``) with these entries
replaced by Numba kernels of the same names, signatures and semantics, each kept beside its CUDA
twin in the op's module:

    lstm_cell_forward / lstm_cell_backward            kernels/lstm.py
    ln_lstm_cell_forward / ln_lstm_cell_backward      kernels/layer_norm_lstm.py
    hyper_modulate_forward / hyper_modulate_backward  kernels/hyper_lstm.py
    mdn_loss_and_grad / mdn_loss                      kernels/mdn.py
    clip_adam_update                                  kernels/optim.py
    hash_uniform                                      kernels/noise.py

and ``matmul`` through ``minisketch.blas.matmul`` (MKL when installed, else NumPy's matmul): the
matrix products stay with BLAS, the kernels compile everything between them. How the kernels are
compiled, cached and threaded: ``kernels/jit.py``; their exp/tanh/log and sums:
``kernels/numerics.py``.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import blas
from . import hyper_lstm, jit, layer_norm_lstm, lstm, mdn, noise, optim, reference
from .hyper_lstm import hyper_modulate_backward_numba as hyper_modulate_backward
from .hyper_lstm import hyper_modulate_forward_numba as hyper_modulate_forward
from .layer_norm_lstm import ln_lstm_cell_backward_numba as ln_lstm_cell_backward
from .layer_norm_lstm import ln_lstm_cell_forward_numba as ln_lstm_cell_forward
from .lstm import lstm_cell_backward_numba as lstm_cell_backward
from .lstm import lstm_cell_forward_numba as lstm_cell_forward
from .mdn import mdn_loss_and_grad_numba as mdn_loss_and_grad
from .mdn import mdn_loss_numba as mdn_loss
from .noise import hash_uniform_numba as hash_uniform
from .optim import clip_adam_update_numba as clip_adam_update

KERNELS = {
    "lstm_cell_forward": lstm_cell_forward,
    "lstm_cell_backward": lstm_cell_backward,
    "ln_lstm_cell_forward": ln_lstm_cell_forward,
    "ln_lstm_cell_backward": ln_lstm_cell_backward,
    "hyper_modulate_forward": hyper_modulate_forward,
    "hyper_modulate_backward": hyper_modulate_backward,
    "mdn_loss_and_grad": mdn_loss_and_grad,
    "mdn_loss": mdn_loss,
    "clip_adam_update": clip_adam_update,
    "hash_uniform": hash_uniform,
}
COMPILED = tuple(KERNELS)
OP_MODULES = (lstm, layer_norm_lstm, hyper_lstm, mdn, optim, noise)


def kernel_set() -> SimpleNamespace:
    """The reference kernel set with every compiled kernel in place of its reference (any entry
    not compiled here stays the reference's), and ``blas.matmul`` for the matrix products."""
    ks = reference.kernel_set()
    for name, fn in KERNELS.items():
        setattr(ks, name, fn)
    ks.matmul = blas.matmul
    return ks


def warm_up(dtypes=("float32", "float64"), parallel=None) -> None:
    """Compile (or load from Numba's cache) every kernel for the given dtypes by calling each
    on small inputs: the serial row functions always, the parallel drivers too when
    ``parallel`` (default: ``jit.PARALLEL``). Optional: kernels otherwise compile on first use."""
    if parallel is None:
        parallel = jit.PARALLEL
    for name in dtypes:
        for module in OP_MODULES:
            module.warm_up_numba(np.dtype(name), parallel)
    blas.warm_up(dtypes)
