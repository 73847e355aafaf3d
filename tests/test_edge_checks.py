"""Values checked at the API's edges (issue 19 items 8, 14, 18 and the empty batch): one clear
MinisketchError/DataError instead of silent garbage or a traceback from deep inside."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import minisketch as ms
from minisketch.errors import DataError, MinisketchError
from minisketch.hparams import CHOICES, RANGES, HParams
from minisketch.strokes import make_batch

GOOD = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 1.0]], np.float32)


# ----------------------------------------------------------------------------- make_batch

@pytest.mark.parametrize("bad, fragment", [
    (np.zeros((3, 5), np.float32), "shape [3, 5]"),
    (np.zeros((3, 4), np.float32), "shape [3, 4]"),
    (np.zeros((6,), np.float32), "shape [6]"),
    (np.array([[1.0, np.nan, 0.0]]), "NaN or infinite"),
    (np.array([[np.inf, 0.0, 1.0]]), "NaN or infinite"),
    (np.array([[1.0, 1.0, 7.0]]), "pen value"),
    (np.array([[1.0, 1.0, -3.0]]), "pen value"),
    (np.array([[1.0, 1.0, 0.4]]), "pen value"),
    (np.array([["a", "b", "c"]]), "dtype <U1"),
], ids=["stroke5", "4_columns", "flat", "nan", "inf", "pen_7", "pen_-3", "pen_0.4", "text"])
def test_make_batch_refuses_what_is_not_stroke3(bad, fragment):
    with pytest.raises(DataError, match="sketch 1 of the batch") as e:
        make_batch([GOOD, bad], max_len=10)
    assert fragment in str(e.value)


def test_make_batch_refuses_unusable_lengths_and_scale():
    with pytest.raises(DataError, match="max_len must be an integer from 1 to 10000"):
        make_batch([GOOD], max_len=10 ** 9)
    with pytest.raises(DataError, match="scale_factor"):
        make_batch([GOOD], max_len=10, scale_factor=float("nan"))
    batch = make_batch([GOOD], max_len=3)
    assert batch.strokes.shape == (1, 4, 5) and batch.lengths.tolist() == [2]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_loss_and_grad_on_an_empty_batch_says_so(backend):
    hp = HParams(enc_rnn_size=4, dec_rnn_size=8, z_size=2, num_mixture=2, max_seq_len=5)
    model = ms.SketchRNN(hp, backend=backend, seed=0)
    empty = make_batch([], max_len=5)
    with pytest.raises(DataError, match="needs at least one sketch, got an empty batch"):
        model.loss_and_grad(empty, 0)


# ----------------------------------------------------------------------------- save_drawing

@pytest.mark.parametrize("ext", [".svg", ".png", ".gif", ".npz"])
def test_save_drawing_refuses_offsets_that_overflow(tmp_path, ext):
    huge = np.array([[1e308, 1e308, 0.0], [1e308, -1e308, 1.0]])
    out = tmp_path / f"x{ext}"
    with pytest.raises(DataError, match="offsets are too large"):
        ms.save_drawing([huge], out)
    assert not out.exists()
    ms.save_drawing([np.array([[1e300, 0.0, 0.0], [-1e300, 1.0, 1.0]])], out)   # finite: fine
    if ext == ".svg":
        assert "nan" not in out.read_text().lower()


# ----------------------------------------------------------------------------- HParams

def _bad_values(name):
    """Values of the wrong type, NaN, and just outside the range of field ``name``."""
    if name in CHOICES:
        return ["gru", 1, None]
    kind = next(f.type for f in dataclasses.fields(HParams) if f.name == name)
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "bool":
        return [1, "yes", None, 0.0]
    lo, hi, lo_open = RANGES[name]
    out = ["1", None, True, float("nan"), float("inf")]
    if kind == "int":
        out += [lo - 1, hi + 1, 2.5]
    else:
        out += [hi * 1.5 + 1, -math.inf] + ([lo] if lo_open else [lo - 0.5])
    return out


CASES = [(f.name, v) for f in dataclasses.fields(HParams) for v in _bad_values(f.name)]


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_every_hparam_field_checks_its_type_and_range(name, value):
    with pytest.raises(MinisketchError, match=name):
        HParams(**{name: value})
    with pytest.raises(MinisketchError, match=name):
        HParams.from_dict({**HParams().to_dict(), name: value})


def test_hparams_normalize_numbers_to_plain_json():
    hp = HParams(learning_rate=1, dec_rnn_size=np.int64(16), conditional=np.bool_(False),
                 min_learning_rate=0)
    assert hp.learning_rate == 1.0 and type(hp.learning_rate) is float
    assert type(hp.dec_rnn_size) is int and hp.conditional is False
    with pytest.raises(MinisketchError, match="min_learning_rate"):
        HParams(learning_rate=0.001, min_learning_rate=0.01)
    with pytest.raises(MinisketchError, match="mapping"):
        HParams.from_dict(["dec_rnn_size", 3])
