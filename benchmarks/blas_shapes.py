"""NumPy's BLAS against PyTorch's on the matrix products of one training step, one thread each.

    python benchmarks/blas_shapes.py [--reps 15] [--copies 4]

The training step's time is mostly matrix products, and most of those are the per-step
recurrent products of a row block: 50 rows (batch 100 split across two threads) times a weight
matrix of 0.25-4 MB. This script times exactly those shapes with NumPy's ``matmul`` (the BLAS
that minisketch calls: OpenBLAS in NumPy's wheels) and with ``torch.matmul`` (the BLAS that
``torch_reference.py`` calls: MKL in the CPU build), both on one thread, in one process, the two
libraries taking turns (a batch of calls each, the one that goes first alternating) so that a
change in the machine's speed falls on both. Each call reads a different copy of the weights
(``--copies``, 4 by default; each library its own copies), so the weights come from L3 or memory
as they do in the step, not from a warm L2.

It prints, per shape, GFLOP/s of each library (median over ``--reps`` repetitions) and the ratio
NumPy time / torch time. Where MKL is installed (``pip install -e ".[mkl]"``) a third library
takes its turn: ``minisketch.blas``'s call into it, the route of the Numba backend's products. It needs PyTorch (never a dependency of minisketch: ``pip install
torch==2.13.0`` on the development machines); without it, it says so and exits 1.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, rows, inner, columns, left operand transposed) at the reference sizes (batch 100 in two
# row blocks of 50, N_max 250, encoder 256 x 2 on the whole batch, decoder 512, HyperLSTM 256
# units / embedding 32)
SHAPES = [
    ("decoder h @ W_hh (forward)", 50, 512, 2048, False),
    ("decoder dA @ W_hh^T (backward)", 50, 2048, 512, False),
    ("hyper h @ hyper_W_xh[D:]", 50, 512, 1024, False),
    ("hyper h_hat @ hyper_W_hh", 50, 256, 1024, False),
    ("hyper dA_hat @ hyper_W_xh[D:]^T", 50, 1024, 512, False),
    ("encoder h @ W_hh (100 rows)", 100, 256, 1024, False),
    ("encoder dA @ W_hh^T (100 rows)", 100, 1024, 256, False),
    # the all-steps weight gradient reads the saved [T B, 512] states transposed
    ("all-steps dW_hh = H^T @ dA", 512, 12500, 2048, True),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=15, help="repetitions per shape (median)")
    p.add_argument("--copies", type=int, default=4, help="weight copies cycled through")
    args = p.parse_args(argv)
    if args.reps < 1 or args.copies < 1:
        p.error("--reps and --copies must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("blas_shapes.py: PyTorch is not installed (pip install torch==2.13.0); "
              "nothing to compare", file=sys.stderr)
        return 1
    import numpy as np
    sys.path.insert(0, HERE)
    from bench_step import blas_info
    from minisketch import blas, cpu

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    info = blas_info()
    print(f"NumPy {np.__version__} ({info['blas']}, core {info['blas_core']}) vs torch "
          f"{torch.__version__} (MKL: {torch.backends.mkl.is_available()}), one thread each, "
          f"float32")
    mkl = blas.load_mkl()
    if mkl is not None:
        print(f"and minisketch.blas on {mkl.version}, sequential")
        print("| product | rows x inner x columns | NumPy GF/s | torch GF/s | minisketch MKL GF/s "
              "| NumPy / torch time | minisketch MKL / torch time |")
        print("|---|---|---|---|---|---|---|")
    else:
        print("| product | rows x inner x columns | NumPy GF/s | torch GF/s | NumPy / torch time |")
        print("|---|---|---|---|---|")
    with cpu.blas_threads(1):
        for name, m, k, n, transposed in SHAPES:
            if transposed:
                a = rng.standard_normal((k, m)).astype(np.float32).T
            else:
                a = rng.standard_normal((m, k)).astype(np.float32)
            ws = [rng.standard_normal((k, n)).astype(np.float32) for _ in range(args.copies)]
            out = np.empty((m, n), np.float32)
            at = torch.from_numpy(a.copy(order="K"))
            wts = [torch.from_numpy(w.copy()) for w in ws]
            outt = torch.empty((m, n), dtype=torch.float32)
            big = m * k * n > 10 ** 9
            reps = max(3, args.reps // 5) if big else args.reps
            calls = 1 if big else 8

            def run_numpy():
                for c in range(calls):
                    np.matmul(a, ws[c % len(ws)], out=out)

            def run_torch():
                for c in range(calls):
                    torch.matmul(at, wts[c % len(wts)], out=outt)

            wms = [w.copy() for w in ws]
            outm = np.empty((m, n), np.float32)

            def run_mkl():
                for c in range(calls):
                    mkl.matmul(a, wms[c % len(wms)], outm)

            fns = [run_numpy, run_torch] + ([run_mkl] if mkl is not None else [])
            times = {fn: [] for fn in fns}
            for r in range(reps + 1):           # the first repetition warms up
                for fn in fns[r % len(fns):] + fns[:r % len(fns)]:     # who goes first rotates
                    t0 = time.perf_counter()
                    fn()
                    if r:
                        times[fn].append((time.perf_counter() - t0) / calls)
            dn, dt = statistics.median(times[run_numpy]), statistics.median(times[run_torch])
            flops = 2.0 * m * k * n
            if mkl is None:
                print(f"| {name} | {m} x {k} x {n} | {flops / dn / 1e9:.0f} | "
                      f"{flops / dt / 1e9:.0f} | {dn / dt:.2f} |")
            else:
                np.testing.assert_allclose(outm, out, rtol=1e-3, atol=1e-3 * np.abs(out).max())
                dm = statistics.median(times[run_mkl])
                print(f"| {name} | {m} x {k} x {n} | {flops / dn / 1e9:.0f} | "
                      f"{flops / dt / 1e9:.0f} | {flops / dm / 1e9:.0f} | {dn / dt:.2f} | "
                      f"{dm / dt:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
