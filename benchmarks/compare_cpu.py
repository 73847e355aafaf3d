"""NumPy, Numba and PyTorch training steps side by side on the CPU, one table.

    python benchmarks/compare_cpu.py [--decs lstm,layer_norm,hyper] [--batch 100] [--nmax 250]
        [--steps 3] [--warmup 1] [--rounds 2] [--threads N] [--fused] [--malloc-keep]
        [--json FILE]

Every measurement is its own subprocess (``bench_step.py --backend numpy|numba`` and
``torch_reference.py``), so each has its own peak memory (VmHWM) and no two thread pools share a
process. For each decoder the three run in turn, ``--rounds`` times, the order rotating from round
to round so that a drift in the machine's speed falls on all of them; the table shows, per
backend, the median over rounds of each run's median step time and the ratios numba/torch and
numpy/torch, then the best single step of all rounds and its ratios (on a shared machine the
best step is the one least disturbed by other processes; the load average before each run goes
to the progress lines and the JSON), the process CPU time per step, the peak RSS, the achieved
GFLOP/s and the BLAS peaks (OpenBLAS sgemm for NumPy/Numba, MKL sgemm for torch) measured in the same runs. The
Numba kernels are compiled once before the timed runs (Numba's on-disk cache), and the
cold-cache compile time is measured separately (fresh NUMBA_CACHE_DIR).

``--fused`` adds, for the LSTM decoder, a pair without recurrent dropout: Numba vs torch's fused
``nn.LSTM`` (which has no dropout on the candidate).
``--malloc-keep`` passes ``--malloc-keep`` to every run, so that glibc keeps freed memory
instead of returning it to the kernel (no mmap for large blocks, no trimming): the reference
sequence code allocates ~1.5 GB of step buffers per training step, and on this VM the page
faults of touching fresh memory cost hundreds of ms per step; the setting applies to all three
backends alike.

Torch is optional: without it the torch column is left out. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
in the environment can select a slower OpenBLAS kernel: the BLAS core in use is printed; unset
both for the command that runs this script.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--decs", default="lstm,layer_norm,hyper",
                   help="comma-separated decoder cells (default all three)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--nmax", type=int, default=250)
    p.add_argument("--steps", type=int, default=3, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per run")
    p.add_argument("--rounds", type=int, default=2, help="runs per backend and decoder")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for BLAS, Numba and torch (default: the libraries' default)")
    p.add_argument("--backends", default="numpy,numba,torch",
                   help="comma-separated, from numpy, numba, numpysplit and numbasplit (NumPy "
                        "and Numba as the training command runs them: BLAS on one thread, the "
                        "step in one row block per core), numbapar (Numba with "
                        "MINISKETCH_NUMBA_PARALLEL=1: kernels split across Numba's threads), "
                        "numbasplit-openblas (numbasplit with MINISKETCH_BLAS=numpy: NumPy's "
                        "OpenBLAS even where MKL is installed) and torch")
    p.add_argument("--fused", action="store_true",
                   help="add Numba vs torch nn.LSTM, both without recurrent dropout")
    p.add_argument("--malloc-keep", action="store_true",
                   help="GLIBC_TUNABLES: keep freed memory in the process (all backends)")
    p.add_argument("--no-compile-time", action="store_true",
                   help="skip the cold-cache Numba compile measurement")
    p.add_argument("--json", default=None, help="also write every run's JSON to this file")
    args = p.parse_args(argv)
    args.decs = [d for d in args.decs.split(",") if d]
    args.backends = [b for b in args.backends.split(",") if b]
    return args


# the backends run as the training command runs them: BLAS on one thread, the step in row blocks
SPLIT = ("numbasplit", "numpysplit", "numbasplit-openblas")


def child_env(args):
    env = dict(os.environ)
    if args.threads:
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                  "NUMBA_NUM_THREADS"):
            env[v] = str(args.threads)
    return env


def command(args, backend, dec, fused=False, extra=()):
    common = ["--dec", dec, "--batch", str(args.batch), "--nmax", str(args.nmax),
              "--steps", str(args.steps), "--warmup", str(args.warmup), "--dtype", args.dtype,
              "--json"]
    if fused:
        common += ["--recurrent-dropout", "0"]
    if args.malloc_keep:
        common.append("--malloc-keep")
    if backend == "torch":
        cmd = [sys.executable, os.path.join(HERE, "torch_reference.py")] + common
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if fused:
            cmd.append("--fused")
    else:
        name = {"numbapar": "numba", "numbasplit": "numba", "numpysplit": "numpy",
                "numbasplit-openblas": "numba"}.get(backend, backend)
        cmd = [sys.executable, os.path.join(HERE, "bench_step.py"), "--backend", name] + common
        if backend == "numbapar":
            cmd += ["--model-threads", "1"]      # unsplit step
        if backend in SPLIT:
            cmd += ["--model-threads", str(len(os.sched_getaffinity(0)))]
    return cmd + list(extra)


def run_one(cmd, env, backend=None):
    if backend == "numbapar":    # Numba kernels split across Numba's threads (opt-in)
        env = dict(env, MINISKETCH_NUMBA_PARALLEL="1")
    if backend in SPLIT:          # BLAS on one thread, as train.py sets it
        env = dict(env, **{v: "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                            "MKL_NUM_THREADS")})
    if backend == "numbasplit-openblas":
        env = dict(env, MINISKETCH_BLAS="numpy")
    load = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"error: {' '.join(cmd[1:3])} failed: {' | '.join(tail)}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    r = json.loads(line)
    r["process_s"] = time.perf_counter() - t
    r["load_before"] = load
    return r


def median_of(runs, key):
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


def fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)


def main(argv=None):
    args = parse_args(argv)
    env = child_env(args)
    backends = list(args.backends)
    if "torch" in backends and importlib.util.find_spec("torch") is None:
        print("note: torch is not installed; leaving the torch column out", file=sys.stderr)
        backends.remove("torch")
    all_runs = []
    extra_rows = []
    # compile (or load) the Numba kernels once, and time a cold-cache compile
    if "numba" in backends:
        r = run_one(command(args, "numba", args.decs[0], extra=["--steps", "1", "--warmup", "0",
                                                               "--no-peak"]
                            + ([] if args.no_compile_time else ["--compile-time"])), env)
        r["role"] = "compile"
        all_runs.append(r)
        compile_info = r.get("jit_cold_compile_s")
    else:
        compile_info = None

    table = {}
    pairs = [(dec, False) for dec in args.decs]
    if args.fused and "lstm" in args.decs and "torch" in backends:
        pairs.append(("lstm", True))
    for dec, fused in pairs:
        bks = [b for b in backends
               if not fused or b in ("numba", "numbasplit", "numbapar", "numbasplit-openblas",
                                     "torch")]
        runs = {b: [] for b in bks}
        for rnd in range(args.rounds):
            order = bks[rnd % len(bks):] + bks[:rnd % len(bks)]
            for b in order:
                r = run_one(command(args, b, dec, fused), env, b)
                r["round"] = rnd
                runs[b].append(r)
                all_runs.append(r)
                print(f"  {dec}{' (no dropout)' if fused else ''} {b:6s} round {rnd}: "
                      f"median {r['median_ms']:.0f} ms, min {r['min_ms']:.0f} ms "
                      f"(load average before: {r['load_before']:.2f})", file=sys.stderr,
                      flush=True)
        table[(dec, fused)] = runs
        if fused:
            extra_rows.append((dec, fused))

    # ---- report
    first = next(iter(table.values()))
    any_run = next(r for rs in first.values() for r in rs)
    print(f"batch {args.batch}, N_max {args.nmax}, {args.dtype}, reference sizes (enc 256x2, "
          f"dec 512, z 128, M 20); {args.rounds} round(s) x {args.steps} timed steps "
          f"(+{args.warmup} warm-up) per backend; threads: "
          f"{args.threads or 'library default'}; malloc-keep: {args.malloc_keep}")
    blas = next((r for rs in first.values() for r in rs if r.get("blas_core")), None)
    if blas:
        print(f"NumPy BLAS: {blas['blas']} core {blas['blas_core']}, "
              f"{blas['blas_threads']} threads" +
              (f"; OpenBLAS env {blas['openblas_env']}" if blas.get("openblas_env") else ""))
    for b, rs in first.items():
        prod = next((r["products"] for r in rs if r.get("products")), None)
        if prod:
            print(f"{b}: products through {prod}")
    if compile_info:
        print(f"Numba cold-cache compile ({args.dtype}): {compile_info['wall_s']:.1f} s wall, "
              f"{compile_info['cpu_s']:.1f} s CPU")
    head = ["decoder"] + [f"{b} ms" for b in backends]
    if "torch" in backends:
        head += [f"{b}/torch" for b in backends if b != "torch"]
    head += [f"{b} best" for b in backends]
    if "torch" in backends:
        head += [f"{b}/torch best" for b in backends if b != "torch"]
    head += [f"{b} cpu ms" for b in backends] + [f"{b} MiB" for b in backends]
    head += [f"{b} GF/s" for b in backends] + [f"{b} sgemm" for b in backends]
    rows = []
    for (dec, fused), runs in table.items():
        label = dec + (" (no dropout; torch nn.LSTM)" if fused else "")
        med = {b: median_of(runs.get(b, []), "median_ms") for b in backends}
        row = [label] + [fmt(med[b]) for b in backends]
        if "torch" in backends:
            row += [fmt(med[b] / med["torch"], ".2f") if med[b] and med["torch"] else "-"
                    for b in backends if b != "torch"]
        best = {b: min((r["min_ms"] for r in runs.get(b, [])), default=None) for b in backends}
        row += [fmt(best[b]) for b in backends]
        if "torch" in backends:
            row += [fmt(best[b] / best["torch"], ".2f") if best[b] and best["torch"] else "-"
                    for b in backends if b != "torch"]
        row += [fmt(median_of(runs.get(b, []), "cpu_median_ms")) for b in backends]
        row += [fmt(max((r["peak_rss_mib"] for r in runs.get(b, [])), default=None))
                for b in backends]
        row += [fmt(median_of(runs.get(b, []), "gflops_achieved")) for b in backends]
        row += [fmt(median_of(runs.get(b, []), "blas_peak_gflops")) for b in backends]
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |")
    gflop = any_run.get("gflop")
    if gflop:
        print(f"matmul FLOPs per step: {gflop:.1f} GFLOP ({args.decs[0]} decoder; "
              f"see bench_step.step_flops)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_runs, f, indent=1)


if __name__ == "__main__":
    main()
