"""Hostile files (issue 19 items 1-7, 17, 19 and the smaller ones): every crafted file gets one
``error:`` line and exit 1, never a crash, a hang, a traceback or a memory blow-up.

Commands run in a subprocess capped at ``hostile.MEMORY_CAP`` of address space (a crash or a
blow-up fails the test, not the session); the crafted files are built in ``tests/hostile.py``.
"""
from __future__ import annotations

import base64
import json
import os
import zipfile

import numpy as np
import pytest
from hostile import (CRAFTED_PICKLES, good_object_npy, npy_header, object_npy, one_error,
                     repeated_reference_pickle, run, splits, write_zip, zip_bomb)

from minisketch import checkpoint as ckpt
from minisketch.errors import DataError, ModelError
from minisketch.hparams import HParams
from minisketch.safe_npz import load_npz

GOOD = [np.array([[1, 2, 0], [3, 4, 1]], np.int16), np.array([[5, 6, 0], [7, 8, 1]], np.int16)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small decoder-only model file and a conditional one."""
    from minisketch.model import SketchRNN
    tmp = tmp_path_factory.mktemp("models")
    out = {}
    for name, cond in (("dec", False), ("vae", True)):
        hp = HParams(conditional=cond, enc_rnn_size=4, dec_rnn_size=8, z_size=2,
                     num_mixture=2, max_seq_len=20)
        model = SketchRNN(hp, seed=1, scale_factor=5.0)
        ckpt.save_model(model, tmp / f"{name}.npz")
        out[name] = tmp / f"{name}.npz"
    return out


def _rewrite(src, dst, config=None, params=None):
    ck = ckpt.load_checkpoint(src)
    ckpt.save_checkpoint(dst, {**ck.params, **(params or {})}, config or ck.config, step=ck.step)
    return dst


# ----------------------------------------------------------------------------- 1: pickles

@pytest.mark.parametrize("name", sorted(CRAFTED_PICKLES))
def test_crafted_pickle_is_one_error_line_not_a_segfault(tmp_path, name):
    # issue item 1: numpy.ndarray called with an object dtype over file bytes crashed (exit 139)
    path = write_zip(tmp_path / "evil.npz", splits(object_npy(CRAFTED_PICKLES[name])))
    one_error(run("data", "info", path), "evil.npz")


def test_the_issue_reproduction_exactly(tmp_path):
    h = npy_header("|O", (1,))
    p = (b"\x80\x02cnumpy\nndarray\n(K\x01\x85cnumpy\ndtype\nX\x01\x00\x00\x00O\x85RC\x08"
         b"AAAAAAAAtR.")
    path = write_zip(tmp_path / "evil.npz", splits(h + p))
    one_error(run("data", "info", path), "evil.npz: 'train'")


def test_repeated_references_are_refused_before_they_are_copied(tmp_path):
    # 400,000 references to one [1000, 3] array: a 0.8 MB pickle that would become 2.4 GB
    path = write_zip(tmp_path / "rep.npz",
                     splits(object_npy(repeated_reference_pickle(400_000, 1000), (400_000,))))
    with pytest.raises(DataError, match="more bytes than the pickle holds"):
        load_npz(path)
    one_error(run("data", "info", path), "repeated references")


# ----------------------------------------------------------------------------- 2, 3: sizes

def test_npy_header_is_capped_at_10000_bytes(tmp_path):
    long_header = npy_header("<i2", (0, 3), version=(2, 0), pad_to=60_000)
    path = write_zip(tmp_path / "h.npz", splits(long_header))
    with pytest.raises(DataError, match="header of 60,000 bytes; at most 10,000"):
        load_npz(path)
    # a header that only declares 4 GB (the file is 100 bytes) is refused before it is read
    lying = b"\x93NUMPY\x02\x00" + (4_000_000_000).to_bytes(4, "little") + b"{" * 88
    path = write_zip(tmp_path / "l.npz", splits(lying))
    one_error(run("data", "info", path), "at most 10,000")


def test_declared_shape_larger_than_the_data_is_refused(tmp_path):
    huge = npy_header("<i2", (10 ** 12, 100, 3)) + bytes(600)
    path = write_zip(tmp_path / "huge.npz", splits(huge))
    one_error(run("data", "info", path), "declares a [1000000000000, 100, 3] int16 array")
    with pytest.raises(DataError, match="holds 600 bytes"):
        load_npz(path)


def test_zip_bomb_of_a_stacked_numeric_member_is_refused(tmp_path):
    # 20 million rows of int8 zeros (60 MB per split) deflate to about 60 KB each
    path = zip_bomb(tmp_path / "bomb.npz", (200_000, 100, 3))
    assert path.stat().st_size < 1_000_000
    one_error(run("data", "info", path, memory=1 << 30), "zip bomb")


def test_points_limit_holds_for_stacked_members(tmp_path, monkeypatch):
    from minisketch import safe_npz
    monkeypatch.setattr(safe_npz, "MAX_POINTS", 50)
    stacked = np.zeros((20, 3, 3), np.int16)                # 60 points
    np.savez(tmp_path / "s.npz", train=stacked, valid=stacked[:1], test=stacked[:1])
    with pytest.raises(DataError, match="60 points, more than the 50"):
        load_npz(tmp_path / "s.npz")


def test_checkpoint_member_declaring_a_huge_shape_is_a_model_error(tmp_path, tiny_model):
    raw = {}
    with zipfile.ZipFile(tiny_model["dec"]) as zf:
        for n in zf.namelist():
            raw[n] = zf.read(n)
    raw["params/out/b.npy"] = npy_header("<f4", (10 ** 11,)) + bytes(60)
    path = write_zip(tmp_path / "c.npz", raw)
    with pytest.raises(ModelError, match="corrupt or truncated.*declares"):
        ckpt.load_checkpoint(path)
    one_error(run("sample", "generate", "--model", path, "--out", tmp_path / "x.svg"),
              "declares")


# ----------------------------------------------------------------------------- 4: --input count

def test_drawing_file_count_is_bounded_by_its_arrays(tmp_path, tiny_model):
    path = tmp_path / "d.npz"
    np.savez(path, count=np.array(10 ** 12), sketch_0=GOOD[0])
    r = run("sample", "reconstruct", "--model", tiny_model["vae"], "--input", path,
            "--out", tmp_path / "o.svg", timeout=60)
    one_error(r, "count is 1000000000000 but sketch_1, sketch_2, sketch_3 ... missing")


# ----------------------------------------------------------------------------- 5: special files

@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_special_files_as_model_are_refused_at_once(tmp_path, kind):
    path = tmp_path / "model.npz"
    if kind == "fifo":
        os.mkfifo(path)
        what = "a FIFO (named pipe), not a regular file"
    else:
        os.symlink("/dev/zero", path)
        what = "a character device, not a regular file"
    one_error(run("sample", "generate", "--model", path, "--out", tmp_path / "x.svg",
                  timeout=30), what)
    one_error(run("export", "--model", path, "--out", tmp_path / "x.gen.json", timeout=30), what)
    gen = tmp_path / "model.gen.json"
    os.symlink(path, gen)
    one_error(run("sample", "generate", "--model", gen, "--out", tmp_path / "x.svg",
                  timeout=30), what)


@pytest.mark.parametrize("target", ["fifo", "/dev/urandom"])
def test_special_files_as_dataset_say_what_they_are(tmp_path, target):
    path = tmp_path / "data.npz"
    if target == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(target, path)
    one_error(run("data", "info", path, timeout=30), "not a regular file")


# ----------------------------------------------------------------------------- 6: sizes asked for

@pytest.mark.parametrize("args, fragment", [
    (["generate", "-n", "1000000000"], "-n must be from 1 to 1000"),
    (["generate", "--max-len", "1000000000"], "--max-len must be from 1 to 10000"),
    (["interpolate", "--steps", "1000000000"], "--steps must be from 2 to 1000"),
    (["generate", "--seed", "-1"], "--seed must be an integer from 0"),
])
def test_sizes_from_the_command_line_are_bounded(tmp_path, tiny_model, args, fragment):
    one_error(run("sample", *args, "--model", tiny_model["vae"], "--out", tmp_path / "x.svg",
                  timeout=60), fragment)


def _gen_json(path, **info):
    H, M = 4, 20
    shapes = [[H, 6 * M + 3], [6 * M + 3], [5, 4 * H], [H, 4 * H], [4 * H]]
    weights = [base64.b64encode(np.zeros(int(np.prod(s)), "<i2").tobytes()).decode()
               for s in shapes]
    head = {"name": "x", "scale_factor": 10.0, "max_seq_len": 250, "mode": 2, "version": 6,
            **info}
    path.write_text(json.dumps([head, shapes, weights]))
    return path


def test_gen_json_with_a_huge_max_seq_len_is_refused(tmp_path):
    path = _gen_json(tmp_path / "m.gen.json", max_seq_len=1e15)
    one_error(run("sample", "generate", "--model", path, "--out", tmp_path / "x.svg"),
              "max_seq_len must be an integer from 1 to 10000")


@pytest.mark.parametrize("field, value", [("dec_rnn_size", 10 ** 6), ("max_seq_len", 10 ** 12),
                                          ("num_mixture", 10 ** 7), ("batch_size", 10 ** 9)])
def test_checkpoint_declaring_huge_sizes_is_refused(tmp_path, tiny_model, field, value):
    ck = ckpt.load_checkpoint(tiny_model["vae"])
    config = dict(ck.config, hparams=dict(ck.config["hparams"], **{field: value}))
    path = _rewrite(tiny_model["vae"], tmp_path / "big.npz", config=config)
    one_error(run("sample", "generate", "--model", path, "--out", tmp_path / "x.svg"), field)


def test_checkpoint_far_larger_than_its_arrays_is_refused_before_allocating(tmp_path,
                                                                          tiny_model):
    ck = ckpt.load_checkpoint(tiny_model["vae"])
    config = dict(ck.config, hparams=dict(ck.config["hparams"], dec_rnn_size=4096,
                                          enc_rnn_size=4096))
    path = _rewrite(tiny_model["vae"], tmp_path / "big.npz", config=config)
    with pytest.raises(ModelError, match="need at least .* parameters, the file holds"):
        ckpt.load_model(path)


# ----------------------------------------------------------------------------- 7: JSON

DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json_everywhere(tmp_path, tiny_model):
    nd = tmp_path / "deep.ndjson"
    nd.write_text('{"drawing": ' + DEEP + "}\n")
    one_error(run("data", "info", nd), "deep.ndjson line 1")
    gen = tmp_path / "deep.gen.json"
    gen.write_text(DEEP)
    one_error(run("sample", "generate", "--model", gen, "--out", tmp_path / "x.svg"),
              "nested too deeply")
    inp = tmp_path / "deep.json"
    inp.write_text(DEEP)
    one_error(run("sample", "complete", "--model", tiny_model["dec"], "--input", inp,
                  "--out", tmp_path / "x.svg"), "nested too deeply")


def _ndjson(tmp_path, drawing_text, n=3):
    path = tmp_path / "d.ndjson"
    path.write_text("".join('{"drawing": %s}\n' % drawing_text for _ in range(n)))
    return path


@pytest.mark.parametrize("drawing, fragment", [
    ("[[[1, 1%s], [2, 3]]]" % ("0" * 400), "too large for a float"),
    ("[[[1, %s], [2, 3]]]" % ("9" * 5000), "is not valid JSON (Exceeds the limit"),
    ("[[[[1], [2]], [[3], [4]]]]", "not numbers"),
    ("[[[1, true], [2, 3]]]", "not numbers"),
    ("[[[1, 1e999], [2, 3]]]", "NaN or infinite"),
], ids=["int_overflows_float", "int_of_5000_digits", "nested_lists", "bool", "inf"])
def test_bad_ndjson_numbers_are_one_error_line(tmp_path, drawing, fragment):
    one_error(run("data", "info", _ndjson(tmp_path, drawing)), "d.ndjson line 1", fragment)


def test_huge_numbers_in_an_input_json(tmp_path, tiny_model):
    inp = tmp_path / "big.json"
    inp.write_text("[[1%s, 0, 0], [1, 1, 1]]" % ("0" * 400))
    one_error(run("sample", "complete", "--model", tiny_model["dec"], "--input", inp,
                  "--out", tmp_path / "x.svg"), "too large for a float")


# ----------------------------------------------------------------------------- 17: NaN weights

def test_non_finite_weights_are_refused_on_load(tmp_path, tiny_model):
    ck = ckpt.load_checkpoint(tiny_model["dec"])
    bad = ck.params["dec/W_hh"].copy()
    bad[0, 0] = np.nan
    path = _rewrite(tiny_model["dec"], tmp_path / "nan.npz", params={"dec/W_hh": bad})
    with pytest.raises(ModelError, match="dec/W_hh holds NaN or infinite values"):
        ckpt.load_model(path)
    out = tmp_path / "x.svg"
    one_error(run("sample", "generate", "--model", path, "--out", out), "NaN")
    assert not out.exists()


# ----------------------------------------------------------------------------- 8: config types

@pytest.mark.parametrize("field, value", [("dec_rnn_size", 8.5), ("dec_rnn_size", "8"),
                                          ("num_mixture", True), ("grad_clip", -1.0),
                                          ("conditional", "yes"), ("z_size", None)])
def test_checkpoint_hparams_of_the_wrong_type_are_one_error(tmp_path, tiny_model, field, value):
    ck = ckpt.load_checkpoint(tiny_model["vae"])
    config = dict(ck.config, hparams=dict(ck.config["hparams"], **{field: value}))
    path = _rewrite(tiny_model["vae"], tmp_path / "t.npz", config=config)
    with pytest.raises(ModelError, match=field):
        ckpt.load_model(path)
    one_error(run("sample", "generate", "--model", path, "--out", tmp_path / "x.svg"), field)


# ----------------------------------------------------------------------------- not a model

@pytest.mark.parametrize("content", [b"# README\nhello\n", b"", b"<html><body>404</body></html>",
                                     b"\x00\x01\x02 binary"])
def test_a_file_that_is_not_a_model_says_so(tmp_path, content):
    path = tmp_path / "README.md"
    path.write_bytes(content)
    line = one_error(run("sample", "generate", "--model", path, "--out", tmp_path / "x.svg"),
                     "README.md is not a model: expected a run folder, a checkpoint .npz or a "
                     ".gen.json")
    assert "allow_pickle" not in line and "--resume" not in line and "numpy" not in line


def test_a_dataset_given_as_model_says_so(tmp_path):
    path = write_zip(tmp_path / "sheep.npz", splits(good_object_npy(GOOD)))
    one_error(run("sample", "generate", "--model", path, "--out", tmp_path / "x.svg"),
              "not a model", "sketch-rnn dataset")


# ----------------------------------------------------------------------------- 19: printing paths

@pytest.mark.parametrize("name", ["caf\u00e9.svg", "\u732b.npz"])
def test_a_path_stdout_cannot_encode_is_printed_escaped(tmp_path, tiny_model, name):
    out = tmp_path / name
    r = run("sample", "generate", "-n", "2", "--model", tiny_model["dec"], "--out", out,
            "--max-len", "5", env={"PYTHONIOENCODING": "ascii:strict"})
    assert r.returncode == 0, r.stderr
    assert out.exists() and "wrote" in r.stdout and "\\" in r.stdout


def test_an_undecodable_file_name_is_printed_escaped(tmp_path, tiny_model):
    folder = os.fsencode(tmp_path) + b"/bad\xff"
    os.mkdir(folder)
    r = run("sample", "generate", "-n", "1", "--model", tiny_model["dec"],
            "--out", os.fsdecode(folder + b"/x.svg"), "--max-len", "5",
            env={"PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"})
    assert r.returncode == 0, r.stderr
    assert os.path.exists(folder + b"/x.svg") and "wrote" in r.stdout


# ----------------------------------------------------------------------------- pens in data

@pytest.mark.parametrize("pen", [7, -3, 0.4])
def test_pen_values_other_than_0_and_1_are_refused_by_train_and_sample(tmp_path, tiny_model,
                                                                       pen):
    bad = np.array([[1, 2, 0], [3, 4, pen]], np.float32)
    data = tmp_path / "d.npz"
    np.savez(data, **{k: _objects([GOOD[0], bad]) for k in ("train", "valid", "test")})
    with pytest.raises(DataError, match=f"pen value {pen:g}"):
        load_npz(data)
    one_error(run("train", "--data", data, "--out", tmp_path / "run", "--steps", "1"),
              "pen value")
    assert not (tmp_path / "run").exists()
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(bad.tolist()))
    one_error(run("sample", "complete", "--model", tiny_model["dec"], "--input", inp,
                  "--out", tmp_path / "x.svg"), "pen")


def _objects(items):
    arr = np.empty(len(items), dtype=object)
    for i, s in enumerate(items):
        arr[i] = s
    return arr
