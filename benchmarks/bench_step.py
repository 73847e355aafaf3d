"""Time one full sketch-rnn training step: loss_and_grad, then element-wise clip + Adam.

    python benchmarks/bench_step.py --backend numpy|numba|cupy --dec lstm|layer_norm|hyper \
        --batch N --nmax T [--steps K] [--warmup W] [--dtype float32] [--json]

One step is exactly what ``python -m minisketch.train`` does per batch::

    losses, grads = model.loss_and_grad(batch, step)
    adam.update(model.flat, model.flat_grad, learning_rate(hp, step), hp.grad_clip)

with ``Adam.for_model`` (so the backend's fused ``clip_adam_update`` when it has one), on a
random sketch-like batch (stroke offsets ~ N(0, 1) in normalized units, pen lifts with
probability 0.1, lengths spread uniformly over [N_max / 4, N_max] with one sketch of length
N_max). Model: the reference configuration by default (HParams defaults: LSTM encoder 256 per
direction, decoder 512, N_z 128, M 20, recurrent dropout on), float32.

Reported (human-readable, or one JSON line with ``--json``):
  * median / min / max milliseconds over ``--steps`` timed steps after ``--warmup`` untimed ones
    (host clock for numpy/numba; CUDA events around each step for cupy), and on the CPU the
    median process CPU time per step (all threads; with one thread it is what the wall time would
    be on an otherwise idle machine, a steadier figure on a shared one);
  * ``first_step_s``: the first step alone (it includes loading or compiling Numba's kernels),
    and for numba ``jit_load_s`` (``numba_cpu.warm_up`` in this process: cache load, or compile
    when the cache is cold) and, with ``--compile-time``, ``jit_cold_compile_s``: the same
    warm-up in a fresh subprocess with an empty NUMBA_CACHE_DIR (wall and CPU seconds);
  * ``peak_rss_mib``: this process's peak resident memory (VmHWM; sees BLAS and Numba buffers,
    unlike tracemalloc). Run one configuration per process (compare_cpu.py does) for a clean
    number;
  * ``gflop``: matrix-product FLOPs of one step, counted analytically (``step_flops``), the
    achieved GFLOP/s, and ``blas_peak_gflops``: a 4096^3 matmul (sgemm for float32) measured
    here on the same threads, so ``frac_of_peak`` says how close the step comes to BLAS speed.

``--malloc-keep`` makes glibc keep freed memory in the process (see ``keep_freed_memory``).
``--threads N`` pins BLAS, OpenMP and Numba to N threads (the script re-executes itself with the
environment set). The BLAS kernel in use (OpenBLAS core name) is reported: OPENBLAS_CORETYPE or
OPENBLAS_L2_SIZE in the environment can select a slower kernel, so benchmark without them.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("numpy", "numba", "cupy"), required=True)
    p.add_argument("--dec", choices=("lstm", "layer_norm", "hyper"), required=True,
                   help="decoder cell")
    p.add_argument("--enc", choices=("lstm", "layer_norm", "hyper"), default="lstm",
                   help="encoder cell (default lstm, the reference configuration)")
    p.add_argument("--batch", type=int, required=True, help="batch size B")
    p.add_argument("--nmax", type=int, required=True, help="N_max, rows per sketch")
    p.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed steps after the first one (default 1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--recurrent-dropout", type=int, choices=(0, 1), default=1,
                   help="use_recurrent_dropout (default 1, as HParams)")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS/OpenMP/Numba threads (default: the libraries' own default)")
    p.add_argument("--compile-time", action="store_true",
                   help="numba: also measure a cold-cache compile in a fresh subprocess")
    p.add_argument("--no-peak", action="store_true", help="skip the BLAS peak measurement")
    p.add_argument("--malloc-keep", action="store_true",
                   help="keep freed memory in the process (glibc mallopt): no page faults on "
                        "the step buffers after the first step")
    p.add_argument("--model-threads", type=int, default=None,
                   help="SketchRNN(threads=N): row blocks per step, one Python thread each "
                        "(default: the model's own, one per core on numpy/numba)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args(argv)
    for name in ("batch", "nmax", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def pin_threads(n):
    """Re-execute this script with every thread-count variable set to n (they are read when
    the libraries load, so they must be in the environment before numpy is imported)."""
    if n is None or os.environ.get("_BENCH_THREADS_PINNED") == str(n):
        return
    env = dict(os.environ, _BENCH_THREADS_PINNED=str(n), **{v: str(n) for v in THREAD_VARS})
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def keep_freed_memory():
    """glibc keeps freed memory in the process (``minisketch.cpu.keep_freed_memory``, what the
    training command does on the CPU backends). Returns True when glibc accepted it."""
    from minisketch.cpu import keep_freed_memory as keep
    return keep()


# ---------------------------------------------------------------------------------------------
# Shared with torch_reference.py and compare_cpu.py

def random_sketches(rng, batch, nmax):
    """``batch`` stroke-3 sketches in normalized units: lengths uniform in [nmax/4, nmax] with
    the first of length nmax, offsets ~ N(0, 1), pen lifts with probability 0.1."""
    import numpy as np
    lo = max(1, nmax // 4)
    lengths = rng.integers(lo, nmax + 1, size=batch)
    lengths[0] = nmax
    out = []
    for L in lengths:
        s = np.zeros((L, 3), dtype=np.float32)
        s[:, :2] = rng.standard_normal((L, 2))
        s[:, 2] = rng.random(L) < 0.1
        s[-1, 2] = 1
        out.append(s)
    return out


def random_batch(batch, nmax, seed=0):
    """A ``Batch`` (strokes [B, nmax + 1, 5] float32, lengths [B]) of random sketch-like data."""
    import numpy as np
    from minisketch.strokes import make_batch
    rng = np.random.default_rng(seed)
    return make_batch(random_sketches(rng, batch, nmax), max_len=nmax, scale_factor=1.0)


def reference_hparams(dec, batch, nmax, enc="lstm", recurrent_dropout=True):
    from minisketch.hparams import HParams
    return HParams(enc_model=enc, dec_model=dec, batch_size=batch, max_seq_len=nmax,
                   use_recurrent_dropout=bool(recurrent_dropout))


def _cell_flops(cell, B, T, D, H, Hh=256, E=32):
    """Forward matmul FLOPs of one cell over T steps of B rows with input size D."""
    if cell in ("lstm", "layer_norm"):
        per_row = D * 4 * H + H * 4 * H
    else:  # hyper: main cell, hyper cell on [x, h], embeddings z_w / z_b, scales alpha / beta
        per_row = ((D + H) * 4 * H + (D + H + Hh) * 4 * Hh + Hh * 8 * E + 8 * E * H
                   + Hh * 4 * E + 4 * E * H)
    return 2 * B * T * per_row


def state_size(cell, H, Hh=256):
    return 2 * H if cell in ("lstm", "layer_norm") else 2 * H + 2 * Hh


def step_flops(hp, B, T):
    """Matrix-product FLOPs of one training step (2 m k n per product), counted analytically
    from the model's shapes: forward = encoder (two directions over T rows) + latent
    projections + decoder initial state + decoder (T steps) + output layer; backward = twice
    the forward (one product for the input gradient, one for the weight gradient, per forward
    product). Pointwise work is not counted."""
    Hh, E = hp.hyper_num_units, hp.hyper_embedding_size
    fwd = 0
    Din = 5
    if hp.conditional:
        fwd += 2 * _cell_flops(hp.enc_model, B, T, 5, hp.enc_rnn_size, Hh, E)
        fwd += 2 * (2 * B * 2 * hp.enc_rnn_size * hp.z_size)             # mu, sigma
        fwd += 2 * B * hp.z_size * state_size(hp.dec_model, hp.dec_rnn_size, Hh)  # init state
        Din += hp.z_size
    fwd += _cell_flops(hp.dec_model, B, T, Din, hp.dec_rnn_size, Hh, E)
    fwd += 2 * B * T * hp.dec_rnn_size * (6 * hp.num_mixture + 3)         # output layer
    return 3 * fwd


def blas_info():
    """OpenBLAS core name and thread count of NumPy's BLAS (None when not found)."""
    import numpy as np
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs",
                                  "libscipy_openblas*.so*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                try:
                    core = getattr(lib, f"{prefix}get_corename{suffix}")
                    nthr = getattr(lib, f"{prefix}get_num_threads{suffix}")
                except AttributeError:
                    continue
                core.restype = ctypes.c_char_p
                return {"blas": "openblas", "blas_core": core().decode(),
                        "blas_threads": int(nthr())}
    return {"blas": None, "blas_core": None, "blas_threads": None}


def blas_peak_gflops(dtype="float32", n=4096, reps=3, xp=None):
    """GFLOP/s of the best of ``reps`` n^3 matrix products (sgemm / dgemm) on this process's
    threads. With xp = cupy it times on the GPU with CUDA events."""
    import numpy as np
    xp = xp or np
    a = xp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype=dtype)
    b = a.T.copy()
    c = xp.empty_like(a)
    best = float("inf")
    for _ in range(reps + 1):
        if xp is np:
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            dt = time.perf_counter() - t
        else:
            ev0, ev1 = xp.cuda.Event(), xp.cuda.Event()
            ev0.record()
            xp.matmul(a, b, out=c)
            ev1.record()
            ev1.synchronize()
            dt = xp.cuda.get_elapsed_time(ev0, ev1) / 1e3
        best = min(best, dt)
    return 2.0 * n ** 3 / best / 1e9


def peak_rss_mib():
    """Peak resident set size of this process in MiB (VmHWM, else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def summarize(times_s):
    ms = [t * 1e3 for t in times_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
            "steps": len(ms)}


# ---------------------------------------------------------------------------------------------

COLD_COMPILE = r"""
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from minisketch.kernels import numba_cpu
numba_cpu.warm_up([sys.argv[1]])
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}))
"""


def cold_compile_time(dtype):
    """Compile every Numba kernel for dtype in a fresh process with an empty cache dir."""
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        out = subprocess.run([sys.executable, "-c", COLD_COMPILE, dtype], env=env, check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(args):
    import numpy as np
    from minisketch.model import SketchRNN
    from minisketch.optim import Adam, learning_rate

    hp = reference_hparams(args.dec, args.batch, args.nmax, args.enc, args.recurrent_dropout)
    result = {"backend": args.backend, "dec": args.dec, "enc": args.enc, "batch": args.batch,
              "nmax": args.nmax, "dtype": args.dtype,
              "recurrent_dropout": bool(args.recurrent_dropout)}
    result.update(blas_info())
    result["malloc_keep"] = bool(args.malloc_keep)
    result["threads_env"] = {v: os.environ.get(v) for v in THREAD_VARS if v in os.environ}
    result["openblas_env"] = {v: os.environ[v] for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                              if v in os.environ}
    if args.backend == "numba":
        import numba
        from minisketch.kernels import numba_cpu
        result["numba_threads"] = numba.get_num_threads()
        result["numba_threading_layer"] = numba.config.THREADING_LAYER
        if args.compile_time:
            result["jit_cold_compile_s"] = cold_compile_time(args.dtype)
        t = time.perf_counter()
        numba_cpu.warm_up([args.dtype])
        result["jit_load_s"] = time.perf_counter() - t
        from minisketch import blas
        result["products"] = blas.describe()

    batch = random_batch(args.batch, args.nmax, seed=args.seed)
    model = SketchRNN(hp, backend=args.backend, dtype=args.dtype, seed=args.seed,
                      threads=args.model_threads)
    result["row_blocks"] = len(model._row_parts(args.batch))
    adam = Adam.for_model(model)
    result["num_params"] = model.num_params
    result["adam_update"] = getattr(adam.update_fn, "__module__", "?") + "." + \
        getattr(adam.update_fn, "__name__", "?")
    cupy = model.xp if args.backend == "cupy" else None

    def one_step(step):
        losses, _ = model.loss_and_grad(batch, step)
        adam.update(model.flat, model.flat_grad, learning_rate(hp, step), hp.grad_clip)
        return losses

    cpu_times = []

    def timed_step(step):
        if cupy is None:
            t, c = time.perf_counter(), time.process_time()
            losses = one_step(step)
            cpu_times.append(time.process_time() - c)
            return time.perf_counter() - t, losses
        ev0, ev1 = cupy.cuda.Event(), cupy.cuda.Event()
        ev0.record()
        losses = one_step(step)
        ev1.record()
        ev1.synchronize()
        return cupy.cuda.get_elapsed_time(ev0, ev1) / 1e3, losses

    first, losses = timed_step(0)
    result["first_step_s"] = first
    for s in range(1, 1 + args.warmup):
        timed_step(s)
    times = []
    for s in range(1 + args.warmup, 1 + args.warmup + args.steps):
        dt, losses = timed_step(s)
        times.append(dt)
    result.update(summarize(times))
    if cpu_times:
        result["cpu_median_ms"] = 1e3 * statistics.median(cpu_times[-args.steps:])
    result["loss"] = float(losses["loss"])
    if not np.isfinite(result["loss"]):
        raise SystemExit(f"error: non-finite loss {result['loss']}")
    gflop = step_flops(hp, args.batch, args.nmax) / 1e9
    result["gflop"] = gflop
    result["gflops_achieved"] = gflop / (result["median_ms"] / 1e3)
    if not args.no_peak:
        peak = blas_peak_gflops(args.dtype, xp=cupy)
        result["blas_peak_gflops"] = peak
        result["frac_of_peak"] = result["gflops_achieved"] / peak
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def report(r):
    lines = [
        f"backend {r['backend']}  dec {r['dec']}  enc {r['enc']}  batch {r['batch']}  "
        f"nmax {r['nmax']}  {r['dtype']}  recurrent dropout {r['recurrent_dropout']}",
        f"step: median {r['median_ms']:.1f} ms  (min {r['min_ms']:.1f}, max {r['max_ms']:.1f}, "
        f"{r['steps']} steps)" + (f"; process CPU time {r['cpu_median_ms']:.0f} ms per step"
                                   if "cpu_median_ms" in r else ""),
        f"first step {r['first_step_s']:.2f} s",
    ]
    if "jit_load_s" in r:
        lines.append(f"numba: warm_up in this process {r['jit_load_s']:.2f} s; "
                     f"{r['numba_threads']} threads ({r['numba_threading_layer']})")
    if "jit_cold_compile_s" in r:
        c = r["jit_cold_compile_s"]
        lines.append(f"numba: cold-cache compile {c['wall_s']:.1f} s wall, {c['cpu_s']:.1f} s CPU")
    lines.append(f"{r['gflop']:.1f} GFLOP per step (matmuls) -> "
                 f"{r['gflops_achieved']:.0f} GFLOP/s")
    if "blas_peak_gflops" in r:
        lines.append(f"BLAS peak (4096^3 matmul) {r['blas_peak_gflops']:.0f} GFLOP/s: step at "
                     f"{100 * r['frac_of_peak']:.0f}% of it")
    lines.append(f"BLAS {r['blas']} core {r['blas_core']} threads {r['blas_threads']}"
                 + (f"  (env {r['openblas_env']})" if r["openblas_env"] else ""))
    if "products" in r:
        lines.append(f"numba backend's products: {r['products']}")
    lines.append(f"peak RSS {r['peak_rss_mib']:.0f} MiB; loss {r['loss']:.4f}; "
                 f"update {r['adam_update']}; malloc-keep {r['malloc_keep']}; "
                 f"row blocks {r.get('row_blocks')}")
    print("\n".join(lines))


def main(argv=None):
    args = parse_args(argv)
    pin_threads(args.threads)
    if args.malloc_keep and not keep_freed_memory():
        raise SystemExit("error: --malloc-keep: glibc mallopt is not available here")
    r = run(args)
    if args.json:
        print(json.dumps(r))
    else:
        report(r)


if __name__ == "__main__":
    main()
