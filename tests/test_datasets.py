"""load_dataset (every kind of SOURCE, preprocessing) and the seeded batch iterator."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_file

from minisketch.batching import BatchIterator, eval_batches
from minisketch.datasets import Dataset, load_dataset
from minisketch.errors import DataError
from minisketch.strokes import START_TOKEN, Augment, make_batch, scale_factor


def sketch(n, value=1, lift_every=4):
    s = np.zeros((n, 3), dtype=np.int16)
    s[:, 0] = value
    s[:, 1] = np.arange(n) % 7 - 3
    s[lift_every - 1::lift_every, 2] = 1
    s[-1, 2] = 1
    return s


def save_npz(path, train, valid, test):
    arrays = {}
    for k, v in (("train", train), ("valid", valid), ("test", test)):
        a = np.empty(len(v), dtype=object)
        for i, s in enumerate(v):
            a[i] = s
        arrays[k] = a
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------------ sources


def test_real_npz_with_a_length_limit_drops_and_counts():
    path = shared_file("aaron_sheep.npz")
    ref = np.load(path, allow_pickle=True, encoding="latin1")
    longer = sum(int(len(s) > 100) for k in ("train", "valid", "test") for s in ref[k])
    ds = load_dataset(path, max_seq_len=100)
    assert ds.dropped == longer > 0
    assert ds.max_seq_len == 100
    assert len(ds.train) == sum(int(len(s) <= 100) for s in ref["train"])
    kept = [s for s in ref["train"] if len(s) <= 100]
    assert ds.scale_factor == pytest.approx(np.std(np.concatenate([s[:, :2] for s in kept])))
    assert all(s.dtype == np.float32 for s in ds.train)


def test_npz_source_is_clamped_not_normalized(tmp_path):
    big = sketch(5)
    big[1, 0] = 5000
    path = save_npz(tmp_path / "a.npz", [big, sketch(7)], [sketch(3)], [sketch(4)])
    ds = load_dataset(path)
    assert isinstance(ds, Dataset) and ds.name == str(path) and ds.class_names == ["a"]
    assert ds.train[0].dtype == np.float32 and ds.train[0][1, 0] == 1000.0
    np.testing.assert_array_equal(ds.train[1], sketch(7))           # data units, untouched
    assert (ds.max_seq_len, ds.dropped) == (7, 0)
    assert ds.info()["splits"] == {"train": 2, "valid": 1, "test": 1}
    json.dumps(ds.info())


def test_several_sources_are_concatenated_split_by_split(tmp_path):
    a = save_npz(tmp_path / "a.npz", [sketch(5, 1)] * 3, [sketch(4, 1)], [sketch(6, 1)])
    b = save_npz(tmp_path / "b.npz", [sketch(9, 8)] * 2, [sketch(3, 8)] * 2, [sketch(12, 8)])
    ds = load_dataset([a, b], max_seq_len=10)
    assert [len(ds.train), len(ds.valid), len(ds.test)] == [5, 3, 1]
    assert ds.dropped == 1 and ds.max_seq_len == 9
    assert ds.class_names == ["a", "b"]
    assert ds.labels["train"].tolist() == [0, 0, 0, 1, 1]
    assert ds.labels["valid"].tolist() == [0, 1, 1]
    assert ds.scale_factor == pytest.approx(scale_factor(ds.train))
    assert ds.scale_factor != pytest.approx(load_dataset(a).scale_factor)
    assert ds.class_indices("valid", "b").tolist() == [1, 2]


def test_ndjson_source_is_converted_and_split_by_seed(tmp_path):
    lines = [json.dumps({"drawing": [[[0, 10 + i, 20], [0, 5, 9 + i]]]}) for i in range(40)]
    path = tmp_path / "things.ndjson"
    path.write_text("\n".join(lines) + "\n")
    a, b = load_dataset(path, seed=1), load_dataset(path, seed=1)
    c = load_dataset(path, seed=2)
    assert [len(a.train), len(a.valid), len(a.test)] == [36, 2, 2]
    assert all(np.array_equal(x, y) for x, y in zip(a.train, b.train))
    assert not all(np.array_equal(x, y) for x, y in zip(a.train, c.train))
    assert a.class_names == ["things"]


def test_builtin_shapes_is_labelled_and_seedable():
    other = load_dataset("builtin:shapes:1", max_seq_len=150)
    ds = load_dataset("builtin:shapes")
    assert [len(ds.train), len(ds.valid), len(ds.test)] == [4900, 350, 350]
    assert len(ds.class_names) >= 6 and "circle" in ds.class_names
    assert ds.max_seq_len <= 150 and ds.dropped == 0 == other.dropped
    circles = ds.class_indices("test", "circle")
    assert len(circles) == 50 and (ds.labels["test"][circles] == 0).all()
    assert not np.array_equal(other.train[0], ds.train[0])


@pytest.mark.parametrize("source, pattern", [
    ("missing/file.npz", "does not exist"),
    ("nothing_here.ndjson", "does not exist"),
    ("what?", "neither a file nor a QuickDraw class name"),
    ("builtin:nope", "unknown built-in dataset"),
    ("builtin:shapes:x", "whole number"),
    ([], "no data source"),
])
def test_bad_sources_are_clear_errors(source, pattern):
    with pytest.raises(DataError, match=pattern):
        load_dataset(source)


def test_folder_and_over_strict_limit_are_errors(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        load_dataset(tmp_path)
    path = save_npz(tmp_path / "a.npz", [sketch(5)], [sketch(9)], [sketch(4)])
    with pytest.raises(DataError, match="no valid sketches with at most 6 points"):
        load_dataset(path, max_seq_len=6)


# ------------------------------------------------------------------------------------ batching


def numbered(n):
    """n sketches whose first dx is their index (so a batch row tells which sketch it is)."""
    out = []
    for i in range(n):
        s = sketch(3 + i % 5).astype(np.float32)
        s[0, 0] = i
        out.append(s)
    return out


def test_random_batches_follow_the_reference_draw_and_never_repeat():
    sk = numbered(30)
    it = BatchIterator(sk, batch_size=8, max_len=8, scale_factor=1.0, rng=5)
    ref = np.random.default_rng(5)
    for _ in range(5):
        x, lengths = it.next_batch()
        idx = ref.permutation(30)[:8]
        rows = x[:, 1, 0].astype(int)
        assert rows.tolist() == idx.tolist() and len(set(rows)) == 8
        assert lengths.tolist() == [len(sk[i]) for i in idx]
        np.testing.assert_array_equal(x[:, 0], np.tile(START_TOKEN, (8, 1)))


def test_augmented_batches_resume_exactly_from_saved_state():
    sk = numbered(30)
    it = BatchIterator(sk, 6, 8, 2.0, rng=np.random.default_rng(9), augment=Augment(0.15, 0.3))
    it.next_batch()
    state = json.loads(json.dumps(it.get_state()))          # survives a JSON round trip
    expected = [it.next_batch() for _ in range(3)]
    fresh = BatchIterator(sk, 6, 8, 2.0, rng=123, augment=Augment(0.15, 0.3))
    fresh.set_state(state)
    for want, got in zip(expected, (next(fresh) for _ in range(3))):
        np.testing.assert_array_equal(got.strokes, want.strokes)
        np.testing.assert_array_equal(got.lengths, want.lengths)
    # the same sketches without augmentation: offsets differ by a factor within 1 +- 0.15
    probe = BatchIterator(sk, 6, 8, 2.0, rng=0)
    probe.set_state(state)
    idx = probe.next_indices()
    plain = make_batch([sk[i] for i in idx], 8, 2.0)
    assert not np.array_equal(expected[0].strokes, plain.strokes)
    nonzero = plain.strokes[:, 1, 0] != 0
    ratio = expected[0].strokes[nonzero, 1, 0] / plain.strokes[nonzero, 1, 0]
    assert ((ratio >= 0.85 - 1e-6) & (ratio <= 1.15 + 1e-6)).all() and nonzero.sum() >= 4


def test_eval_batches_cover_every_sketch_once_in_order():
    sk = numbered(23)
    seen = []
    for batch, n_real in eval_batches(sk, batch_size=10, max_len=8, scale_factor=1.0):
        assert len(batch.strokes) == n_real
        seen += batch.strokes[:, 1, 0].astype(int).tolist()
    assert seen == list(range(23))
    padded = list(BatchIterator(sk, 10, 8, 1.0).eval_batches(pad=True))
    assert [n for _, n in padded] == [10, 10, 3]
    last = padded[-1].batch.strokes
    assert last.shape == (10, 9, 5) and (last[3:, 1, 0] == 22).all()


def test_batch_iterator_errors():
    with pytest.raises(DataError, match="larger than the 3 sketches"):
        BatchIterator(numbered(3), batch_size=4, max_len=8, scale_factor=1.0)
    it = BatchIterator(numbered(5), 2, 8, 1.0, rng=np.random.Generator(np.random.MT19937(0)))
    with pytest.raises(DataError, match="PCG64"):
        it.set_state(np.random.default_rng(0).bit_generator.state)
