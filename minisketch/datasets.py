"""Datasets: ``load_dataset(SOURCE)`` -> :class:`Dataset` with train/valid/test stroke-3 lists.

SOURCE is one of

- a path to a sketch-rnn ``.npz`` (read with :mod:`minisketch.safe_npz`, never unpickling code;
  class labels too when it has them, see :mod:`minisketch.labels`);
- a path to a QuickDraw ``.ndjson`` file (converted with RDP ``epsilon`` and split 90/5/5 by
  ``seed``, see :func:`minisketch.quickdraw.split_sketches`);
- an ``.svg`` file or a folder of them, one class per subfolder (:mod:`minisketch.svg`; RDP
  ``epsilon``, each class split 90/5/5 by ``seed``; files left out are named in a warning);
- a QuickDraw class name such as ``"cat"`` or ``"sea turtle"`` (its sketch-rnn ``.npz`` is
  downloaded once into the cache, see :func:`minisketch.quickdraw.download`);
- ``builtin:shapes`` (or ``builtin:shapes:SEED``; default seed 0), the offline procedural set;
- a list of SOURCEs, concatenated split by split (multi-class models).

Preprocessing follows SPEC section 1: every sketch is clamped to [-1000, 1000] and cast to
float32; empty sketches and, with ``max_seq_len``, longer sketches are dropped (and counted);
``Dataset.max_seq_len`` (N_max) is the longest kept sketch over all three splits; the scale
factor is computed over the kept training sketches of all sources together. Sketches stay in
data units: :func:`~minisketch.strokes.make_batch` divides by the scale factor.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import quickdraw, shapes, svg
from .errors import DataError
from .fileio import open_regular
from .labels import read_labels
from .safe_npz import SPLITS, load_npz
from .strokes import clamp_stroke3, scale_factor

BUILTIN_SHAPES = "builtin:shapes"


@dataclass
class Dataset:
    """Train/valid/test sketches and what a model needs to know about them.

    train, valid, test: lists of float32 stroke-3 arrays ``[L, 3]`` in data units (clamped,
                        not normalized), 1 <= L <= max_seq_len.
    scale_factor:       normalizing factor (population std of the training dx, dy).
    max_seq_len:        N_max, the longest kept sketch over all three splits.
    dropped:            sketches left out (longer than the limit, or empty).
    name:               the SOURCE(s), joined with "+".
    labels:             per split, int64 ``[n]`` index into ``class_names`` of each sketch.
    class_names:        one name per class (a file's stem, a QuickDraw class, a shape).
    """

    train: list
    valid: list
    test: list
    scale_factor: float
    max_seq_len: int
    dropped: int = 0
    name: str = ""
    labels: dict = field(default_factory=dict)
    class_names: list = field(default_factory=list)

    def split(self, name: str) -> list:
        """The list of sketches of split ``name`` ("train", "valid" or "test")."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def class_indices(self, split: str, class_name: str) -> np.ndarray:
        """Indices in ``split`` of the sketches of ``class_name`` (e.g. ``"circle"``)."""
        if class_name not in self.class_names:
            raise DataError(f"no class {class_name!r} in {self.name}; classes: "
                            f"{', '.join(self.class_names)}")
        wanted = [i for i, c in enumerate(self.class_names) if c == class_name]
        return np.flatnonzero(np.isin(self.labels[split], wanted))

    def class_counts(self) -> dict:
        """``{class name: {"train": n, "valid": n, "test": n}}`` (classes of one name merged)."""
        counts = {name: {k: 0 for k in SPLITS} for name in self.class_names}
        for k in SPLITS:
            for index, n in zip(*np.unique(self.labels[k], return_counts=True)):
                counts[self.class_names[int(index)]][k] += int(n)
        return counts

    def info(self) -> dict:
        """Summary as ``python -m minisketch.data info --json`` prints it."""
        return {"name": self.name,
                "splits": {k: len(getattr(self, k)) for k in SPLITS},
                "max_seq_len": int(self.max_seq_len),
                "scale_factor": float(self.scale_factor),
                "dropped": int(self.dropped),
                "classes": list(self.class_names),
                "class_counts": self.class_counts()}


def _looks_like_path(source: str) -> bool:
    return (any(sep in source for sep in ("/", "\\")) or source.startswith(("~", "."))
            or Path(source).suffix.lower() in (".npz", ".ndjson", ".json", ".svg"))


def _is_ndjson(path: Path) -> bool:
    """By the extension, else by the first bytes; refuses anything but a regular file."""
    with open_regular(path, None, DataError, ".npz or .ndjson file") as f:
        head = f.read(64)
    suffix = path.suffix.lower()
    if suffix in (".ndjson", ".json"):
        return True
    if suffix == ".npz":
        return False
    return head.lstrip().startswith(b"{")


def _load_source(source, cache_dir, base_url, epsilon: float, seed: int):
    """One SOURCE -> (splits {name: list}, labels {name: int array}, class names)."""
    text = os.fspath(source)
    if text == BUILTIN_SHAPES or text.startswith(BUILTIN_SHAPES + ":"):
        suffix = text[len(BUILTIN_SHAPES) + 1:]
        if suffix and not suffix.isdigit():
            raise DataError(f"{text!r}: the seed after builtin:shapes: must be a whole number")
        splits, labels = shapes.generate(seed=int(suffix) if suffix else 0)
        return splits, labels, list(shapes.CLASSES)
    if text.startswith("builtin:"):
        raise DataError(f"unknown built-in dataset {text!r}; the built-in one is "
                        f"{BUILTIN_SHAPES}")
    path = Path(text).expanduser()
    if (path.is_file() or path.is_dir()) and svg.is_svg_path(path):
        return _load_svg(path, epsilon, seed)
    if path.exists() and not path.is_dir():          # a FIFO or a device is refused there
        if _is_ndjson(path):
            splits = quickdraw.split_sketches(quickdraw.read_ndjson(path, epsilon), seed)
        else:
            splits = load_npz(path)
            labelled = read_labels(path, {k: len(v) for k, v in splits.items()})
            if labelled is not None:
                return splits, labelled[0], labelled[1]
        name = path.name.split(".")[0] or path.name
    elif path.is_dir():
        raise DataError(f"{path} is a folder without .svg files; give a .npz, .ndjson or "
                        ".svg file, or a folder of .svg drawings")
    elif not _looks_like_path(text) and quickdraw.is_class_name(text):
        splits = load_npz(quickdraw.download(text, cache_dir=cache_dir, base_url=base_url))
        name = text
    elif _looks_like_path(text):
        raise DataError(f"{text} does not exist; give a .npz or .ndjson file, a QuickDraw "
                        f"class name (e.g. cat) or {BUILTIN_SHAPES}")
    else:
        raise DataError(f"{text!r} is neither a file nor a QuickDraw class name (letters, "
                        f"digits, spaces, hyphens) nor {BUILTIN_SHAPES}")
    labels = {k: np.zeros(len(v), dtype=np.int64) for k, v in splits.items()}
    return splits, labels, [name]


def _load_svg(path: Path, epsilon: float, seed: int):
    """An .svg file or folder -> (splits, labels, class names); a warning names what was left
    out."""
    found = svg.read_svg_set([path], epsilon)
    parts = svg.split_svg_set(found, seed)
    left_out = found.left_out + parts.left_out
    if not parts.class_names:
        detail = f": {svg.left_out_listing(left_out, 3)}" if left_out else ""
        raise DataError(f"{path}: no usable drawings{detail}")
    if left_out:
        warnings.warn(f"{path}: left out {len(left_out):,}: {svg.left_out_listing(left_out)}",
                      UserWarning, stacklevel=3)
    if found.fallback:
        warnings.warn(f"{path}: {len(found.fallback):,} file(s) without a stroked element, "
                      f"drawn from their filled shapes' outlines: {', '.join(found.fallback[:5])}",
                      UserWarning, stacklevel=3)
    return parts.splits, parts.labels, parts.class_names


def load_dataset(source: str | os.PathLike | Sequence[str | os.PathLike],
                 max_seq_len: int | None = None, cache_dir: str | os.PathLike | None = None,
                 base_url: str | None = None, epsilon: float = 2.0, seed: int = 0) -> Dataset:
    """Load one SOURCE or a list of them (see the module docstring) -> :class:`Dataset`.

    max_seq_len: drop sketches with more points (None: keep all); counted in ``dropped``.
    cache_dir, base_url: where QuickDraw class downloads go and come from.
    epsilon:     RDP epsilon for ``.ndjson`` sources (0: no simplification).
    seed:        split seed for ``.ndjson`` sources (``builtin:shapes:SEED`` has its own).
    """
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not sources:
        raise DataError("no data source given")
    if max_seq_len is not None and int(max_seq_len) < 1:
        raise DataError(f"max_seq_len must be a positive integer, got {max_seq_len}")
    merged = {k: [] for k in SPLITS}
    merged_labels = {k: [] for k in SPLITS}
    class_names: list[str] = []
    dropped = 0
    for src in sources:
        splits, labels, names = _load_source(src, cache_dir, base_url, epsilon, seed)
        for k in SPLITS:
            for s, lab in zip(splits[k], labels[k]):
                if len(s) == 0 or (max_seq_len is not None and len(s) > int(max_seq_len)):
                    dropped += 1
                    continue
                merged[k].append(clamp_stroke3(s))
                merged_labels[k].append(int(lab) + len(class_names))
        class_names += names
    name = "+".join(os.fspath(s) for s in sources)
    for k in SPLITS:
        if not merged[k]:
            limit = f" with at most {max_seq_len} points" if max_seq_len is not None else ""
            raise DataError(f"{name}: no {k} sketches{limit} are left; "
                            "raise --max-seq-len or use another source")
    return Dataset(train=merged["train"], valid=merged["valid"], test=merged["test"],
                   scale_factor=scale_factor(merged["train"]),
                   max_seq_len=max(len(s) for k in SPLITS for s in merged[k]),
                   dropped=dropped, name=name,
                   labels={k: np.asarray(v, dtype=np.int64) for k, v in merged_labels.items()},
                   class_names=class_names)


class PackedSketches(Sequence):
    """Stroke-3 sketches stored end to end in one array: ``points [P, 3]`` float32 and
    ``starts [n + 1]`` int64, sketch i being the view ``points[starts[i]:starts[i + 1]]``.

    A read-only list of float32 arrays for the code that reads a split (indexing, ``len``,
    iteration; a slice is a list of views) without a Python object per sketch: 12 bytes a point
    plus 8 a sketch. The arrays may live in memory shared between processes (``mpi.py``)."""

    def __init__(self, points: np.ndarray, starts: np.ndarray):
        self.points, self.starts = points, starts

    @classmethod
    def pack(cls, sketches: Sequence[np.ndarray]) -> "PackedSketches":
        lengths = np.fromiter((len(s) for s in sketches), dtype=np.int64, count=len(sketches))
        starts = np.zeros(len(sketches) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        points = np.empty((int(starts[-1]), 3), dtype=np.float32)
        for i, s in enumerate(sketches):
            points[starts[i]:starts[i + 1]] = s
        return cls(points, starts)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"sketch {i} of {n}")
        i %= n
        return self.points[self.starts[i]:self.starts[i + 1]]


def load_parts(sources, max_seq_len: int | None = None, **kw) -> list:
    """``load_dataset`` of each SOURCE alone, its splits packed (:class:`PackedSketches`) as soon
    as it is loaded: a Dataset per source, one source's lists of arrays alive at a time.
    ``merge_parts`` joins them into what ``load_dataset(sources)`` gives. (Each source must then
    keep sketches in every split under ``max_seq_len``.)"""
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    parts = []
    for source in sources:
        ds = load_dataset(source, max_seq_len=max_seq_len, **kw)
        for k in SPLITS:
            setattr(ds, k, PackedSketches.pack(getattr(ds, k)))
        parts.append(ds)
    return parts


def merged_sizes(parts) -> dict:
    """{split: (points, sketches)} of the merged parts."""
    return {k: (sum(len(getattr(p, k).points) for p in parts),
                sum(len(getattr(p, k)) for p in parts)) for k in SPLITS}


def merge_parts(parts: list, arrays: dict | None = None) -> Dataset:
    """The parts of ``load_parts`` as one Dataset, as ``load_dataset`` of all the sources would
    give it: splits concatenated in source order, labels after the previous parts' classes,
    N_max the longest, the scale factor of all training offsets (one part's own, else the parts'
    means and squared deviations combined, equal to ``strokes.scale_factor`` to rounding).
    arrays: {split: (points [P, 3] float32, starts [n + 1] int64)} to fill (memory shared
    between processes, say), sized by ``merged_sizes``; None: new arrays. Each part's arrays
    are dropped from ``parts`` once copied."""
    sizes = merged_sizes(parts)
    if arrays is None:
        arrays = {k: (np.empty((sizes[k][0], 3), np.float32), np.empty(sizes[k][1] + 1, np.int64))
                  for k in SPLITS}
    sf = parts[0].scale_factor
    if len(parts) > 1:
        count, mean, m2 = 0, 0.0, 0.0            # over every training dx and dy (Chan et al.)
        for p in parts:
            xy = p.train.points[:, :2].astype(np.float64)
            n, mu = xy.size, float(xy.mean())
            d = mu - mean
            mean += d * n / (count + n)
            m2 += float(((xy - mu) ** 2).sum()) + d * d * count * n / (count + n)
            count += n
        sf = math.sqrt(m2 / count)
    labels, names = {k: [] for k in SPLITS}, []
    for k in SPLITS:
        points, starts = arrays[k]
        at, row = 0, 0
        starts[0] = 0
        for p in parts:
            packed = getattr(p, k)
            n_points, n = len(packed.points), len(packed)
            points[at:at + n_points] = packed.points
            starts[row + 1:row + n + 1] = packed.starts[1:] + at
            at, row = at + n_points, row + n
            setattr(p, k, None)
    for p in parts:
        labels_offset = len(names)
        for k in SPLITS:
            labels[k].append(p.labels[k] + labels_offset)
        names += p.class_names
    return Dataset(**{k: PackedSketches(*arrays[k]) for k in SPLITS}, scale_factor=sf,
                   max_seq_len=max(p.max_seq_len for p in parts),
                   dropped=sum(p.dropped for p in parts),
                   name="+".join(p.name for p in parts),
                   labels={k: np.concatenate(labels[k]) for k in SPLITS}, class_names=names)


def download_sources(sources, cache_dir=None, base_url=None) -> None:
    """Download into the cache the QuickDraw classes among ``sources`` that ``load_dataset``
    would download (so that one process can fetch them while others wait, then all read)."""
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    for source in sources:
        text = os.fspath(source)
        if text.startswith("builtin:") or Path(text).expanduser().exists():
            continue
        if not _looks_like_path(text) and quickdraw.is_class_name(text):
            quickdraw.download(text, cache_dir=cache_dir, base_url=base_url)
