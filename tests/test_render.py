"""Rendering: SVG structure, PNG content, GIF frame counts, .npz round trips, atomic writes."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageSequence

from minisketch.errors import DataError, MinisketchError
from minisketch.render import (GREY, LABEL_HEIGHT, gif_frame_count, grid_svg, load_sketches_npz,
                               save_drawing, save_gif, save_png, sketch_strokes, strip_svg,
                               stroke3_to_svg_paths, temperature_sweep_svg, to_svg)

NS = {"svg": "http://www.w3.org/2000/svg"}


def expected_strokes(sketch):
    """Absolute points per pen-down stroke, walking the rows one by one (no NumPy tricks)."""
    strokes, current, x, y = [], [], 0.0, 0.0
    for dx, dy, p in sketch:
        x, y = x + dx, y + dy
        current.append((x, y))
        if p == 1:
            strokes.append(current)
            current = []
    if current:
        strokes.append(current)
    return strokes


def parse_d(d):
    """'M x,y L x,y x,y' -> [(x, y), ...] (exactly one move per path)."""
    assert d.startswith("M") and d.count("M") == 1 and d.count("L") == 1, d
    first, rest = d[1:].split(" L")
    return [tuple(map(float, p.split(","))) for p in [first, *rest.split()]]


stroke3 = st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-60, 60), min_size=2 * n, max_size=2 * n),
    st.lists(st.sampled_from([0, 0, 0, 1]), min_size=n, max_size=n),
)).map(lambda t: np.column_stack([np.reshape(t[0], (-1, 2)), t[1]]).astype(np.int16))


def make_sketch(n=30, seed=0, lifts=(9, 19)):
    rng = np.random.default_rng(seed)
    s = np.zeros((n, 3))
    s[:, :2] = rng.integers(-20, 21, size=(n, 2))
    s[[i for i in lifts if i < n], 2] = 1
    s[-1, 2] = 1
    return s


# ----------------------------------------------------------------------------- SVG

@settings(max_examples=80, deadline=None)
@given(sketch=stroke3)
def test_svg_has_one_path_per_stroke_fitted_to_the_canvas(sketch):
    size, padding = 200, 10
    root = ET.fromstring(to_svg(sketch, size=size, padding=padding))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    ds = [p.get("d") for p in root.iterfind(".//svg:path", NS)]
    want = expected_strokes(sketch)
    assert len(ds) == len(want) == len(sketch_strokes(sketch))
    assert ds == stroke3_to_svg_paths(sketch, size=size, padding=padding)
    got = []
    for d, stroke in zip(ds, want):
        pts = parse_d(d)
        if len(stroke) == 1:                       # a dot: a zero-length line
            assert len(pts) == 2 and pts[0] == pts[1]
            pts = pts[:1]
        assert len(pts) == len(stroke)
        got += pts
    got, data = np.array(got), np.array([p for s in want for p in s], dtype=float)
    # one positive scale for x and y (aspect kept, y not flipped) and a shift: got = s*data + t
    ext = data.max(0) - data.min(0)
    if ext.max() > 0:
        axis = np.argmax(ext)                       # the scale from the longer side
        s = (got.max(0) - got.min(0))[axis] / ext[axis]
        assert np.allclose(got, s * data + (got[0] - s * data[0]), atol=0.02)
        assert np.isclose((got.max(0) - got.min(0)).max(), size - 2 * padding, atol=0.02)
    assert got.min() >= padding - 0.01 and got.max() <= size - padding + 0.01


def test_grid_cells_labels_and_size():
    sketches = [make_sketch(seed=i, lifts=lifts) for i, lifts in
                enumerate([(3,), (4, 9), (1, 2, 3), (20,), (5, 6)])]
    labels = ["a<b", "c&d", "e", "f", "g"]
    root = ET.fromstring(grid_svg(sketches, ncols=2, cell=100, labels=labels))
    assert (root.get("width"), root.get("height")) == ("200", str(3 * (100 + LABEL_HEIGHT)))
    cells = root.findall(".//svg:g[@id]", NS)
    assert [c.get("id") for c in cells] == [f"cell-{k}" for k in range(5)]
    for cell, sketch in zip(cells, sketches):
        assert len(cell.findall("svg:path", NS)) == len(expected_strokes(sketch))
    assert [t.text for t in root.iterfind(".//svg:text", NS)] == labels
    # each cell's drawing stays inside its own square
    for k, cell in enumerate(cells):
        r, c = divmod(k, 2)
        pts = np.array([p for path in cell.findall("svg:path", NS) for p in parse_d(path.get("d"))])
        assert pts[:, 0].min() >= c * 100 and pts[:, 0].max() <= (c + 1) * 100
        top = r * (100 + LABEL_HEIGHT)
        assert pts[:, 1].min() >= top and pts[:, 1].max() <= top + 100
    default = ET.fromstring(grid_svg(sketches))      # ceil(sqrt(5)) = 3 columns, 2 rows
    assert (default.get("width"), default.get("height")) == ("384", "256")


def test_strip_and_temperature_sweep():
    row = [make_sketch(seed=i) for i in range(4)]
    strip = ET.fromstring(strip_svg(row, cell=64))
    assert (strip.get("width"), strip.get("height")) == ("256", "64")
    temps = [0.01, 0.5, 1.0]
    sweep = ET.fromstring(temperature_sweep_svg([row[:3], row[1:]], temps, cell=64))
    assert [t.text for t in sweep.iterfind(".//svg:text", NS)] == ["tau=0.01", "tau=0.5",
                                                                   "tau=1"]
    assert len(sweep.findall(".//svg:g[@id]", NS)) == 6
    assert sweep.get("height") == str(LABEL_HEIGHT + 2 * 64)
    with pytest.raises(MinisketchError, match="one per temperature"):
        temperature_sweep_svg([row[:2]], temps)
    with pytest.raises(MinisketchError, match="3 labels for 4"):
        strip_svg(row, labels=["a", "b", "c"])


def test_single_point_and_degenerate_sketches():
    dot = np.array([[5, 5, 1]])
    assert stroke3_to_svg_paths(dot, size=100, padding=10) == ["M50.00,50.00 L50.00,50.00"]
    # a pen-up move to a point that is never drawn to still makes a one-point stroke
    line_then_dot = np.array([[0, 0, 0], [10, 0, 1], [0, 10, 1]])
    assert len(stroke3_to_svg_paths(line_then_dot)) == 2


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 3)), "empty"),
    (np.zeros((4, 5)), "stroke-5"),
    (np.zeros(3), r"\[N, 3\]"),
    (np.array([[0, 0, 0], [np.nan, 1, 1]]), "NaN"),
    (np.array([[0, 0, 2]]), "pen column"),
    (np.array([["a", "b", "c"]]), "numeric"),
])
def test_bad_sketches_raise_data_error(bad, match):
    with pytest.raises(DataError, match=match):
        to_svg(bad)


# ----------------------------------------------------------------------------- PNG

def test_png_is_not_blank_and_sized(tmp_path):
    path = tmp_path / "grid.png"
    save_png([make_sketch(seed=i) for i in range(3)], path, ncols=2, cell=100)
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert img.shape == (200, 200)
    assert img.std() > 10 and (img < 128).mean() > 0.005       # ink on a white page
    assert (img[100:, 100:] > 250).all()                       # the unused fourth cell is empty
    one = tmp_path / "one.png"
    save_drawing(np.array([[3, 4, 1]]), one, cell=64, labels=["dot"])  # a lone dot still shows
    assert np.asarray(Image.open(one).convert("L"), dtype=float).std() > 1


# ----------------------------------------------------------------------------- GIF

def gif_frames(path):
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


@pytest.mark.parametrize("n, stride", [(1, 1), (7, 1), (7, 3), (12, 4), (12, 50)])
def test_gif_frame_count(tmp_path, n, stride):
    sketch = make_sketch(n=n, lifts=())
    sketch[: n // 2, :2] = 0                   # zero-length steps: frames that look alike
    path = tmp_path / "a.gif"
    written = save_gif(sketch, path, stride=stride, cell=64)
    frames = gif_frames(path)
    assert written == len(frames) == math.ceil(n / stride) + 1 == gif_frame_count(sketch, stride)
    red = [((f[..., 0] > 150) & (f[..., 1] < 100)).any() for f in frames]
    assert all(red[:-1]) and not red[-1]       # the pen marker shows while drawing, then goes
    assert (frames[-1].mean(-1) < 100).any()   # the final frame has ink


def test_gif_grid_animates_all_sketches_together(tmp_path):
    sketches = [make_sketch(n=10), make_sketch(n=25, seed=1)]
    path = save_drawing(sketches, tmp_path / "g.gif", stride=2, cell=50)
    frames = gif_frames(path)
    assert len(frames) == math.ceil(25 / 2) + 1 and frames[0].shape == (50, 100, 3)
    ink = [(f.mean(-1) < 100).sum() for f in frames]
    assert ink[-1] > ink[0] > 0
    with pytest.raises(MinisketchError, match="stride"):
        save_gif(sketches, tmp_path / "x.gif", stride=0)


# ----------------------------------------------------------------------------- grey rows

@settings(max_examples=60, deadline=None)
@given(sketch=stroke3, data=st.data())
def test_grey_rows_split_the_strokes_at_the_boundary(sketch, data):
    """grey_rows = k: the grey paths are the strokes of rows < k, the black ones those of rows
    >= k, and a stroke crossing the boundary starts its black part at row k - 1."""
    k = data.draw(st.integers(0, len(sketch)))
    root = ET.fromstring(grid_svg([sketch], cell=100, grey_rows=[k]))
    paths = root.findall(".//svg:path", NS)
    grey = [len(parse_d(p.get("d"))) for p in paths if p.get("stroke") == GREY]
    black = [len(parse_d(p.get("d"))) for p in paths if p.get("stroke") is None]
    assert len(grey) + len(black) == len(paths)
    assert grey == [max(len(s), 2) for s in expected_strokes(sketch[:k])]   # a dot: M p L p
    tail = [len(s) for s in expected_strokes(sketch[k:])]
    if 0 < k < len(sketch) and sketch[k - 1, 2] == 0:     # joined to the last grey point
        tail[0] += 1
    assert black == [max(n, 2) for n in tail]


def test_grey_rows_in_png_and_gif(tmp_path):
    sketch = make_sketch(n=30)
    for ext in (".png", ".gif"):
        all_grey, all_black = tmp_path / f"g{ext}", tmp_path / f"b{ext}"
        save_drawing([sketch], all_grey, cell=100, grey_rows=[len(sketch)])
        save_drawing([sketch], all_black, cell=100, grey_rows=[0])
        with Image.open(all_grey) as im:
            im.seek(getattr(im, "n_frames", 1) - 1)
            g = np.asarray(im.convert("L"), dtype=float)
        with Image.open(all_black) as im:
            im.seek(getattr(im, "n_frames", 1) - 1)
            b = np.asarray(im.convert("L"), dtype=float)
        level = int(GREY[1:3], 16)
        assert g.min() >= level - 2 and (g < 250).mean() > 0.005, ext   # grey ink, nothing darker
        assert b.min() < 60, ext
    with pytest.raises(MinisketchError, match="one per sketch"):
        grid_svg([sketch, sketch], grey_rows=[1])


def test_gif_labels_add_a_band_under_each_cell(tmp_path):
    sketches = [make_sketch(n=10), make_sketch(n=12, seed=1)]
    path = save_drawing(sketches, tmp_path / "l.gif", cell=60, labels=["input", "output"])
    frames = gif_frames(path)
    assert frames[0].shape == (60 + LABEL_HEIGHT, 120, 3)
    band = frames[0][60:].mean(-1)
    assert (band[:, :60] < 128).any() and (band[:, 60:] < 128).any()   # text in both cells


# ----------------------------------------------------------------------------- .npz

def test_npz_round_trip_is_exact(tmp_path):
    fine = make_sketch(n=5, seed=2)
    fine[:, :2] += 1 / 3                               # values that need every float64 bit
    sketches = [make_sketch(seed=0).astype(np.int16), make_sketch(n=3, seed=1).astype(np.float32),
                fine]
    path = save_drawing(sketches, tmp_path / "s.npz")
    back = load_sketches_npz(path)
    assert len(back) == 3
    for a, b in zip(sketches, back):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    with np.load(path, allow_pickle=False) as z:     # plain numeric arrays, no pickles
        assert int(z["count"]) == 3 and all(z[k].dtype != object for k in z.files)
    save_drawing(sketches[0], tmp_path / "one.npz")
    np.testing.assert_array_equal(load_sketches_npz(tmp_path / "one.npz")[0], sketches[0])


def test_npz_reader_reads_datasets_and_refuses_bad_files(tmp_path):
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = np.zeros((3, 3), np.int16), np.zeros((4, 3), np.int16)
    dataset = tmp_path / "dataset.npz"
    np.savez(dataset, train=obj[:1], valid=obj, test=obj)        # sketch-rnn style (pickled)
    with pytest.raises(DataError, match="key='test'"):
        load_sketches_npz(dataset)
    back = load_sketches_npz(dataset, key="valid")               # read without unpickling code
    assert len(back) == 2 and all(np.array_equal(a, b) for a, b in zip(back, obj))
    with pytest.raises(DataError, match="no array 'tarin'"):
        load_sketches_npz(dataset, key="tarin")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, count=np.array(1), sketch_0=obj)
    with pytest.raises(DataError, match="cannot read"):
        load_sketches_npz(pickled)
    short = tmp_path / "short.npz"
    np.savez(short, count=np.array(2), sketch_0=np.zeros((2, 3)))
    with pytest.raises(DataError, match="sketch_1 missing"):
        load_sketches_npz(short)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match="cannot read"):
        load_sketches_npz(garbage)
    with pytest.raises(DataError, match="cannot read"):
        load_sketches_npz(tmp_path / "absent.npz")
    with pytest.raises(DataError, match="drawing file"):
        load_sketches_npz(short, key="test")


def test_reads_a_real_sketch_rnn_dataset():
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aaron_sheep.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared real data is not in this checkout)")
    sheep = load_sketches_npz(path, key="test")
    assert len(sheep) == 300 and all(s.ndim == 2 and s.shape[1] == 3 for s in sheep)
    assert len(ET.fromstring(grid_svg(sheep[:4])).findall(".//svg:g[@id]", NS)) == 4


# ----------------------------------------------------------------------------- atomic writes

@pytest.mark.parametrize("ext", [".svg", ".png", ".gif", ".npz"])
def test_errors_leave_no_file(tmp_path, ext, monkeypatch):
    good = [make_sketch(n=6)]
    with pytest.raises(DataError, match="empty"):
        save_drawing([make_sketch(), np.zeros((0, 3))], tmp_path / f"a{ext}")
    with pytest.raises(MinisketchError, match="cannot write"):
        save_drawing(good, tmp_path / "missing" / f"a{ext}")
    assert list(tmp_path.iterdir()) == []
    # a failure while replacing keeps the old file whole and removes the temporary one
    target = tmp_path / f"old{ext}"
    target.write_bytes(b"previous contents")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("minisketch.fileio.os.replace", broken_replace)
    with pytest.raises(MinisketchError, match="No space left"):
        save_drawing(good, target)
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"previous contents"
    monkeypatch.undo()
    save_drawing(good, target)
    assert target.read_bytes() != b"previous contents"


def test_unknown_extension(tmp_path):
    with pytest.raises(MinisketchError, match=r"\.svg, \.png, \.gif, \.npz"):
        save_drawing([make_sketch()], tmp_path / "a.jpg")
    assert list(tmp_path.iterdir()) == []
