"""``python -m minisketch.sample``: every mode writes a valid file of every format; bad input is
one ``error:`` line, exit 1, and no file. A tiny conditional model (freshly initialized, its pen
bias set so sketches rarely end at once) and a decoder-only one are saved with save_model; input
sketches come from ``builtin:shapes``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from minisketch import datasets, render, sample
from minisketch.errors import run_cli
from minisketch.hparams import HParams

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SVG = "{http://www.w3.org/2000/svg}"
MAX_LEN = "12"


@pytest.fixture(scope="module")
def shapes():
    return datasets.load_dataset("builtin:shapes")


@pytest.fixture(autouse=True)
def cached_shapes(shapes, monkeypatch):
    """Generating builtin:shapes takes seconds: every command in this module reuses one copy."""
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda source, *a, **k: shapes if source == "builtin:shapes"
                        else real(source, *a, **k))


def _save(tmp, name, conditional, shapes):
    from minisketch.checkpoint import save_model
    from minisketch.model import SketchRNN
    hp = HParams(conditional=conditional, enc_rnn_size=8, dec_rnn_size=16, z_size=4,
                 num_mixture=3, max_seq_len=shapes.max_seq_len)
    model = SketchRNN(hp, backend="numpy", dtype="float32", seed=1,
                      scale_factor=shapes.scale_factor)
    b = model.params["out/b"]
    b[0:3] = model.xp.asarray([3.0, 1.0, -6.0], dtype=b.dtype)   # pen: mostly down, rarely end
    path = tmp / name
    save_model(model, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, shapes):
    tmp = tmp_path_factory.mktemp("models")
    return {"vae": _save(tmp, "vae.npz", True, shapes),
            "dec": _save(tmp, "dec.npz", False, shapes)}


def cli(argv, capsys):
    rc = run_cli(sample.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


MODE_ARGS = {
    "generate": (["-n", "3"], 3),
    "reconstruct": (["--data", "builtin:shapes", "--index", "0", "--index", "5", "-n", "2"], 4),
    "interpolate": (["--data", "builtin:shapes", "--index", "1", "--index", "2",
                     "--steps", "4"], 4),
    "analogy": (["--data", "builtin:shapes", "--index", "3", "--index", "4", "--index", "5",
                 "-n", "2"], 2),
    "complete": (["--data", "builtin:shapes", "--index", "6", "--prefix", "0.4", "-n", "3"], 3),
}


def _strokes(s):
    """Pen-down strokes of a stroke-3 sketch: runs of rows ending at a lift or the last row."""
    return int(np.sum(s[:, 2] == 1) + (s[-1, 2] == 0))


@pytest.mark.parametrize("mode", list(MODE_ARGS))
def test_every_mode_writes_every_format(mode, models, tmp_path, capsys, shapes):
    extra, count = MODE_ARGS[mode]
    base = [mode, "--model", models["vae"], "--seed", "4", "--max-len", MAX_LEN, *extra]
    rc, out, err = cli(base + ["--out", tmp_path / "s.npz"], capsys)
    assert rc == 0, err
    sketches = render.load_sketches_npz(tmp_path / "s.npz")
    assert len(sketches) == count, err               # no sample was empty for this seed
    for s in sketches:
        assert s.ndim == 2 and s.shape[1] == 3 and len(s) >= 1
        assert set(np.unique(s[:, 2])) <= {0.0, 1.0}
    if mode == "complete":
        src = shapes.test[6]
        keep = round(0.4 * len(src))
        for s in sketches:
            assert s[:keep].tobytes() == src[:keep].tobytes()
            assert len(s) <= keep + int(MAX_LEN)
    else:
        assert all(len(s) <= int(MAX_LEN) for s in sketches)

    # the same command (same seed) in the other formats draws these very sketches, with their
    # context: the inputs in grey beside them, labelled
    cells, labels, grey = _expected_cells(mode, sketches, shapes)
    rc, _, err = cli(base + ["--out", tmp_path / "s.svg"], capsys)
    assert rc == 0, err
    root = ET.parse(tmp_path / "s.svg").getroot()
    assert root.tag == SVG + "svg"
    groups = root.findall(f".//{SVG}g[@id]")
    assert len(groups) == len(cells)
    for g, cell, k in zip(groups, cells, grey):
        paths = g.findall(f"{SVG}path")
        greys = [p for p in paths if p.get("stroke") is not None]
        crosses = 0 < k < len(cell) and cell[k - 1, 2] == 0    # one stroke turns grey -> black
        assert len(paths) == _strokes(cell) + crosses
        assert len(greys) == (_strokes(cell[:k]) if k else 0)
    assert [t.text for t in root.iter(f"{SVG}text")] == (labels or [])

    rc, _, err = cli(base + ["--out", tmp_path / "s.png"], capsys)
    assert rc == 0, err
    from PIL import Image
    with Image.open(tmp_path / "s.png") as im:
        gray = np.asarray(im.convert("L"))
    assert gray.max() > 200 and gray.min() < 100           # white page with dark ink
    assert (gray < 128).mean() > 1e-4

    rc, _, err = cli(base + ["--out", tmp_path / "s.gif"], capsys)
    assert rc == 0, err
    with Image.open(tmp_path / "s.gif") as im:
        # all cells draw together: one frame per row of the longest, plus the final frame
        assert im.n_frames == max(len(c) for c in cells) + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.gif", "s.npz", "s.png", "s.svg"]


def _expected_cells(mode, outputs, shapes):
    """(cells, labels, grey rows) a picture of ``mode`` must show, from MODE_ARGS' inputs."""
    t = shapes.test
    if mode == "generate":
        return outputs, None, [0] * len(outputs)
    if mode == "reconstruct":                    # inputs 0 and 5, two reconstructions each
        cells = [t[0], *outputs[:2], t[5], *outputs[2:]]
        labels = ["input 1", "reconstruction 1", "reconstruction 2"] + \
                 ["input 2", "reconstruction 1", "reconstruction 2"]
        return cells, labels, [len(t[0]), 0, 0, len(t[5]), 0, 0]
    if mode == "interpolate":                    # inputs 1 and 2, 4 steps
        cells = [t[1], *outputs, t[2]]
        labels = ["input A", "t=0 (A)", "t=0.33", "t=0.67", "t=1 (B)", "input B"]
        return cells, labels, [len(t[1]), 0, 0, 0, 0, len(t[2])]
    if mode == "analogy":                        # inputs 3, 4, 5, two results
        cells = [t[3], t[4], t[5], *outputs]
        labels = ["input A", "input B", "input C", "A - B + C", "A - B + C"]
        return cells, labels, [len(t[3]), len(t[4]), len(t[5]), 0, 0]
    keep = round(0.4 * len(t[6]))                # complete: the kept rows grey
    return outputs, None, [keep] * len(outputs)


def test_inputs_from_files_keep_their_order(models, tmp_path, capsys, shapes):
    a, b = shapes.test[1], shapes.test[2]
    (tmp_path / "a.json").write_text(json.dumps(a.tolist()))
    render.save_drawing([b], tmp_path / "b.npz")
    via_files = ["interpolate", "--model", models["vae"], "--input", tmp_path / "a.json",
                 "--input", tmp_path / "b.npz", "--greedy", "--max-len", MAX_LEN, "--steps", 3]
    via_data = ["interpolate", "--model", models["vae"], "--data", "builtin:shapes",
                "--index", 1, "--index", 2, "--greedy", "--max-len", MAX_LEN, "--steps", 3]
    assert cli(via_files + ["--out", tmp_path / "f.npz"], capsys)[0] == 0
    assert cli(via_data + ["--out", tmp_path / "d.npz"], capsys)[0] == 0
    f = render.load_sketches_npz(tmp_path / "f.npz")
    d = render.load_sketches_npz(tmp_path / "d.npz")
    assert len(f) == len(d) == 3
    for x, y in zip(f, d):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4)
    # reversed order: the path runs the other way
    rev = ["interpolate", "--model", models["vae"], "--input", tmp_path / "b.npz",
           "--input", tmp_path / "a.json", "--greedy", "--max-len", MAX_LEN, "--steps", 3,
           "--out", tmp_path / "r.npz"]
    assert cli(rev, capsys)[0] == 0
    r = render.load_sketches_npz(tmp_path / "r.npz")
    np.testing.assert_allclose(r[0], d[-1], rtol=1e-5, atol=1e-4)


def test_decoder_only_generate_and_complete(models, tmp_path, capsys):
    for mode, extra in [("generate", ["-n", "2"]),
                        ("complete", ["--data", "builtin:shapes", "--index", "0"])]:
        rc, out, err = cli([mode, "--model", models["dec"], "--max-len", MAX_LEN, *extra,
                            "--out", tmp_path / f"{mode}.svg"], capsys)
        assert rc == 0, err
        assert "wrote" in out


BAD = [
    # (argv after the model, what the error line must mention)
    (["generate", "--model", "{missing}", "--out", "{out}"], "no model"),
    (["reconstruct", "--data", "builtin:shapes", "--index", "99999", "--out", "{out}"],
     "out of range"),
    (["reconstruct", "--data", "builtin:shapes", "--index", "-1", "--out", "{out}"],
     "out of range"),
    (["interpolate", "--data", "builtin:shapes", "--index", "1", "--out", "{out}"],
     "exactly 2"),
    (["analogy", "--data", "builtin:shapes", "--index", "1", "--index", "2", "--out", "{out}"],
     "exactly 3"),
    (["complete", "--out", "{out}"], "exactly 1"),
    (["generate", "--data", "builtin:shapes", "--index", "1", "--out", "{out}"],
     "no input"),
    (["reconstruct", "--index", "1", "--out", "{out}"], "--data"),
    (["reconstruct", "--input", "{empty}", "--out", "{out}"], "empty"),
    (["reconstruct", "--input", "{nan}", "--out", "{out}"], "NaN"),
    (["reconstruct", "--input", "{tmp}/nope.json", "--out", "{out}"], "no such file"),
    (["reconstruct", "--input", "{dataset}", "--out", "{out}"], "--data"),
    (["reconstruct", "--input", "{bad_npz}", "--out", "{out}"], "cannot read"),
    (["generate", "--out", "{tmp}/no/such/dir/x.svg"], "does not exist"),
    (["generate", "--out", "{empty}/x.svg"], "does not exist"),       # parent is a file
    (["generate", "--model", "{empty}", "--out", "{out}"], "magenta.js"),
    (["generate", "--out", "{tmp}"], "must end in"),
    (["generate", "--out", "{tmp}/x.txt"], "must end in"),
    (["generate", "--temperature", "0", "--out", "{out}"], "temperature"),
    (["complete", "--data", "builtin:shapes", "--index", "0", "--prefix", "1.5",
      "--out", "{out}"], "prefix"),
    (["reconstruct", "--model", "{dec}", "--data", "builtin:shapes", "--index", "0",
      "--out", "{out}"], "conditional"),
]


@pytest.mark.parametrize("argv,mention", BAD, ids=[f"{a[0]}-{m}" for a, m in BAD])
def test_bad_input_is_one_error_line(argv, mention, models, tmp_path, capsys):
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "nan.json").write_text('[[1, 2, 0], [NaN, 1, 1]]')
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with open(tmp_path / "ds.npz", "wb") as f:
        np.savez(f, train=np.zeros((2, 3)), valid=np.zeros((2, 3)), test=np.zeros((2, 3)))
    subs = {"{missing}": str(tmp_path / "missing.npz"), "{out}": str(tmp_path / "o.svg"),
            "{empty}": str(tmp_path / "empty.json"), "{nan}": str(tmp_path / "nan.json"),
            "{tmp}": str(tmp_path), "{dec}": str(models["dec"]),
            "{bad_npz}": str(tmp_path / "bad.npz"), "{dataset}": str(tmp_path / "ds.npz")}
    argv = [a for a in argv]
    if "--model" not in argv:
        argv[1:1] = ["--model", str(models["vae"])]
    for k, v in subs.items():
        argv = [a.replace(k, v) for a in argv]
    before = sorted(os.listdir(tmp_path))
    rc, out, err = cli(argv, capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert mention in lines[0]
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before            # nothing written, no temp files


def test_unwritable_output_leaves_nothing(models, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running with permissions that ignore a read-only folder (root)")
        rc, _, err = cli(["generate", "--model", models["vae"], "-n", "2", "--max-len", MAX_LEN,
                          "--out", ro / "x.png"], capsys)
        assert rc == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o700)


def test_usage_errors_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        sample.main(["draw", "--model", "m", "--out", "x.svg"])
    assert e.value.code == 2
    for mode in sample.MODES:
        with pytest.raises(SystemExit) as e:
            sample.main([mode, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "--model" in text and "--out" in text and "--temperature" in text
        assert ("--prefix" in text) == (mode == "complete")
        assert ("--steps" in text) == (mode == "interpolate")


def test_module_entry_point(models, tmp_path):
    out = tmp_path / "g.npz"
    r = subprocess.run([sys.executable, "-m", "minisketch.sample", "generate", "--model",
                        str(models["dec"]), "-n", "2", "--max-len", MAX_LEN, "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(render.load_sketches_npz(out)) == 2
    r = subprocess.run([sys.executable, "-m", "minisketch.sample", "generate", "--model",
                        str(tmp_path / "absent"), "--out", str(tmp_path / "x.svg")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "x.svg").exists()


@pytest.mark.skipif(not (SHARED / "pretrained" / "sheep.gen.json").is_file(),
                    reason="../shared/data/pretrained/sheep.gen.json is absent (magenta.js "
                           "pretrained model; see the README for where to get it)")
def test_sheep_gen_json_generates(tmp_path):
    out = tmp_path / "sheep.svg"
    r = subprocess.run([sys.executable, "-m", "minisketch.sample", "generate", "--model",
                        str(SHARED / "pretrained" / "sheep.gen.json"), "-n", "16",
                        "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()
    assert len(root.findall(f".//{SVG}g[@id]")) == 16      # P(a sheep ends at once) ~ 1.5e-6
    assert len(root.findall(f".//{SVG}path")) >= 16


def test_empty_samples_are_dots_in_pictures_and_left_out_of_npz(tmp_path, capsys, shapes):
    a, b = shapes.test[0], shapes.test[1]
    empty = np.zeros((0, 3))
    pic = sample.Picture([a, empty, b], cells=[a, empty, b], grey_rows=[0, 0, 0])
    assert sample.write_picture(pic, tmp_path / "p.svg") == 2
    root = ET.parse(tmp_path / "p.svg").getroot()
    assert len(root.findall(f".//{SVG}g[@id]")) == 3
    assert [t.text or "" for t in root.iter(f"{SVG}text")] == ["", "(empty)", ""]
    assert sample.write_picture(pic, tmp_path / "p.npz") == 2
    assert len(render.load_sketches_npz(tmp_path / "p.npz")) == 2
    err = capsys.readouterr().err
    assert "1 of 3 samples ended before drawing any point" in err
    with pytest.raises(sample.MinisketchError, match="every sample ended"):
        sample.write_picture(sample.Picture([empty], cells=[empty], grey_rows=[0]),
                             tmp_path / "q.svg")
    assert not (tmp_path / "q.svg").exists()
