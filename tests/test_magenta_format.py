"""magenta.js .gen.json format: reading the pretrained models, round trips, malformed files.

The pretrained models are checked with an LSTM forward written here in plain float64 NumPy,
independent of minisketch's layers, against the reference vector of SPEC section 5.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from minisketch.errors import MinisketchError, ModelError
from minisketch.magenta import (ARRAY_NAMES, FLOAT32_BOUND, ROUND_TRIP_BOUND, dequantize,
                                quantize, read_gen_json, write_gen_json)

PRETRAINED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pretrained"
SHEEP_PEN_AT_S0 = (0.9959959, 0.0040026, 0.0000015)  # SPEC section 5, tau = 1


def needs(name: str) -> Path:
    path = PRETRAINED / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared pretrained models are not in this checkout)")
    return path


# ----------------------------------------------------------------------------- reference forward

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_decoder_outputs(arrays, inputs):
    """Float64 decoder-only LSTM from the zero state: inputs [T, 5] -> outputs [T, 6M+3].

    Gate blocks i, j, f, o; forget bias +1 inside the sigmoid;
    c = c * sig(f + 1) + sig(i) * tanh(j); h = tanh(c) * sig(o); y = h @ W_out + b_out.
    """
    W_xh, W_hh, b = (arrays[k].astype(np.float64) for k in ("dec/W_xh", "dec/W_hh", "dec/b"))
    W_out, b_out = arrays["out/W"].astype(np.float64), arrays["out/b"].astype(np.float64)
    H = W_hh.shape[0]
    h, c = np.zeros(H), np.zeros(H)
    ys = []
    for x in np.asarray(inputs, dtype=np.float64):
        a = x @ W_xh + h @ W_hh + b
        i, j, f, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        c = c * sigmoid(f + 1.0) + sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * sigmoid(o)
        ys.append(h @ W_out + b_out)
    return np.array(ys)


def split_outputs(y, M):
    """[pen logits (3) | pi logits (M) | mu_x | mu_y | log sigma_x | log sigma_y | rho logits]."""
    def softmax(v):
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    pen, rest = y[..., :3], y[..., 3:]
    pi, mu_x, mu_y, ls_x, ls_y, rho = np.split(rest, 6, axis=-1)
    assert pi.shape[-1] == M
    return {"pen": softmax(pen), "pi": softmax(pi), "mu_x": mu_x, "mu_y": mu_y,
            "sigma_x": np.exp(ls_x), "sigma_y": np.exp(ls_y), "rho": np.tanh(rho)}


def test_sheep_pen_probabilities_at_start_token():
    info, arrays = read_gen_json(needs("sheep.gen.json"))
    assert info["name"] == "sheep" and info["scale_factor"] == pytest.approx(63.0983)
    assert (info["dec_rnn_size"], info["num_mixture"]) == (512, 20)
    s0 = np.array([[0.0, 0.0, 1.0, 0.0, 0.0]])  # offsets are 0, so scale_factor does not enter
    out = split_outputs(lstm_decoder_outputs(arrays, s0), M=20)
    np.testing.assert_allclose(out["pen"][0], SHEEP_PEN_AT_S0, rtol=0, atol=1e-6)
    # a second step from a real offset (divided by the scale factor) stays a valid distribution
    x1 = np.array([[5.0 / info["scale_factor"], -3.0 / info["scale_factor"], 1, 0, 0]])
    out2 = split_outputs(lstm_decoder_outputs(arrays, np.vstack([s0, x1])), M=20)
    assert np.allclose(out2["pi"].sum(-1), 1) and np.all(np.abs(out2["rho"]) < 1)
    assert not np.allclose(out2["pen"][1], out2["pen"][0])


def test_loaded_model_mixture_along_a_real_sketch_matches_float64():
    """ms.load_model(sheep.gen.json).mixture along a real Sheep Market sketch equals this file's
    independent float64 forward, component by component, to 1e-6 (float64 model)."""
    from minisketch.checkpoint import load_model
    from minisketch.safe_npz import load_npz
    from minisketch.strokes import stroke3_to_stroke5

    path = needs("sheep.gen.json")
    sheep = PRETRAINED.parent / "aaron_sheep.npz"
    if not sheep.exists():
        pytest.skip(f"{sheep} is absent (real datasets live in ../shared/data)")
    info, arrays = read_gen_json(path)
    model = load_model(path, dtype="float64")
    assert model.scale_factor == pytest.approx(info["scale_factor"])
    sketch = np.asarray(load_npz(sheep)["test"][0], dtype=np.float64)[:60]
    s5 = stroke3_to_stroke5(sketch)[:len(sketch)]                   # [L, 5], data units
    got = model.mixture(s5)
    inputs = np.vstack([[0.0, 0.0, 1.0, 0.0, 0.0], s5])
    inputs[1:, :2] /= info["scale_factor"]
    want = split_outputs(lstm_decoder_outputs(arrays, inputs), M=20)
    assert got["pi"].shape == (len(s5) + 1, 20)
    for k in ("pen", "pi", "mu_x", "mu_y", "sigma_x", "sigma_y", "rho"):
        err = np.max(np.abs(got[k] - want[k]) / np.maximum(np.abs(want[k]), 1.0))
        assert err < 1e-6, f"{k}: max error {err:.2e} along the sketch (tolerance 1e-6)"


def test_bird_loads():
    info, arrays = read_gen_json(needs("bird.gen.json"))
    assert info["name"] == "bird" and info["mode"] == 2 and info["max_seq_len"] == 129
    shapes = {k: v.shape for k, v in arrays.items()}
    assert shapes == {"out/W": (512, 123), "out/b": (123,), "dec/W_xh": (5, 2048),
                      "dec/W_hh": (512, 2048), "dec/b": (2048,)}
    assert all(a.dtype == np.float32 and np.all(np.abs(a) <= 10) for a in arrays.values())
    pen = split_outputs(lstm_decoder_outputs(arrays, [[0, 0, 1, 0, 0]]), M=20)["pen"][0]
    assert pen.sum() == pytest.approx(1.0) and pen[0] > 0.5  # a drawing starts pen-down


# ----------------------------------------------------------------------------- round trip

def random_arrays(rng, H=3, M=20, scale=4.0):
    shapes = {"out/W": (H, 6 * M + 3), "out/b": (6 * M + 3,), "dec/W_xh": (5, 4 * H),
              "dec/W_hh": (H, 4 * H), "dec/b": (4 * H,)}
    return {k: rng.normal(0.0, scale, size=s) for k, s in shapes.items()}


INFO = {"name": "test", "scale_factor": 12.5, "max_seq_len": 40}


def test_quantization_bound_is_tight_and_holds():
    w = np.linspace(-10, 10, 200_001)
    err = np.abs(w - dequantize(quantize(w), np.float64))
    assert err.max() <= ROUND_TRIP_BOUND * (1 + 1e-9)
    assert err.max() > 0.99 * ROUND_TRIP_BOUND  # the bound is attained (half a step)
    assert quantize([10.0, -10.0, 11.0, -1e9]).tolist() == [32767, -32767, 32767, -32767]


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = random_arrays(rng)
    arrays["dec/W_hh"][0, :3] = [10.2, -13.0, 10.0]        # two beyond +-10, one exactly 10
    path = tmp_path / "m.gen.json"
    report = write_gen_json(path, arrays, INFO)
    big = sum(int(np.count_nonzero(np.abs(a) > 10 + ROUND_TRIP_BOUND)) for a in arrays.values())
    assert report.n_clipped == big >= 2
    assert report.max_abs == pytest.approx(max(np.abs(a).max() for a in arrays.values()))
    assert report.n_weights == sum(a.size for a in arrays.values())
    assert report.max_error >= 3.0 - 1e-9                   # the -13 entry lost 3
    info, back = read_gen_json(path)
    assert {k: info[k] for k in ("name", "scale_factor", "max_seq_len", "mode", "version")} == \
        {**INFO, "mode": 2, "version": 6}
    for name in ARRAY_NAMES:
        w, r = arrays[name], back[name].astype(np.float64)
        inside = np.abs(w) <= 10
        assert back[name].dtype == np.float32 and r.shape == w.shape
        assert np.all(np.abs(w - r)[inside] <= FLOAT32_BOUND), name
        np.testing.assert_array_equal(r[~inside], np.sign(w[~inside]) * 10.0)
    # a second write of what was read reproduces the file's integers exactly
    write_gen_json(tmp_path / "again.gen.json", back, info)
    a, b = (json.loads(p.read_text()) for p in (path, tmp_path / "again.gen.json"))
    assert a[1:] == b[1:]


def test_write_refuses_bad_models(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "m.gen.json"
    with pytest.raises(ModelError, match="M = 20"):
        write_gen_json(path, random_arrays(rng, M=5), INFO)
    bad = random_arrays(rng)
    bad["dec/b"][0] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        write_gen_json(path, bad, INFO)
    with pytest.raises(ModelError, match="arrays"):
        write_gen_json(path, {k: v for k, v in random_arrays(rng).items() if k != "dec/b"}, INFO)
    with pytest.raises(ModelError, match="dec/W_xh"):
        arrays = random_arrays(rng)
        arrays["dec/W_xh"] = rng.normal(size=(6, 12))
        write_gen_json(path, arrays, INFO)
    with pytest.raises(ModelError, match="scale_factor"):
        write_gen_json(path, random_arrays(rng), {**INFO, "scale_factor": 0.0})
    with pytest.raises(ModelError, match="missing name"):
        write_gen_json(path, random_arrays(rng), {"scale_factor": 1.0, "max_seq_len": 3})
    with pytest.raises(MinisketchError, match="cannot write"):
        write_gen_json(tmp_path / "no" / "such" / "dir.gen.json", random_arrays(rng), INFO)
    assert list(tmp_path.iterdir()) == []                   # nothing half-written anywhere


# ----------------------------------------------------------------------------- malformed files

def valid_doc(H=2, M=3):
    """A well-formed decoder-only LSTM document with M != 20 (readable, not exportable)."""
    rng = np.random.default_rng(2)
    arrays = random_arrays(rng, H=H, M=M, scale=1.0)
    return [{"name": "x", "scale_factor": 3.5, "max_seq_len": 10, "mode": 2, "version": 6},
            [list(arrays[k].shape) for k in ARRAY_NAMES],
            [base64.b64encode(quantize(arrays[k]).astype("<i2").tobytes()).decode()
             for k in ARRAY_NAMES]], arrays


def test_reads_any_consistent_mixture_count(tmp_path):
    doc, arrays = valid_doc(H=2, M=3)
    path = tmp_path / "m3.gen.json"
    path.write_text(json.dumps(doc))
    info, back = read_gen_json(path)
    assert (info["dec_rnn_size"], info["num_mixture"]) == (2, 3)
    for k in ARRAY_NAMES:
        assert np.all(np.abs(back[k] - arrays[k]) <= FLOAT32_BOUND)
    doc[0]["mode"] = "gen"
    path.write_text(json.dumps(doc))
    assert read_gen_json(path)[0]["mode"] == "gen"


def _mutate(fn):
    doc, _ = valid_doc()
    fn(doc)
    return json.dumps(doc)


def _set(i, key, value):
    def f(doc):
        if value is _DROP:
            del doc[i][key]
        else:
            doc[i][key] = value
    return f


_DROP = object()
_b64 = lambda a: base64.b64encode(np.asarray(a, "<i2").tobytes()).decode()  # noqa: E731

MALFORMED = {
    "bad json": ("[{\"mode\": 2,", "not valid JSON"),
    "not a list": ('{"info": {}}', r"JSON list \[info, shapes, weights\]"),
    "two elements": (json.dumps([{}, []]), "got a list of 2"),
    "info not object": (_mutate(lambda d: d.__setitem__(0, [1, 2])), "info"),
    "missing scale_factor": (_mutate(_set(0, "scale_factor", _DROP)), "missing scale_factor"),
    "missing mode": (_mutate(_set(0, "mode", _DROP)), "missing mode"),
    "conditional mode": (_mutate(_set(0, "mode", 0)), "only decoder-only"),
    "mode vae": (_mutate(_set(0, "mode", "vae")), "only decoder-only"),
    "scale_factor nan": (_mutate(_set(0, "scale_factor", float("nan"))), "finite positive"),
    "scale_factor inf": (_mutate(_set(0, "scale_factor", float("inf"))), "finite positive"),
    "scale_factor zero": (_mutate(_set(0, "scale_factor", 0)), "finite positive"),
    "scale_factor negative": (_mutate(_set(0, "scale_factor", -2.0)), "finite positive"),
    "scale_factor string": (_mutate(_set(0, "scale_factor", "63")), "finite positive"),
    "max_seq_len bad": (_mutate(_set(0, "max_seq_len", 2.5)), "max_seq_len"),
    "four shapes": (_mutate(lambda d: d[1].pop()), "expected 5 array shapes"),
    "four arrays": (_mutate(lambda d: d[2].pop()), "expected 5 weight arrays"),
    "shape not ints": (_mutate(lambda d: d[1].__setitem__(1, ["15"])), "positive integers"),
    "outputs not 6M+3": (_mutate(lambda d: (d[1][0].__setitem__(1, 16),
                                            d[1][1].__setitem__(0, 16))), "6M\\+3"),
    "conditional inputs": (_mutate(lambda d: d[1][2].__setitem__(0, 5 + 128)), "dec/W_xh"),
    "gates not 4H": (_mutate(lambda d: d[1][4].__setitem__(0, 9)), "dec/b"),
    "out/b mismatch": (_mutate(lambda d: d[1][1].__setitem__(0, 22)), "out/b"),
    "bad base64": (_mutate(lambda d: d[2].__setitem__(1, "@@not base64@@")), "not valid base64"),
    "weights not string": (_mutate(lambda d: d[2].__setitem__(1, [1, 2])), "base64 string"),
    "truncated weights": (_mutate(lambda d: d[2].__setitem__(0, _b64(np.zeros(7)))),
                          "hold 14 bytes"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_one_clear_error(tmp_path, case):
    text, pattern = MALFORMED[case]
    path = tmp_path / "bad.gen.json"
    path.write_text(text)
    with pytest.raises(ModelError, match=pattern) as e:
        read_gen_json(path)
    assert str(path) in str(e.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(ModelError, match="cannot read"):
        read_gen_json(tmp_path / "absent.gen.json")
    path = tmp_path / "bin.gen.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelError, match="not a magenta.js model"):
        read_gen_json(path)
