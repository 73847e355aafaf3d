"""Latent layer: reparameterization, KL (SPEC 2), the KL floor, and exact gradients.

Gradient checks: float64 central differences (eps 1e-6) of
    f = sum(Gz * z) + sum(Gm * mu) + sum(Gs * s) + w * max(KL, KL_min)
against ``latent_backward`` + ``kl_backward`` + ``kl_floor_backward`` for h and every parameter;
metric of ``minisketch.gradcheck`` (max |a - n| / max(|a| + |n|, floor)), tolerance 1e-6.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minisketch.gradcheck import check_gradients
from minisketch.layers import latent

GRAD_TOL = 1e-6


def setup(rng, B, D, Nz, spread=0.5):
    p = latent.latent_init(rng, D, Nz, np.float64)
    p = {k: v + spread * rng.standard_normal(v.shape) for k, v in p.items()}
    h = rng.standard_normal((B, D))
    eps = rng.standard_normal((B, Nz))
    return h, p, eps


def objective(h, p, eps, G, w, kl_min):
    mu, s, z, _ = latent.latent_forward(h, p, eps)
    kl, _ = latent.kl_forward(mu, s)
    term, _ = latent.kl_floor_forward(kl, w, kl_min)
    Gz, Gm, Gs = G
    return float((Gz * z).sum() + (Gm * mu).sum() + (Gs * s).sum() + term), float(kl)


def analytic(h, p, eps, G, w, kl_min):
    mu, s, z, lcache = latent.latent_forward(h, p, eps)
    kl, kcache = latent.kl_forward(mu, s)
    _, fcache = latent.kl_floor_forward(kl, w, kl_min)
    dkl = latent.kl_floor_backward(1.0, fcache)
    dmu_kl, ds_kl = latent.kl_backward(dkl, kcache)
    Gz, Gm, Gs = G
    dh, grads = latent.latent_backward(Gz, Gm + dmu_kl, Gs + ds_kl, lcache)
    return dh, grads


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 4), D=st.integers(1, 6), Nz=st.integers(1, 4),
       seed=st.integers(0, 2 ** 31 - 1), w=st.floats(0.01, 1.0),
       floor_active=st.booleans())
def test_latent_and_kl_gradients(B, D, Nz, seed, w, floor_active):
    rng = np.random.default_rng(seed)
    h, p, eps = setup(rng, B, D, Nz)
    G = tuple(rng.standard_normal((B, Nz)) for _ in range(3))
    kl0 = objective(h, p, eps, G, w, 0.0)[1]
    # a floor far from KL on either side (no kink within the difference step)
    kl_min = kl0 + 10.0 if floor_active else kl0 - 10.0
    dh, grads = analytic(h, p, eps, G, w, kl_min)
    check_gradients(lambda: objective(h, p, eps, G, w, kl_min)[0], {"h": h, **p},
                    {"h": dh, **grads}, eps=1e-6, tol=GRAD_TOL)


def test_kl_is_the_mean_gaussian_kl_and_the_floor_stops_its_gradient():
    rng = np.random.default_rng(1)
    mu = rng.standard_normal((5, 3))
    s = rng.standard_normal((5, 3))
    kl, cache = latent.kl_forward(mu, s)
    sigma2 = np.exp(s)
    want = np.mean(0.5 * (mu ** 2 + sigma2 - 1.0 - np.log(sigma2)))   # KL(N(mu, s2) || N(0, 1))
    assert float(kl) == pytest.approx(want, rel=1e-13)
    term, fc = latent.kl_floor_forward(kl, 0.3, float(kl) + 0.1)
    assert float(term) == pytest.approx(0.3 * (float(kl) + 0.1), rel=1e-15)
    assert float(latent.kl_floor_backward(1.0, fc)) == 0.0
    term, fc = latent.kl_floor_forward(kl, 0.3, float(kl) - 0.1)
    assert float(term) == pytest.approx(0.3 * float(kl), rel=1e-15)
    assert float(latent.kl_floor_backward(2.0, fc)) == pytest.approx(0.6, rel=1e-15)
    dmu, ds = latent.kl_backward(0.0, cache)
    assert np.all(dmu == 0) and np.all(ds == 0)


def test_reparameterization():
    rng = np.random.default_rng(2)
    h, p, eps = setup(rng, 3, 4, 2)
    mu, s, z, _ = latent.latent_forward(h, p, eps)
    np.testing.assert_allclose(mu, h @ p["mu/W"] + p["mu/b"], rtol=1e-14)
    np.testing.assert_allclose(s, h @ p["sigma/W"] + p["sigma/b"], rtol=1e-14)
    np.testing.assert_allclose(z, mu + np.exp(s / 2) * eps, rtol=1e-14)


def test_reference_init():
    p = latent.latent_init(np.random.default_rng(0), 512, 128, np.float64)
    assert p["mu/W"].shape == (512, 128) and p["sigma/b"].shape == (128,)
    assert np.all(p["mu/b"] == 0) and np.all(p["sigma/b"] == 0)
    for k in ("mu/W", "sigma/W"):
        assert abs(p[k].std() - 0.001) < 0.00002 and abs(p[k].mean()) < 0.00002
