"""The whole SketchRNN: exact gradients in every cell combination, the fast path equal to the
reference functions, reference parameter counts, float32 = float64 on real data, overfitting,
the magenta.js sheep reference, determinism.

Whole-model gradient checks: float64 central differences (eps 1e-6) of ``loss`` from
``loss_and_grad(batch, step)`` (same seed and step, so the same eps and dropout masks), and of
the loss of ``layers.sketch_rnn.sketch_rnn_forward``, against their gradients, for every
parameter tensor (a random subset of entries of each); metric of ``minisketch.gradcheck``: max
over entries of |a - n| / max(|a| + |n|, floor), tolerance 1e-6.
The fast path (``loss_and_grad``, in row blocks) against ``sketch_rnn_forward`` /
``sketch_rnn_backward`` on the same parameters, batch and noise: float64, every loss to 1e-12
relative and every gradient tensor, by name, to 1e-12 relative to its largest entry (the two
differ only in the order of sums: z projected once, sorted encoder rows, split row blocks).
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_file
from hypothesis import given, settings, strategies as st

from minisketch.errors import DataError, ModelError
from minisketch.gradcheck import check_gradients
from minisketch.hparams import HParams
from minisketch.layers.mdn import mdn_params
from minisketch.layers.sketch_rnn import sketch_rnn_backward, sketch_rnn_forward
from minisketch.model import SketchRNN
from minisketch.strokes import make_batch

CELLS = ("lstm", "layer_norm", "hyper")
COMBOS = [(e, d, True) for e in CELLS for d in CELLS] + [(None, d, False) for d in CELLS]
GRAD_TOL = 1e-6
SHEEP_SCALE = 18.519827          # SPEC 1: aaron_sheep's normalizing factor


def tiny_hp(enc="lstm", dec="lstm", conditional=True, **kw):
    base = dict(enc_model=enc or "lstm", dec_model=dec, conditional=conditional,
                enc_rnn_size=3, dec_rnn_size=4, z_size=2, num_mixture=2, hyper_num_units=3,
                hyper_embedding_size=2, max_seq_len=6, use_recurrent_dropout=True,
                recurrent_dropout_prob=0.7, kl_tolerance=0.0)
    base.update(kw)
    return HParams(**base)


def random_sketches(rng, lengths, spread=6.0):
    """stroke-3 sketches in data units with the given lengths."""
    out = []
    for L in lengths:
        s = np.zeros((L, 3), dtype=np.float32)
        s[:, :2] = spread * rng.normal(size=(L, 2))
        s[:, 2] = rng.random(L) < 0.3
        out.append(s)
    return out


def perturb(model, rng, spread=0.3):
    """Move every parameter off its (partly tiny or constant) reference init."""
    model.flat[...] += spread * rng.standard_normal(model.num_params)


def check_model_gradients(model, batch, step, max_entries, training=True):
    """Every parameter tensor of ``model`` (float64) against central differences of its loss."""
    model.loss_and_grad(batch, step, training=training)
    grads = {n: model.grads[n].copy() for n in model.param_names}
    assert np.all(np.isfinite(model.flat_grad))

    def f():
        return float(model.loss_and_grad(batch, step, training=training)[0]["loss"])

    params = {n: model.params[n] for n in model.param_names}     # views into model.flat
    return check_gradients(f, params, grads, eps=1e-6, tol=GRAD_TOL, max_entries=max_entries,
                           seed=step)


# --------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("enc,dec,conditional", COMBOS)
def test_whole_model_gradients(enc, dec, conditional):
    """Each encoder x decoder combination and each decoder-only model, with recurrent, input
    and output dropout on (masks fixed by seed and step), three sketches of different lengths
    with all-padding tails."""
    hp = tiny_hp(enc, dec, conditional, use_input_dropout=True, input_dropout_prob=0.8,
                 use_output_dropout=True, output_dropout_prob=0.8)
    rng = np.random.default_rng(COMBOS.index((enc, dec, conditional)))
    model = SketchRNN(hp, dtype="float64", seed=3, scale_factor=4.0)
    perturb(model, rng)
    batch = make_batch(random_sketches(rng, [6, 2, 4]), max_len=6, scale_factor=4.0)
    errs = check_model_gradients(model, batch, step=11, max_entries=3)
    assert set(errs) == set(model.param_names)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_whole_model_gradients_hypothesis(data):
    """Drawn: cells, conditional or not, batch 1..3, N_max 1..5, lengths (length 1 and padding
    tails), sizes, M = 1 or 2, dropout switches, KL floor above or below KL, and output biases
    that make rho near +-1 and sigma small."""
    combo = data.draw(st.sampled_from(COMBOS), label="combo")
    B = data.draw(st.integers(1, 3), label="B")
    N = data.draw(st.integers(1, 5), label="N_max")
    lengths = data.draw(st.lists(st.integers(1, N), min_size=B, max_size=B), label="lengths")
    hp = tiny_hp(*combo,
                 enc_rnn_size=data.draw(st.integers(3, 5), label="H_e"),
                 dec_rnn_size=data.draw(st.integers(3, 6), label="H_d"),
                 z_size=data.draw(st.integers(2, 4), label="N_z"),
                 num_mixture=data.draw(st.integers(1, 2), label="M"),
                 max_seq_len=N,
                 use_recurrent_dropout=data.draw(st.booleans(), label="recurrent_dropout"),
                 use_input_dropout=data.draw(st.booleans(), label="input_dropout"),
                 use_output_dropout=data.draw(st.booleans(), label="output_dropout"),
                 kl_tolerance=data.draw(st.sampled_from([0.0, 50.0]), label="kl_tolerance"))
    seed = data.draw(st.integers(0, 2 ** 31 - 1), label="seed")
    sharp = data.draw(st.booleans(), label="sharp")
    rng = np.random.default_rng(seed)
    model = SketchRNN(hp, dtype="float64", seed=seed % 1000, scale_factor=5.0)
    perturb(model, rng)
    if sharp:
        M = hp.num_mixture
        b = model.params["out/b"]
        b[3 + 3 * M:3 + 5 * M] = -1.5                       # sigma = exp(-1.5) = 0.22
        b[3 + 5 * M:] = rng.choice([-3.0, 3.0], size=M)     # rho = +-tanh(3) = +-0.995
    batch = make_batch(random_sketches(rng, lengths), max_len=N, scale_factor=5.0)
    check_model_gradients(model, batch, step=seed % 97, max_entries=3)


def reference_step(model, batch, step, training=True):
    """losses and grads of ``batch`` at ``step`` by the reference functions (as NumPy copies),
    with the model's parameters and the noise ``loss_and_grad`` draws."""
    x, lengths = model.batch_inputs(batch)
    noise = model.draw_noise(step, x.shape[1], x.shape[0] - 1, training)
    losses, cache = sketch_rnn_forward(model.params, x, lengths, noise, model.hp,
                                       model.kl_weight(step))
    return losses, cache, noise


@pytest.mark.parametrize("enc,dec,conditional", COMBOS)
@pytest.mark.parametrize("input_dropout", [False, True])
def test_loss_and_grad_equals_the_reference_functions(enc, dec, conditional, input_dropout):
    """Recurrent and output dropout on, input dropout off (z projected once) and on, five
    sketches of different lengths in two row blocks; evaluation too."""
    hp = tiny_hp(enc, dec, conditional, use_input_dropout=input_dropout,
                 input_dropout_prob=0.8, use_output_dropout=True, output_dropout_prob=0.8)
    rng = np.random.default_rng(50 + COMBOS.index((enc, dec, conditional)))
    model = SketchRNN(hp, dtype="float64", seed=3, scale_factor=4.0, threads=2)
    perturb(model, rng)
    batch = make_batch(random_sketches(rng, [6, 2, 4, 5, 1]), max_len=6, scale_factor=4.0)
    losses, grads = model.loss_and_grad(batch, 11)
    ref_losses, cache, _ = reference_step(model, batch, 11)
    ref_grads = sketch_rnn_backward(cache)
    assert set(ref_losses) == set(losses) and set(ref_grads) == set(model.param_names)
    for k in losses:
        assert ref_losses[k].dtype == np.float64, k
        assert abs(float(losses[k]) - float(ref_losses[k])) <= 1e-12 * abs(float(ref_losses[k]))
    for k in model.param_names:
        g, r = grads[k], ref_grads[k]
        assert r.shape == g.shape and r.dtype == np.float64, k
        assert np.max(np.abs(g - r)) <= 1e-12 * np.max(np.abs(r)), k
    ev = model.evaluate(batch, 11)
    ref_ev, _, _ = reference_step(model, batch, 11, training=False)
    for k in ev:
        assert abs(float(ev[k]) - float(ref_ev[k])) <= 1e-12 * abs(float(ref_ev[k])), k


@pytest.mark.parametrize("enc,dec,conditional", COMBOS)
def test_reference_functions_gradients(enc, dec, conditional):
    """``sketch_rnn_backward`` against central differences of ``sketch_rnn_forward``'s loss,
    every dropout on (the noise drawn once and held fixed)."""
    hp = tiny_hp(enc, dec, conditional, use_input_dropout=True, input_dropout_prob=0.8,
                 use_output_dropout=True, output_dropout_prob=0.8)
    rng = np.random.default_rng(70 + COMBOS.index((enc, dec, conditional)))
    model = SketchRNN(hp, dtype="float64", seed=5, scale_factor=4.0)
    perturb(model, rng)
    batch = make_batch(random_sketches(rng, [5, 2, 3]), max_len=5, scale_factor=4.0)
    _, cache, noise = reference_step(model, batch, 7)
    grads = sketch_rnn_backward(cache)
    x, lengths = model.batch_inputs(batch)
    w = model.kl_weight(7)

    def f():
        return float(sketch_rnn_forward(model.params, x, lengths, noise, hp, w)[0]["loss"])

    params = {n: model.params[n] for n in model.param_names}     # views into model.flat
    errs = check_gradients(f, params, grads, eps=1e-6, tol=GRAD_TOL, max_entries=3, seed=7)
    assert set(errs) == set(model.param_names)


def test_kl_floor_stops_the_kl_gradient():
    """KL below kl_tolerance: gradients are those of the model without a KL term at all."""
    rng = np.random.default_rng(0)
    batch = make_batch(random_sketches(rng, [5, 3]), max_len=5, scale_factor=3.0)
    floored = SketchRNN(tiny_hp(kl_tolerance=100.0), dtype="float64", seed=1)
    no_kl = SketchRNN(tiny_hp(kl_tolerance=100.0, kl_weight=0.0, kl_weight_start=0.0),
                      dtype="float64", seed=1)
    lf, _ = floored.loss_and_grad(batch, 5)
    ln, _ = no_kl.loss_and_grad(batch, 5)
    assert float(lf["kl"]) < 100.0
    assert float(lf["loss"]) == pytest.approx(float(lf["recon"]) + float(lf["kl_weight"]) * 100)
    np.testing.assert_array_equal(floored.flat_grad, no_kl.flat_grad)
    above = SketchRNN(tiny_hp(kl_tolerance=0.0), dtype="float64", seed=1)
    la, _ = above.loss_and_grad(batch, 5)
    assert float(la["loss"]) == float(la["recon"]) + float(la["kl_weight"]) * float(la["kl"])
    assert not np.array_equal(above.grads["mu/W"], floored.grads["mu/W"])


# --------------------------------------------------------------------------- structure

def test_reference_parameter_counts():
    assert SketchRNN(HParams()).num_params == 2_186_107
    dec_only = SketchRNN(HParams(conditional=False))
    assert dec_only.num_params == 1_123_963
    assert dec_only.param_names == ["dec/W_xh", "dec/W_hh", "dec/b", "out/W", "out/b"]
    assert dec_only.params["dec/W_xh"].shape == (5, 2048)
    assert dec_only.params["out/W"].shape == (512, 123)


@pytest.mark.parametrize("enc,dec,conditional", COMBOS)
def test_flat_views_and_reference_init(enc, dec, conditional):
    hp = tiny_hp(enc, dec, conditional, z_size=64, enc_rnn_size=40, num_mixture=3)
    m = SketchRNN(hp, dtype="float32", seed=0)
    assert sum(m.params[n].size for n in m.param_names) == m.num_params == m.flat.size
    for n in m.param_names:
        assert np.shares_memory(m.params[n], m.flat) and np.shares_memory(m.grads[n], m.flat_grad)
        assert m.params[n].dtype == np.float32
    prefixes = ["dec/", "out/"] + (["enc_fw/", "enc_bw/", "mu/", "sigma/", "dec_init/"]
                                   if conditional else [])
    assert all(any(n.startswith(p) for n in m.param_names) for p in prefixes)
    assert all(any(n.startswith(p) for p in prefixes) for n in m.param_names)
    if conditional:
        for n in ("mu/W", "sigma/W", "dec_init/W"):   # N(0, 0.001^2)
            assert 0.0008 < float(m.params[n].std()) < 0.0012
        for n in ("mu/b", "sigma/b", "dec_init/b"):
            assert np.all(m.params[n] == 0)
    fan_in, fan_out = m.params["out/W"].shape         # Glorot-uniform
    assert np.abs(m.params["out/W"]).max() <= np.sqrt(6.0 / (fan_in + fan_out))
    assert np.all(m.params["out/b"] == 0)
    # the same seed gives the same initial parameters in float32 and float64
    m64 = SketchRNN(hp, dtype="float64", seed=0)
    np.testing.assert_array_equal(m64.flat.astype(np.float32), m.flat)


def test_state_dict_round_trip_and_refusals():
    rng = np.random.default_rng(0)
    a = SketchRNN(tiny_hp(), dtype="float64", seed=0)
    perturb(a, rng)
    b = SketchRNN(tiny_hp(), dtype="float64", seed=1)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.flat, b.flat)
    sd = a.state_dict()
    sd["mu/W"][...] = 7.0                                   # a copy, not a view
    assert not np.any(a.params["mu/W"] == 7.0)
    with pytest.raises(ModelError, match="missing mu/W"):
        b.load_state_dict({k: v for k, v in sd.items() if k != "mu/W"})
    with pytest.raises(ModelError, match="unexpected extra"):
        b.load_state_dict({**sd, "extra": np.zeros(1)})
    with pytest.raises(ModelError, match="shape"):
        b.load_state_dict({**sd, "out/b": np.zeros(4)})


def test_refuses_bad_arguments():
    with pytest.raises(ModelError, match="dtype"):
        SketchRNN(tiny_hp(), dtype="float16")
    with pytest.raises(ModelError, match="seed"):
        SketchRNN(tiny_hp(), seed=-1)
    m = SketchRNN(tiny_hp(), dtype="float64")
    with pytest.raises(DataError, match="lengths"):
        m.loss_and_grad((np.zeros((2, 4, 5), np.float32), np.array([3, 0])), 0)
    with pytest.raises(DataError, match="stroke-5"):
        m.loss_and_grad((np.zeros((2, 4, 3), np.float32), np.array([3, 1])), 0)
    dec_only = SketchRNN(tiny_hp(conditional=False), dtype="float64")
    with pytest.raises(ModelError, match="decoder-only"):
        dec_only.encode(random_sketches(np.random.default_rng(0), [3]))
    with pytest.raises(ModelError, match="decoder-only"):
        dec_only.initial_state(np.zeros((1, 2)), 1)


# --------------------------------------------------------------------------- objective

def test_kl_weight_schedule_and_loss_composition():
    hp = tiny_hp(kl_weight=0.5, kl_weight_start=0.01, kl_decay_rate=0.99995, kl_tolerance=0.2)
    m = SketchRNN(hp, dtype="float64")
    for step in (0, 1, 1000, 100000):
        want = 0.5 - (0.5 - 0.01) * 0.99995 ** step
        assert m.kl_weight(step) == pytest.approx(want, rel=1e-15)
    rng = np.random.default_rng(2)
    batch = make_batch(random_sketches(rng, [4, 6]), max_len=6, scale_factor=2.0)
    losses, _ = m.loss_and_grad(batch, 1000)
    v = {k: float(x) for k, x in losses.items()}
    assert v["kl_weight"] == pytest.approx(m.kl_weight(1000), rel=1e-15)
    assert v["recon"] == pytest.approx(v["offset"] + v["pen"], rel=1e-14)
    assert v["loss"] == pytest.approx(v["recon"] + v["kl_weight"] * max(v["kl"], 0.2), rel=1e-14)
    dec_only = SketchRNN(tiny_hp(conditional=False), dtype="float64")
    d, _ = dec_only.loss_and_grad(batch, 1000)
    assert float(d["kl"]) == 0.0 and float(d["kl_weight"]) == 0.0
    assert float(d["loss"]) == float(d["recon"])


def test_device_noise_stream_is_deterministic_and_distinct():
    """noise="device" (the CuPy default) draws from the backend's own generator seeded by
    (seed, step): deterministic, but a different stream from the host one."""
    hp = tiny_hp()
    batch = make_batch(random_sketches(np.random.default_rng(5), [6, 4]), max_len=6,
                       scale_factor=3.0)
    host = SketchRNN(hp, dtype="float64", seed=9)
    dev = SketchRNN(hp, dtype="float64", seed=9, noise="device")
    assert host.noise == "host" and dev.noise == "device"
    l1 = float(dev.loss_and_grad(batch, 3)[0]["loss"])
    g1 = dev.flat_grad.copy()
    l2 = float(dev.loss_and_grad(batch, 3)[0]["loss"])
    np.testing.assert_array_equal(g1, dev.flat_grad)
    assert l1 == l2
    assert l1 != float(host.loss_and_grad(batch, 3)[0]["loss"])
    with pytest.raises(ModelError, match="noise"):
        SketchRNN(hp, noise="gpu")


def test_determinism_and_fresh_noise_per_step():
    hp = tiny_hp(use_input_dropout=True, use_output_dropout=True)
    rng = np.random.default_rng(4)
    batch = make_batch(random_sketches(rng, [6, 3, 5]), max_len=6, scale_factor=3.0)
    a = SketchRNN(hp, dtype="float64", seed=9)
    b = SketchRNN(hp, dtype="float64", seed=9)
    la, _ = a.loss_and_grad(batch, 17)
    ga = a.flat_grad.copy()
    lb, _ = b.loss_and_grad(batch, 17)
    assert all(float(la[k]) == float(lb[k]) for k in la)
    np.testing.assert_array_equal(ga, b.flat_grad)
    la2, _ = a.loss_and_grad(batch, 17)                    # again on the same model
    np.testing.assert_array_equal(ga, a.flat_grad)
    assert float(la2["loss"]) == float(la["loss"])
    l18, _ = a.loss_and_grad(batch, 18)                     # other step: other eps and masks
    assert float(l18["recon"]) != float(la["recon"])
    assert not np.array_equal(ga, a.flat_grad)
    c = SketchRNN(hp, dtype="float64", seed=10)
    c.load_state_dict(a.state_dict())
    lc, _ = c.loss_and_grad(batch, 17)                      # other seed: other noise
    assert float(lc["recon"]) != float(la["recon"])
    # evaluation: dropout off, eps still from (seed, step); equals loss_and_grad(training=False)
    ev = a.evaluate(batch, 17)
    lt, _ = a.loss_and_grad(batch, 17, training=False)
    assert all(float(ev[k]) == float(lt[k]) for k in ev)
    assert float(ev["recon"]) != float(la["recon"])
    # the same eps as training at that step: a model without any dropout trains on exactly the
    # evaluation loss
    d = SketchRNN(tiny_hp(use_recurrent_dropout=False), dtype="float64", seed=9)
    d.load_state_dict(a.state_dict())
    assert float(d.loss_and_grad(batch, 17)[0]["loss"]) == float(ev["loss"])


# --------------------------------------------------------------------------- inference hooks

@pytest.mark.parametrize("enc,dec,conditional", COMBOS)
def test_mixture_equals_stepping_the_decoder(enc, dec, conditional):
    """model.mixture (one sequence pass) = initial_state + decoder_step, row by row."""
    rng = np.random.default_rng(6)
    m = SketchRNN(tiny_hp(enc, dec, conditional), dtype="float64", seed=2, scale_factor=3.0)
    perturb(m, rng)
    s3 = random_sketches(rng, [4])[0]
    s5 = np.zeros((4, 5))
    s5[:, :2] = s3[:, :2]
    s5[:, 2] = s3[:, 2] == 0
    s5[:, 3] = s3[:, 2] == 1
    z = rng.normal(size=2) if conditional else None
    mix = m.mixture(s5, z=z)
    assert set(mix) == {"pi", "mu_x", "mu_y", "sigma_x", "sigma_y", "rho", "pen"}
    assert mix["pi"].shape == (5, 2) and mix["pen"].shape == (5, 3)
    assert all(v.dtype == np.float64 for v in mix.values())
    state = m.initial_state(None if z is None else z[None], 1)
    inputs = np.vstack([[0, 0, 1, 0, 0], s5])
    inputs[1:, :2] /= 3.0
    for t in range(5):
        y, state = m.decoder_step(inputs[t:t + 1], None if z is None else z[None], state)
        p = mdn_params(y)
        for k in mix:
            np.testing.assert_allclose(mix[k][t], p[k][0], rtol=1e-12, atol=1e-14)
    empty = m.mixture(np.zeros((0, 5)), z=z)
    for k in mix:
        np.testing.assert_allclose(empty[k], mix[k][:1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("enc", CELLS)
def test_encode_each_sketch_alone_in_data_units(enc):
    rng = np.random.default_rng(8)
    m = SketchRNN(tiny_hp(enc), dtype="float64", seed=2, scale_factor=3.0)
    perturb(m, rng)
    sketches = random_sketches(rng, [5, 1, 3])
    mu, sigma = m.encode(sketches)
    assert mu.shape == (3, 2) and sigma.shape == (3, 2) and mu.dtype == np.float64
    assert np.all(sigma > 0)
    for i, s in enumerate(sketches):
        mu1, sigma1 = m.encode([s])
        np.testing.assert_allclose(mu1[0], mu[i], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(sigma1[0], sigma[i], rtol=1e-12, atol=1e-15)
    # data units: a model with twice the scale factor sees twice-as-large sketches the same
    m2 = SketchRNN(tiny_hp(enc), dtype="float64", seed=2, scale_factor=6.0)
    m2.load_state_dict(m.state_dict())
    doubled = [np.c_[2 * s[:, :2], s[:, 2]] for s in sketches]
    np.testing.assert_allclose(m2.encode(doubled)[0], mu, rtol=1e-12, atol=1e-15)


def test_initial_state_of_a_decoder_only_model_is_zero():
    m = SketchRNN(tiny_hp(dec="hyper", conditional=False), dtype="float32")
    s = m.initial_state(None, 3)
    assert s.shape == (3, m.dec_state_size) and s.dtype == np.float32 and not np.any(s)


# --------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def sheep():
    from minisketch.datasets import load_dataset
    ds = load_dataset(shared_file("aaron_sheep.npz"))
    assert ds.scale_factor == pytest.approx(SHEEP_SCALE, rel=1e-6)
    return ds


def test_float32_equals_float64_on_a_real_batch(sheep):
    """Default model (LSTM/LSTM 256/512, N_z 128, M 20), recurrent dropout on, a batch of 6 real
    sheep padded to N_max 250: float32 loss = float64 loss to 1e-5 relative; nothing NaN/inf."""
    batch = make_batch(sheep.train[:6], max_len=sheep.max_seq_len, scale_factor=sheep.scale_factor)
    out = {}
    for dt in ("float64", "float32"):
        m = SketchRNN(HParams(), dtype=dt, seed=0, scale_factor=sheep.scale_factor)
        losses, _ = m.loss_and_grad(batch, step=10)
        assert all(np.isfinite(float(v)) for v in losses.values()), losses
        assert np.all(np.isfinite(m.flat_grad))
        out[dt] = ({k: float(v) for k, v in losses.items()}, m.flat_grad.astype(np.float64))
    (l64, g64), (l32, g32) = out["float64"], out["float32"]
    for k in ("loss", "recon", "offset", "pen"):
        assert abs(l32[k] - l64[k]) <= 1e-5 * abs(l64[k]), (k, l32[k], l64[k])
    # gradients: float32 rounding only (relative to the largest gradient entry)
    assert np.max(np.abs(g32 - g64)) <= 1e-4 * np.max(np.abs(g64))


def test_overfits_four_real_sketches(sheep):
    """A tiny conditional model with plain Adam (lr 1e-2, element-wise clip 1) on the four
    shortest training sheep. The per-row likelihood exp(-loss) must rise by a factor of at least
    100 within 300 steps (the loss itself turns negative, so a ratio of losses means nothing),
    and the pen cross-entropy must fall by a factor of at least 5."""
    order = np.argsort([len(s) for s in sheep.train])[:4]
    sketches = [sheep.train[i] for i in order]
    n_max = max(len(s) for s in sketches)
    batch = make_batch(sketches, max_len=n_max, scale_factor=sheep.scale_factor)
    hp = HParams(enc_rnn_size=16, dec_rnn_size=32, z_size=8, num_mixture=5, max_seq_len=n_max,
                 use_recurrent_dropout=False, kl_weight_start=0.5)
    m = SketchRNN(hp, dtype="float64", seed=0, scale_factor=sheep.scale_factor)
    first = m.evaluate(batch)
    mom = np.zeros(m.num_params)
    var = np.zeros(m.num_params)
    for step in range(300):
        m.loss_and_grad(batch, step)
        g = np.clip(m.flat_grad, -1.0, 1.0)
        mom = 0.9 * mom + 0.1 * g
        var = 0.999 * var + 0.001 * g * g
        m.flat[...] -= 1e-2 * (mom / (1 - 0.9 ** (step + 1))) / (
            np.sqrt(var / (1 - 0.999 ** (step + 1))) + 1e-8)
    last = m.evaluate(batch)
    assert np.exp(float(first["loss"]) - float(last["loss"])) > 100.0, (first, last)
    assert float(last["pen"]) < float(first["pen"]) / 5.0, (first, last)


def test_pretrained_sheep_reproduces_the_reference_pen_probabilities():
    """magenta.js sheep.gen.json in the decoder-only LSTM model, float64: the first step from S0
    gives pen probabilities (0.9959959, 0.0040026, 0.0000015), equal to the 7 printed decimals."""
    from minisketch.magenta import read_gen_json
    info, arrays = read_gen_json(shared_file("pretrained/sheep.gen.json"))
    hp = HParams(conditional=False, dec_rnn_size=info["dec_rnn_size"],
                 num_mixture=info["num_mixture"], max_seq_len=info["max_seq_len"])
    m = SketchRNN(hp, dtype="float64", scale_factor=info["scale_factor"])
    m.load_state_dict(arrays)
    want = [0.9959959, 0.0040026, 0.0000015]
    pen = m.mixture(np.zeros((0, 5)))["pen"][0]
    assert np.round(pen, 7).tolist() == want, pen
    y, _ = m.decoder_step(np.array([[0, 0, 1, 0, 0]]), None, m.initial_state(None, 1))
    assert np.round(mdn_params(y)["pen"][0], 7).tolist() == want
