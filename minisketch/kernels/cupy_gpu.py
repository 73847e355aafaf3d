"""The CuPy kernel set: the reference step functions replaced by fused CUDA kernels.

``kernel_set()`` returns the reference set (``kernels/reference.py``, whose array code already
runs on CuPy arrays) with these entries replaced by CUDA kernels of the same names, signatures
and math, each kept beside its Numba twin in the op's module:

    lstm_cell_forward / lstm_cell_backward            kernels/lstm.py
    ln_lstm_cell_forward / ln_lstm_cell_backward      kernels/layer_norm_lstm.py
    hyper_modulate_forward / hyper_modulate_backward  kernels/hyper_lstm.py
    mdn_loss_and_grad / mdn_loss                      kernels/mdn.py
    clip_adam_update                                  kernels/optim.py
    hash_uniform                                      kernels/noise.py

How they are compiled and launched: ``kernels/cuda.py``. Each kernel mirrors the reference
expression by expression in the arrays' dtype; ``tests/test_kernel_contract.py`` holds them to
1e-10 relative in float64 and 1e-5 in float32 (``hash_uniform``: bit for bit).
"""
from __future__ import annotations

from . import hyper_lstm, layer_norm_lstm, lstm, mdn, optim, reference
from .hyper_lstm import hyper_modulate_backward_cuda as hyper_modulate_backward
from .hyper_lstm import hyper_modulate_forward_cuda as hyper_modulate_forward
from .layer_norm_lstm import ln_lstm_cell_backward_cuda as ln_lstm_cell_backward
from .layer_norm_lstm import ln_lstm_cell_forward_cuda as ln_lstm_cell_forward
from .lstm import lstm_cell_backward_cuda as lstm_cell_backward
from .lstm import lstm_cell_forward_cuda as lstm_cell_forward
from .mdn import mdn_loss_and_grad_cuda as mdn_loss_and_grad
from .mdn import mdn_loss_cuda as mdn_loss
from .noise import hash_uniform_cuda as hash_uniform
from .optim import clip_adam_update_cuda as clip_adam_update

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
CUDA_MODULES = (lstm.CUDA, layer_norm_lstm.CUDA, hyper_lstm.CUDA, optim.CUDA, mdn.CUDA)


def fused_names() -> tuple:
    """Names of the entries this module replaces with CUDA kernels."""
    return tuple(KERNELS)


def kernel_names() -> tuple:
    """Names of the raw CUDA kernels (each compiled for float and double)."""
    return tuple(name for module in CUDA_MODULES for name in module.names)


def compile_all() -> None:
    """Compile every raw kernel for both dtypes now (tests and benchmarks call this to keep
    compilation out of timings; normal use compiles each op's kernels on first call)."""
    for module in CUDA_MODULES:
        module.compile()


def kernel_set():
    """The reference kernel set with every fused entry replaced (same names and signatures)."""
    ks = reference.kernel_set()
    for name, fn in KERNELS.items():
        setattr(ks, name, fn)
    return ks
