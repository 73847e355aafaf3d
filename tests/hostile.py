"""Helpers for the hostile-input tests: crafted files, and running a command in a subprocess
under a memory cap (so a crash or a memory blow-up fails one test, not the test session)."""
from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
import zipfile

import numpy as np

MEMORY_CAP = 2 << 30          # RLIMIT_AS of every subprocess here: 2 GiB of address space


def _cap(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run(module: str, *args, env=None, timeout=120, memory=MEMORY_CAP, cwd=None):
    """``python -m minisketch.<module> args...`` with an address-space cap; CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", f"minisketch.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          preexec_fn=_cap(memory), cwd=cwd)


def run_python(code: str, *args, timeout=120, memory=MEMORY_CAP, env=None):
    """``python -c code args...`` with an address-space cap; CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, preexec_fn=_cap(memory))


def one_error(r, *fragments, rc=1) -> str:
    """The single ``error:`` line of a failed command (exit ``rc``, no traceback), checked to
    contain every fragment."""
    assert r.returncode == rc, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# ----------------------------------------------------------------------------- .npy and .npz

def npy_header(descr, shape, fortran=False, version=(1, 0), pad_to=None) -> bytes:
    """A .npy magic + header for the given fields (optionally padded to ``pad_to`` bytes)."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    if pad_to:
        text = text.ljust(pad_to - 1)
    text = (text + "\n").encode("latin1")
    if version[0] == 1:
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
    return b"\x93NUMPY" + bytes([version[0], 0]) + len(text).to_bytes(4, "little") + text


def object_npy(pickle_bytes: bytes, shape=(1,)) -> bytes:
    return npy_header("|O", shape) + pickle_bytes


def write_zip(path, members: dict, compress=zipfile.ZIP_STORED):
    """A zip with the given ``{name: bytes}`` members (".npy" appended to bare names)."""
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name if "." in name else f"{name}.npy", data)
    return path


def splits(data: bytes) -> dict:
    """The same member as train, valid and test."""
    return {k: data for k in ("train", "valid", "test")}


def good_object_npy(sketches) -> bytes:
    arr = np.empty(len(sketches), dtype=object)
    for i, s in enumerate(sketches):
        arr[i] = s
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def zip_bomb(path, shape, chunk=1 << 20):
    """A zip whose one-member-per-split .npy is ``shape`` int8 zeros, deflated while written
    (never held in memory): about 1000x smaller than its declared size."""
    header = npy_header("|i1", shape)
    total = int(np.prod(shape))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for k in ("train", "valid", "test"):
            with zf.open(f"{k}.npy", "w", force_zip64=True) as f:
                f.write(header)
                zeros = bytes(chunk)
                left = total
                while left > 0:
                    f.write(zeros[:min(chunk, left)])
                    left -= chunk
    return path


# ----------------------------------------------------------------------------- crafted pickles

def p2(body: bytes) -> bytes:
    """A protocol-2 pickle: PROTO 2, body, STOP."""
    return b"\x80\x02" + body + b"."


G_RECON = b"cnumpy.core.multiarray\n_reconstruct\n"
G_NDARRAY = b"cnumpy\nndarray\n"
G_DTYPE = b"cnumpy\ndtype\n"


def dtype_op(code: bytes, state: bytes = b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff"
             b"\xff\xffK?tb") -> bytes:
    """Opcodes pushing numpy.dtype(code, 0, 1) with the given BUILD state."""
    return G_DTYPE + b"X" + len(code).to_bytes(4, "little") + code + b"K\x00K\x01\x87R" + state


def binbytes(data: bytes) -> bytes:
    return b"C" + bytes([len(data)]) + data if len(data) < 256 else \
        b"B" + len(data).to_bytes(4, "little") + data


CRAFTED_PICKLES = {
    # issue 19 item 1: numpy.ndarray(shape, dtype('O'), buffer) over pointers the file chooses
    "ndarray_object_over_bytes": p2(G_NDARRAY + b"(K\x01\x85" + G_DTYPE +
                                    b"X\x01\x00\x00\x00O\x85RC\x08AAAAAAAAtR"),
    "ndarray_O8_over_bytes": p2(G_NDARRAY + b"(K\x01\x85" + dtype_op(b"O8") +
                                b"C\x08AAAAAAAAtR"),
    # _reconstruct, then BUILD with an object dtype and raw bytes instead of a list
    "reconstruct_object_state_bytes": p2(G_RECON + G_NDARRAY + b"K\x00\x85C\x01b\x87R" +
                                         b"(K\x01K\x01\x85" + dtype_op(b"O8") +
                                         b"\x89C\x08AAAAAAAAtb"),
    # a structured dtype whose field is an object, set through the dtype's BUILD state
    "structured_object_field": p2(G_RECON + G_NDARRAY + b"K\x00\x85C\x01b\x87R" +
                                  b"(K\x01K\x01\x85" +
                                  dtype_op(b"V8", b"(K\x03X\x01\x00\x00\x00|N(X\x01\x00\x00\x00"
                                           b"at}X\x01\x00\x00\x00a" + dtype_op(b"O8") +
                                           b"K\x00\x86sK\x08K\x01K?tb") +
                                  b"\x89C\x08AAAAAAAAtb"),
    # an array state that declares more elements than its bytes hold
    "short_buffer": p2(G_RECON + G_NDARRAY + b"K\x00\x85C\x01b\x87R" +
                       b"(K\x01J\x00\x00\x00\x10\x85" +
                       dtype_op(b"i2", b"(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff"
                                b"\xff\xffK\x00tb") + b"\x89C\x04AAAAtb"),
}


def array_op(rows: int, raw: bytes) -> bytes:
    """Opcodes pushing a pickled int16 [rows, 3] array (NumPy's own layout)."""
    return (G_RECON + G_NDARRAY + b"K\x00\x85C\x01b\x87R" + b"(K\x01M" +
            rows.to_bytes(2, "little") + b"K\x03\x86" +
            dtype_op(b"i2", b"(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff"
                     b"\xff\xffK\x00tb") + b"\x89" + binbytes(raw) + b"tb")


def repeated_reference_pickle(n_refs: int, rows: int) -> bytes:
    """A 1-D object array of ``n_refs`` references to one int16 [rows, 3] array, memoized
    once: two pickle bytes per reference, ``rows * 6`` bytes each time a reader copies it."""
    elem = array_op(rows, bytes(rows * 6)) + b"q\x01"
    return p2(G_RECON + G_NDARRAY + b"K\x00\x85C\x01b\x87R" +
              b"(K\x01J" + n_refs.to_bytes(4, "little") + b"\x85" + dtype_op(b"O8") +
              b"\x89](" + elem + b"h\x01" * (n_refs - 1) + b"etb")


__all__ = ["run", "run_python", "one_error", "npy_header", "object_npy", "write_zip", "splits",
           "good_object_npy", "zip_bomb", "CRAFTED_PICKLES", "repeated_reference_pickle"]
