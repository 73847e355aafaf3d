"""Class labels stored beside the three splits of a sketch-rnn ``.npz``.

A labelled ``.npz`` holds, next to ``train``, ``valid`` and ``test`` (object arrays of stroke-3),
``train_labels``, ``valid_labels``, ``test_labels`` (int64 ``[n]``, an index into the class
names per sketch) and ``class_names`` (a unicode array ``[C]``). Readers that know only the three
splits (the reference sketch-rnn code) ignore the extra arrays; they are plain numeric or text
arrays, read here with ``allow_pickle=False``.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import DataError
from .fileio import atomic_open
from .safe_npz import SPLITS

NAMES_KEY = "class_names"
MAX_LABEL_BYTES = 1 << 28        # refuse label arrays that claim to unpack to more than this


def labels_key(split: str) -> str:
    """The array holding the labels of ``split``: ``train_labels``, ..."""
    return f"{split}_labels"


def write_labelled_npz(path: str | os.PathLike, splits: Mapping[str, Sequence[np.ndarray]],
                       labels: Mapping[str, np.ndarray], class_names: Sequence[str]) -> Path:
    """Write the splits (object arrays, as :func:`minisketch.safe_npz.write_npz` does), their
    labels and the class names in one ``.npz``, atomically."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DataError(f"cannot write {path}: folder {folder} does not exist")
    arrays = {}
    for k in SPLITS:
        objects = np.empty(len(splits[k]), dtype=object)
        for i, s in enumerate(splits[k]):
            objects[i] = s
        arrays[k] = objects
        lab = np.asarray(labels[k], dtype=np.int64)
        if lab.shape != (len(splits[k]),):
            raise DataError(f"{k}: {lab.shape} labels for {len(splits[k])} sketches")
        arrays[labels_key(k)] = lab
    arrays[NAMES_KEY] = np.array([str(n) for n in class_names], dtype=str)
    with atomic_open(path) as f:
        np.savez(f, **arrays)
    return path


def _read_plain(zf: zipfile.ZipFile, member: str, where: str) -> np.ndarray:
    info = zf.getinfo(member)
    if info.file_size > MAX_LABEL_BYTES:
        raise DataError(f"{where} claims {info.file_size:,} bytes; refusing to unpack it")
    try:
        return np.lib.format.read_array(io.BytesIO(zf.read(info)), allow_pickle=False)
    except (ValueError, TypeError, EOFError, OSError) as e:
        raise DataError(f"{where} is not a plain array ({e})") from None


def read_labels(path: str | os.PathLike, sizes: Mapping[str, int]):
    """``(labels per split, class names)`` of a labelled ``.npz``, or None when it has none.

    ``sizes``: the number of sketches in each split, to check the labels against. DataError
    when the label arrays are missing, of the wrong shape or type, or out of range.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
            if NAMES_KEY not in members:
                return None
            names = _read_plain(zf, members[NAMES_KEY], f"{path}: '{NAMES_KEY}'")
            if names.ndim != 1 or names.dtype.kind != "U" or len(names) == 0:
                raise DataError(f"{path}: '{NAMES_KEY}' must be a 1-D array of text")
            labels = {}
            for k in SPLITS:
                key = labels_key(k)
                if key not in members:
                    raise DataError(f"{path} has class names but no '{key}' array")
                lab = _read_plain(zf, members[key], f"{path}: '{key}'")
                if lab.shape != (int(sizes[k]),) or lab.dtype.kind not in "iu":
                    raise DataError(f"{path}: '{key}' must hold one integer per {k} sketch "
                                    f"({sizes[k]}), got {lab.dtype} {list(lab.shape)}")
                if len(lab) and (lab.min() < 0 or lab.max() >= len(names)):
                    raise DataError(f"{path}: '{key}' has labels outside 0..{len(names) - 1}")
                labels[k] = lab.astype(np.int64)
    except zipfile.BadZipFile as e:
        raise DataError(f"{path} is not a readable .npz ({e})") from None
    return labels, [str(n) for n in names]
