"""Exercise 06 (lesson 06): the reparameterized sample and the KL term, with their gradients.

Write each function below from lesson 06, then run ``python lessons/grade.py 06``: it compares
your functions with ``minisketch.layers.latent`` and gradient-checks the gradients, and says
"correct", "not yet implemented" or which tensor is wrong. ``--hint`` prints a hint. This file
is the worked solution (``python lessons/grade.py 06 --solution``).
"""
import numpy as np


def reparameterize(mu, s, eps):
    """z = mu + sigma * eps with sigma = exp(s / 2) (s is log sigma^2); all [B, N_z]."""
    return mu + np.exp(s / 2) * eps


def reparameterize_backward(dz, s, eps):
    """Backward of reparameterize: dz [B, N_z] -> (dmu, ds), both [B, N_z]."""
    dmu = dz                                       # forward was: z = mu + ...
    ds = dz * eps * np.exp(s / 2) / 2              # d exp(s/2) / ds = exp(s/2) / 2
    return dmu, ds


def kl_divergence(mu, s):
    """KL(N(mu, sigma^2) || N(0, 1)) averaged over the batch and the N_z units (a float):
    -1 / (2 B N_z) * sum(1 + s - mu^2 - exp(s))."""
    return float(-np.sum(1 + s - mu ** 2 - np.exp(s)) / (2 * mu.size))


def kl_gradient(mu, s):
    """Gradient of kl_divergence: (dKL/dmu, dKL/ds), both [B, N_z]."""
    c = 1.0 / (2 * mu.size)
    return 2 * c * mu, c * (np.exp(s) - 1)
