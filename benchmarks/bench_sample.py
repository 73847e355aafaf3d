"""Sampling throughput: sketches per second, batched and one at a time.

    python benchmarks/bench_sample.py [--backend numpy numba cupy] [--n 100] [--single 20]
                                      [--temperature 0.5] [--repeats 3] [--threads K] [--json]

The model is the default decoder-only LSTM (512 units, M = 20, N_max 250, float32): the
magenta.js pretrained sheep model (``../shared/data/pretrained/sheep.gen.json``) when it is
there, else a randomly initialized one whose end-of-sketch bias is set to -2, so that at tau 0.5
its sketches are about as long as the sheep's (~120 points; a fresh model ends after ~3).

Timed: ``sampling.sample(model, n=N)`` (all N sketches decoded together, each stopping at its
own end) and ``--single`` calls of ``sampling.sample(model, n=1)``; each repeat uses other seeds,
the median is reported, and sketches/s counts the sketches (their mean length is printed, since
throughput depends on it). Targets on 2 CPU cores: batched >= 200 sketches/s, one at a time >= 20.
Before any backend other than numpy is timed, its decoder outputs are checked against numpy's.
GPU time is measured with CUDA events. The load average is printed: on a shared machine the
numbers are noisy, so sketches per CPU-second (this process's CPU time, all its threads) are
printed too; they say what the code costs, less disturbed by other processes. ``--threads K``
sets the BLAS / Numba thread counts (before NumPy loads).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHEEP = ROOT.parent / "shared" / "data" / "pretrained" / "sheep.gen.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", nargs="+", default=["numpy", "numba"],
                   choices=("numpy", "numba", "cupy"),
                   help="backends to time (default numpy numba; unavailable ones are skipped)")
    p.add_argument("--n", type=int, default=100, help="batch size of the batched run (100)")
    p.add_argument("--single", type=int, default=20, help="sketches sampled one at a time (20)")
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; median reported")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS/OpenMP/Numba threads (default: the libraries' own choice)")
    p.add_argument("--random-init", action="store_true",
                   help="use a randomly initialized model even when sheep.gen.json exists")
    p.add_argument("--json", action="store_true", help="one JSON line per backend")
    return p.parse_args(argv)


ARGS = parse_args()
if ARGS.threads:   # must happen before NumPy (and its BLAS) is imported
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from minisketch import sampling  # noqa: E402
from minisketch.errors import MinisketchError  # noqa: E402


def load(backend: str, random_init: bool):
    from minisketch.checkpoint import load_model
    if SHEEP.is_file() and not random_init:
        return load_model(SHEEP, backend=backend), "sheep.gen.json"
    from minisketch.hparams import HParams
    from minisketch.model import SketchRNN
    hp = HParams(conditional=False, dec_model="lstm", dec_rnn_size=512, num_mixture=20,
                 max_seq_len=250)
    model = SketchRNN(hp, backend=backend, dtype="float32", seed=0, scale_factor=1.0)
    b = model.params["out/b"]
    b[2:3] = model.xp.asarray([-2.0], dtype=b.dtype)
    return model, "random init (end bias -2)"


def check_against_numpy(model, ref, steps=10):
    """Feed the same inputs to both models' decoder_step; outputs must agree (float32)."""
    rng = np.random.default_rng(0)
    xp = model.xp
    s, s_ref = model.initial_state(None, 4), ref.initial_state(None, 4)
    worst = 0.0
    for _ in range(steps):
        x = np.zeros((4, 5), dtype=np.float32)
        x[:, :2] = rng.normal(0, 1, (4, 2))
        x[np.arange(4), 2 + rng.integers(0, 2, 4)] = 1
        y, s = model.decoder_step(xp.asarray(x), None, s)
        y_ref, s_ref = ref.decoder_step(x, None, s_ref)
        from minisketch.backend import to_numpy
        worst = max(worst, float(np.max(np.abs(to_numpy(y) - y_ref))))
    if worst > 1e-3:
        raise SystemExit(f"error: {model.backend.name} decoder outputs differ from numpy's by "
                         f"{worst:.3g} (> 1e-3); not timing it")
    return worst


class Clock:
    """Host clock, or CUDA events for the cupy backend."""

    def __init__(self, xp):
        self.cupy = xp.__name__ == "cupy"
        self.xp = xp

    def time(self, fn):
        """(result, seconds, CPU seconds of this process over all its threads)."""
        c0 = time.process_time()
        if self.cupy:
            start, stop = self.xp.cuda.Event(), self.xp.cuda.Event()
            start.record()
            out = fn()
            stop.record()
            stop.synchronize()
            return out, self.xp.cuda.get_elapsed_time(start, stop) / 1e3, \
                time.process_time() - c0
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0, time.process_time() - c0


def bench(model, args):
    clock = Clock(model.xp)
    tau = args.temperature
    sampling.sample(model, n=2, temperature=tau, seed=0, max_len=5)      # warm up (JIT, caches)
    batched, batched_cpu, lens_b = [], [], []
    for r in range(args.repeats):
        out, dt, cpu = clock.time(lambda: sampling.sample(model, n=args.n, temperature=tau,
                                                          seed=1000 + r))
        batched.append(args.n / dt)
        batched_cpu.append(args.n / cpu)
        lens_b += [len(s) for s in out]
    single, single_cpu, lens_s = [], [], []
    for r in range(args.repeats):
        def one_at_a_time():
            return [sampling.sample(model, n=1, temperature=tau, seed=2000 + r * args.single + k)[0]
                    for k in range(args.single)]
        out, dt, cpu = clock.time(one_at_a_time)
        single.append(args.single / dt)
        single_cpu.append(args.single / cpu)
        lens_s += [len(s) for s in out]
    return {"batched_sketches_per_s": statistics.median(batched),
            "batched_sketches_per_cpu_s": statistics.median(batched_cpu),
            "batched_mean_len": float(np.mean(lens_b)),
            "single_sketches_per_s": statistics.median(single),
            "single_sketches_per_cpu_s": statistics.median(single_cpu),
            "single_mean_len": float(np.mean(lens_s))}


def main():
    args = ARGS
    ref = None
    results = []
    for name in args.backend:
        try:
            model, source = load(name, args.random_init)
        except (MinisketchError, ImportError) as e:     # e.g. no CuPy / no GPU / no Numba
            print(f"skip {name}: {e}", file=sys.stderr)
            continue
        if name == "numpy":
            ref = model
        else:
            if ref is None:
                ref = load("numpy", args.random_init)[0]
            check_against_numpy(model, ref)
        r = {"backend": name, "model": source, "dtype": str(np.dtype(model.dtype)),
             "n": args.n, "single": args.single, "temperature": args.temperature,
             "threads": args.threads, "loadavg_1min": round(os.getloadavg()[0], 2),
             **bench(model, args)}
        results.append(r)
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{name:6s} {source}, {r['dtype']}, tau {args.temperature}: batched n={args.n} "
                  f"{r['batched_sketches_per_s']:7.1f} sketches/s (mean {r['batched_mean_len']:.0f}"
                  f" points; target 200)  one at a time {r['single_sketches_per_s']:6.1f} "
                  f"sketches/s (mean {r['single_mean_len']:.0f} points; target 20)  "
                  f"[per CPU-second: {r['batched_sketches_per_cpu_s']:.1f} / "
                  f"{r['single_sketches_per_cpu_s']:.1f}; load average {r['loadavg_1min']}]")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
