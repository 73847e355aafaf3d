"""Read (and write) ``.npz`` files that may be hostile, without running code or blowing up.

A sketch-rnn ``.npz`` is a zip of ``train.npy``, ``valid.npy`` and ``test.npy``, each a 1-D
*object* array of stroke-3 arrays, stored as a Python pickle (often written by Python 2). The
zip and the ``.npy`` headers are parsed here, and every declared size (zip member, header, shape,
pickled array) is checked against the bytes really there and against the limits below before
anything is allocated. Pickles go through :class:`RestrictedUnpickler`: the names it resolves
return inert placeholders, and only a plain numeric array (or a 1-D object array of them) is
ever built, by this module, from checked shapes, dtypes and byte counts. Nothing a file names
is called, and no NumPy constructor sees the file's arguments. Checkpoints and drawing files
(numeric members only) are read with :func:`load_arrays`.

    splits = load_npz("aaron_sheep.npz")      # {"train": [int16 [n, 3], ...], "valid": ..., ...}
    arrays = load_arrays("model.npz")         # {name: numeric array}; pickles refused
    write_npz("out.npz", splits)              # atomic; readable here and by np.load(...latin1)
"""
from __future__ import annotations

import ast
import io
import math
import os
import pickle
import re
import struct
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import DataError
from .fileio import atomic_open, open_regular

SPLITS = ("train", "valid", "test")
MAX_HEADER_BYTES = 10_000     # a .npy header (NumPy's own limit)
MAX_MEMBER_BYTES = 2 ** 29    # a dataset's zip member, uncompressed (512 MiB)
MAX_POINTS = 2 ** 25          # stroke-3 rows in one split (aaron_sheep's train: 0.93 million)
MAX_RATIO = 200               # zip members past RATIO_FLOOR may expand at most this much
RATIO_FLOOR = 2 ** 24         # (sketch data compresses about 3x; a zip bomb 1000x)
MAX_ARRAY_BYTES = 2 ** 31     # a member of a checkpoint or drawing file (2 GiB)
MAX_DIMS = 32
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")   # local file header; empty archive
_NUMERIC = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248])$")
_OBJECT = ("|O", "O", "<O", ">O", "=O")


class NotZipError(DataError):
    """The file is not a zip archive at all (empty, HTML, text, ...), as opposed to a broken one."""


# ----------------------------------------------------------------------------- restricted pickles

_budget = threading.local()   # bytes an unpickling may still materialize (see safe_unpickle)


def _charge(nbytes: int) -> None:
    left = _budget.left - nbytes
    if left < 0:
        raise DataError("the pickled arrays add up to more bytes than the pickle holds "
                        "(repeated references?); refusing to build them")
    _budget.left = left


def _shape(shape) -> tuple[int, ...]:
    dims = shape if isinstance(shape, tuple) else (shape,)
    if len(dims) > MAX_DIMS or not all(type(d) is int and d >= 0 for d in dims):
        raise DataError(f"an array has an unusable shape {shape!r}")
    return dims


def _raw_bytes(raw) -> bytes:
    if isinstance(raw, str):                  # Python 2 pickles: str decoded as latin1
        try:
            return raw.encode("latin1")
        except UnicodeEncodeError:
            raise DataError("an array's data is text, not bytes") from None
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    raise DataError(f"an array's data is a {type(raw).__name__}, not bytes")


class _DtypeSpec:
    """What ``numpy.dtype(code, align, copy)`` gives a pickle: a numeric or object dtype code,
    whose byte order the pickle's BUILD may set once."""

    __slots__ = ("dtype", "_built")

    def __init__(self, code):
        if not isinstance(code, str) or not (_NUMERIC.match(code) or code in ("O4", "O8")):
            raise DataError(f"a pickled array has dtype {code!r}; expected numbers (only plain "
                            "numeric arrays are read)")
        self.dtype = np.dtype(object) if code.startswith("O") else np.dtype(code)
        self._built = False

    def __setstate__(self, state):
        if self._built or not isinstance(state, tuple) or len(state) not in (8, 9) or \
                state[1] not in ("<", ">", "|", "=") or any(x is not None for x in state[2:5]) \
                or (len(state) == 9 and state[8] is not None):
            raise DataError("a pickled dtype has a state other than a plain number's")
        self._built = True
        if state[1] in "<>" and self.dtype != object:
            self.dtype = self.dtype.newbyteorder(state[1])


class _ArraySpec:
    """What ``_reconstruct`` gives a pickle: an empty placeholder that its BUILD fills once,
    through :func:`_array_from_state`."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if self.array is not None:
            raise DataError("a pickled array's state is set twice")
        self.array = _array_from_state(state)


def _element(x):
    """An item of a pickled object array: arrays must be finished and numeric."""
    if isinstance(x, _ArraySpec):
        if x.array is None:
            raise DataError("a pickled array has no data")
        x = x.array
    if isinstance(x, np.ndarray) and x.dtype == object:
        raise DataError("a pickled object array holds another object array")
    return x


def _array_from_state(state) -> np.ndarray:
    """An ndarray state ``([1,] shape, dtype, fortran, data)`` -> a checked NumPy array."""
    if not isinstance(state, tuple) or len(state) not in (4, 5) or \
            (len(state) == 5 and state[0] != 1):
        raise DataError("a pickled array has an unusable state")
    shape, dtype, fortran, raw = state[-4:]
    shape = _shape(shape)
    if not isinstance(dtype, _DtypeSpec) or not isinstance(fortran, (bool, int)):
        raise DataError("a pickled array has an unusable dtype")
    n = math.prod(shape)
    order = "F" if fortran else "C"
    if dtype.dtype == object:
        if not isinstance(raw, list) or len(raw) != n:
            raise DataError(f"a pickled object array of shape {shape} holds "
                            f"{len(raw) if isinstance(raw, list) else 'no'} items")
        items = [_element(x) for x in raw]
        _charge(8 * n + sum(x.nbytes for x in items if isinstance(x, np.ndarray)))
        arr = np.empty(n, dtype=object)
        for i, x in enumerate(items):
            arr[i] = x
        return arr.reshape(shape, order=order)
    data = _raw_bytes(raw)
    if len(data) != n * dtype.dtype.itemsize:
        raise DataError(f"a pickled array of shape {shape} and dtype {dtype.dtype} needs "
                        f"{n * dtype.dtype.itemsize} bytes but holds {len(data)}")
    _charge(len(data))
    return np.frombuffer(data, dtype=dtype.dtype).reshape(shape, order=order).copy()


class _Callable:
    """Base of what ``find_class`` returns: slot-less (a BUILD cannot set attributes on it)."""

    __slots__ = ()


class _NdarrayType(_Callable):
    """``numpy.ndarray``: only passed to ``_reconstruct``; calling it is refused (it would
    build an array over bytes the file chooses)."""

    __slots__ = ()

    def __call__(self, *args):
        raise DataError("the pickle calls numpy.ndarray directly; only arrays pickled by "
                        "NumPy are read")


class _Reconstruct(_Callable):
    __slots__ = ()

    def __call__(self, subtype, shape=None, dtype_code=None):
        if subtype is not _NDARRAY:
            raise DataError("a pickled array has a subtype other than numpy.ndarray")
        return _ArraySpec()


class _Dtype(_Callable):
    __slots__ = ()

    def __call__(self, code, align=False, copy=False):
        return _DtypeSpec(code)


class _Scalar(_Callable):
    """``scalar(dtype, bytes)``: a pickled NumPy number."""

    __slots__ = ()

    def __call__(self, dtype, raw=None):
        if not isinstance(dtype, _DtypeSpec) or dtype.dtype == object:
            raise DataError("a pickled scalar is not a number")
        data = _raw_bytes(raw)
        if len(data) != dtype.dtype.itemsize:
            raise DataError("a pickled scalar has the wrong number of bytes")
        _charge(len(data))
        return np.frombuffer(data, dtype=dtype.dtype)[0]


class _FromBuffer(_Callable):
    """``_frombuffer(buf, dtype, shape, order)``: NumPy's protocol-5 array pickles."""

    __slots__ = ()

    def __call__(self, buf, dtype, shape, order="C"):
        if not isinstance(dtype, _DtypeSpec) or dtype.dtype == object or order not in ("C", "F"):
            raise DataError("a pickled buffer array is not a plain numeric array")
        if isinstance(buf, pickle.PickleBuffer):
            buf = bytes(buf)
        spec = _ArraySpec()
        spec.array = _array_from_state((shape, dtype, order == "F", buf))
        return spec


class _Latin1Encode(_Callable):
    """``_codecs.encode(text, "latin1")``: how Python 3 writes bytes in a protocol-2 pickle."""

    __slots__ = ()

    def __call__(self, text, encoding="utf-8", *rest):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or rest:
            raise DataError("pickled bytes use an encoding other than latin1")
        return text.encode("latin1")


_NDARRAY = _NdarrayType()
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy.core.multiarray", "scalar"): _Scalar(),
    ("numpy._core.multiarray", "scalar"): _Scalar(),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype(),
    ("numpy.core.numeric", "_frombuffer"): _FromBuffer(),
    ("numpy._core.numeric", "_frombuffer"): _FromBuffer(),
    ("_codecs", "encode"): _Latin1Encode(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild plain numeric NumPy arrays (and object arrays of them).

    ``find_class`` is the only way a pickle reaches a Python callable (GLOBAL, STACK_GLOBAL, INST,
    OBJ and the EXT opcodes all go through it); anything outside :data:`_ALLOWED` raises
    DataError before it is imported, and what is allowed returns this module's placeholders
    (see the module docstring). ``persistent_load`` is left at its default (refuses ids).
    ``budget``: the bytes the arrays built may add up to (see :func:`safe_unpickle`).
    """

    def __init__(self, file, *, budget: int = MAX_MEMBER_BYTES, **kw):
        super().__init__(file, **kw)
        self.budget = int(budget)

    def find_class(self, module, name):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise DataError(f"the file contains a pickled object of type '{module}.{name}', "
                            "which is not allowed: only numeric arrays are loaded "
                            "(refusing to run code from the file)")
        return fn

    def load(self):
        _budget.left = self.budget
        try:
            obj = super().load()
        finally:
            del _budget.left
        if isinstance(obj, _ArraySpec):
            if obj.array is None:
                raise DataError("a pickled array has no data")
            return obj.array
        return obj


def safe_unpickle(payload: bytes, where: str = "pickle"):
    """Unpickle with :class:`RestrictedUnpickler` (latin1 for Python-2 pickles).

    The arrays built may add up to at most three times the payload's size (a pickle's arrays
    hold their own bytes, so only repeated references go past that). Every failure is a
    DataError: a refused global, a truncated stream, or any malformed input.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(payload), encoding="latin1",
                                   budget=3 * len(payload) + 65536).load()
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, RecursionError, OverflowError) as e:
        if isinstance(e, EOFError) or "truncated" in str(e) or "ran out" in str(e):
            raise DataError(f"{where} is truncated (the pickled data ends early); "
                            "download it again") from None
        raise DataError(f"{where} holds an unreadable pickle ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- zip and .npy

def _sniff(path: Path, head: bytes, size: int) -> None:
    """Raise a DataError that says what the file is when it is not a zip archive."""
    if size == 0:
        raise NotZipError(f"{path} is empty (0 bytes); download or create it again")
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")) or \
            (text.startswith(b"<") and b"<html" in head.lower()):
        raise NotZipError(f"{path} is an HTML page, not a .npz file (a download that returned "
                          "an error page?); download it again")
    if head.startswith(_ZIP_MAGIC):
        raise DataError(f"{path} is truncated or corrupt (an incomplete zip archive); "
                        "download it again")
    raise NotZipError(f"{path} is not a .npz file (not a zip archive)")


def _parse_npy_header(text: str, where: str) -> tuple[np.dtype | None, tuple, bool]:
    """A ``.npy`` header -> (numeric dtype, or None for an object array; shape; fortran)."""
    try:
        header = ast.literal_eval(text)       # literals only: no names, no calls
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        raise DataError(f"{where} has an unreadable .npy header") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"} or \
            not isinstance(header["shape"], tuple) or \
            not isinstance(header["fortran_order"], bool):
        raise DataError(f"{where} has an unreadable .npy header")
    shape, descr = header["shape"], header["descr"]
    if len(shape) > MAX_DIMS or not all(type(d) is int and d >= 0 for d in shape):
        raise DataError(f"{where} has an unusable shape {shape!r} in its .npy header")
    if descr in _OBJECT:
        return None, shape, header["fortran_order"]
    if not isinstance(descr, str) or not _NUMERIC.match(descr):
        raise DataError(f"{where} has dtype {descr!r}; only plain numbers (bool, int, uint, "
                        "float) and object arrays of them are read")
    return np.dtype(descr), shape, header["fortran_order"]


def _check_member(info: zipfile.ZipInfo, where: str, max_bytes: int) -> None:
    """Refuse a member whose declared size is past the limit or not what its bytes can hold."""
    if info.file_size > max_bytes:
        raise DataError(f"{where} claims {info.file_size:,} bytes uncompressed, more than the "
                        f"{max_bytes:,} allowed; refusing to unpack it")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise DataError(f"{where} is corrupt (its sizes disagree: {info.file_size} and "
                        f"{info.compress_size} bytes)")
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise DataError(f"{where} would expand from {info.compress_size:,} to "
                        f"{info.file_size:,} bytes, far more than sketch data compresses "
                        f"(a zip bomb?); refusing to unpack it")


def _read_exactly(f, n: int, where: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DataError(f"{where} is truncated (its .npy data ends early); download it again")
    return data


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, max_bytes: int,
                 max_points: int | None):
    """One ``.npy`` member -> (numeric ndarray, or None and the pickle's bytes for objects).

    The header is read first and its declared size compared with the member's before the data
    is read (numeric data goes straight into the array it fills).
    """
    _check_member(info, where, max_bytes)
    with zf.open(info) as f:
        head = f.read(10)
        if len(head) < 10 or not head.startswith(_NPY_MAGIC):
            raise DataError(f"{where} is not a .npy array (bad magic bytes)")
        major = head[6]
        if major == 1:
            hlen, start = int.from_bytes(head[8:10], "little"), 10
        elif major in (2, 3):
            head += _read_exactly(f, 2, where)
            hlen, start = int.from_bytes(head[8:12], "little"), 12
        else:
            raise DataError(f"{where} has an unsupported .npy version {major}")
        if hlen > MAX_HEADER_BYTES:
            raise DataError(f"{where} has a .npy header of {hlen:,} bytes; at most "
                            f"{MAX_HEADER_BYTES:,} are allowed")
        if start + hlen > info.file_size:
            raise DataError(f"{where} is truncated (incomplete .npy header)")
        raw = _read_exactly(f, hlen, where)
        try:
            text = raw.decode("utf8" if major == 3 else "latin1")
        except UnicodeDecodeError:
            raise DataError(f"{where} has an unreadable .npy header") from None
        dtype, shape, fortran = _parse_npy_header(text, where)
        rest = info.file_size - start - hlen
        if dtype is None:
            return None, shape, _read_exactly(f, rest, where)
        need = math.prod(shape) * dtype.itemsize
        if need != rest:
            raise DataError(f"{where} declares a {list(shape)} {dtype} array ({need:,} bytes) "
                            f"but holds {rest:,} bytes of data; the file is corrupt")
        if max_points is not None and len(shape) == 3 and shape[0] * shape[1] > max_points:
            raise DataError(f"{where} holds {shape[0] * shape[1]:,} points, more than the "
                            f"{max_points:,} a split may have")
        arr = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
        view = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")
        got = 0
        while got < need:
            k = f.readinto(view[got:])
            if not k:
                raise DataError(f"{where} is truncated (its .npy data ends early); "
                                "download it again")
            got += k
        return (arr.T if fortran else arr), shape, None


# RuntimeError covers zipfile's NotImplementedError (an unsupported compression method)
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, zipfile.LargeZipFile, struct.error,
               RuntimeError, OSError, ValueError)


def _zip_error(path, e) -> DataError:
    if isinstance(e, RuntimeError) and "encrypted" in str(e):
        return DataError(f"{path} is encrypted (password-protected zip); not a .npz file")
    return DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); "
                     "download it again")


class NpzReader:
    """An open ``.npz`` (a regular file, at most ``max_file_bytes``): ``names`` lists its arrays
    (member names without ``.npy``), :meth:`read` reads one. Use it as a context manager.

    Raises ``file_error`` for a missing, special or too large file, NotZipError when the file is
    not a zip archive, DataError for anything else wrong.
    """

    def __init__(self, path, max_file_bytes: int | None = None, what: str = ".npz file",
                 file_error=DataError):
        self.path = Path(path)
        self._f = open_regular(self.path, max_file_bytes, file_error, what)
        try:
            head = self._f.read(512)
            size = os.fstat(self._f.fileno()).st_size
            if size == 0 or not head.startswith(_ZIP_MAGIC):
                _sniff(self.path, head, size)
            self._f.seek(0)
            self._zf = zipfile.ZipFile(self._f)
            self._infos = {}
            for info in self._zf.infolist():
                name = info.filename
                self._infos.setdefault(name[:-4] if name.endswith(".npy") else name, info)
        except BaseException as e:
            self._f.close()
            if isinstance(e, zipfile.BadZipFile):
                raise DataError(f"{self.path} is truncated or corrupt (an incomplete zip "
                                f"archive: {str(e).rstrip('.').lower()}); download it "
                                f"again") from None
            if isinstance(e, _ZIP_ERRORS) and not isinstance(e, DataError):
                raise _zip_error(self.path, e) from None
            raise
        self.names = list(self._infos)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._zf.close()
        self._f.close()

    def read(self, name: str, max_bytes: int = MAX_ARRAY_BYTES, max_points: int | None = None,
             objects: bool = False) -> np.ndarray:
        """Array ``name``: numeric, or (with ``objects``) an object array from its pickle."""
        where = f"{self.path}: '{name}'"
        try:
            arr, shape, payload = _read_member(self._zf, self._infos[name], where, max_bytes,
                                               max_points)
        except DataError:
            raise
        except _ZIP_ERRORS as e:
            raise _zip_error(self.path, e) from None
        if arr is not None:
            return arr
        if not objects:
            raise DataError(f"{where} is a pickled object array; only numeric arrays are "
                            "read from this file")
        return _object_array(payload, shape, where)


def _object_array(payload: bytes, shape: tuple, where: str) -> np.ndarray:
    """An object array's pickle -> ndarray, checked against the shape in its header."""
    arr = safe_unpickle(payload, where)
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape):
        raise DataError(f"{where}: the pickled data is not the {shape} array its header says")
    return arr


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
    points = 0
    for i, s in enumerate(items):
        if not isinstance(s, np.ndarray):
            raise DataError(f"{where} sketch {i} is a {type(s).__name__}, not an array")
        if s.dtype.kind not in "biuf":
            raise DataError(f"{where} sketch {i} has dtype {s.dtype}; expected numbers "
                            "(stroke-3 rows dx, dy, pen)")
        if s.ndim != 2 or s.shape[1] != 3:
            raise DataError(f"{where} sketch {i} has shape {s.shape}; expected [n, 3] "
                            "stroke-3 rows (dx, dy, pen)")
        points += len(s)
        if points > MAX_POINTS:
            raise DataError(f"{where} holds more than {MAX_POINTS:,} points; refusing it")
    if items:
        _check_values(items, where)
    return items


def _check_values(items: list[np.ndarray], where: str) -> None:
    """Finite offsets and pen values 0 or 1 (one vectorized pass; the loop only names one)."""
    flat = np.concatenate([s.reshape(-1, 3) for s in items]).astype(np.float64, copy=False)
    finite = bool(np.isfinite(flat).all())
    pen_ok = bool(((flat[:, 2] == 0) | (flat[:, 2] == 1)).all()) if finite else True
    if finite and pen_ok:
        return
    for i, s in enumerate(items):
        if not np.isfinite(s).all():
            raise DataError(f"{where} sketch {i} contains NaN or infinite values")
        bad = s[(s[:, 2] != 0) & (s[:, 2] != 1), 2]
        if len(bad):
            raise DataError(f"{where} sketch {i} has pen value {bad[0]:g}; the third column "
                            "of stroke-3 is 0 (pen stays down) or 1 (pen lifts)")


def load_npz(path: str | os.PathLike, keys: Sequence[str] = SPLITS) -> dict[str, list[np.ndarray]]:
    """Read a sketch-rnn ``.npz`` safely -> ``{key: [stroke-3 arrays]}`` (dtypes as stored).

    Raises DataError with a distinct message for: a missing, special, empty, HTML, non-zip or
    truncated file; a missing key; a member or header past its limits or larger than its data;
    a pickle naming anything but NumPy array reconstruction; elements that are not numeric,
    not ``[n, 3]``, contain NaN/inf or pen values other than 0 and 1.
    """
    path = Path(path)
    with NpzReader(path, None, "sketch-rnn .npz file") as z:
        missing = [k for k in keys if k not in z.names]
        if missing:
            found = ", ".join(sorted(z.names)[:20]) or "none"
            raise DataError(f"{path} has no {', '.join(repr(k) for k in missing)} array "
                            f"(arrays found: {found}); a sketch-rnn .npz holds "
                            f"{', '.join(keys)}")
        return {k: _sketch_list(z.read(k, MAX_MEMBER_BYTES, MAX_POINTS, objects=True),
                                f"{path}: '{k}'") for k in keys}


def load_arrays(path: str | os.PathLike, max_file_bytes: int | None = None,
                what: str = ".npz file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` of plain numeric arrays -> ``{name: array}`` (no pickles).

    Each member's declared size must match its data (see :class:`NpzReader`); a pickled
    (object) member is refused. DataError otherwise.
    """
    with NpzReader(path, max_file_bytes, what) as z:
        return {name: z.read(name) for name in z.names}


def npz_keys(path: str | os.PathLike) -> list[str]:
    """Array names in a zip archive, or DataError when the file is not a readable zip
    (used to check downloads without unpacking them)."""
    path = Path(path)
    with NpzReader(path) as z:
        try:
            bad = z._zf.testzip()
        except _ZIP_ERRORS as e:
            raise DataError(f"{path} is truncated or corrupt ({e}); download it again") from None
        if bad is not None:
            raise DataError(f"{path} is corrupt (bad checksum in {bad}); download it again")
        return list(z.names)


def _as_object_array(sketches: Sequence[np.ndarray]) -> np.ndarray:
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
        np.savez(f, **{k: _as_object_array(v) for k, v in splits.items()})
    return path
