"""Speed-up of data-parallel training on 2 MPI processes over 1 process, on the same cores.

    python benchmarks/bench_mpi.py [--backend numba] [--procs 2] [--steps 6] [--warmup 2]
                                   [--dec lstm] [--batch 100] [--nmax 250] [--json]

A timed step is what ``python -m minisketch.train`` does per batch, as each configuration runs
it: draw the seeded global batch (``BatchIterator``, augmentation on), the data-parallel loss
and gradient (``World.loss_and_grad``: the rank's rows, one allreduce), clip + Adam. The
reference model (HParams defaults: LSTM encoder 256 per direction, decoder 512, N_z 128, M 20,
recurrent dropout), batch 100, on random sketch-like data of N_max 250 (benchmarks/bench_step.py's
sketches, 400 of them), float32.

Both configurations use the same cores, BLAS on one thread in every process (OPENBLAS_NUM_THREADS
and friends = 1): 1 process splits each step into C row blocks on C threads (C: the cores this
process may use); P processes (``mpiexec -n P python -m mpi4py``) take C / P threads each
(``World.cores``). Reported: median seconds per step of each, and the speed-up (1-process time /
P-process time), and each configuration's peak resident memory per process. On a shared
machine the numbers are noisy: run it on a quiet one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"               # before NumPy loads: BLAS on one thread everywhere

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="numba", choices=("numpy", "numba"))
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dec", default="lstm", choices=("lstm", "layer_norm", "hyper"))
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--nmax", type=int, default=250)
    p.add_argument("--json", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(args) -> dict:
    """Time the steps in this process (one rank of an MPI job, or the only process)."""
    import numpy as np
    from bench_step import random_sketches, reference_hparams
    from minisketch.batching import BatchIterator
    from minisketch.model import MIN_ROWS_PER_THREAD, SketchRNN
    from minisketch.mpi import get_world
    from minisketch.optim import Adam, learning_rate
    from minisketch.strokes import Augment
    world = get_world()
    cores = world.cores()
    rows = args.batch // world.size
    threads = max(1, min(cores, rows // MIN_ROWS_PER_THREAD))
    hp = reference_hparams(args.dec, args.batch, args.nmax)
    sketches = random_sketches(np.random.default_rng(0), 400, args.nmax)
    model = SketchRNN(hp, backend=args.backend, dtype="float32", seed=0, threads=threads)
    adam = Adam.for_model(model)
    batches = BatchIterator(sketches, hp.batch_size, args.nmax, 1.0, rng=0,
                            augment=Augment.from_hparams(hp))
    times = []
    for step in range(args.warmup + args.steps):
        if world.comm is not None:
            world.comm.Barrier()
        t = time.perf_counter()
        batch = batches.next_batch()
        losses = world.loss_and_grad(model, batch, step)
        adam.update(model.flat, model.flat_grad, learning_rate(hp, step), hp.grad_clip)
        float(losses["loss"])
        times.append(time.perf_counter() - t)
    # a step ends when the slowest rank's ends
    times = [max(ts) for ts in zip(*world.allgather(times[args.warmup:]))]
    from bench_step import peak_rss_mib
    out = {"processes": world.size, "threads_per_process": threads, "cores_per_process": cores,
           "median_s": float(np.median(times)), "min_s": float(min(times)),
           "loss": float(losses["loss"]),
           "peak_rss_mib_per_process": max(world.allgather(peak_rss_mib()))}
    world.finish()
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        out = worker(args)
        if out is not None and int(os.environ.get("PMI_RANK", "0")) == 0:
            print(json.dumps(out), flush=True)
        return 0
    common = [f"--backend={args.backend}", f"--steps={args.steps}", f"--warmup={args.warmup}",
              f"--dec={args.dec}", f"--batch={args.batch}", f"--nmax={args.nmax}", "--worker"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p))
    one = [sys.executable, str(Path(__file__).resolve()), *common]
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("error: no mpiexec: pip install -e '.[mpi]'")
    many = [mpiexec, "-n", str(args.procs), sys.executable, "-m", "mpi4py",
            str(Path(__file__).resolve()), *common]
    results = []
    for cmd in (one, many):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    single, multi = results
    speedup = single["median_s"] / multi["median_s"]
    summary = {"backend": args.backend, "dec": args.dec, "batch": args.batch, "nmax": args.nmax,
               "one": single, "many": multi, "speedup": speedup}
    if args.json:
        print(json.dumps(summary))
    else:
        for r in results:
            print(f"{r['processes']} process(es) x {r['threads_per_process']} thread(s): "
                  f"median {r['median_s']:.3f} s/step (min {r['min_s']:.3f}), peak memory "
                  f"{r['peak_rss_mib_per_process']:.0f} MiB per process")
        print(f"speed-up of {args.procs} processes over 1: {speedup:.2f}x "
              f"({args.backend}, {args.dec} decoder, batch {args.batch}, N_max {args.nmax})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
