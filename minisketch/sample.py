"""Command line for sampling and the four uses of a trained model (SPEC section 4).

    python -m minisketch.sample generate    --model M [-n 16] --out sheep.svg
    python -m minisketch.sample reconstruct --model M --data SOURCE --index 3 --out r.png
    python -m minisketch.sample interpolate --model M --data SOURCE --index 3 --index 8 --out i.svg
    python -m minisketch.sample analogy     --model M --data S --index 1 --index 2 --index 3
                                            --out a.svg
    python -m minisketch.sample complete    --model M --input half.json --prefix 0.5 --out c.gif

M is a training output folder, a ``.npz`` model or checkpoint, a magenta.js ``.gen.json``, or
``builtin:shapes`` (the trained model shipped in the package).
Input sketches come from ``--data SOURCE --index I`` (a sketch of the ``--split``, default test)
and ``--input FILE`` (a ``.npz`` written by this command or ``render.save_drawing``, or a
``.json`` list of ``[dx, dy, p]`` rows, or a list of such lists), in the order given.
``--out`` picks the format by its extension: ``.svg`` and ``.png`` (a grid), ``.gif`` (all
sketches drawing at once in a grid, one frame per row of the longest sketch plus a final frame)
or ``.npz`` (the stroke-3 arrays, data units). Pictures show their context, labelled: grey is
what was given, black what the model drew (reconstruct: each input, then its reconstructions;
interpolate: input A, the path, input B; analogy: A, B, C, then the results; complete: the kept
rows in grey, each ending in black). A ``.npz`` holds the model's sketches only.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backend import BACKENDS
from .cli import ArgumentParser
from .errors import DataError, MinisketchError, run_cli
from .fileio import read_regular
from .hparams import MAX_SEQ_LEN

MODES = {
    "generate": "sample new sketches (decoder-only model, or z ~ N(0, I) for a conditional one)",
    "reconstruct": "encode each input sketch (mu) and decode it (conditional model)",
    "interpolate": "decode points on the latent path between two inputs (conditional model)",
    "analogy": "decode z1 - z2 + z3 from three inputs, e.g. full pig - pig head + cat head "
               "(conditional model)",
    "complete": "keep the first part of one input sketch and sample several endings",
}
INPUTS_NEEDED = {"generate": (0, 0), "reconstruct": (1, None), "interpolate": (2, 2),
                 "analogy": (3, 3), "complete": (1, 1)}
DEFAULT_N = {"generate": 16, "reconstruct": 1, "interpolate": 1, "analogy": 4, "complete": 4}
DEFAULT_TEMPERATURE = {"complete": 0.8}      # the paper's value for completion; others 0.5
OUT_FORMATS = (".svg", ".png", ".gif", ".npz")
MAX_SKETCHES = 1000           # sketches one command draws (-n, --steps, inputs)
MAX_TEMPERATURE = 100.0
MAX_INPUT_BYTES = 2 ** 26     # a --input .json file


class _InputAction(argparse.Action):
    """Collect --index and --input into one ordered list of ("index", I) / ("input", PATH)."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        items.append((self.const, values))
        setattr(namespace, self.dest, items)


def build_parser() -> argparse.ArgumentParser:
    common = ArgumentParser(add_help=False)
    g = common.add_argument_group("model and output")
    g.add_argument("--model", required=True, metavar="PATH",
                   help="training output folder (uses best.npz, else checkpoint.npz), a .npz "
                        "model or checkpoint, a magenta.js .gen.json, or builtin:shapes (the "
                        "packaged model)")
    g.add_argument("--out", required=True, metavar="FILE",
                   help="output file: .svg or .png (grid), .gif (all sketches drawing at once), "
                        ".npz (stroke-3 arrays in data units)")
    g.add_argument("--backend", choices=BACKENDS, default="numpy", help="default numpy")
    s = common.add_argument_group("sampling")
    s.add_argument("--temperature", "--tau", type=float, default=None, metavar="TAU",
                   help="tau > 0: pen and mixture logits are divided by tau, sigmas multiplied "
                        "by sqrt(tau); lower is tidier and less varied (default 0.5; complete: "
                        "0.8, as in the paper)")
    s.add_argument("-n", type=int, default=None, metavar="N",
                   help="generate: sketches (16); reconstruct: samples per input (1); "
                        "interpolate: paths (1); analogy: samples (4); complete: endings (4)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--greedy", action="store_true",
                   help="no randomness: most likely pen and component, offset = its mean")
    s.add_argument("--max-len", type=int, default=None, metavar="N",
                   help="most points sampled per sketch (default: the model's max_seq_len; for "
                        "complete, that minus the kept points)")
    i = common.add_argument_group("input sketches (in the order given)")
    i.add_argument("--data", action="append", default=None, metavar="SOURCE",
                   help="dataset the --index values refer to: a sketch-rnn .npz, a QuickDraw "
                        ".ndjson, a class name or builtin:shapes (repeat to concatenate)")
    i.add_argument("--split", choices=("train", "valid", "test"), default="test",
                   help="split of --data the --index values refer to (default test)")
    i.add_argument("--index", dest="inputs", action=_InputAction, const="index", type=int,
                   metavar="I", help="a sketch of --data (0-based; repeatable)")
    i.add_argument("--input", dest="inputs", action=_InputAction, const="input", metavar="FILE",
                   help="sketches from a file: .npz from this command or render.save_drawing, "
                        "or .json: [[dx, dy, p], ...] or a list of those (repeatable)")

    p = ArgumentParser(
        prog="python -m minisketch.sample",
        description="Sample from a sketch-rnn model and use it: generate, reconstruct, "
                    "interpolate, analogy, complete. Run MODE --help for each mode's options.")
    sub = p.add_subparsers(dest="mode", metavar="MODE", required=True)
    for mode, text in MODES.items():
        lo, hi = INPUTS_NEEDED[mode]
        need = ("no input sketches" if hi == 0 else
                f"{lo} input sketch{'es' if lo > 1 else ''}" if lo == hi else
                f"{lo} or more input sketches")
        sp = sub.add_parser(mode, parents=[common], help=text,
                            description=f"{text[0].upper()}{text[1:]}. Takes {need}.")
        sp.set_defaults(inputs=[])
        if mode == "interpolate":
            sp.add_argument("--steps", type=int, default=5,
                            help="points on the path, ends included (default 5)")
            sp.add_argument("--method", choices=("slerp", "lerp"), default="slerp",
                            help="spherical (default, as in the paper) or linear interpolation")
        if mode == "complete":
            sp.add_argument("--prefix", type=float, default=0.5, metavar="F",
                            help="fraction of the input's points kept, in (0, 1] (default 0.5)")
    return p


# ----------------------------------------------------------------------------- inputs

def _json_rows(rows, where: str) -> np.ndarray:
    """A JSON list of [dx, dy, p] rows -> float64 [L, 3], or one DataError."""
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{where}: the sketch is empty; give at least one [dx, dy, p] row")
    if not all(isinstance(r, list) and len(r) == 3 and all(type(v) in (int, float) for v in r)
               for r in rows):
        raise DataError(f"{where}: every row must be [dx, dy, p] with three numbers")
    try:
        return np.asarray(rows, dtype=np.float64)
    except OverflowError:
        raise DataError(f"{where}: a number is too large for a float") from None


def _sketches_from_json(path: Path) -> list[np.ndarray]:
    data = read_regular(path, MAX_INPUT_BYTES, DataError, ".json list of [dx, dy, p] rows")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else e
        raise DataError(f"{path}: not valid JSON ({why}); expected [[dx, dy, p], ...]") from None
    if not isinstance(doc, list):
        raise DataError(f"{path}: expected a list of [dx, dy, p] rows (or a list of such "
                        f"sketches), got {type(doc).__name__}")
    if not doc:
        raise DataError(f"{path}: the sketch is empty; give at least one [dx, dy, p] row")
    nested = isinstance(doc[0], list) and doc[0] and isinstance(doc[0][0], list)
    sketches = doc if nested else [doc]
    return [_json_rows(rows, f"{path}" + (f" sketch {k}" if nested else ""))
            for k, rows in enumerate(sketches)]


def _sketches_from_file(path_text: str) -> list[np.ndarray]:
    path = Path(path_text)
    if not path.exists():
        raise DataError(f"--input {path}: no such file")
    ext = path.suffix.lower()
    if ext == ".json":
        return _sketches_from_json(path)
    if ext == ".npz":
        from .render import load_sketches_npz
        from .safe_npz import NpzReader
        try:
            with NpzReader(path, None, "drawing .npz file") as z:      # lists names only
                names = set(z.names)
        except DataError:
            names = set()                                     # load_sketches_npz says why
        if names & {"train", "valid", "test"}:
            raise DataError(f"--input {path} is a sketch-rnn dataset; pick its sketches with "
                            f"--data {path} --index I (and --split)")
        return [np.asarray(s) for s in load_sketches_npz(path)]
    raise DataError(f"--input {path}: unknown format {ext or '(no extension)'}; give a .npz "
                    f"drawing file or a .json list of [dx, dy, p] rows")


def gather_inputs(args) -> list[np.ndarray]:
    """The input sketches, in command-line order."""
    items = args.inputs or []
    split = None
    if any(kind == "index" for kind, _ in items):
        if not args.data:
            raise DataError("--index needs --data SOURCE (the dataset the index refers to)")
        from .datasets import load_dataset
        ds = load_dataset(args.data if len(args.data) > 1 else args.data[0])
        split = list(getattr(ds, args.split))
    elif args.data:
        raise DataError("--data was given without --index; add --index I to pick sketches")
    out = []
    for kind, value in items:
        if kind == "input":
            out.extend(_sketches_from_file(value))
            if len(out) > MAX_SKETCHES:
                raise DataError(f"more than {MAX_SKETCHES} input sketches (with --input "
                                f"{value}); give fewer")
            continue
        if not 0 <= value < len(split):
            raise DataError(f"--index {value} is out of range: the {args.split} split of "
                            f"{' + '.join(args.data)} has {len(split)} sketches "
                            f"(0..{len(split) - 1})")
        out.append(np.asarray(split[value]))
    from .render import check_sketch
    for k, s in enumerate(out):       # numbers, [L, 3], L >= 1, finite, pen 0 or 1
        check_sketch(s, f"input sketch {k + 1}")
    return out


def check_sizes(args) -> None:
    """Bound what the command line asks for before anything is allocated (MinisketchError
    naming the option and the limit): at most MAX_SKETCHES sketches drawn, MAX_SEQ_LEN points
    per sketch."""
    n = DEFAULT_N[args.mode] if args.n is None else args.n
    if not 1 <= n <= MAX_SKETCHES:
        raise MinisketchError(f"-n must be from 1 to {MAX_SKETCHES}, got {n}")
    if args.max_len is not None and not 1 <= args.max_len <= MAX_SEQ_LEN:
        raise MinisketchError(f"--max-len must be from 1 to {MAX_SEQ_LEN}, got {args.max_len}")
    steps = getattr(args, "steps", None)
    if steps is not None and not 2 <= steps <= MAX_SKETCHES:
        raise MinisketchError(f"--steps must be from 2 to {MAX_SKETCHES}, got {steps}")
    if steps is not None and n * steps > MAX_SKETCHES:
        raise MinisketchError(f"-n {n} paths of --steps {steps} points are {n * steps} "
                              f"sketches; at most {MAX_SKETCHES} are drawn at once")
    if not 0 <= args.seed < 2 ** 63:
        raise MinisketchError(f"--seed must be an integer from 0 to 2**63 - 1, got {args.seed}")
    if args.temperature is not None and not (0 < args.temperature <= MAX_TEMPERATURE):
        raise MinisketchError(f"--temperature must be a number in (0, {MAX_TEMPERATURE:g}], "
                              f"got {args.temperature}")


def _check_count(mode: str, k: int) -> None:
    lo, hi = INPUTS_NEEDED[mode]
    if lo <= k and (hi is None or k <= hi):
        return
    if hi == 0:
        raise MinisketchError(f"{mode} takes no input sketches (got {k}); drop --index/--input")
    want = f"exactly {lo}" if lo == hi else f"at least {lo}"
    raise MinisketchError(f"{mode} needs {want} input sketch{'es' if lo > 1 else ''} "
                          f"(--data SOURCE --index I, or --input FILE), got {k}")


def _check_out(out_text: str) -> Path:
    out = Path(out_text)
    if out.suffix.lower() not in OUT_FORMATS:
        raise MinisketchError(f"--out {out_text}: the file name must end in "
                              f"{', '.join(OUT_FORMATS)}")
    folder = out.parent
    if str(folder) not in ("", ".") and not folder.is_dir():
        raise MinisketchError(f"--out {out_text}: the folder {folder} does not exist")
    if out.is_dir():
        raise MinisketchError(f"--out {out_text} is a folder; give a file name")
    return out


# ----------------------------------------------------------------------------- main

@dataclass
class Picture:
    """What a mode produced: ``outputs``, the model's sketches (what ``.npz`` holds, empty ones
    included), and how to draw them (``.svg``, ``.png``, ``.gif``): ``cells`` in grid order,
    the input sketches beside the outputs, with a label and a count of rows drawn in grey
    (given as input) for each cell, ``ncols`` cells a row (None: a square-ish grid)."""
    outputs: list
    cells: list = field(default_factory=list)
    labels: list | None = None
    grey_rows: list = field(default_factory=list)
    ncols: int | None = None

    def add(self, sketch, label: str = "", grey_rows: int = 0) -> None:
        self.cells.append(sketch)
        self.labels = (self.labels or []) + [label]
        self.grey_rows.append(grey_rows)


def run_mode(model, args, inputs) -> Picture:
    """The sketches a mode produces, laid out with their context."""
    from . import sampling
    mode = args.mode
    n = DEFAULT_N[mode] if args.n is None else args.n
    if n < 1:
        raise MinisketchError(f"-n must be at least 1, got {n}")
    tau = DEFAULT_TEMPERATURE.get(mode, 0.5) if args.temperature is None else args.temperature
    kw = dict(temperature=tau, seed=args.seed, greedy=args.greedy, max_len=args.max_len)
    if mode == "generate":
        out = sampling.sample(model, n=n, **kw)
        return Picture(out, cells=list(out), grey_rows=[0] * n)
    if mode == "reconstruct":                 # a row per input: the input, then n decodings
        out = sampling.reconstruct(model, inputs, n=n, **kw)
        pic = Picture(out, ncols=n + 1)
        for i, sketch in enumerate(inputs):
            pic.add(sketch, "input" if len(inputs) == 1 else f"input {i + 1}", len(sketch))
            for j in range(n):
                pic.add(out[i * n + j], "reconstruction" if n == 1 else f"reconstruction {j + 1}")
        return pic
    if mode == "interpolate":                 # a row per path: A, the path from A to B, B
        if args.steps < 2:
            raise MinisketchError(f"--steps must be at least 2, got {args.steps}")
        za, zb = sampling.encode_mu(model, inputs, "input sketch")
        t = np.linspace(0.0, 1.0, args.steps)
        path = sampling.slerp(za, zb, t) if args.method == "slerp" else sampling.lerp(za, zb, t)
        out = sampling.sample(model, z=np.tile(path, (n, 1)), **kw)
        pic = Picture(out, ncols=args.steps + 2)
        ends = {0: "t=0 (A)", args.steps - 1: "t=1 (B)"}
        for r in range(n):
            pic.add(inputs[0], "input A", len(inputs[0]))
            for k in range(args.steps):
                pic.add(out[r * args.steps + k], ends.get(k, f"t={t[k]:.2f}"))
            pic.add(inputs[1], "input B", len(inputs[1]))
        return pic
    if mode == "analogy":                     # A, B, C, then the samples of z(A) - z(B) + z(C)
        za, zb, zc = sampling.encode_mu(model, inputs, "input sketch")
        out = sampling.sample(model, n=n, z=za - zb + zc, **kw)
        pic = Picture(out, ncols=3 + n)
        for name, sketch in zip("ABC", inputs):
            pic.add(sketch, f"input {name}", len(sketch))
        for sketch in out:
            pic.add(sketch, "A - B + C")
        return pic
    # complete: the kept rows in grey, each ending in black
    if not 0.0 < args.prefix <= 1.0:
        raise MinisketchError(f"--prefix must be a fraction in (0, 1], got {args.prefix}")
    sketch = inputs[0]
    keep = min(len(sketch), max(1, int(round(args.prefix * len(sketch)))))
    out = sampling.complete(model, sketch[:keep], n=n, **kw)
    return Picture(out, cells=list(out), grey_rows=[keep] * n)


EMPTY_CELL = np.array([[0.0, 0.0, 1.0]])     # a dot standing for a sample that drew nothing


def write_picture(pic: Picture, out: Path) -> int:
    """Write ``pic`` to ``out`` (format by extension); returns the model sketches written."""
    from .render import save_drawing
    drawn = [s for s in pic.outputs if len(s)]
    if not drawn:
        raise MinisketchError("every sample ended before drawing any point; nothing to write "
                              "(try another --seed or a higher --temperature)")
    empty = len(pic.outputs) - len(drawn)
    ext = out.suffix.lower()
    if ext == ".npz":
        if empty:
            print(f"warning: {empty} of {len(pic.outputs)} samples ended before drawing any "
                  f"point and are left out", file=sys.stderr)
        save_drawing(drawn, out)
        return len(drawn)
    if empty:
        print(f"warning: {empty} of {len(pic.outputs)} samples ended before drawing any point "
              f"(drawn as a dot labelled '(empty)')", file=sys.stderr)
    cells, labels = [], []
    for k, cell in enumerate(pic.cells):
        label = pic.labels[k] if pic.labels else ""
        if len(cell) == 0:
            cell, label = EMPTY_CELL, "(empty)"
        cells.append(cell)
        labels.append(label)
    kw = {"grey_rows": pic.grey_rows}
    if any(labels):
        kw["labels"] = labels
    if pic.ncols is not None:
        kw["ncols"] = pic.ncols
    if ext == ".gif" and len(cells) > 4:
        kw["cell"] = 128
    save_drawing(cells, out, **kw)
    return len(drawn)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = _check_out(args.out)
    check_sizes(args)
    inputs = gather_inputs(args)
    _check_count(args.mode, len(inputs))
    if args.mode == "reconstruct" and len(inputs) * (args.n or 1) > MAX_SKETCHES:
        raise MinisketchError(f"{len(inputs)} inputs with -n {args.n} are more than the "
                              f"{MAX_SKETCHES} sketches drawn at once")
    from .checkpoint import load_model
    model = load_model(args.model, backend=args.backend)
    n = write_picture(run_mode(model, args, inputs), out)
    print(f"wrote {n} sketch{'es' if n != 1 else ''} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
