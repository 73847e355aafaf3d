"""The pickle-safe .npz reader: real files, malicious pickles, and every kind of broken file."""
from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from conftest import shared_file

from minisketch.errors import DataError
from minisketch.safe_npz import (RestrictedUnpickler, load_npz, npz_keys, safe_unpickle,
                                 write_npz)

GOOD = [np.array([[1, 2, 0], [3, 4, 1]], dtype=np.int16),
        np.array([[5, 6, 0], [7, 8, 0], [-1, -2, 1]], dtype=np.int16)]


def object_array(items):
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr


def save(path, **splits):
    """Write an .npz the way numpy (and the reference data) does: object arrays, pickled."""
    np.savez(path, **{k: object_array(v) if isinstance(v, list) else v
                      for k, v in splits.items()})
    return path


def good_splits():
    return {"train": list(GOOD), "valid": GOOD[:1], "test": GOOD[1:]}


class TouchFile:
    """Unpickling this runs os.system (a shell command that creates the marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class ExecCode:
    """Unpickling this runs builtins.exec on code that creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("shared_name, sizes", [("aaron_sheep.npz", (7400, 300, 300)),
                                                ("short_kanji.npz", (10000, 600, 500))])
def test_real_files_match_the_reference_loader(shared_name, sizes):
    path = shared_file(shared_name)
    ours = load_npz(path)
    ref = np.load(path, allow_pickle=True, encoding="latin1")
    assert tuple(len(ours[k]) for k in ("train", "valid", "test")) == sizes
    for k in ("train", "valid", "test"):
        for a, b in zip(ours[k], ref[k]):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("payload", [TouchFile, ExecCode])
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = save(tmp_path / "evil.npz", train=[GOOD[0], payload(marker)], valid=GOOD[:1],
                test=GOOD[:1])
    with pytest.raises(DataError, match="not allowed") as e:
        load_npz(path)
    assert "refusing to run code" in str(e.value)
    assert not marker.exists()
    # the file really is dangerous: the unrestricted loader runs its code
    with np.load(path, allow_pickle=True, encoding="latin1") as unsafe:
        unsafe["train"]
    assert marker.exists()


def test_only_numpy_array_reconstruction_is_allowed():
    for module, name in [("numpy", "load"), ("numpy.lib.npyio", "load"), ("builtins", "eval"),
                         ("posix", "system"), ("numpy.core.multiarray", "frombuffer")]:
        data = pickle.dumps(None, protocol=2).replace(b"N", f"c{module}\n{name}\n".encode(), 1)
        with pytest.raises(DataError, match="not allowed"):
            RestrictedUnpickler(io.BytesIO(data)).load()


def test_a_pickle_cannot_modify_the_allowed_callables():
    # GLOBAL numpy.core.multiarray._reconstruct, then BUILD with {"foo": 1} (and with a
    # (None, {"__call__": 1}) slot state): both must fail instead of changing the object
    for state in (b"}(Vfoo\nI1\nu", b"N}(V__call__\nI1\nu\x86"):
        data = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n" + state + b"b."
        with pytest.raises(DataError, match="unreadable pickle"):
            safe_unpickle(data)
    for protocol in (2, 3, 4, 5):                   # what is allowed still loads arrays
        arr = safe_unpickle(pickle.dumps(np.arange(3, dtype=np.int16), protocol=protocol))
        np.testing.assert_array_equal(arr, [0, 1, 2])
        assert arr.dtype == np.int16


def test_round_trip_through_write_npz_and_reference_loader(tmp_path):
    splits = good_splits()
    path = write_npz(tmp_path / "out.npz", splits)
    assert sorted(os.listdir(tmp_path)) == ["out.npz"]          # no temporary left behind
    ours = load_npz(path)
    ref = np.load(path, allow_pickle=True, encoding="latin1")
    for k, v in splits.items():
        assert ref[k].dtype == object and ref[k].shape == (len(v),)
        for a, b, c in zip(v, ours[k], ref[k]):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)


def test_equal_length_sketches_stacked_as_a_numeric_array_are_accepted(tmp_path):
    stacked = np.stack([GOOD[0], GOOD[0]])                      # [2, 2, 3] int16, no pickle
    path = save(tmp_path / "stacked.npz", train=stacked, valid=GOOD[:1], test=GOOD[:1])
    out = load_npz(path)
    assert len(out["train"]) == 2
    np.testing.assert_array_equal(out["train"][1], GOOD[0])


def broken_files(tmp_path):
    """name -> (path, pattern its error must match). Each pattern is specific to its case."""
    good = save(tmp_path / "good.npz", **good_splits())
    raw = good.read_bytes()
    cases = {}

    def put(name, data, pattern):
        p = tmp_path / f"{name}.npz"
        p.write_bytes(data)
        cases[name] = (p, pattern)

    put("truncated", raw[: len(raw) // 2], "truncated")
    put("empty", b"", "empty")
    put("not_zip", b"\x00\x01 this is just some binary junk " * 20, "not a zip")
    put("html", b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>", "HTML page")
    cases["missing_key"] = (save(tmp_path / "missing_key.npz", train=GOOD, valid=GOOD),
                            "no 'test' array")
    cases["wrong_shape"] = (save(tmp_path / "wrong_shape.npz", train=[np.zeros((4, 2))],
                                 valid=GOOD, test=GOOD), r"shape \(4, 2\)")
    cases["non_numeric"] = (save(tmp_path / "non_numeric.npz",
                                 train=[np.array([["a", "b", "c"]])], valid=GOOD, test=GOOD),
                            "expected numbers")
    cases["not_an_array"] = (save(tmp_path / "not_an_array.npz", train=[[[1, 2, 0]]],
                                  valid=GOOD, test=GOOD), "is a list, not an array")
    cases["scalar"] = (save(tmp_path / "scalar.npz", train=[np.float64(2.5)], valid=GOOD,
                            test=GOOD), "is a float64, not an array")
    nan = np.array([[1.0, np.nan, 0.0]])
    cases["nan"] = (save(tmp_path / "nan.npz", train=GOOD, valid=[nan], test=GOOD), "NaN")
    inf = np.array([[1.0, np.inf, 1.0]])
    cases["inf"] = (save(tmp_path / "inf.npz", train=GOOD, valid=GOOD, test=[inf]), "infinite")
    cases["flat"] = (save(tmp_path / "flat.npz", train=np.zeros((4, 3)), valid=GOOD,
                          test=GOOD), "1-D object array")
    return cases


def test_each_broken_file_gets_its_own_clear_error(tmp_path):
    messages = {}
    for name, (path, pattern) in broken_files(tmp_path).items():
        with pytest.raises(DataError, match=pattern) as e:
            load_npz(path)
        messages[name] = str(e.value)
        assert "\n" not in messages[name]
    assert len(set(messages.values())) == len(messages)


def test_truncated_inside_a_member_and_missing_file(tmp_path):
    # a complete zip whose member holds a pickle cut short
    raw = io.BytesIO()
    np.save(raw, object_array(GOOD), allow_pickle=True)
    cut = raw.getvalue()[:-20]
    path = tmp_path / "short_member.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for k in ("train", "valid", "test"):
            zf.writestr(f"{k}.npy", cut)
    with pytest.raises(DataError, match="truncated"):
        load_npz(path)
    with pytest.raises(DataError, match="does not exist"):
        load_npz(tmp_path / "nowhere.npz")


def test_npz_keys_checks_zip_integrity(tmp_path):
    path = save(tmp_path / "k.npz", **good_splits())
    assert sorted(npz_keys(path)) == ["test", "train", "valid"]
    raw = bytearray(path.read_bytes())
    i = raw.index(b"NUMPY") + 200                # inside the first member's stored data
    raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt"):
        npz_keys(path)


def test_write_npz_failure_leaves_nothing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        write_npz(tmp_path / "no_such_dir" / "x.npz", good_splits())

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        write_npz(tmp_path / "x.npz", {"train": [Unpicklable()], "valid": [], "test": []})
    assert os.listdir(tmp_path) == []
