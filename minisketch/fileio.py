"""Atomic file writes, and reading files that may be hostile.

Every output minisketch writes (drawings, models, checkpoints, datasets, logs) goes through
:func:`atomic_open`: the bytes go to a temporary file ``.<name>.<8 hex>.tmp`` in the target's
folder (same disk, so the rename is atomic), are flushed and fsync'ed, and only then renamed over
the target with ``os.replace``. On any error the temporary file is removed and the target is left
as it was; a temporary file that a killed process left behind matches :data:`TMP_PATTERN`.

Every input file that is parsed whole (datasets, models, drawings, JSON) is opened with
:func:`open_regular`: only a regular file of bounded size is read, never a FIFO (reading it
would wait forever) or a device (``/dev/zero`` never ends).
"""
from __future__ import annotations

import os
import re
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path

from . import faults
from .errors import MinisketchError

TMP_PATTERN = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")    # what atomic_open's temporaries look like


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
        faults.hit(f"rename:{path.name}")
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


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path, max_bytes: int | None = None, error=MinisketchError, what: str = "file"):
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes``.

    Opened without blocking (a FIFO would otherwise wait for a writer), then checked on the open
    descriptor, so what is read is what was checked. Raises ``error`` (a MinisketchError class)
    with one line for a missing, unreadable or special file, or one that is too large.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"cannot read {path}: it does not exist") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path} is {_kind(st.st_mode)}, not a regular file; give a {what}")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"{path} is {st.st_size:,} bytes, more than the {max_bytes:,} bytes a "
                        f"{what} may have")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, max_bytes: int | None = None, error=MinisketchError,
                 what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`)."""
    with open_regular(path, max_bytes, error, what) as f:
        try:
            data = f.read(max_bytes + 1 if max_bytes is not None else -1)
        except OSError as e:
            raise error(f"cannot read {path}: {e.strerror or e}") from None
    if max_bytes is not None and len(data) > max_bytes:     # it grew after the check
        raise error(f"{path} is more than the {max_bytes:,} bytes a {what} may have")
    return data


def remove_stale_temporaries(folder) -> list[str]:
    """Delete the temporary files :func:`atomic_open` left in ``folder`` when a process was
    killed mid-write (call it only while no other process writes there). Returns their names."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in sorted(names):
        if TMP_PATTERN.match(name):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed
