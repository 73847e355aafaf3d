"""Fused kernels with the signatures of the reference step functions, one module per op.

Each op module (``lstm``, ``layer_norm_lstm``, ``hyper_lstm``, ``mdn``, ``optim``, ``noise``)
holds the op's Numba kernel and its CUDA source and launcher; ``numba_cpu`` and ``cupy_gpu``
assemble the two kernel sets, ``reference`` the plain one. Shared helpers: ``numerics`` (Numba
exp/tanh/log and float64 sums), ``jit`` (decorators, disk cache, threads), ``cuda`` (device code,
compilation, launch checks), ``constants`` (the reference constants). See docs/kernels.md.
"""
