"""Export to magenta.js ``.gen.json``: round trip within a derived quantization bound, refusal of
models magenta.js cannot run, the clipping warning, the CLI."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from minisketch import export
from minisketch.checkpoint import load_model, save_model
from minisketch.errors import ModelError, run_cli
from minisketch.hparams import HParams
from minisketch.magenta import FLOAT32_BOUND, read_gen_json
from minisketch.model import SketchRNN

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCALE = 13.5


def _model(dtype="float64", seed=0, **kw):
    hp = dict(conditional=False, dec_rnn_size=8, num_mixture=20, max_seq_len=40)
    hp.update(kw)
    return SketchRNN(HParams(**hp), backend="numpy", dtype=dtype, seed=seed, scale_factor=SCALE)


def _sketch5(L, seed=0):
    rng = np.random.default_rng(seed)
    s5 = np.zeros((L, 5))
    s5[:, 0:2] = rng.normal(0, SCALE, (L, 2))
    lift = rng.random(L) < 0.3
    s5[:, 2], s5[:, 3] = ~lift, lift
    return s5


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_quantization_bound(w, inputs, delta):
    """Rigorous bound on how much the decoder's raw outputs can move when every weight moves by
    at most ``delta`` (the quantization error), for the inputs ``inputs`` [T, 5].

    w: float64 weights of the original model. Runs the original LSTM (SPEC 3) in float64 and
    carries elementwise bounds Dh, Dc on |h' - h|, |c' - c| (primes: perturbed model):

        |a' - a| <= delta (sum|x| + sum(|h_prev| + Dh_prev) + 1) + Dh_prev @ |W_hh|     = Da
        sigmoid is 1/4-Lipschitz, tanh 1-Lipschitz: Di = Da_i/4, Dg = Da_j, Df = Da_f/4, Do = Da_o/4
        c' - c = f'(c'_p - c_p) + (f' - f) c_p + (i' - i) g' + i (g' - g)
            -> Dc = min(f + Df, 1) Dc_p + Df |c_p| + Di min(|g| + Dg, 1) + i Dg
        h' - h = o' (tanh c' - tanh c) + (o' - o) tanh c  -> Dh = min(o + Do, 1) Dc + Do |tanh c|
        |y' - y| <= Dh @ |W_out| + delta (sum(|h| + Dh) + 1)                               = Dy

    Returns (y [T, 6M+3], Dy [T, 6M+3]) with y the original raw outputs.
    """
    Wx, Wh, b, Wo, bo = (w[k] for k in ("dec/W_xh", "dec/W_hh", "dec/b", "out/W", "out/b"))
    H = Wh.shape[0]
    h, c = np.zeros(H), np.zeros(H)
    Dh, Dc = np.zeros(H), np.zeros(H)
    ys, Dys = [], []
    for x in inputs:
        a = x @ Wx + h @ Wh + b
        Da = delta * (np.abs(x).sum() + (np.abs(h) + Dh).sum() + 1) + Dh @ np.abs(Wh)
        i, g = _sigmoid(a[:H]), np.tanh(a[H:2 * H])
        f, o = _sigmoid(a[2 * H:3 * H] + 1.0), _sigmoid(a[3 * H:])
        Di, Dg, Df, Do = Da[:H] / 4, Da[H:2 * H], Da[2 * H:3 * H] / 4, Da[3 * H:] / 4
        Dc = np.minimum(f + Df, 1) * Dc + Df * np.abs(c) + Di * np.minimum(np.abs(g) + Dg, 1) \
            + i * Dg
        c = f * c + i * g
        tc = np.tanh(c)
        Dh = np.minimum(o + Do, 1) * Dc + Do * np.abs(tc)
        h = o * tc
        ys.append(h @ Wo + bo)
        Dys.append(Dh @ np.abs(Wo) + delta * ((np.abs(h) + Dh).sum() + 1))
    return np.array(ys), np.array(Dys)


def mixture_bounds(y, Dy, M):
    """Bounds on the mixture parameters from bounds Dy on the raw outputs:
    softmax: p'_k / p_k in [e^-2eps, e^2eps] (eps = the largest logit change of the group), so
    |p' - p| <= p (e^2eps - 1); mu: Dy; sigma = exp: sigma (e^Dy - 1); rho = tanh: Dy."""
    def softmax(v):
        e = np.exp(v - v.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    pen, pi = softmax(y[:, :3]), softmax(y[:, 3:3 + M])
    blk = lambda a, k: a[:, 3 + k * M:3 + (k + 1) * M]                      # noqa: E731
    eps_pen = Dy[:, :3].max(axis=1, keepdims=True)
    eps_pi = Dy[:, 3:3 + M].max(axis=1, keepdims=True)
    return {"pen": pen * np.expm1(2 * eps_pen), "pi": pi * np.expm1(2 * eps_pi),
            "mu_x": blk(Dy, 1), "mu_y": blk(Dy, 2),
            "sigma_x": np.exp(blk(y, 3)) * np.expm1(blk(Dy, 3)),
            "sigma_y": np.exp(blk(y, 4)) * np.expm1(blk(Dy, 4)), "rho": blk(Dy, 5)}


def test_round_trip_within_the_quantization_bound(tmp_path):
    model = _model(seed=2)
    rng = np.random.default_rng(0)
    for name in ("dec/b", "out/b"):      # nonzero biases, so they are quantized too
        model.params[name][...] = rng.normal(0, 0.3, model.params[name].shape)
    path = tmp_path / "m.gen.json"
    report = export.export_gen_json(model, path)
    assert report.n_clipped == 0

    info, arrays = read_gen_json(path)
    assert info["name"] == "m" and info["mode"] == 2 and info["version"] == 6
    assert info["scale_factor"] == SCALE and info["max_seq_len"] == 40
    w = {k: np.asarray(v, dtype=np.float64) for k, v in model.state_dict().items()}
    for k, a in arrays.items():                    # the module's proven per-weight bound
        assert np.max(np.abs(a.astype(np.float64) - w[k])) <= FLOAT32_BOUND

    # the file's weights in a float64 model: differences come from quantization alone
    quant = _model(seed=2)
    quant.load_state_dict({k: a.astype(np.float64) for k, a in arrays.items()})
    s5 = _sketch5(16)
    want, got = model.mixture(s5), quant.mixture(s5)
    inputs = np.vstack([[0, 0, 1, 0, 0], s5 * [1 / SCALE, 1 / SCALE, 1, 1, 1]])
    y, Dy = lstm_quantization_bound(w, inputs, FLOAT32_BOUND)
    bounds = mixture_bounds(y, Dy, 20)
    # our float64 LSTM is the model's (so the bound is about the model's own values)
    np.testing.assert_allclose(y[:, 3 + 20:3 + 40], want["mu_x"], rtol=1e-10, atol=1e-12)
    moved = 0.0
    for k, bound in bounds.items():
        diff = np.abs(got[k] - want[k])
        assert np.all(diff <= bound + 1e-12), (k, np.max(diff - bound))
        moved = max(moved, diff.max())
    assert moved > 0                                # quantization did change the outputs
    # the bound is informative where it has not compounded yet: first 4 steps, |dmu| < 0.01
    assert bounds["mu_x"][:4].max() < 1e-2 and bounds["pen"][:4].max() < 1e-2

    # load_model reads the same file as a float32 model: equal to the float64 one up to float32
    # rounding of a few steps (1e-4 absolute is ~1000 float32 ulps at these magnitudes)
    loaded = load_model(path)
    assert not loaded.hp.conditional and loaded.hp.num_mixture == 20
    assert loaded.scale_factor == SCALE and loaded.hp.max_seq_len == 40
    f32 = loaded.mixture(s5)
    for k in want:
        np.testing.assert_allclose(f32[k], got[k], atol=1e-4, rtol=1e-4, err_msg=k)


@pytest.mark.skipif(not (SHARED / "pretrained" / "sheep.gen.json").is_file(),
                    reason="../shared/data/pretrained/sheep.gen.json is absent")
def test_pretrained_model_exports_to_the_same_integers(tmp_path):
    """Weights read from a .gen.json sit on the int16 grid, so exporting them again writes the
    very same integers (float32 rounding moves a weight by < 0.01 grid steps)."""
    src = SHARED / "pretrained" / "sheep.gen.json"
    model = load_model(src)
    out = tmp_path / "sheep.gen.json"
    export.export_gen_json(model, out, name="sheep")
    a, b = json.loads(src.read_text()), json.loads(out.read_text())
    assert a[1] == b[1] and a[2] == b[2]
    assert b[0]["scale_factor"] == pytest.approx(a[0]["scale_factor"], rel=1e-12)
    assert b[0]["max_seq_len"] == a[0]["max_seq_len"] and b[0]["name"] == "sheep"


@pytest.mark.parametrize("kw,why", [
    (dict(conditional=True, enc_rnn_size=4, z_size=3), "conditional"),
    (dict(dec_model="hyper", hyper_num_units=4, hyper_embedding_size=2), "hyper"),
    (dict(dec_model="layer_norm"), "layer_norm"),
    (dict(num_mixture=10), "M = 20"),
])
def test_refuses_models_magenta_cannot_run(kw, why, tmp_path):
    model = _model(**kw)
    with pytest.raises(ModelError, match=why):
        export.export_gen_json(model, tmp_path / "x.gen.json")
    assert list(tmp_path.iterdir()) == []


def test_refusal_names_every_reason(tmp_path):
    model = _model(conditional=True, enc_rnn_size=4, z_size=3, dec_model="layer_norm",
                   num_mixture=5)
    with pytest.raises(ModelError) as e:
        export.export_gen_json(model, tmp_path / "x.gen.json")
    msg = str(e.value)
    assert "conditional" in msg and "layer_norm" in msg and "num_mixture = 5" in msg


def _with_big_weights(model):
    model.params["out/W"][0, 0] = 12.5
    model.params["dec/b"][3] = -11.0
    return model


def test_clipping_warns_with_count_and_largest(tmp_path):
    model = _with_big_weights(_model())
    path = tmp_path / "big.gen.json"
    with pytest.warns(UserWarning, match=r"2 of \d+ weights .* clipped .*12\.5"):
        report = export.export_gen_json(model, path)
    assert report.n_clipped == 2 and report.max_abs == 12.5
    _, arrays = read_gen_json(path)
    assert arrays["out/W"][0, 0] == 10.0 and arrays["dec/b"][3] == -10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no warning when nothing is clipped
        export.export_gen_json(_model(), tmp_path / "ok.gen.json")


def test_cli(tmp_path, capsys):
    src = tmp_path / "model.npz"
    save_model(_with_big_weights(_model(dtype="float32")), src)
    out = tmp_path / "web.gen.json"
    rc = run_cli(export.main, ["--model", str(src), "--out", str(out), "--name", "shapes"])
    o, e = capsys.readouterr()
    assert rc == 0, e
    assert e.startswith("warning: 2 of ") and "12.5" in e and len(e.strip().splitlines()) == 1
    info, _ = read_gen_json(out)
    assert info["name"] == "shapes" and "wrote" in o

    save_model(_model(conditional=True, enc_rnn_size=4, z_size=3), tmp_path / "vae.npz")
    for argv, mention in [
            (["--model", str(tmp_path / "vae.npz"), "--out", str(tmp_path / "v.gen.json")],
             "conditional"),
            (["--model", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "a.gen.json")],
             "no model"),
            (["--model", str(src), "--out", str(tmp_path / "x.svg")], ".json"),
            (["--model", str(src), "--out", str(tmp_path / "no" / "x.gen.json")],
             "does not exist")]:
        before = sorted(p.name for p in tmp_path.iterdir())
        rc = run_cli(export.main, argv)
        _, e = capsys.readouterr()
        assert rc == 1 and e.startswith("error: ") and mention in e, (argv, e)
        assert len(e.strip().splitlines()) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(SystemExit) as ex:
        export.main(["--help"])
    assert ex.value.code == 0 and "--name" in capsys.readouterr().out
