"""What every lesson needs before it can teach: paths, fast mode, threads, seeds, a trained model.

A lesson's first line is ``from course import ...``, before NumPy is imported, because the thread
counts below must be set before NumPy's BLAS and Numba start: the lessons' matrices are small,
and one BLAS thread per process is faster than several fighting over a shared machine.

    FAST          True when MINISKETCH_FAST=1: small sizes and few steps (the tests use it)
    ROOT, OUT     the repository, and lessons/out/ where figures go (ignored by git)
    SHARED        ../shared/data beside the repository: third-party data, when present
    rng(seed)     a seeded NumPy generator, so every run of a lesson prints the same numbers
    trained_model lesson 10's model in full mode when it has been trained, else builtin:shapes
    savefig       tight layout, write OUT/name, close: one line per figure
    drawable      sketches with 0 rows (an untrained model may stop at once) as a dot
"""
import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # export one of them yourself to try more threads

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # this checkout of minisketch, installed or not

import matplotlib                             # noqa: E402  (after the thread counts)
matplotlib.use("Agg")                         # figures go to files; no window opens
import numpy as np                            # noqa: E402

FAST = os.environ.get("MINISKETCH_FAST", "0") == "1"
OUT = ROOT / "lessons" / "out"
OUT.mkdir(parents=True, exist_ok=True)
SHARED = ROOT.parent / "shared" / "data"
LESSON10_MODEL = OUT / "10_model.npz"         # written by lesson 10's full run


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def trained_model(dtype: str = "float32"):
    """(model, name): lesson 10's model when a full run has saved it (and this run is full), else
    the model shipped in the package, trained on the same builtin:shapes data."""
    import minisketch as ms
    if not FAST and LESSON10_MODEL.is_file():
        return ms.load_model(LESSON10_MODEL, dtype=dtype), "lesson 10's model"
    return ms.load_model("builtin:shapes", dtype=dtype), "builtin:shapes"


def savefig(fig, name: str, dpi: int = 100) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path = OUT / name
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def drawable(sketches) -> list:
    return [s if len(s) else np.zeros((1, 3), np.float32) for s in sketches]


def _strokes(s3, grey_rows: int = 0):
    """(points [n, 2], grey) pieces of a stroke-3 sketch; rows < grey_rows are grey."""
    s3 = np.asarray(s3, dtype=np.float64).reshape(-1, 3)
    xy = np.cumsum(s3[:, :2], axis=0)
    starts = np.r_[0, np.flatnonzero(s3[:-1, 2] > 0.5) + 1]
    ends = np.r_[starts[1:], len(s3)]
    for a, b in zip(starts, ends):
        if a < grey_rows:
            yield xy[a:min(b, grey_rows)], True
        if b > grey_rows:
            yield xy[max(a, grey_rows - 1):b], False


def save_grid(sketches, name: str, title: str, ncols: int = 8, labels=None, grey_rows=None,
              cell: float = 1.1) -> Path:
    """A titled grid of stroke-3 sketches (each fitted to its cell, y down as in the data)."""
    import matplotlib.pyplot as plt
    sketches = drawable(sketches)
    ncols = min(ncols, len(sketches))
    nrows = -(-len(sketches) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + 0.45),
                             squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k >= len(sketches):
            continue
        for pts, grey in _strokes(sketches[k], grey_rows[k] if grey_rows else 0):
            ax.plot(pts[:, 0], pts[:, 1], "o-" if len(pts) == 1 else "-", ms=2, lw=1.2,
                    color="0.65" if grey else "k", solid_capstyle="round")
        ax.set_aspect("equal", adjustable="datalim")
        ax.invert_yaxis()
        if labels:
            ax.set_title(labels[k], fontsize=7, pad=2)
    fig.suptitle(title, fontsize=9)
    return savefig(fig, name)
