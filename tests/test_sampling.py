"""Sampling: the per-step samplers (Monte Carlo against known distributions), the decoding loop
(batched, each row stopping at its own end, prefix teacher forcing), temperature and greedy
decoding on real SketchRNN models, completion, and the latent tools (slerp/lerp)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minisketch import sampling
from minisketch.errors import MinisketchError, ModelError
from minisketch.hparams import HParams

# ----------------------------------------------------------------------------- Monte Carlo

N_DRAWS = 200_000
# Chi-square bound: for k - 1 degrees of freedom (k <= 4 here) P(chi2 > 30) < 5e-6, so a correct
# sampler fails a check with probability below that (and never for the fixed seeds used).
CHI2_BOUND = 30.0
N_SE = 5.0          # moment checks: |estimate - truth| <= 5 standard errors (P ~ 6e-7 each)


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _outputs(pen_logits, pi_logits, mu_x, mu_y, sigma_x, sigma_y, rho, rows):
    """Raw decoder outputs [rows, 6M+3] in the layout of SPEC 2 for one fixed distribution."""
    y = np.concatenate([pen_logits, pi_logits, mu_x, mu_y, np.log(sigma_x), np.log(sigma_y),
                        np.arctanh(rho)])
    return np.tile(y, (rows, 1))


def _draws(rng, rows):
    return 1.0 - rng.random((rows, 2)), rng.standard_normal((rows, 2))


def _chi2(counts, p):
    expected = p * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


MIX = dict(pen_logits=np.array([1.0, -0.5, 0.3]),
           pi_logits=np.array([0.2, -0.4, 0.9]),
           mu_x=np.array([-1.0, 0.5, 2.0]), mu_y=np.array([0.7, -1.5, 0.1]),
           sigma_x=np.array([0.3, 1.2, 0.6]), sigma_y=np.array([0.8, 0.4, 1.1]),
           rho=np.array([0.6, -0.85, 0.0]))


def _mixture_moments(tau):
    """Mean [2] and covariance [2, 2] of the offsets at temperature tau (analytic)."""
    pi = _softmax(MIX["pi_logits"] / tau)
    sx, sy = MIX["sigma_x"] * math.sqrt(tau), MIX["sigma_y"] * math.sqrt(tau)
    mu = np.stack([MIX["mu_x"], MIX["mu_y"]], axis=1)                         # [M, 2]
    cov_k = np.stack([np.stack([sx * sx, MIX["rho"] * sx * sy], 1),
                      np.stack([MIX["rho"] * sx * sy, sy * sy], 1)], 1)        # [M, 2, 2]
    mean = pi @ mu
    second = np.einsum("k,kij->ij", pi, cov_k + mu[:, :, None] * mu[:, None, :])
    return pi, mean, second - np.outer(mean, mean)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_offsets_reproduce_mixture_moments(tau):
    rng = np.random.default_rng(1)
    y = _outputs(rows=N_DRAWS, **MIX)
    u, e = _draws(rng, N_DRAWS)
    d, pen, k = sampling.sample_step(y, 3, tau, u, e)
    pi, mean, cov = _mixture_moments(tau)
    # components: chi-square against softmax(pi_logits / tau)
    assert _chi2(np.bincount(k, minlength=3), pi) < CHI2_BOUND
    # mean: standard error sqrt(var / N) from the analytic variance
    se_mean = np.sqrt(np.diag(cov) / N_DRAWS)
    assert np.all(np.abs(d.mean(axis=0) - mean) <= N_SE * se_mean), (d.mean(0), mean, se_mean)
    # covariance entries: mean of centred products (centred at the true mean, so unbiased);
    # standard error = std of the products / sqrt(N), estimated from the draws
    c = d - mean
    for i, j in [(0, 0), (1, 1), (0, 1)]:
        prod = c[:, i] * c[:, j]
        se = prod.std() / math.sqrt(N_DRAWS)
        assert abs(prod.mean() - cov[i, j]) <= N_SE * se, (i, j, prod.mean(), cov[i, j], se)
    # per component: the correlation of the chosen component's draws is its rho (tau-free)
    for m in range(3):
        sel = d[k == m]
        r = np.corrcoef(sel[:, 0], sel[:, 1])[0, 1]
        se_r = (1 - MIX["rho"][m] ** 2) / math.sqrt(len(sel))   # asymptotic s.e. of r
        assert abs(r - MIX["rho"][m]) <= N_SE * se_r + 1e-12, (m, r)


@pytest.mark.parametrize("tau", [1.0, 0.7, 2.0])
def test_pen_sampler_reproduces_probabilities(tau):
    rng = np.random.default_rng(2)
    y = _outputs(rows=N_DRAWS, **MIX)
    u, e = _draws(rng, N_DRAWS)
    _, pen, _ = sampling.sample_step(y, 3, tau, u, e)
    counts = np.bincount(pen, minlength=3)
    assert _chi2(counts, _softmax(MIX["pen_logits"] / tau)) < CHI2_BOUND
    # a wrong temperature convention is detected: the tau = 1 probabilities do not fit at tau 0.7
    if tau != 1.0:
        assert _chi2(counts, _softmax(MIX["pen_logits"])) > 10 * CHI2_BOUND


def test_categorical_edges_and_zero_weights():
    logits = np.array([[0.0, -np.inf, 0.0, -np.inf]] * 4)
    u = np.array([1e-12, 0.49, 0.51, 1.0])
    k = sampling.categorical(logits, u)
    assert k.tolist() == [0, 0, 2, 2]          # zero-weight categories are never drawn


def test_greedy_step_takes_modes_and_means():
    y = _outputs(rows=2, **MIX)
    d, pen, k = sampling.sample_step(y, 3, greedy=True)
    assert pen.tolist() == [0, 0] and k.tolist() == [2, 2]
    np.testing.assert_array_equal(d, [[2.0, 0.1], [2.0, 0.1]])


# ----------------------------------------------------------------------------- the loop

class ScriptedModel:
    """A stand-in with the decoder API whose outputs are scripted, so the loop can be checked
    exactly: row r draws offsets (r + 1, -t) at step t (sigma tiny), lifts the pen every third
    step and ends at step ``stops[r]``. Records the batch size and inputs of every call."""

    def __init__(self, stops, M=2, scale_factor=2.0):
        self.hp = HParams(conditional=False, num_mixture=M, max_seq_len=max(stops) + 5)
        self.xp, self.dtype, self.scale_factor = np, np.dtype("float64"), scale_factor
        self.stops = np.asarray(stops)
        self.calls = []

    def initial_state(self, z, n):
        return np.stack([np.arange(n), np.zeros(n)], axis=1).astype(float)   # [row id, step]

    def decoder_step(self, x, z, state):
        self.calls.append(np.array(x))
        M = self.hp.num_mixture
        rid, t = state[:, 0].astype(int), state[:, 1]
        y = np.zeros((len(x), 6 * M + 3))
        y[:, 0] = 20.0
        y[:, 1] = np.where(t % 3 == 2, 40.0, -20.0)
        y[:, 2] = np.where(t >= self.stops[rid], 80.0, -20.0)
        y[:, 3] = 20.0                                   # component 0
        y[:, 3 + M] = rid + 1.0
        y[:, 3 + 2 * M] = -t
        y[:, 3 + 3 * M:3 + 5 * M] = -30.0                # sigma = exp(-30)
        return y, np.stack([state[:, 0], t + 1], axis=1)


def test_batch_rows_stop_at_their_own_end():
    stops = [5, 0, 9, 3, 9, 1]
    m = ScriptedModel(stops)
    out = sampling.sample(m, n=len(stops), temperature=1.0, seed=0)
    assert [len(s) for s in out] == stops
    for r, s in enumerate(out):
        t = np.arange(stops[r])
        np.testing.assert_allclose(s[:, 0], (r + 1) * m.scale_factor, rtol=1e-9)
        np.testing.assert_allclose(s[:, 1], -t * m.scale_factor, atol=1e-9)
        assert s[:, 2].tolist() == (t % 3 == 2).astype(float).tolist()
        assert s.dtype == np.float32
    # finished rows are dropped: the batch at step t holds the rows with stop >= t
    sizes = [len(x) for x in m.calls]
    assert sizes == [sum(s >= t for s in stops) for t in range(max(stops) + 1)]


def test_max_len_caps_rows():
    m = ScriptedModel([50, 2])
    out = sampling.sample(m, n=2, max_len=7, greedy=True)
    assert [len(s) for s in out] == [7, 2]


def test_prefix_is_teacher_forced_then_sampled():
    m = ScriptedModel([4])
    prefix = np.array([[4.0, 2.0, 0], [-2.0, 6.0, 1], [8.0, 0.0, 0]], dtype=np.float32)
    out = sampling.sample(m, n=3, greedy=True, prefix=prefix)
    # decoder inputs: S0, prefix rows 1..L-1 (one pass, batch 1), then the last prefix row as the
    # first input of the sampling loop (batch 3), all normalized by the scale factor 2
    xs = m.calls
    np.testing.assert_array_equal(xs[0], [[0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(xs[1], [[2, 1, 1, 0, 0]])
    np.testing.assert_array_equal(xs[2], [[-1, 3, 0, 1, 0]])
    np.testing.assert_array_equal(xs[3], [[4, 0, 1, 0, 0]] * 3)   # pen stays down: p1
    for s in out:
        assert s[:3].tobytes() == prefix.tobytes()
        assert len(s) == 3 + 1          # the scripted state reached step 3, ends at step 4


def test_bad_arguments():
    m = ScriptedModel([2])
    with pytest.raises(MinisketchError, match="temperature"):
        sampling.sample(m, temperature=0)
    with pytest.raises(ModelError, match="decoder-only"):
        sampling.sample(m, z=np.zeros(4))
    with pytest.raises(MinisketchError, match="empty"):
        sampling.sample(m, prefix=np.zeros((0, 3)))
    with pytest.raises(ModelError, match="conditional"):
        sampling.interpolate(m, np.ones((2, 3)), np.ones((2, 3)))


# ----------------------------------------------------------------------------- real models

def _model(conditional, dtype="float64", seed=3):
    from minisketch.model import SketchRNN
    hp = HParams(conditional=conditional, enc_rnn_size=8, dec_rnn_size=16, z_size=4,
                 num_mixture=3, max_seq_len=30)
    return SketchRNN(hp, backend="numpy", dtype=dtype, seed=seed, scale_factor=7.5)


@pytest.fixture(scope="module")
def dec_model():
    return _model(False)


@pytest.fixture(scope="module")
def vae_model():
    return _model(True)


def _same(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def test_reproducible_for_a_seed(dec_model):
    a = sampling.sample(dec_model, n=5, temperature=0.9, seed=11)
    b = sampling.sample(dec_model, n=5, temperature=0.9, seed=11)
    c = sampling.sample(dec_model, n=5, temperature=0.9, seed=12)
    assert _same(a, b)
    assert not _same(a, c)
    for s in a:
        assert s.ndim == 2 and s.shape[1] == 3 and len(s) <= dec_model.hp.max_seq_len
        assert set(np.unique(s[:, 2])) <= {0.0, 1.0}


def test_greedy_is_deterministic(vae_model):
    z = np.random.default_rng(0).standard_normal((3, 4))
    a = sampling.sample(vae_model, z=z, greedy=True, seed=1)
    b = sampling.sample(vae_model, z=z, greedy=True, seed=2, temperature=0.3)
    assert _same(a, b)


def test_small_temperature_approaches_greedy(vae_model):
    """tau = 1e-4: pen and component choices match greedy (logits / tau leave one category);
    offsets differ by the noise sigma * sqrt(tau) = 0.01 sigma plus its echo through the next
    steps, far below the O(1) spread of tau = 1 samples: bound 0.05 normalized units."""
    z = np.random.default_rng(1).standard_normal((4, 4))
    g = sampling.sample(vae_model, z=z, greedy=True)
    c = sampling.sample(vae_model, z=z, temperature=1e-4, seed=5)
    assert [len(s) for s in g] == [len(s) for s in c]
    for a, b in zip(g, c):
        np.testing.assert_array_equal(a[:, 2], b[:, 2])
        np.testing.assert_allclose(a[:, :2], b[:, :2], atol=0.05 * vae_model.scale_factor)
    far = sampling.sample(vae_model, z=z, temperature=1.0, seed=5)
    assert not all(len(a) == len(b) and np.allclose(a, b, atol=0.05 * vae_model.scale_factor)
                   for a, b in zip(g, far))


def test_batched_rows_match_one_at_a_time(vae_model):
    """Batched greedy decoding (rows finishing at different steps and dropped from the batch)
    gives each row exactly what decoding it alone gives (float64: no near-ties flip)."""
    z = np.random.default_rng(2).standard_normal((6, 4)) * 2
    batch = sampling.sample(vae_model, z=z, greedy=True, max_len=25)
    alone = [sampling.sample(vae_model, z=z[i], greedy=True, max_len=25)[0] for i in range(6)]
    assert [len(s) for s in batch] == [len(s) for s in alone]
    for a, b in zip(batch, alone):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_completion_begins_with_prefix_bytes(dec_model, dtype):
    prefix = np.array([[3, -2, 0], [5, 1, 0], [-4, 6, 1], [2, 2, 0]], dtype=dtype)
    out = sampling.complete(dec_model, prefix, n=4, temperature=0.8, seed=3)
    assert len(out) == 4
    want = np.result_type(dtype, np.float32)
    for s in out:
        assert s.dtype == want
        assert s[:len(prefix)].tobytes() == prefix.astype(want).tobytes()
        if dtype != np.int16:
            assert s[:len(prefix)].tobytes() == prefix.tobytes()
    ends = [s[len(prefix):] for s in out]
    assert not all(np.array_equal(ends[0], e) for e in ends[1:])   # different endings


def test_completion_state_is_the_teacher_forced_state(vae_model):
    """Greedy completion of a prefix taken from a greedy sample continues that sample exactly:
    teacher forcing rebuilds the same state the sampler had at that point."""
    z = np.random.default_rng(4).standard_normal(4)
    full = sampling.sample(vae_model, z=z, greedy=True, max_len=20)[0]
    if len(full) < 4:
        pytest.skip("greedy sample too short for this seed")
    k = len(full) // 2
    done = sampling.complete(vae_model, full[:k], n=2, z=z, greedy=True, max_len=20 - k)
    for s in done:
        np.testing.assert_allclose(s, full, rtol=1e-5, atol=1e-4)


def test_conditional_completion_and_latent_uses(vae_model):
    a = np.array([[5, 0, 0], [0, 5, 0], [-5, 0, 1]], dtype=np.float32)
    b = np.array([[1, 1, 0], [2, -3, 1], [4, 4, 0], [0, 1, 1]], dtype=np.float32)
    out = sampling.complete(vae_model, b, n=3, seed=0)           # z from the prefix's encoding
    assert all(s[:4].tobytes() == b.tobytes() for s in out)
    rec = sampling.reconstruct(vae_model, [a, b], n=2, seed=0)
    assert len(rec) == 4
    path = sampling.interpolate(vae_model, a, b, n_steps=4, greedy=True)
    assert len(path) == 4
    za, zb = sampling.encode_mu(vae_model, [a, b])
    np.testing.assert_allclose(path[0], sampling.sample(vae_model, z=za, greedy=True)[0])
    np.testing.assert_allclose(path[-1], sampling.sample(vae_model, z=zb, greedy=True)[0])
    ana = sampling.analogy(vae_model, a, b, a, n=2, greedy=True)
    want = sampling.sample(vae_model, z=za - zb + za, greedy=True)[0]
    assert len(ana) == 2 and all(np.allclose(s, want) for s in ana)


# ----------------------------------------------------------------------------- latent tools

def test_slerp_endpoints_norm_and_angle():
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal(16), rng.standard_normal(16)
    z1 *= np.linalg.norm(z0) / np.linalg.norm(z1)                   # equal norms
    t = np.linspace(0, 1, 9)
    path = sampling.slerp(z0, z1, t)
    assert path.shape == (9, 16)
    np.testing.assert_allclose(path[0], z0, atol=1e-12)
    np.testing.assert_allclose(path[-1], z1, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(z0), rtol=1e-12)
    omega = math.acos(z0 @ z1 / (z0 @ z0))
    angles = np.arccos(np.clip(path @ z0 / (z0 @ z0), -1, 1))
    np.testing.assert_allclose(angles, t * omega, atol=1e-6)        # constant angular speed
    np.testing.assert_allclose(sampling.slerp(z0, z1, 0.25), path[2], atol=1e-12)
    # unequal norms: endpoints still exact
    w1 = 3 * z1
    np.testing.assert_allclose(sampling.slerp(z0, w1, [0.0, 1.0]), [z0, w1], atol=1e-12)


def test_slerp_falls_back_to_lerp():
    z0 = np.array([1.0, 2.0, 3.0])
    for z1 in (2.5 * z0, z0 * (1 + 1e-12), -z0, np.zeros(3)):
        t = np.array([0.0, 0.3, 1.0])
        np.testing.assert_allclose(sampling.slerp(z0, z1, t), sampling.lerp(z0, z1, t),
                                   atol=1e-12)
    np.testing.assert_allclose(sampling.lerp(z0, -z0, 0.5), np.zeros(3))


def test_model_methods_delegate(dec_model):
    assert _same(dec_model.sample(n=3, temperature=0.7, seed=4),
                 sampling.sample(dec_model, n=3, temperature=0.7, seed=4))
    prefix = np.array([[1, 2, 0], [3, -1, 1]], dtype=np.float32)
    assert _same(dec_model.complete(prefix, n=2, seed=1),
                 sampling.complete(dec_model, prefix, n=2, seed=1))


@pytest.mark.gpu
def test_cupy_backend_samples_like_numpy():
    """On CuPy the same code runs on the device; the random numbers come from the same host
    generator, so float64 samples match NumPy's (cuBLAS vs host BLAS: ~1e-15 relative, far
    from flipping a category) and completions keep the prefix bytes."""
    from minisketch.backend import get_backend
    from minisketch.errors import BackendError
    from minisketch.model import SketchRNN
    try:
        get_backend("cupy")
    except BackendError as e:
        pytest.skip(str(e))
    ref = _model(True)
    gpu = SketchRNN(ref.hp, backend="cupy", dtype="float64", seed=3, scale_factor=7.5)
    gpu.load_state_dict(ref.state_dict())
    z = np.random.default_rng(6).standard_normal((5, 4))
    for kw in (dict(greedy=True), dict(temperature=0.6, seed=9)):
        a, b = sampling.sample(ref, z=z, **kw), sampling.sample(gpu, z=z, **kw)
        assert [len(s) for s in a] == [len(s) for s in b]
        for x, y in zip(a, b):
            assert isinstance(y, np.ndarray)
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)
    prefix = np.array([[3, -2, 0], [5, 1, 1]], dtype=np.float32)
    for s in sampling.complete(gpu, prefix, n=3, seed=2):
        assert s[:2].tobytes() == prefix.tobytes()
