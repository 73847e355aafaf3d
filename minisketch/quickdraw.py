"""QuickDraw: ``.ndjson`` drawings to stroke-3, and downloads into a local cache.

Drawings (one JSON object per line, the drawing under ``"drawing"``):

- *simplified* data: per stroke ``[[x0, x1, ...], [y0, y1, ...]]``, absolute pixel coordinates
  already aligned to the top-left, scaled to 0..255 and RDP-simplified (epsilon 2.0);
- *raw* data: per stroke ``[[x...], [y...], [t...]]`` (t = milliseconds), in screen pixels.

:func:`drawing_to_stroke3` converts either one as SPEC section 1 says: concatenate the strokes,
take differences of absolute points (the first point is an offset from the origin), ``p = 1`` on
the last point of each stroke, optionally RDP per stroke. Raw drawings are first brought into
the simplified data's frame the way QuickDraw made it: shifted so the minimum x and y are 0 and
scaled uniformly so the longer side spans 255 (aspect kept); then RDP with ``epsilon``. All
coordinates are rounded to whole pixels (after RDP), so the result is int16 like the
sketch-rnn sets.

Downloads (:func:`download`) use ``urllib`` only, write to a temporary file in the cache folder
and move it into place with ``os.replace`` after checking it: a Content-Length mismatch
(truncated), an HTML body, a ``.npz`` that is not a zip with train/valid/test or an ``.ndjson``
whose first line is not a drawing are errors, and nothing is left behind. A file already in the
cache is reused without touching the network.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import DataError
from .fileio import open_regular
from .safe_npz import SPLITS, npz_keys, write_npz
from .strokes import polylines_to_stroke3, rdp

NPZ_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/sketchrnn"
NDJSON_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full/simplified"
FORMATS = ("npz", "ndjson")
CACHE_ENV = "MINISKETCH_CACHE"
SIMPLIFIED_SIZE = 255.0             # simplified drawings span 0..255
VALID_FRACTION = 0.05               # .ndjson splits: 90% train, 5% valid, 5% test
TEST_FRACTION = 0.05
_CHUNK = 1 << 16
# QuickDraw class names: letters, digits, spaces, hyphens, apostrophes ("sea turtle", "t-shirt",
# "The Eiffel Tower"); never dots or slashes, so a name can not be mistaken for a path.
_CLASS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 '\-]{0,63}$")


# --------------------------------------------------------------------------------------------
# drawings -> stroke-3


def _numbers(values, where: str) -> np.ndarray:
    """A JSON list of numbers -> float64 array, or DataError (nested lists, text, bools, NaN,
    integers too large for a float)."""
    if not all(type(v) in (int, float) for v in values):
        raise DataError(f"{where} has coordinates that are not numbers")
    try:
        out = np.array(values, dtype=np.float64)
    except (OverflowError, ValueError):
        raise DataError(f"{where} has coordinates too large for a float") from None
    if not np.isfinite(out).all():
        raise DataError(f"{where} contains NaN or infinite coordinates")
    return out


def _strokes_of(drawing, where: str) -> tuple[list[np.ndarray], bool]:
    """Validate a drawing; returns (list of [n, 2] float64 absolute polylines, is_raw)."""
    if not isinstance(drawing, list):
        raise DataError(f"{where}: 'drawing' is a {type(drawing).__name__}, expected a list "
                        "of strokes [[x...], [y...]]")
    lines, raw = [], False
    for k, stroke in enumerate(drawing):
        if not isinstance(stroke, list) or len(stroke) not in (2, 3) or \
                not all(isinstance(c, list) for c in stroke):
            raise DataError(f"{where}: stroke {k} is not [[x...], [y...]] or "
                            "[[x...], [y...], [t...]]")
        if len(set(len(c) for c in stroke)) != 1:
            raise DataError(f"{where}: stroke {k} has lists of different lengths")
        raw = raw or len(stroke) == 3
        cols = [_numbers(c, f"{where}: stroke {k}") for c in stroke]
        lines.append(np.stack(cols[:2], axis=1).reshape(-1, 2))
    return lines, raw


def drawing_to_stroke3(drawing, epsilon: float = 2.0, where: str = "drawing") -> np.ndarray:
    """One QuickDraw drawing (list of strokes, simplified or raw) -> stroke-3 int16 ``[L, 3]``.

    Raw drawings (strokes with a time list) are shifted to start at 0 and scaled uniformly to
    span 0..255 first. ``epsilon > 0`` simplifies each stroke with RDP (the paper used 2.0);
    coordinates are then rounded to whole pixels. Empty strokes are skipped; a drawing with no
    points gives a ``[0, 3]`` array.
    """
    lines, raw = _strokes_of(drawing, where)
    lines = [line for line in lines if len(line)]
    if not lines:
        return np.zeros((0, 3), dtype=np.int16)
    if raw:
        allxy = np.concatenate(lines)
        lo = allxy.min(axis=0)
        extent = float((allxy.max(axis=0) - lo).max())
        scale = SIMPLIFIED_SIZE / extent if extent > 0 else 1.0
        lines = [(line - lo) * scale for line in lines]
    if epsilon and epsilon > 0:
        lines = [rdp(line, epsilon) for line in lines]
    s3 = polylines_to_stroke3([np.rint(line) for line in lines])
    if not np.isfinite(s3).all():
        raise DataError(f"{where}: coordinates span more than a float can hold")
    if np.abs(s3).max() > np.iinfo(np.int16).max:
        raise DataError(f"{where}: coordinates do not fit int16 (over 32767 pixels)")
    return s3.astype(np.int16)


def read_ndjson(path: str | os.PathLike | Iterable[str], epsilon: float = 2.0,
                limit: int | None = None) -> list[np.ndarray]:
    """Read QuickDraw ``.ndjson`` (a path, or an iterable of lines) -> list of stroke-3 int16.

    Blank lines and drawings without points are skipped; a line that is not JSON, or has no
    valid ``"drawing"``, is a DataError naming the line. ``limit`` stops after that many
    sketches.
    """
    name = str(path) if isinstance(path, (str, os.PathLike)) else "ndjson input"
    if isinstance(path, (str, os.PathLike)):
        p = Path(path)
        f = open_regular(p, None, DataError, "QuickDraw .ndjson file")
        if os.fstat(f.fileno()).st_size == 0:
            f.close()
            raise DataError(f"{p} is empty (0 bytes)")
        lines_in = io.TextIOWrapper(f, encoding="utf-8", errors="strict")
    else:
        lines_in = path
    out = []
    try:
        for lineno, line in enumerate(lines_in, start=1):
            if not line.strip():
                continue
            where = f"{name} line {lineno}"
            if line.lstrip().startswith("<"):
                raise DataError(f"{name} is an HTML page, not QuickDraw .ndjson "
                                "(a download that returned an error page?)")
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                why = getattr(e, "msg", None) or ("nested too deeply" if isinstance(
                    e, RecursionError) else str(e))
                raise DataError(f"{where} is not valid JSON ({why}); is the file truncated "
                                "or not QuickDraw .ndjson?") from None
            if not isinstance(obj, dict) or "drawing" not in obj:
                raise DataError(f"{where} has no \"drawing\" field; not QuickDraw .ndjson")
            s3 = drawing_to_stroke3(obj["drawing"], epsilon, where)
            if len(s3):
                out.append(s3)
            if limit is not None and len(out) >= limit:
                break
    except UnicodeDecodeError:
        raise DataError(f"{name} is not UTF-8 text; not QuickDraw .ndjson") from None
    finally:
        if lines_in is not path:
            lines_in.close()
    if not out:
        raise DataError(f"{name} holds no drawings")
    return out


def split_sketches(sketches: Sequence[np.ndarray], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Deterministic train/valid/test split of one list (90/5/5 %, at least one each).

    The order is ``np.random.default_rng(seed).permutation(n)``; test takes the first
    ``n_test`` of it, valid the next ``n_valid``, train the rest.
    """
    n = len(sketches)
    if n < 3:
        raise DataError(f"only {n} drawing(s): a train/valid/test split needs at least 3")
    n_valid = max(1, int(round(n * VALID_FRACTION)))
    n_test = max(1, int(round(n * TEST_FRACTION)))
    order = np.random.default_rng(seed).permutation(n)
    pick = lambda idx: [sketches[i] for i in idx]   # noqa: E731
    return {"train": pick(order[n_test + n_valid:]),
            "valid": pick(order[n_test:n_test + n_valid]),
            "test": pick(order[:n_test])}


def convert_ndjson(in_path: str | os.PathLike, out_path: str | os.PathLike,
                   epsilon: float = 2.0, max_seq_len: int | None = None,
                   seed: int = 0) -> dict:
    """``.ndjson`` -> sketch-rnn ``.npz`` (int16 object arrays), written atomically.

    Sketches longer than ``max_seq_len`` are dropped before the split. Returns a summary dict:
    ``splits`` (sizes), ``dropped``, ``max_seq_len`` (longest kept), ``path``.
    """
    sketches = read_ndjson(in_path, epsilon)
    dropped = 0
    if max_seq_len is not None:
        if int(max_seq_len) < 1:
            raise DataError(f"max_seq_len must be positive, got {max_seq_len}")
        kept = [s for s in sketches if len(s) <= int(max_seq_len)]
        dropped = len(sketches) - len(kept)
        sketches = kept
    if not sketches:
        raise DataError(f"no drawing in {in_path} has at most {max_seq_len} points")
    splits = split_sketches(sketches, seed)
    path = write_npz(out_path, splits)
    return {"path": str(path), "splits": {k: len(v) for k, v in splits.items()},
            "dropped": dropped, "max_seq_len": max(len(s) for s in sketches)}


# --------------------------------------------------------------------------------------------
# downloads


def is_class_name(name: str) -> bool:
    """Whether ``name`` looks like a QuickDraw class ("cat", "sea turtle", "t-shirt")."""
    return bool(_CLASS_RE.match(name))


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$MINISKETCH_CACHE``, else ``~/.cache/minisketch``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "minisketch"


def class_url(name: str, fmt: str = "npz", base_url: str | None = None) -> str:
    """URL of a class file: ``{base}/{name}.{fmt}``, the name URL-encoded (a space is ``%20``)."""
    base = base_url or (NPZ_BASE_URL if fmt == "npz" else NDJSON_BASE_URL)
    return f"{base.rstrip('/')}/{urllib.parse.quote(name)}.{fmt}"


def cached_path(name: str, fmt: str = "npz", cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`download` keeps a class file (the name as is, spaces included)."""
    return resolve_cache_dir(cache_dir) / f"{name}.{fmt}"


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip().lower()
    return text.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml")) or \
        (text.startswith(b"<") and b"<html" in text)


def _check_download(tmp: Path, fmt: str, url: str) -> None:
    """Integrity check of a finished download (before it enters the cache)."""
    with open(tmp, "rb") as f:
        head = f.read(4096)
    if not head:
        raise DataError(f"{url} returned an empty body")
    if _looks_like_html(head):
        raise DataError(f"{url} returned an HTML page instead of a .{fmt} file "
                        "(a proxy or error page?); try again later or download it by hand")
    if fmt == "npz":
        try:
            keys = npz_keys(tmp)
        except DataError:
            raise DataError(f"{url} did not return a valid .npz (not a complete zip archive)") \
                from None
        missing = [k for k in SPLITS if k not in keys]
        if missing:
            raise DataError(f"{url} is a zip without {', '.join(missing)}; not a sketch-rnn "
                            ".npz")
    else:
        first = head.split(b"\n", 1)[0]
        if b"\n" not in head and len(head) == 4096:
            with open(tmp, "rb") as f:
                first = f.readline()
        try:
            obj = json.loads(first)
        except (ValueError, RecursionError):
            raise DataError(f"{url} did not return QuickDraw .ndjson (first line is not "
                            "JSON)") from None
        if not isinstance(obj, dict) or "drawing" not in obj:
            raise DataError(f"{url} did not return QuickDraw .ndjson (no \"drawing\" in the "
                            "first line)")


def download(name: str, cache_dir: str | os.PathLike | None = None,
             base_url: str | None = None, fmt: str = "npz", progress: bool | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch one QuickDraw class file into the cache (once) and return its path.

    name:      class name, e.g. ``"cat"`` or ``"sea turtle"``.
    cache_dir: folder (default :func:`resolve_cache_dir`); created when missing.
    base_url:  server folder (default: the sketch-rnn sets for npz, the simplified drawings for
               ndjson).
    fmt:       ``"npz"`` or ``"ndjson"``.
    progress:  tqdm bar on stderr; None shows it only when stderr is a terminal.

    DataError (one clear line) when offline, on HTTP 404 (unknown class) or another HTTP error,
    a truncated body (fewer bytes than Content-Length), an HTML page, or a file that fails the
    format check. The cache never holds a partial file.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not is_class_name(name):
        raise DataError(f"{name!r} is not a QuickDraw class name (letters, digits, spaces, "
                        "hyphens; e.g. cat, 'sea turtle')")
    dest = cached_path(name, fmt, cache_dir)
    if dest.is_file():
        return dest
    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the cache folder {folder}: {e.strerror or e}") from None
    url = class_url(name, fmt, base_url)
    request = urllib.request.Request(url, headers={"User-Agent": "minisketch"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise DataError(f"unknown QuickDraw class {name!r}: {url} does not exist (HTTP "
                            "404); check the spelling (e.g. cat, 'sea turtle')") from None
        raise DataError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DataError(f"cannot reach {url} ({e.reason}); are you offline? Check the network "
                        "or use a local file") from None
    except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
        raise DataError(f"cannot reach {url} ({type(e).__name__}: {e}); check the network") \
            from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        with response, os.fdopen(fd, "wb") as out:
            if "text/html" in (response.headers.get("Content-Type") or "").lower():
                raise DataError(f"{url} returned an HTML page instead of a .{fmt} file "
                                "(a proxy or error page?); try again later")
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            got = _copy_with_progress(response, out, length, name, url, progress)
            if length is not None and got != length:
                raise DataError(f"download of {url} is truncated ({got} of {length} bytes); "
                                "try again")
            out.flush()
            os.fsync(out.fileno())
        _check_download(tmp, fmt, url)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _copy_with_progress(response, out, length: int | None, name: str, url: str,
                        progress: bool | None) -> int:
    """Copy the body to ``out`` in chunks with a tqdm bar; returns the byte count."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    got = 0
    with tqdm(total=length, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
              file=sys.stderr, disable=not show, leave=False) as bar:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except http.client.IncompleteRead as e:
                got += len(e.partial)
                raise DataError(f"download of {url} is truncated ({got} of {length} bytes); "
                                "try again") from None
            except (TimeoutError, socket.timeout, ConnectionError, OSError) as e:
                raise DataError(f"download of {url} broke off after {got} bytes ({e}); "
                                "try again") from None
            if not chunk:
                return got
            out.write(chunk)
            got += len(chunk)
            bar.update(len(chunk))
