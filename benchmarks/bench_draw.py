"""Latency of the draw server's answers, over HTTP against a real server process (issue 21).

    python benchmarks/bench_draw.py [--sheep PATH] [--model builtin:shapes] [--backend numpy]
                                    [--repeats 10] [--json]

Two requests, each timed end to end (request sent -> answer parsed) on a server started here
with ``python -m minisketch.draw --port 0``:

- finish: 4 endings of a half-drawn sheep with ``sheep.gen.json`` (magenta.js decoder-only
  LSTM, 512 units, M = 20); target <= 0.5 s on 2 CPU cores. The half sheep is the first half
  of a sheep the model itself draws (seed 1, tau 0.5), so it is in the model's units and style.
- variations: 4 variations of a drawing with the default model (``builtin:shapes``); target
  <= 1 s. The drawing is test sketch 0 of ``builtin:shapes``. Where the packaged model is not
  installed, a stand-in of the same kind is timed and the output says so: a conditional LSTM
  model (enc 128, dec 256, z 32, M 10) with random weights whose pen rarely ends, so it always
  draws its N_max rows (a pessimistic stand-in).

Baseline in the same run: the same library calls in this process (``model.complete``;
``encode_mu`` + ``sample``), one BLAS thread like the server, so the ratio HTTP / library is
what the server adds. Seeds 0..R-1; median, min and max are printed, with the load average:
on a shared machine the numbers are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHEEP = ROOT.parent / "shared" / "data" / "pretrained" / "sheep.gen.json"
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")    # the baseline: like the server

import numpy as np  # noqa: E402

from minisketch.checkpoint import load_model, save_model  # noqa: E402
from minisketch.errors import ModelError  # noqa: E402
from minisketch.sampling import encode_mu, sample  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sheep", default=str(SHEEP), help="the .gen.json of the finish request")
    p.add_argument("--model", default="builtin:shapes",
                   help="the model of the variations request (default builtin:shapes)")
    p.add_argument("--backend", default="numpy", choices=("numpy", "numba"))
    p.add_argument("--repeats", type=int, default=10, help="timed requests of each kind (10)")
    p.add_argument("--json", action="store_true", help="one JSON line per request kind")
    return p.parse_args(argv)


def stand_in(folder: Path) -> Path:
    """A conditional model of about the packaged model's size, random weights, pen biased."""
    from minisketch.hparams import HParams
    from minisketch.model import SketchRNN
    hp = HParams(enc_rnn_size=128, dec_rnn_size=256, z_size=32, num_mixture=10,
                 max_seq_len=109)
    model = SketchRNN(hp, seed=0, scale_factor=12.35)
    b = model.params["out/b"]
    b[0:3] = np.asarray([3.0, 1.0, -6.0], dtype=b.dtype)
    path = folder / "stand_in_shapes.npz"
    save_model(model, path)
    return path


def start_server(models, backend):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    args = [sys.executable, "-m", "minisketch.draw", "--port", "0", "--quiet", "--backend",
            backend]
    for m in models:
        args += ["--model", str(m)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            cwd=ROOT)
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("serving on "):
        proc.kill()
        raise SystemExit(f"error: the server did not start (first line {line!r})")
    return proc, line[len("serving on "):].rstrip("/")


def post(url, mode, body):
    req = urllib.request.Request(f"{url}/api/{mode}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        answer = json.loads(r.read())
    return time.perf_counter() - t0, answer


def rows(s):
    return [[float(a), float(b), int(p)] for a, b, p in s]


def stats(xs):
    return {"median_ms": 1000 * statistics.median(xs), "min_ms": 1000 * min(xs),
            "max_ms": 1000 * max(xs)}


def main(argv=None):
    args = parse_args(argv)
    sheep_path = Path(args.sheep)
    if not sheep_path.is_file():
        raise SystemExit(f"error: {sheep_path} is absent; pass --sheep PATH to a .gen.json")
    tmp = tempfile.TemporaryDirectory()
    note = ""
    try:
        model = load_model(args.model, backend=args.backend)
        variations_spec = args.model
    except ModelError as e:
        variations_spec = stand_in(Path(tmp.name))
        model = load_model(variations_spec, backend=args.backend)
        note = f"stand-in for {args.model} ({e})"
    sheep = load_model(sheep_path, backend=args.backend)
    full = sample(sheep, n=1, temperature=0.5, seed=1)[0]
    half = np.asarray(rows(full[:len(full) // 2]))
    from minisketch.datasets import load_dataset
    drawing = np.asarray(rows(load_dataset("builtin:shapes").test[0]))

    proc, url = start_server([sheep_path, variations_spec], args.backend)
    try:
        names = [m["name"] for m in json.loads(urllib.request.urlopen(f"{url}/api/models")
                                               .read())]
        jobs = {
            "finish": ("complete", {"model": names[0], "strokes": rows(half), "n": 4,
                                    "temperature": 0.5},
                       lambda seed: sheep.complete(half, n=4, temperature=0.5, seed=seed)),
            "variations": ("variations", {"model": names[1], "strokes": rows(drawing), "n": 4,
                                          "temperature": 0.5},
                           lambda seed: sample(model, n=4, z=encode_mu(model, [drawing])[0],
                                               temperature=0.5, seed=seed)),
        }
        for name, (mode, body, library) in jobs.items():
            post(url, mode, {**body, "seed": 10_000})          # warm-up
            library(10_000)
            http, lib, lengths = [], [], []
            for seed in range(args.repeats):
                seconds, answer = post(url, mode, {**body, "seed": seed})
                http.append(seconds)
                lengths += [len(s) for s in answer["sketches"]]
                t0 = time.perf_counter()
                library(seed)
                lib.append(time.perf_counter() - t0)
            out = {"request": name, "model": str(body["model"]), "backend": args.backend,
                   "prefix_rows": len(body["strokes"]), "mean_rows": float(np.mean(lengths)),
                   "http": stats(http), "library": stats(lib),
                   "ratio": statistics.median(http) / statistics.median(lib),
                   "load": os.getloadavg()[0], "note": note if name == "variations" else ""}
            if args.json:
                print(json.dumps(out))
            else:
                h, b = out["http"], out["library"]
                print(f"{name:10s} {out['model']:>16s} HTTP median {h['median_ms']:7.1f} ms "
                      f"(min {h['min_ms']:.1f}, max {h['max_ms']:.1f}); library "
                      f"{b['median_ms']:7.1f} ms; ratio {out['ratio']:.2f}; "
                      f"{out['prefix_rows']} rows in, {out['mean_rows']:.0f} out; "
                      f"load {out['load']:.2f}")
                if out["note"]:
                    print(f"           note: {out['note']}")
    finally:
        proc.terminate()
        proc.wait(30)
        tmp.cleanup()


if __name__ == "__main__":
    main()
