"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Every output minisketch writes (drawings, models, checkpoints, datasets, logs) goes through
:func:`atomic_open`: the bytes go to a temporary file in the target's folder (same disk, so the
rename is atomic), are flushed and fsync'ed, and only then renamed over the target with
``os.replace``. On any error the temporary file is removed and the target is left as it was.
The temporary file is created with ordinary permissions (the umask applies).
"""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path

from .errors import MinisketchError


@contextmanager
def atomic_open(path):
    """``with atomic_open(path) as f: f.write(...)``: a binary file that replaces ``path`` when
    the block ends without an error. An unwritable target raises MinisketchError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        f = open(tmp, "xb")
    except OSError as e:
        raise MinisketchError(f"cannot write {path}: {e.strerror or e} (check that the folder "
                              f"exists and is writable)") from None
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise MinisketchError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path) as f:
        f.write(data)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); silently skipped where folders cannot be opened."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
