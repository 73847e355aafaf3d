"""Latent layer of the VAE: mu / sigma projections, reparameterization, KL term with its floor.

Math (SPEC section 2):

    mu = h @ W_mu + b_mu,   s = h @ W_s + b_s       (s = log sigma^2; parameters "mu/*", "sigma/*")
    z = mu + exp(s / 2) * eps,                       eps ~ N(0, I) drawn by the caller
    KL = -1 / (2 B N_z) * sum(1 + s - mu^2 - exp(s))   (the mean over batch and latent units of
                                                        KL(N(mu, sigma^2) || N(0, 1)))
    floored term = w * max(KL, KL_min)                 (no KL gradient below the floor)

Shapes: h [B, D] (D = 2 H_e, the encoder's two final hidden states), W_mu, W_s [D, N_z],
b_mu, b_s [N_z], eps, mu, s, z [B, N_z].

Every backward returns fresh arrays (nothing is accumulated into buffers). Runs on NumPy or CuPy
arrays unchanged; the initializer builds NumPy arrays on the host.
"""
from __future__ import annotations

import numpy as np

from ..xp import get_xp

INIT_STD = 0.001  # reference init of the mu, s (and z-to-state) projections: N(0, 0.001^2)


def latent_init(rng: np.random.Generator, input_size: int, z_size: int, dtype=np.float32):
    """Reference initialization: {"mu/W", "sigma/W"} [D, N_z] from N(0, 0.001^2),
    {"mu/b", "sigma/b"} [N_z] zeros (NumPy arrays, in this order of draws: mu/W then sigma/W)."""
    return {
        "mu/W": (INIT_STD * rng.standard_normal((input_size, z_size))).astype(dtype),
        "mu/b": np.zeros(z_size, dtype=dtype),
        "sigma/W": (INIT_STD * rng.standard_normal((input_size, z_size))).astype(dtype),
        "sigma/b": np.zeros(z_size, dtype=dtype),
    }


def latent_forward(h, p, eps):
    """mu, s and the reparameterized sample z.

    Inputs:  h [B, D]; p {"mu/W" [D, N_z], "mu/b" [N_z], "sigma/W" [D, N_z], "sigma/b" [N_z]};
             eps [B, N_z] standard normal noise.
    Returns: mu [B, N_z]; s [B, N_z] (log variance); z [B, N_z]; cache for ``latent_backward``.
    """
    xp = get_xp(h)
    mu = h @ p["mu/W"] + p["mu/b"]
    s = h @ p["sigma/W"] + p["sigma/b"]
    sigma = xp.exp(0.5 * s)
    z = mu + sigma * eps
    return mu, s, z, (h, p, eps, sigma)


def latent_backward(dz, dmu, ds, cache):
    """Gradients of ``latent_forward`` (fresh arrays).

    Inputs:  dz [B, N_z] gradient w.r.t. z; dmu, ds [B, N_z] gradients reaching mu and s by other
             paths (the KL term), or None for none.
    Returns: dh [B, D]; grads {"mu/W", "mu/b", "sigma/W", "sigma/b"} shaped like the params.
    """
    h, p, eps, sigma = cache
    # forward was: z = mu + exp(s/2) * eps, so dmu += dz and ds += dz * eps * exp(s/2) / 2
    dmu_total = dz if dmu is None else dz + dmu
    ds_total = 0.5 * dz * eps * sigma
    if ds is not None:
        ds_total = ds_total + ds
    # forward was: mu = h @ W_mu + b_mu, s = h @ W_s + b_s
    dh = dmu_total @ p["mu/W"].T + ds_total @ p["sigma/W"].T
    grads = {
        "mu/W": h.T @ dmu_total, "mu/b": dmu_total.sum(axis=0),
        "sigma/W": h.T @ ds_total, "sigma/b": ds_total.sum(axis=0),
    }
    return dh, grads


def _exp_minus_one_minus(s):
    """e^s - 1 - s (>= 0) without cancellation: a Taylor series where |s| < 0.1 (terms to s^10,
    truncation below 1e-16 relative), expm1(s) - s elsewhere (cancellation costs < 20 ulp).

    The plain ``1 + s - exp(s)`` loses everything in float32 at the reference initialization
    (|s| ~ 1e-3 gives terms ~ 5e-7, below the 6e-8 rounding of numbers near 1)."""
    xp = get_xp(s)
    series = s * s * (0.5 + s * (1 / 6 + s * (1 / 24 + s * (1 / 120 + s * (
        1 / 720 + s * (1 / 5040 + s * (1 / 40320 + s * (1 / 362880 + s / 3628800))))))))
    return xp.where(xp.abs(s) < 0.1, series, xp.expm1(s) - s)


def kl_forward(mu, s):
    """KL = -1/(2 B N_z) sum(1 + s - mu^2 - exp(s)) (raw, unfloored), computed as
    1/(2 B N_z) sum(mu^2 + (e^s - 1 - s)) with the bracket free of cancellation.

    Inputs: mu, s [B, N_z]. Returns: kl (0-d array); cache (mu, s) for ``kl_backward``."""
    B, Nz = mu.shape
    kl = (mu * mu + _exp_minus_one_minus(s)).sum() / (2.0 * B * Nz)
    return kl, (mu, s)


def kl_backward(dkl, cache):
    """Gradients of ``kl_forward``. dkl: scalar (0-d array or float); cache: (mu, s) from
    ``kl_forward``. Returns dmu, ds [B, N_z]."""
    mu, s = cache
    xp = get_xp(mu)
    B, Nz = mu.shape
    c = dkl / (2.0 * B * Nz)
    # forward was: KL = c0 * sum(mu^2 + e^s - 1 - s), c0 = 1 / (2 B N_z)
    return (2.0 * c) * mu, c * xp.expm1(s)


def kl_floor_forward(kl, weight, kl_min):
    """The objective's KL term w * max(KL, KL_min). kl: 0-d array; weight, kl_min: floats.
    Returns: term (0-d array); cache for ``kl_floor_backward``."""
    xp = get_xp(kl)
    return weight * xp.maximum(kl, kl_min), (kl, weight, kl_min)


def kl_floor_backward(dterm, cache):
    """d term / d KL times dterm: w * dterm above the floor, exactly 0 at or below it.
    Returns a 0-d array (no host synchronization: the comparison stays on the device)."""
    kl, weight, kl_min = cache
    return dterm * weight * (kl > kl_min).astype(kl.dtype)
