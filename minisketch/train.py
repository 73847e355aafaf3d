"""Train a sketch-rnn model: ``python -m minisketch.train [--data SOURCE ...] [--out DIR] ...``.

The loop, one step at a time (``step`` = updates done so far, 0 before the first):

    batch = batches.next_batch()                       # seeded, augmented (random scale, drops)
    losses, grads = model.loss_and_grad(batch, step)   # noise and dropout seeded by (seed, step)
    adam.update(model.flat, model.flat_grad, learning_rate(hp, step), hp.grad_clip)

and at step 0, every ``--eval-every`` steps and at the end, an evaluation (the whole validation
set, dropout off): one ``log.jsonl`` line, then ``checkpoint.npz``, then ``best.npz`` when the
validation loss is the lowest so far, so a crash anywhere leaves a folder that ``--resume``
continues exactly; then ``loss.png`` and the samples grid. ``--out`` is locked while a run
lives. Ctrl-C or SIGTERM stops at a step boundary, saves and exits 130; a non-finite loss stops
with an ``error:`` line and keeps the last good checkpoint. Presets (``quick`` without
``--data``, ``paper`` with it) fill in what the command line does not say. As a command, BLAS
runs on one thread and the step is split into row blocks, one thread per core. Under
``mpiexec`` the step is data-parallel (``mpi.py``) and rank 0 alone writes.
Details (averages, order of writes, threads, test hooks): docs/training.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
if __name__ == "__main__" and not any(v in os.environ for v in BLAS_THREAD_VARS):
    os.environ.update({v: "1" for v in BLAS_THREAD_VARS})    # before NumPy loads (see "Threads")

import numpy as np  # noqa: E402

from . import faults  # noqa: E402
from .backend import BACKENDS, get_backend, to_numpy  # noqa: E402
from .checkpoint import (hparams_from_config, load_checkpoint, load_params,  # noqa: E402
                         model_config, save_checkpoint)
from .cli import ArgumentParser, LenientParser  # noqa: E402
from .errors import MinisketchError, ModelError, run_cli  # noqa: E402
from .fileio import (atomic_open, read_regular, remove_stale_temporaries,  # noqa: E402
                     write_bytes_atomic)
from .hparams import MAX_SEQ_LEN, HParams, add_hparam_arguments, hparams_from_args  # noqa: E402
from .mpi import World, get_world  # noqa: E402
from .optim import Adam, kl_weight, learning_rate  # noqa: E402

try:
    import fcntl
except ImportError:        # not POSIX: runs are not locked
    fcntl = None

LOSS_KEYS = ("recon", "offset", "pen", "kl", "loss")
DEFAULT_DATA = "builtin:shapes"
DEFAULT_PRESET = "quick"      # without --data
SAMPLE_TEMPERATURE = 0.4          # temperature of the samples grid refreshed at each evaluation
NAN_HOOK = "MINISKETCH_INJECT_NAN_AT_STEP"
NCCL_SWITCH = "MINISKETCH_NCCL"   # 0: sum a cupy run's gradients through host memory and MPI

# Presets: hyperparameters (over HParams defaults) and training options (over TRAIN_DEFAULTS).
PRESETS = {
    # A small conditional model on the built-in shapes, sized for a first run of a few minutes
    # on 2 cores with the Numba backend (measured: benchmarks/README.md) that draws
    # recognizable spirals, zigzags, circles, triangles and squares. Smaller batches and a
    # higher learning rate than the paper's buy more progress per second; the KL weight reaches
    # 0.5 within the first 1000 steps.
    "quick": {"hparams": dict(enc_rnn_size=96, dec_rnn_size=192, z_size=32, num_mixture=10,
                              batch_size=32, use_recurrent_dropout=False,
                              learning_rate=0.003, decay_rate=0.9998, min_learning_rate=0.0001,
                              kl_decay_rate=0.995),
              "train": dict(steps=4000, eval_every=500, backend="numba")},
    # The reference hyperparameters (Ha & Eck 2017; HParams defaults). The reference trained for
    # far longer (its num_steps was 10M, saving every 500 steps); 100k steps is a full run here.
    "paper": {"hparams": {}, "train": dict(steps=100_000, eval_every=500)},
}
TRAIN_DEFAULTS = dict(backend="numpy", dtype="float32", steps=1000, eval_every=500,
                      log_every=10, seed=0, samples=16, threads=None)
# options that may differ between a run and its --resume (they do not change the trajectory;
# backend and threads change it only by float rounding)
RESUMABLE_CHANGES = ("steps", "eval_every", "log_every", "samples", "backend", "threads")
MAX_SAMPLES = 100                 # sketches in the samples grid (--samples)
LOCK_NAME = ".minisketch.lock"
OUTPUTS = ("config.json", "log.jsonl", "checkpoint.npz", "best.npz", "loss.png", "samples.svg",
           "samples.png")


# ----------------------------------------------------------------------------- command line

def _nonneg_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _pos_int(s: str) -> int:
    v = _nonneg_int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def preset_of(argv) -> str:
    """The preset a command line selects: ``--preset``, else paper with ``--data``, else quick.
    Read before parsing, so that ``--help`` can show the defaults that run would use."""
    pre = LenientParser(add_help=False)
    pre.add_argument("--preset")
    pre.add_argument("--data", nargs="+", action="extend")
    try:
        known, _ = pre.parse_known_args(list(argv or []))
    except argparse.ArgumentError:
        return DEFAULT_PRESET
    if known.preset in PRESETS:
        return known.preset
    return "paper" if known.data else DEFAULT_PRESET


def preset_defaults(preset: str) -> tuple[HParams, dict]:
    """(hyperparameters, training options) of a preset, before any flag."""
    return (HParams().replace(**PRESETS[preset]["hparams"]),
            {**TRAIN_DEFAULTS, **PRESETS[preset]["train"]})


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser; ``argv`` picks the preset whose defaults ``--help`` shows."""
    preset = preset_of(argv)
    hp, opts = preset_defaults(preset)
    p = ArgumentParser(
        prog="python -m minisketch.train",
        description=f"Train a sketch-rnn model. Without options: the '{DEFAULT_PRESET}' preset "
                    f"on the built-in offline dataset {DEFAULT_DATA}. Defaults shown are the "
                    f"'{preset}' preset's (--preset, or --data, changes them).",
        epilog="Outputs in --out: config.json, log.jsonl, checkpoint.npz, best.npz, loss.png, "
               "samples.svg, samples.png. Ctrl-C saves a checkpoint; continue with --resume.")
    p.add_argument("--data", nargs="+", action="extend", metavar="SOURCE",
                   help=f"dataset(s): .npz, .ndjson, .svg files or folders, a QuickDraw class "
                        f"name or {DEFAULT_DATA} (default); several are concatenated split by "
                        f"split")
    p.add_argument("--out", metavar="DIR",
                   help=f"output folder (default: runs/{preset}-<date>-<time>)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help=f"{DEFAULT_PRESET} (default without --data) or paper (default with "
                        f"--data)")
    p.add_argument("--backend", choices=BACKENDS,
                   help=f"numpy, numba or cupy (default {opts['backend']})")
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help=f"default {opts['dtype']}")
    p.add_argument("--steps", type=_nonneg_int, metavar="N",
                   help=f"total training steps (default {opts['steps']})")
    p.add_argument("--eval-every", type=_pos_int, metavar="N",
                   help=f"evaluate, log and checkpoint every N steps, and at 0 and the end "
                        f"(default {opts['eval_every']})")
    p.add_argument("--log-every", type=_pos_int, metavar="N",
                   help=f"read losses back for the progress bar every N steps "
                        f"(default {opts['log_every']})")
    p.add_argument("--resume", action="store_true",
                   help="continue <out>/checkpoint.npz exactly where it stopped")
    p.add_argument("--seed", type=int, metavar="S",
                   help=f"fixes initialization, data order, augmentation, noise, dropout "
                        f"(default {opts['seed']})")
    p.add_argument("--samples", type=_nonneg_int, metavar="N",
                   help=f"sketches in the samples grid refreshed at each evaluation "
                        f"(default {opts['samples']}; 0: none)")
    p.add_argument("--threads", type=_pos_int, metavar="N",
                   help="row blocks per step, one thread each (default: the CPU cores on numpy "
                        "and numba, 1 on cupy; results differ between counts by float rounding)")
    add_hparam_arguments(p, defaults=hp,
                         title=f"hyperparameters (HParams fields; defaults of the {preset} preset)")
    return p


def _given_hparams(args) -> dict:
    return {f: getattr(args, f) for f in HParams.__dataclass_fields__
            if getattr(args, f, None) is not None}


def resolve_config(args) -> tuple[HParams, dict]:
    """(hyperparameters, training options) from the preset and the options given."""
    preset = args.preset or ("paper" if args.data else DEFAULT_PRESET)
    base, defaults = preset_defaults(preset)
    hp = hparams_from_args(args, base=base)
    opts = {**defaults, "preset": preset, "data": list(args.data or [DEFAULT_DATA]),
            "out": args.out}
    for key in ("backend", "dtype", "steps", "eval_every", "log_every", "seed", "samples",
                "threads"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    if opts["out"] is None:
        opts["out"] = os.path.join("runs", f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    opts["max_seq_len_limit"] = hp.max_seq_len   # the user's limit; hp gets the data's N_max
    return hp, opts


def _check_resume_options(args, hp_saved: HParams, opts_saved: dict, where: str) -> None:
    """Options given with --resume must agree with the run being continued."""
    problems = []
    for name, value in _given_hparams(args).items():
        saved = opts_saved.get("max_seq_len_limit") if name == "max_seq_len" \
            else getattr(hp_saved, name)
        if value != saved:
            problems.append(f"--{name} {value} (the run has {saved})")
    for name in ("dtype", "seed", "preset"):
        value = getattr(args, name)
        if value is not None and value != opts_saved.get(name):
            problems.append(f"--{name} {value} (the run has {opts_saved.get(name)})")
    if args.data and list(args.data) != opts_saved.get("data"):
        problems.append(f"--data {' '.join(args.data)} (the run has "
                        f"{' '.join(opts_saved.get('data', []))})")
    if problems:
        raise ModelError(f"--resume continues {where}, trained with other settings: "
                         f"{'; '.join(problems)}. Drop those options, or start a new run "
                         f"with another --out")


# ----------------------------------------------------------------------------- run state

@dataclass
class TrainState:
    """What the loop carries between steps besides the model and optimizer (all JSON)."""
    best_valid_loss: float | None = None
    best_step: int | None = None
    last_eval_step: int | None = None
    seconds: float = 0.0
    train_sums: dict = field(default_factory=lambda: {k: 0.0 for k in LOSS_KEYS})
    train_count: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict, step: int, where: str) -> "TrainState":
        """The state saved with a checkpoint at ``step``, checked field by field (ModelError
        naming ``where`` and the field, never a TypeError in the middle of training)."""
        def bad(name, want):
            return ModelError(f"{where}: its training state is unusable: {name} must be {want}, "
                              f"got {d.get(name)!r}; use another checkpoint or start a new run")

        def number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def count(v, hi):
            return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= hi

        st = cls()
        if not isinstance(d, dict):
            raise ModelError(f"{where}: its training state is not a JSON object")
        for name in ("best_valid_loss", "best_step", "last_eval_step"):
            if d.get(name) is None:
                continue
            if name == "best_valid_loss" and not number(d[name]):
                raise bad(name, "a finite number or null")
            if name != "best_valid_loss" and not count(d[name], step):
                raise bad(name, f"null or an integer from 0 to the step, {step}")
            setattr(st, name, d[name])
        if (st.best_valid_loss is None) != (st.best_step is None):
            raise bad("best_step", "given exactly when best_valid_loss is")
        if not number(d.get("seconds")) or d["seconds"] < 0:
            raise bad("seconds", "a number >= 0")
        st.seconds = float(d["seconds"])
        sums = d.get("train_sums")
        if not isinstance(sums, dict) or set(sums) != set(LOSS_KEYS) or \
                not all(number(v) for v in sums.values()):
            raise bad("train_sums", f"finite numbers for exactly {', '.join(LOSS_KEYS)}")
        st.train_sums = {k: float(sums[k]) for k in LOSS_KEYS}
        if not count(d.get("train_count"), step):
            raise bad("train_count", f"an integer from 0 to the step, {step}")
        st.train_count = d["train_count"]
        return st


def check_options(opts: dict, where: str | None = None) -> None:
    """Training options (from the command line, or a checkpoint's config when ``where`` names
    it): types and ranges, one MinisketchError naming the option."""
    def fail(name, want):
        option = f"--{name.replace('_', '-')}"
        if where is None:
            raise MinisketchError(f"{option} must be {want}, got {opts.get(name)!r}")
        raise ModelError(f"{where}: its training options are unusable: {name} must be {want}, "
                         f"got {opts.get(name)!r}; start a new run")

    def integer(name, lo, hi):
        v = opts.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            fail(name, f"an integer from {lo} to {hi}")

    integer("steps", 0, 10 ** 12)
    integer("eval_every", 1, 10 ** 12)
    integer("log_every", 1, 10 ** 12)
    integer("samples", 0, MAX_SAMPLES)
    integer("seed", 0, 2 ** 63 - 1)
    integer("max_seq_len_limit", 1, MAX_SEQ_LEN)
    if opts.get("threads") is not None:
        integer("threads", 1, 4096)
    if opts.get("backend") not in BACKENDS:
        fail("backend", f"one of {', '.join(BACKENDS)}")
    if opts.get("dtype") not in ("float32", "float64"):
        fail("dtype", "float32 or float64")
    if opts.get("preset") not in PRESETS:
        fail("preset", f"one of {', '.join(sorted(PRESETS))}")
    data = opts.get("data")
    if not isinstance(data, list) or not data or not all(isinstance(x, str) for x in data):
        fail("data", "a list of data sources")


class RunFolder:
    """The ``--out`` folder of a run, held under an OS lock while the run lives.

    :meth:`claim` refuses a non-empty folder that is not a run, and a folder another run
    holds; it removes the temporary files a killed run left. :meth:`release` with
    ``failed=True`` removes what this run wrote when it never reached a checkpoint (and the
    folder when the run created it), so a run that fails early leaves nothing behind.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.created = False
        self._fd = None

    def check_usable(self, fresh: bool) -> None:
        """Refuse a file, a foreign non-empty folder, or (``fresh``) a folder with a checkpoint."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise MinisketchError(f"--out {out} is a file; give a folder")
        names = sorted(os.listdir(out)) if out.is_dir() else []
        if LOCK_NAME in names:
            self.claim(probe=True)            # another live run: say so first
        if names and not self.is_run(names):
            shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            raise MinisketchError(f"--out {out} is not empty and is not a minisketch run (it "
                                  f"holds {shown}); choose a new or empty folder")
        if fresh and "checkpoint.npz" in names:
            raise MinisketchError(f"{out} already holds a training run; continue it with "
                                  f"--resume --out {out}, or choose another --out")

    def is_run(self, names) -> bool:
        if LOCK_NAME in names or "checkpoint.npz" in names or "best.npz" in names:
            return True
        try:
            config = _read_config(self.out / "config.json")
        except MinisketchError:
            return False
        return isinstance(config, dict) and "training" in config and "hparams" in config

    def claim(self, probe: bool = False) -> None:
        """Create the folder if needed, take its lock, remove stale temporary files (with
        ``probe``: only check that no other run holds the lock)."""
        try:
            if not probe:
                self.created = not self.out.exists()
                self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise MinisketchError(f"cannot create output folder {self.out}: "
                                  f"{e.strerror or e}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise MinisketchError(f"{self.out} is in use by another training run (process "
                                      f"{holder}); wait for it to end, or choose another "
                                      f"--out") from None
        if probe:
            os.close(fd)
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        remove_stale_temporaries(self.out)

    def release(self, failed: bool) -> None:
        """Drop the lock; after a failure before the first checkpoint, remove the run's files."""
        if self._fd is None:
            return
        if failed and not (self.out / "checkpoint.npz").exists():
            remove_stale_temporaries(self.out)
            for name in OUTPUTS + (LOCK_NAME,):
                try:
                    (self.out / name).unlink()
                except OSError:
                    pass
            if self.created:
                try:
                    self.out.rmdir()
                except OSError:
                    pass
        os.close(self._fd)
        self._fd = None


@dataclass
class Run:
    out: Path
    hp: HParams
    opts: dict
    config: dict
    ds: object
    model: object
    adam: Adam
    batches: object
    step: int
    state: TrainState
    folder: RunFolder | None = None
    resumed: bool = False
    world: World = field(default_factory=World)


def _write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def setup_run(args, world: World | None = None) -> Run:
    """Load data, build the model and optimizer, fresh or from ``<out>/checkpoint.npz``.

    Every option is checked before ``--out`` is touched; the folder is then claimed (locked,
    stale temporaries removed) and, when anything after that fails, left as it was found.
    ``config.json`` and ``log.jsonl`` are written here: the log is emptied for a fresh run and
    cut to the evaluations the checkpoint has seen for a resumed one. Under MPI (``world``),
    rank 0 alone checks, claims and writes the folder and sends the settings and checkpoint to
    the others; every rank builds its model, and an error on any rank ends every rank's setup.
    """
    world = world or World()
    error, claimed = None, None
    if world.is_root:
        try:
            claimed = _claim_run(args)
        except (MinisketchError, OSError, MemoryError) as e:
            error = e
    world.agree(error)
    hp, opts, ck = world.bcast(claimed[:3] if world.is_root else None)
    folder = claimed[3] if world.is_root else None
    try:
        error = None
        try:
            world.use_backend(opts["backend"], nccl=os.environ.get(NCCL_SWITCH, "1") != "0")
            run = _build_run(hp, opts, ck, folder, world)
            if world.is_root:
                _write_text_atomic(run.out / "config.json",
                                   json.dumps(run.config, indent=2) + "\n")
                rows = [r for r in read_log(run.out / "log.jsonl")
                        if run.state.last_eval_step is not None and
                        isinstance(r.get("step"), int) and r["step"] <= run.state.last_eval_step]
                _write_text_atomic(run.out / "log.jsonl",
                                   "".join(json.dumps(r) + "\n" for r in rows))
        except (MinisketchError, OSError, MemoryError) as e:
            error = e
        world.agree(error)
        return run
    except BaseException:
        if folder is not None:
            folder.release(failed=True)
        raise


def _claim_run(args):
    """(hyperparameters, training options, checkpoint or None, claimed RunFolder)."""
    if args.resume and not args.out:
        raise MinisketchError("--resume needs --out DIR, the folder of the run to continue")
    if args.resume:
        hp, opts, ck = _resume_config(args)
    else:
        (hp, opts), ck = resolve_config(args), None
    check_options(opts)
    # an unusable backend (no CuPy, a bad MINISKETCH_BLAS) is one error line before any folder
    get_backend(opts["backend"])
    folder = RunFolder(opts["out"])
    folder.check_usable(fresh=not args.resume)
    folder.claim()
    return hp, opts, ck, folder


def _resume_config(args):
    """(hyperparameters, training options, checkpoint) of the run in ``--out``; the checkpoint
    is None when the run stopped before its first one (it then starts again from step 0 with
    the settings in its config.json)."""
    out = Path(args.out)
    where = out / "checkpoint.npz"
    if where.exists():
        ck = load_checkpoint(where)
        if ck.optimizer is None or "training" not in ck.config:
            raise ModelError(f"{ck.path} is a model file, not a training checkpoint "
                             f"(no optimizer state); it cannot be resumed")
        config = ck.config
    elif out.is_dir() and RunFolder(out).is_run(os.listdir(out)) and \
            (out / "config.json").exists():
        config = _read_config(out / "config.json")
        ck = None
        print(f"{out} stopped before its first checkpoint: starting it again from step 0 with "
              f"the settings in its config.json", file=sys.stderr)
    else:
        raise ModelError(f"no checkpoint at {where}: nothing to resume (start the run without "
                         f"--resume)")
    where = str(where) if ck is not None else str(out / "config.json")
    hp = hparams_from_config(config, where)
    if not isinstance(config.get("training"), dict):
        raise ModelError(f"{where}: its config has no training options")
    opts = dict(config["training"])
    check_options(opts, where)
    _check_resume_options(args, hp, opts, where)
    for key in RESUMABLE_CHANGES:
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    opts["out"] = args.out
    return hp.replace(max_seq_len=int(opts["max_seq_len_limit"])), opts, ck


def _read_config(path: Path) -> dict:
    """A run's config.json (a regular file of at most 1 MiB holding a JSON object)."""
    try:
        config = json.loads(read_regular(path, 2 ** 20, ModelError, "config.json"))
    except (ValueError, RecursionError) as e:
        raise ModelError(f"{path} is not valid JSON ({e}); start the run again without "
                         f"--resume") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path} does not hold a run's settings")
    return config


def _build_run(hp: HParams, opts: dict, ck, folder: RunFolder | None,
               world: World | None = None) -> Run:
    from .batching import BatchIterator
    from .cpu import keep_freed_memory
    from .model import SketchRNN
    from .strokes import Augment

    world = world or World()
    out = Path(opts["out"])
    ds = world.load_dataset(opts["data"], max_seq_len=hp.max_seq_len)
    if len(ds.valid) == 0:
        raise MinisketchError(f"{' '.join(opts['data'])} has no validation sketches; "
                              f"training needs a valid split to evaluate and pick best.npz")
    if hp.batch_size < world.size:
        raise MinisketchError(f"--batch_size {hp.batch_size} is smaller than the {world.size} "
                              f"processes: each needs at least one row of the batch; use fewer "
                              f"processes or a larger --batch_size")
    hp = hp.replace(max_seq_len=int(ds.max_seq_len))
    if opts["backend"] != "cupy":
        keep_freed_memory()        # the step's large arrays stay in the process (cpu.py)
    model = SketchRNN(hp, backend=opts["backend"], dtype=opts["dtype"], seed=int(opts["seed"]),
                      scale_factor=float(ds.scale_factor),
                      threads=rank_threads(world, opts, hp.batch_size))
    adam = Adam.for_model(model)
    batches = BatchIterator(ds.train, hp.batch_size, ds.max_seq_len, ds.scale_factor,
                            rng=int(opts["seed"]), augment=Augment.from_hparams(hp))
    config = {**model_config(model), "training": opts, "dropped": int(getattr(ds, "dropped", 0)),
              "splits": {"train": len(ds.train), "valid": len(ds.valid), "test": len(ds.test)},
              "processes": world.size}
    step, state = 0, TrainState()
    if ck is not None:
        saved_sf = ck.config.get("scale_factor")
        if isinstance(saved_sf, bool) or not isinstance(saved_sf, (int, float)) or \
                not math.isclose(float(ds.scale_factor), saved_sf, rel_tol=1e-6) or \
                int(ds.max_seq_len) != ck.config.get("max_seq_len"):
            raise ModelError(f"the data no longer matches {ck.path} (scale factor "
                             f"{ds.scale_factor:.6g} vs {ck.config.get('scale_factor')}, N_max "
                             f"{ds.max_seq_len} vs {ck.config.get('max_seq_len')}); "
                             f"it cannot be resumed exactly")
        load_params(model, ck.params, ck.path)
        adam.load_state_dict(ck.optimizer)
        if "batches" not in ck.rng:
            raise ModelError(f"{ck.path} has no batch RNG state; it cannot be resumed exactly")
        try:
            batches.set_state(ck.rng["batches"])
        except (MinisketchError, KeyError, TypeError, ValueError, OverflowError) as e:
            raise ModelError(f"{ck.path}: unusable batch RNG state ({e})") from None
        step, state = ck.step, TrainState.from_json(ck.train_state, ck.step, ck.path)
        if adam.t != step:
            raise ModelError(f"{ck.path} is inconsistent: step {step} but the optimizer has "
                             f"taken {adam.t} steps")
        if world.is_root:
            _repair_best(out, ck, state)
    # every rank starts from rank 0's parameters and optimizer state
    for a in (model.flat, adam.m, adam.v):
        world.bcast_array(a)
    return Run(out=out, hp=hp, opts=opts, config=config, ds=ds, model=model, adam=adam,
               batches=batches, step=step, state=state, folder=folder, resumed=ck is not None,
               world=world)


def rank_threads(world: World, opts: dict, batch_size: int) -> int | None:
    """Row-block threads of this rank: ``--threads``; one rank: None (the model's default);
    several: the cores this rank owns (``World.cores``) on the CPU backends when BLAS runs on
    one thread and ``MINISKETCH_THREADS`` is unset, with blocks of at least
    ``MIN_ROWS_PER_THREAD`` of its rows."""
    from .cpu import get_blas_threads
    from .model import MIN_ROWS_PER_THREAD
    if opts.get("threads") is not None or world.size == 1:
        return opts.get("threads")
    cores = world.cores()                        # every rank takes part
    if opts["backend"] == "cupy" or os.environ.get("MINISKETCH_THREADS", "").strip():
        return None
    if get_blas_threads() != 1:
        return 1
    rows = batch_size // world.size
    return max(1, min(cores, rows // MIN_ROWS_PER_THREAD))


def _repair_best(out: Path, ck, state: TrainState) -> None:
    """best.npz from the checkpoint, when a crash came between writing the checkpoint of the
    best evaluation and writing best.npz (the two then hold the same parameters)."""
    if state.best_step is None or state.best_step != ck.step:
        return
    best = out / "best.npz"
    try:
        if load_checkpoint(best).step == ck.step:
            return
    except ModelError:
        pass                      # absent, or from an earlier evaluation: write it again
    save_checkpoint(best, ck.params, ck.config, step=ck.step)


# ----------------------------------------------------------------------------- evaluation

def evaluate(model, sketches, batch_size: int, max_len: int, scale_factor: float,
             step: int, world: World | None = None) -> dict:
    """Sketch-weighted mean losses over a whole split (training=False), as host floats.

    The in-order batches of ``batching.eval_batches``; under MPI each rank evaluates every
    size-th one and the batches' losses are gathered and added in batch order on every rank."""
    from .strokes import make_batch
    world = world or World()
    mine = []
    for i, start in enumerate(range(0, len(sketches), batch_size)):
        if i % world.size == world.rank:
            chunk = list(sketches[start:start + batch_size])
            losses = model.evaluate(make_batch(chunk, max_len, scale_factor), step=step)
            mine.append((i, len(chunk), [float(losses[k]) for k in LOSS_KEYS]))
    totals = {k: 0.0 for k in LOSS_KEYS}
    n = 0
    for _, n_real, values in sorted(r for part in world.allgather(mine) for r in part):
        for k, v in zip(LOSS_KEYS, values):
            totals[k] += v * n_real
        n += n_real
    return {k: totals[k] / n for k in LOSS_KEYS}


def _all_finite(d: dict) -> bool:
    return all(math.isfinite(v) for v in d.values())


def _fmt(d: dict) -> str:
    return " ".join(f"{k} {d[k]:.4f}" for k in LOSS_KEYS)


# ----------------------------------------------------------------------------- outputs

def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue   # a line cut short by a crash
    return rows


def plot_losses(rows: list[dict], path: Path) -> None:
    """loss.png: train and valid loss, recon and raw KL against the step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(12, 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, ("loss", "recon", "kl")):
        for split, style in (("train", "-"), ("valid", "o-")):
            pts = [(r["step"], r[split][key]) for r in rows if r.get(split)]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, style, label=split, markersize=3)
        ax.set_title(key if key != "kl" else "kl (raw)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.15, top=0.9, wspace=0.2)
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=90)


def render_samples(model, n: int, seed: int, out: Path) -> None:
    """samples.svg and samples.png: n unconditional samples (z ~ N(0, I) when conditional)."""
    from .render import save_drawing
    sketches = model.sample(n, temperature=SAMPLE_TEMPERATURE, z=None, seed=seed)
    labels = None
    if any(len(s) == 0 for s in sketches):    # an early model may end a sketch at once
        labels = ["(empty)" if len(s) == 0 else "" for s in sketches]
        sketches = [s if len(s) else np.array([[0.0, 0.0, 1.0]]) for s in sketches]
    for name in ("samples.svg", "samples.png"):
        save_drawing(sketches, out / name, labels=labels)


# ----------------------------------------------------------------------------- what the run prints

def describe(run: Run) -> str:
    """The run's configuration in four lines (config.json holds all of it)."""
    hp, opts, ds, model = run.hp, run.opts, run.ds, run.model
    if hp.conditional:
        shape = (f"conditional: {hp.enc_model} encoder 2x{hp.enc_rnn_size}, {hp.dec_model} "
                 f"decoder {hp.dec_rnn_size}, z {hp.z_size}, M {hp.num_mixture}")
    else:
        shape = f"decoder-only: {hp.dec_model} decoder {hp.dec_rnn_size}, M {hp.num_mixture}"
    where = f"{model.backend.name} backend"
    if model.backend.name != "cupy":
        where += (f", {model.threads} thread{'s' if model.threads != 1 else ''}"
                  + (" per process" if run.world.size > 1 else ""))
    if model.backend.name == "numba":
        from . import blas
        where += f", products by {blas.describe()}"
    if run.world.comm is not None:
        n = run.world.size
        where += (f"; {n} process{'es' if n > 1 else ''} (data-parallel, gradients summed by "
                  f"{run.world.transport.upper()})")
    return "\n".join([
        f"run    {run.out} (every setting in config.json)",
        f"data   {' + '.join(opts['data'])}: {len(ds.train)} train / {len(ds.valid)} valid / "
        f"{len(ds.test)} test sketches, up to {ds.max_seq_len} points",
        f"model  {shape}: {model.num_params:,} parameters, {np.dtype(model.dtype).name}",
        f"train  {opts['preset']} preset: {opts['steps']} steps of {hp.batch_size} sketches, "
        f"lr {hp.learning_rate:g}, evaluation every {opts['eval_every']}; {where}"])


def warm_up(run: Run) -> None:
    """Run a training step and an evaluation on two sketches, so that the Numba kernels are
    compiled (or loaded from Numba's cache) before the clock starts. Changes no state: the
    gradient buffer is overwritten by the next step, the noise depends only on (seed, step)."""
    from .strokes import make_batch
    batch = make_batch(run.ds.train[:2], run.ds.max_seq_len, run.ds.scale_factor)
    run.model.loss_and_grad(batch, run.step, training=True)
    run.model.evaluate(batch, step=run.step)


def probe_step_seconds(run: Run, repeats: int = 2) -> float:
    """Seconds of one training step (forward and backward of a full batch), the fastest of
    ``repeats``; the batch iterator is left where it was."""
    state = run.batches.get_state()
    batch = run.batches.next_batch()
    run.batches.set_state(state)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        losses = run.world.loss_and_grad(run.model, batch, run.step, training=True)
        float(losses["loss"])                   # wait for a GPU to finish
        times.append(time.perf_counter() - t)
    return min(times)


def duration(seconds: float) -> str:
    """``42s``, ``4m05s``, ``3h12m``, ``2d04h``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class Eta:
    """Time left: steps left x seconds per step + evaluations left x seconds per evaluation.

    Seconds per step start from a measurement before the first step (``probe_step_seconds``)
    and become the mean over the steps run so far once there are ``settle`` of them; the time
    of evaluations is kept apart, so an evaluation does not make the steps look slower."""

    def __init__(self, step_seconds: float, steps: int, eval_every: int, settle: int = 20):
        self.step_seconds, self.steps, self.eval_every = step_seconds, steps, eval_every
        self.settle, self.eval_seconds = settle, 0.0
        self.timed_steps, self.timed_seconds = 0, 0.0

    def step_done(self, seconds: float) -> None:
        self.timed_steps += 1
        self.timed_seconds += seconds
        if self.timed_steps >= self.settle:
            self.step_seconds = self.timed_seconds / self.timed_steps

    def eval_done(self, seconds: float) -> None:
        self.eval_seconds = seconds

    def evals_left(self, step: int) -> int:
        """Evaluations after ``step`` up to and including the last step."""
        n = self.steps // self.eval_every - step // self.eval_every
        return n + (1 if self.steps % self.eval_every else 0)

    def left(self, step: int) -> float:
        return ((self.steps - step) * self.step_seconds
                + self.evals_left(step) * self.eval_seconds)


LONG_RUN_SECONDS = 3600      # runs estimated longer than this get a hint about --steps


# ----------------------------------------------------------------------------- the loop

class Interrupted(BaseException):
    """Raised by the first signal inside :meth:`StopRequest.interruptible` work (a
    BaseException, so that no ``except Exception`` around drawing swallows it)."""


class StopRequest:
    """SIGINT/SIGTERM handler: the first signal asks the loop to stop at a step boundary, or
    cuts interruptible work (evaluation, sampling) short; a second one aborts at once."""

    def __init__(self):
        self.signum = None
        self._old = {}
        self._interruptible = False

    def _handle(self, signum, frame):
        if self.signum is not None:          # second signal: abort now
            raise KeyboardInterrupt
        self.signum = signum
        if self._interruptible:
            raise Interrupted

    @contextmanager
    def interruptible(self, enabled: bool = True):
        """Work that changes no training state and that a first signal may abandon (unless
        ``enabled`` is False: then the signal waits for the next step boundary)."""
        if not enabled:
            yield
            return
        if self.signum is not None:
            raise Interrupted
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def install(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(run: Run) -> int:
    from tqdm import tqdm

    model, hp, opts, st, xp = run.model, run.hp, run.opts, run.state, run.model.xp
    world = run.world
    root = world.is_root

    def say(*a, **kw):                     # rank 0 alone prints
        if root:
            print(*a, **kw)

    def say_bar(*a, **kw):                 # the same, above the progress bar
        if root:
            tqdm.write(*a, **kw)
    steps, eval_every = int(opts["steps"]), int(opts["eval_every"])
    log_every = int(opts["log_every"])
    check_every = 1 if xp is np else log_every      # host backends: reading a loss is free
    eval_bs = max(hp.batch_size, 100)
    nan_step = int(os.environ[NAN_HOOK]) if os.environ.get(NAN_HOOK) else None
    log_path = run.out / "log.jsonl"
    warned = set()

    def warn_once(what, e):
        if what not in warned:
            warned.add(what)
            say_bar(f"warning: {what} ({type(e).__name__}: {e}); training continues",
                    file=sys.stderr)

    def check_params(step):
        if not bool(xp.isfinite(model.flat).all()):
            raise MinisketchError(f"parameters became non-finite by step {step}; not saving them "
                                  f"(the last good checkpoint in {run.out} is intact); try a "
                                  f"lower --learning_rate or --grad_clip")

    def klw(step):                         # the KL weight the loss uses (none if decoder-only)
        return kl_weight(hp, step) if hp.conditional else 0.0

    def save_state(step):
        check_params(step)
        st.seconds = time.perf_counter() - t0
        st.train_sums = {k: float(sums[k]) for k in LOSS_KEYS}
        if root:
            with world.fatal():
                save_checkpoint(run.out / "checkpoint.npz", model.state_dict(), run.config,
                                step=step, optimizer=run.adam.state_dict(),
                                rng={"batches": run.batches.get_state()},
                                train_state=st.to_json())

    sums = {k: xp.zeros((), dtype=np.float64) + st.train_sums[k] for k in LOSS_KEYS}

    def step0_train_loss(step):           # the loss of the batch step 0 trains on
        rng_state = run.batches.get_state()
        try:
            losses = world.loss_and_grad(model, run.batches.next_batch(), step, training=True)
        finally:
            run.batches.set_state(rng_state)
        return {k: float(losses[k]) for k in LOSS_KEYS}

    def evaluation(step):
        """Losses, then (in this order, so a crash anywhere resumes exactly) the log line, the
        checkpoint that records it, best.npz; then the plot and the samples."""
        t_eval = time.perf_counter()
        check_params(step)
        if not world.same_everywhere(model.flat):
            # the ranks' sums gave different bits: continue from rank 0's state
            for a in (model.flat, run.adam.m, run.adam.v):
                world.bcast_array(a)
            warn_once("the processes' parameters differed", ValueError("rank 0's were sent"))
        # under MPI the evaluation is every rank's work: a signal waits for the step boundary
        with stop.interruptible(world.size == 1):
            faults.hit("eval:valid")
            if st.train_count:
                train_avg = {k: float(sums[k]) / st.train_count for k in LOSS_KEYS}
            else:
                train_avg = step0_train_loss(step)
            if not _all_finite(train_avg):
                raise MinisketchError(
                    f"training loss is non-finite ({_fmt(train_avg)}) in the steps before "
                    f"{step}; stopped (the last good checkpoint in {run.out} is intact); try a "
                    f"lower --learning_rate or --grad_clip")
            valid = evaluate(model, run.ds.valid, eval_bs, run.ds.max_seq_len,
                             run.ds.scale_factor, step, world)
            if not _all_finite(valid):
                raise MinisketchError(f"validation loss is non-finite at step {step} "
                                      f"({_fmt(valid)}); stopped (the last good checkpoint in "
                                      f"{run.out} is intact)")
            is_best = st.best_valid_loss is None or valid["loss"] < st.best_valid_loss
            row = {"step": step, "seconds": round(time.perf_counter() - t0, 3),
                   "lr": learning_rate(hp, step), "kl_weight": klw(step),
                   "train": train_avg, "valid": valid}
            if step >= steps and len(run.ds.test):
                row["test"] = test_with_best_params(step, is_best)
        st.last_eval_step = step
        if is_best:
            st.best_valid_loss, st.best_step = valid["loss"], step
        st.train_sums = {k: 0.0 for k in LOSS_KEYS}
        st.train_count = 0
        for k in LOSS_KEYS:
            sums[k] = xp.zeros((), dtype=np.float64)
        if root:
            with world.fatal():
                append_log(row)
        faults.hit("eval:logged")
        save_state(step)
        faults.hit("eval:checkpointed")
        if is_best and root:
            with world.fatal():
                save_checkpoint(run.out / "best.npz", model.state_dict(), run.config, step=step)
        eta.eval_done(time.perf_counter() - t_eval)
        say_bar(f"step {step}: valid {_fmt(valid)}"
                + (f" | test {_fmt(row['test'])} (best params, step {st.best_step})"
                   if "test" in row else "")
                + f" | eval {time.perf_counter() - t_eval:.1f}s")
        if not root:                      # the plot and the samples are rank 0's
            return
        try:
            plot_losses(read_log(log_path), run.out / "loss.png")
        except Exception as e:  # noqa: BLE001 - a plot must not stop training
            warn_once("could not draw loss.png", e)
        if opts["samples"]:
            with stop.interruptible():
                try:
                    faults.hit("eval:samples")
                    render_samples(model, int(opts["samples"]), int(opts["seed"]), run.out)
                except Exception as e:  # noqa: BLE001 - neither may the samples grid
                    warn_once("could not draw the samples grid", e)

    def test_with_best_params(step, is_best):
        """The test losses of the best parameters (this step's, or best.npz's)."""
        if is_best:
            return evaluate(model, run.ds.test, eval_bs, run.ds.max_seq_len,
                            run.ds.scale_factor, step, world)
        current = {n: to_numpy(a).copy() for n, a in model.state_dict().items()}
        if root:
            with world.fatal():
                best = load_checkpoint(run.out / "best.npz")
                load_params(model, best.params, best.path)
        world.bcast_array(model.flat)          # rank 0 read best.npz
        try:
            return evaluate(model, run.ds.test, eval_bs, run.ds.max_seq_len,
                            run.ds.scale_factor, step, world)
        finally:
            load_params(model, current, "current parameters")

    def append_log(row):
        """One log.jsonl line, flushed to disk before the checkpoint that records it."""
        try:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise MinisketchError(f"cannot write {log_path}: {e.strerror or e}") from None

    step = run.step
    if step > steps or (step == steps and st.last_eval_step == step):
        if run.folder is not None:
            run.folder.release(failed=False)
    if step > steps:
        raise MinisketchError(f"{run.out / 'checkpoint.npz'} is already at step {step}, past "
                              f"--steps {steps}; pass a larger --steps to train further")
    if step == steps and st.last_eval_step == step:
        say(f"nothing to do: {run.out} is already at step {steps} (pass a larger --steps "
            f"to train further)")
        return 0
    kernels = {"numba": "the Numba kernels (the first run only; cached afterwards)",
               "cupy": "the CUDA kernels"}.get(model.backend.name)
    t_warm = time.perf_counter()
    if kernels:
        say(f"compiling {kernels} ...", end=" ", flush=True)
    warm_up(run)
    if kernels:
        say(duration(time.perf_counter() - t_warm), flush=True)
    eta = Eta(probe_step_seconds(run), steps, eval_every)
    left = (steps - step) * eta.step_seconds
    say(f"estimate: {eta.step_seconds:.3g} s per step measured here; {steps - step} steps "
        f"take about {duration(left)}, plus {eta.evals_left(step) + (step % eval_every == 0)} "
        f"evaluations", flush=True)
    if left > LONG_RUN_SECONDS:
        faster = "; --backend numba is faster on a CPU" if model.backend.name == "numpy" else ""
        say(f"this is a long run: --steps N trains fewer steps; Ctrl-C stops with a "
            f"checkpoint that --resume --out {run.out} continues{faster}", flush=True)
    stop = StopRequest()
    t0 = time.perf_counter() - float(st.seconds)
    bar = tqdm(total=steps, initial=min(step, steps), file=sys.stderr, unit="step",
               dynamic_ncols=True, mininterval=0.5, desc="train", disable=not root,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                          "[{elapsed}{postfix}]")
    bar.set_postfix_str(f"eta {duration(eta.left(step))}", refresh=False)
    stop.install()
    failed = True
    try:
        while True:
            faults.step = step
            if (step % eval_every == 0 or step == steps) and st.last_eval_step != step:
                rng_state = run.batches.get_state()
                try:
                    evaluation(step)
                except Interrupted:          # saved below, evaluated again on --resume
                    run.batches.set_state(rng_state)
            if step >= steps and st.last_eval_step == step:
                break
            # every rank stops at the same step when any was signalled (one small allreduce)
            signums = [stop.signum] if world.size == 1 else world.allgather(stop.signum)
            signum = next((n for n in signums if n is not None), None)
            if signum is not None:
                save_state(step)
                bar.close()
                name = signal.Signals(signum).name
                say(f"{name}: stopped at step {step}; saved {run.out / 'checkpoint.npz'}; "
                    f"continue with --resume --out {run.out}", file=sys.stderr)
                failed = False
                return 130
            faults.hit("train:step")
            t_step = time.perf_counter()
            batch = run.batches.next_batch()
            if nan_step is not None and step == nan_step:
                batch.strokes[:, 1, 0] = np.nan
            lr = learning_rate(hp, step)
            losses = world.loss_and_grad(model, batch, step, training=True)
            for k in LOSS_KEYS:
                sums[k] = sums[k] + losses[k]
            st.train_count += 1
            if (step + 1) % check_every == 0 and not math.isfinite(float(sums["loss"])):
                when = f"at step {step}" if check_every == 1 else f"by step {step}"
                raise MinisketchError(
                    f"non-finite training loss {when} (loss {float(losses['loss'])}); training "
                    f"stopped and the last good checkpoint in {run.out} is intact; try a lower "
                    f"--learning_rate or --grad_clip")
            run.adam.update(model.flat, model.flat_grad, lr, hp.grad_clip)
            step += 1
            if step % log_every == 0 or step == steps:
                bar.set_postfix_str(
                    f"eta {duration(eta.left(step))} | "
                    + " ".join(f"{k} {float(losses[k]):.3f}" for k in LOSS_KEYS)
                    + f" lr {lr:.2e} klw {klw(step - 1):.3f}", refresh=False)
            eta.step_done(time.perf_counter() - t_step)
            bar.update(1)
        bar.close()
        say(f"done: {steps} steps in {time.perf_counter() - t0:.0f}s; best valid loss "
            f"{st.best_valid_loss:.4f} at step {st.best_step}; outputs in {run.out}")
        failed = False
        return 0
    finally:
        stop.restore()
        bar.close()
        if run.folder is not None:
            run.folder.release(failed)


def main(argv=None) -> int:
    world = get_world()
    if world.comm is not None:
        return main_parallel(argv, world)
    args = build_parser(argv).parse_args(argv)
    run = setup_run(args)
    print(describe(run), flush=True)
    if run.resumed:
        print(f"resuming {run.out / 'checkpoint.npz'} at step {run.step}")
    return train(run)


def main_parallel(argv, world: World) -> int:
    """``main`` on every rank of an MPI job: rank 0 alone prints. An error that every rank
    meets at the same point (a bad option, a non-finite loss) ends the job with rank 0's
    ``error:`` line and status 1; an error of one rank alone, or a second Ctrl-C, ends every
    rank at once (MPI_Abort), leaving the last checkpoint as it was."""
    import traceback
    quiet = open(os.devnull, "w")
    if not world.is_root:
        sys.stdout = quiet
    try:
        try:
            with redirect_stderr(sys.stderr if world.is_root else quiet):
                args = build_parser(argv).parse_args(argv)
        except SystemExit:                 # --help, or a usage error (printed by rank 0)
            world.finish()
            raise
        run = setup_run(args, world)
        print(describe(run), flush=True)
        if run.resumed:
            print(f"resuming {run.out / 'checkpoint.npz'} at step {run.step}")
        rc = train(run)
    except MinisketchError as e:           # every rank raised it at the same point
        if world.is_root:
            print(f"error: {e}", file=sys.stderr)
        rc = 1
    except SystemExit:
        raise
    except BaseException as e:             # noqa: BLE001 - one rank alone: end the job
        if not isinstance(e, (KeyboardInterrupt, MemoryError)):
            traceback.print_exc()
        world.abort(e)
    world.finish()
    return rc


if __name__ == "__main__":
    sys.exit(run_cli(main))
