"""Read (and write) sketch-rnn ``.npz`` files without ever running code from the file.

A sketch-rnn ``.npz`` is a zip of ``train.npy``, ``valid.npy`` and ``test.npy``, each a 1-D
*object* array of stroke-3 arrays. NumPy stores object arrays as Python pickles (often written
by Python 2), and ``np.load(allow_pickle=True)`` would call whatever function the pickle names.
Here the zip and the ``.npy`` header are parsed by hand, numeric arrays are read with
``allow_pickle=False``, and object arrays go through :class:`RestrictedUnpickler`, whose
``find_class`` hands out only the few NumPy callables an ndarray pickle needs and refuses
everything else with a :class:`~minisketch.errors.DataError`. Every element is then checked to
be a finite numeric ``[n, 3]`` array.

    splits = load_npz("aaron_sheep.npz")      # {"train": [int16 [n, 3], ...], "valid": ..., ...}
    write_npz("out.npz", splits)              # atomic; readable here and by np.load(...latin1)
"""
from __future__ import annotations

import ast
import io
import os
import pickle
import zlib
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import DataError
from .fileio import atomic_open

SPLITS = ("train", "valid", "test")
MAX_MEMBER_BYTES = 2 ** 31          # refuse zip members that claim to unpack to more than 2 GiB
MAX_RECONSTRUCT_SIZE = 2 ** 26      # refuse pickled arrays created with more elements than this
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")   # local file header; empty archive

# The callables NumPy's ndarray pickles refer to, taken from live objects (so no private module
# is imported by name): ndarray.__reduce__ -> (_reconstruct, (ndarray, shape, dtype-code), state).
_RECONSTRUCT = np.ndarray((0,), np.int8).__reduce__()[0]
_SCALAR = np.float64(0.0).__reduce__()[0]


class _Reconstruct:
    """``_reconstruct`` restricted to plain ndarrays of a bounded size.

    The callables handed to a pickle are instances of slot-less classes (no ``__dict__``), so a
    BUILD opcode in the file cannot set attributes on them.
    """

    __slots__ = ()

    def __call__(self, subtype, shape, dtype_code):
        if subtype is not np.ndarray:
            raise DataError("pickled array has a subtype other than numpy.ndarray")
        dims = shape if isinstance(shape, tuple) else (shape,)
        if not all(isinstance(d, int) and d >= 0 for d in dims) or \
                int(np.prod(dims, dtype=np.float64)) > MAX_RECONSTRUCT_SIZE:
            raise DataError(f"pickled array has an unusable shape {shape!r}")
        return _RECONSTRUCT(subtype, shape, dtype_code)


class _Scalar:
    """``scalar`` restricted to numeric dtypes (what NumPy writes for pickled int/float scalars)."""

    __slots__ = ()

    def __call__(self, dtype, *args):
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
            raise DataError("pickled scalar is not a number")
        return _SCALAR(dtype, *args)


class _FromBuffer:
    """``_frombuffer(buf, dtype, shape, order)``: NumPy's protocol-5 array pickles, numeric only."""

    __slots__ = ()

    def __call__(self, buf, dtype, shape, order="C"):
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or order not in "CF" \
                or not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)):
            raise DataError("pickled buffer array is not a plain numeric array")
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


class _Latin1Encode:
    """``_codecs.encode(text, "latin1")``: how Python 3 writes bytes in a protocol-2 pickle."""

    __slots__ = ()

    def __call__(self, text, encoding="utf-8", *rest):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or rest:
            raise DataError("pickled bytes use an encoding other than latin1")
        return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy.core.multiarray", "scalar"): _Scalar(),
    ("numpy._core.multiarray", "scalar"): _Scalar(),
    ("numpy", "ndarray"): np.ndarray,       # built-in types: immutable
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.numeric", "_frombuffer"): _FromBuffer(),
    ("numpy._core.numeric", "_frombuffer"): _FromBuffer(),
    ("_codecs", "encode"): _Latin1Encode(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild NumPy arrays and dtypes (and latin1 bytes).

    ``find_class`` is the only way a pickle reaches a Python callable (GLOBAL, STACK_GLOBAL, INST,
    OBJ and the EXT opcodes all go through it); anything outside :data:`_ALLOWED` raises
    DataError before it is imported, so no code named by the file runs. ``persistent_load`` is
    left at its default (refuses persistent ids).
    """

    def find_class(self, module, name):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise DataError(f"the file contains a pickled object of type '{module}.{name}', "
                            "which is not allowed: only numeric arrays are loaded "
                            "(refusing to run code from the file)")
        return fn


def _sniff(path: Path, head: bytes, size: int) -> None:
    """Raise a DataError that says what the file is when it is not a zip archive."""
    if size == 0:
        raise DataError(f"{path} is empty (0 bytes); download or create it again")
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")) or \
            (text.startswith(b"<") and b"<html" in head.lower()):
        raise DataError(f"{path} is an HTML page, not a .npz file (a download that returned an "
                        "error page?); download it again")
    if head.startswith(_ZIP_MAGIC):
        raise DataError(f"{path} is truncated or corrupt (an incomplete zip archive); "
                        "download it again")
    raise DataError(f"{path} is not a .npz file (not a zip archive)")


def _parse_npy_header(buf: bytes, where: str) -> tuple[dict, int]:
    """Parse a ``.npy`` header; returns ``(header dict, offset of the data)``."""
    if len(buf) < 10 or not buf.startswith(_NPY_MAGIC):
        raise DataError(f"{where} is not a .npy array (bad magic bytes)")
    major = buf[6]
    if major == 1:
        hlen, start = int.from_bytes(buf[8:10], "little"), 10
    elif major in (2, 3):
        if len(buf) < 12:
            raise DataError(f"{where} is truncated (incomplete .npy header)")
        hlen, start = int.from_bytes(buf[8:12], "little"), 12
    else:
        raise DataError(f"{where} has an unsupported .npy version {major}")
    if len(buf) < start + hlen:
        raise DataError(f"{where} is truncated (incomplete .npy header)")
    text = buf[start:start + hlen].decode("utf8" if major == 3 else "latin1")
    try:
        header = ast.literal_eval(text)       # literals only: no names, no calls
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise DataError(f"{where} has an unreadable .npy header") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"} or \
            not isinstance(header["shape"], tuple):
        raise DataError(f"{where} has an unreadable .npy header")
    return header, start + hlen


def safe_unpickle(payload: bytes, where: str = "pickle"):
    """Unpickle with :class:`RestrictedUnpickler` (latin1 for Python-2 pickles).

    Every failure is a DataError: a refused global, a truncated stream, or any malformed input.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, RecursionError, OverflowError) as e:
        if isinstance(e, EOFError) or "truncated" in str(e) or "ran out" in str(e):
            raise DataError(f"{where} is truncated (the pickled data ends early); "
                            "download it again") from None
        raise DataError(f"{where} holds an unreadable pickle ({type(e).__name__}: {e})") from None


def _read_object_array(payload: bytes, shape: tuple, where: str) -> np.ndarray:
    """An object array's pickle -> ndarray, checked against the shape in its header."""
    arr = safe_unpickle(payload, where)
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape):
        raise DataError(f"{where}: the pickled data is not the {shape} array its header says")
    return arr


def _read_npy(buf: bytes, where: str) -> np.ndarray:
    """One ``.npy`` member -> ndarray; object arrays via the restricted unpickler."""
    header, offset = _parse_npy_header(buf, where)
    descr = header["descr"]
    if descr in ("|O", "O"):
        return _read_object_array(buf[offset:], header["shape"], where)
    try:
        return np.lib.format.read_array(io.BytesIO(buf), allow_pickle=False)
    except (ValueError, TypeError, EOFError, OSError) as e:
        msg = str(e)
        if "EOF" in msg or "read" in msg.lower() or "size" in msg.lower():
            raise DataError(f"{where} is truncated ({msg}); download it again") from None
        raise DataError(f"{where} is not a numeric array ({msg})") from None


def _sketch_list(arr: np.ndarray, where: str) -> list[np.ndarray]:
    """A split's array -> list of stroke-3 arrays, checking every element."""
    if arr.dtype == object:
        if arr.ndim != 1:
            raise DataError(f"{where} has shape {arr.shape}; expected a 1-D array of sketches")
        items = list(arr)
    elif arr.ndim == 3:      # np.array() of equal-length sketches stacks them into [N, L, 3]
        items = list(arr)
    elif arr.ndim == 1 and arr.size == 0:
        items = []
    else:
        raise DataError(f"{where} has shape {arr.shape} and dtype {arr.dtype}; expected a "
                        "1-D object array of [n, 3] stroke-3 arrays")
    out = []
    for i, s in enumerate(items):
        if not isinstance(s, np.ndarray):
            raise DataError(f"{where} sketch {i} is a {type(s).__name__}, not an array")
        if s.dtype.kind not in "biuf":
            raise DataError(f"{where} sketch {i} has dtype {s.dtype}; expected numbers "
                            "(stroke-3 rows dx, dy, pen)")
        if s.ndim != 2 or s.shape[1] != 3:
            raise DataError(f"{where} sketch {i} has shape {s.shape}; expected [n, 3] "
                            "stroke-3 rows (dx, dy, pen)")
        if s.dtype.kind == "f" and not np.isfinite(s).all():
            raise DataError(f"{where} sketch {i} contains NaN or infinite values")
        out.append(s)
    return out


def load_npz(path: str | os.PathLike, keys: Sequence[str] = SPLITS) -> dict[str, list[np.ndarray]]:
    """Read a sketch-rnn ``.npz`` safely -> ``{key: [stroke-3 arrays]}`` (dtypes as stored).

    Raises DataError with a distinct message for: a missing, empty, HTML, non-zip or truncated
    file; a missing key; a pickle naming anything but NumPy array reconstruction; elements
    that are not numeric, not ``[n, 3]``, or contain NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist (or is not a file)")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
    if size == 0 or not head.startswith(_ZIP_MAGIC):
        _sniff(path, head, size)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {Path(n).stem if n.endswith(".npy") else n: n for n in zf.namelist()}
            missing = [k for k in keys if k not in members]
            if missing:
                found = ", ".join(sorted(members)) or "none"
                raise DataError(f"{path} has no {', '.join(repr(k) for k in missing)} array "
                                f"(arrays found: {found}); a sketch-rnn .npz holds "
                                f"{', '.join(keys)}")
            out = {}
            for k in keys:
                info = zf.getinfo(members[k])
                if info.file_size > MAX_MEMBER_BYTES:
                    raise DataError(f"{path}: '{k}' claims {info.file_size} bytes "
                                    "uncompressed; refusing to unpack it")
                buf = zf.read(info)
                out[k] = _sketch_list(_read_npy(buf, f"{path}: '{k}'"), f"{path}: '{k}'")
    except zipfile.BadZipFile as e:
        if size and head.startswith(_ZIP_MAGIC):
            raise DataError(f"{path} is truncated or corrupt (an incomplete zip archive: "
                            f"{str(e).rstrip('.').lower()}); download it again") from None
        _sniff(path, head, size)
    except (EOFError, zlib.error, zipfile.LargeZipFile, NotImplementedError) as e:
        raise DataError(f"{path} is truncated or unreadable ({type(e).__name__}: {e}); "
                        "download it again") from None
    except OSError as e:
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise
        raise DataError(f"{path} is truncated or corrupt ({e}); download it again") from None
    return out


def npz_keys(path: str | os.PathLike) -> list[str]:
    """Array names in a zip archive, or DataError when the file is not a readable zip
    (used to check downloads without unpacking them)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
    if size == 0 or not head.startswith(_ZIP_MAGIC):
        _sniff(path, head, size)
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DataError(f"{path} is corrupt (bad checksum in {bad}); download it again")
            return [Path(n).stem if n.endswith(".npy") else n for n in zf.namelist()]
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"{path} is truncated or corrupt ({e}); download it again") from None


def _object_array(sketches: Sequence[np.ndarray]) -> np.ndarray:
    """1-D object array holding the given arrays (never stacked into a 3-D array)."""
    arr = np.empty(len(sketches), dtype=object)
    for i, s in enumerate(sketches):
        arr[i] = s
    return arr


def write_npz(path: str | os.PathLike, splits: Mapping[str, Sequence[np.ndarray]]) -> Path:
    """Write ``{key: [stroke-3 arrays]}`` as a sketch-rnn ``.npz`` (object arrays), atomically.

    The file is written to a temporary name in the same directory and moved into place with
    ``os.replace``, so a failure never leaves a partial file. It loads with :func:`load_npz` and
    with the reference ``np.load(path, allow_pickle=True, encoding='latin1')``.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DataError(f"cannot write {path}: folder {folder} does not exist")
    with atomic_open(path) as f:
        np.savez(f, **{k: _object_array(v) for k, v in splits.items()})
    return path
