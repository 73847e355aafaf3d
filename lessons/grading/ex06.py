"""Lesson 06's checks: the sample and the KL against minisketch.layers.latent (1e-13), their
gradients against latent_backward / kl_backward (1e-13) and central differences (1e-6)."""
import numpy as np

from minisketch.layers import latent

from grading import Check, Wrong, compare, gradient_check, unpack

SHAPES = ((4, 3), (1, 5), (2, 1))


def _case(seed, B, Nz):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, Nz)), rng.standard_normal((B, Nz)), \
        rng.standard_normal((B, Nz))


def _latent_params(mu, s):
    """A latent layer whose h = identity rows reproduce the given mu and s exactly."""
    B, Nz = mu.shape
    return np.eye(B), {"mu/W": mu.copy(), "mu/b": np.zeros(Nz), "sigma/W": s.copy(),
                       "sigma/b": np.zeros(Nz)}


def check_reparameterize(fn):
    for seed, (B, Nz) in enumerate(SHAPES):
        mu, s, eps = _case(seed, B, Nz)
        h, p = _latent_params(mu, s)
        compare(f"z (B={B}, N_z={Nz})", fn(mu, s, eps), latent.latent_forward(h, p, eps)[2], 1e-13)


def check_reparameterize_backward(fn):
    for seed, (B, Nz) in enumerate(SHAPES):
        mu, s, eps = _case(10 + seed, B, Nz)
        dz = np.random.default_rng(20 + seed).standard_normal((B, Nz))
        got = unpack(fn(dz.copy(), s, eps), 2, "dmu, ds")
        h, p = _latent_params(mu, s)
        _, _, _, cache = latent.latent_forward(h, p, eps)
        _, grads = latent.latent_backward(dz, None, None, cache)    # h = I: dW = dmu, ds
        compare(f"dmu (B={B}, N_z={Nz})", got[0], grads["mu/W"], 1e-13)
        compare(f"ds (B={B}, N_z={Nz})", got[1], grads["sigma/W"], 1e-13)


def check_kl(fn):
    for seed, (B, Nz) in enumerate(SHAPES):
        mu, s, _ = _case(30 + seed, B, Nz)
        got = fn(mu, s)
        if not np.ndim(got) == 0:
            raise Wrong(f"the KL is one number (the mean over batch and units), got shape "
                        f"{np.shape(got)}")
        compare(f"KL (B={B}, N_z={Nz})", got, float(latent.kl_forward(mu, s)[0]), 1e-13)


def check_kl_gradient(fn):
    for seed, (B, Nz) in enumerate(SHAPES):
        mu, s, _ = _case(40 + seed, B, Nz)
        got = unpack(fn(mu.copy(), s.copy()), 2, "dmu, ds")
        dmu, ds = latent.kl_backward(1.0, (mu, s))
        compare(f"dKL/dmu (B={B}, N_z={Nz})", got[0], dmu, 1e-13)
        compare(f"dKL/ds (B={B}, N_z={Nz})", got[1], ds, 1e-13)
        gradient_check(lambda: float(latent.kl_forward(mu, s)[0]), {"mu": mu, "s": s},
                       {"mu": np.asarray(got[0]), "s": np.asarray(got[1])})


CHECKS = [
    Check("reparameterize", check_reparameterize, [
        "s is log sigma^2, so sigma = exp(s / 2).",
        "z = mu + np.exp(s / 2) * eps, element-wise.",
    ]),
    Check("reparameterize_backward", check_reparameterize_backward, [
        "z depends on mu through a plain sum, and on s through exp(s / 2).",
        "dmu = dz; ds = dz * eps * d exp(s/2)/ds = dz * eps * exp(s / 2) / 2.",
    ]),
    Check("kl_divergence", check_kl, [
        "Per unit: KL = -1/2 (1 + s - mu^2 - exp(s)); sketch-rnn averages over the batch and "
        "the N_z units (the paper's eq. 11 per sketch).",
        "-np.sum(1 + s - mu**2 - np.exp(s)) / (2 * mu.size), returned as a float.",
    ]),
    Check("kl_gradient", check_kl_gradient, [
        "Write KL = c * sum(mu^2 + exp(s) - 1 - s) with c = 1 / (2 B N_z) and differentiate "
        "each entry on its own.",
        "dKL/dmu = 2 c mu and dKL/ds = c (exp(s) - 1).",
    ]),
]
