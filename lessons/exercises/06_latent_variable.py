"""Exercise 06 (lesson 06): the reparameterized sample and the KL term, with their gradients.

Write each function below from lesson 06, then run ``python lessons/grade.py 06``: it compares
your functions with ``minisketch.layers.latent`` and gradient-checks the gradients, and says
"correct", "not yet implemented" or which tensor is wrong. ``--hint`` prints a hint. The
worked solution is lessons/solutions/06_latent_variable.py: try first.
"""
import numpy as np


def reparameterize(mu, s, eps):
    """z = mu + sigma * eps with sigma = exp(s / 2) (s is log sigma^2); all [B, N_z]."""
    raise NotImplementedError("reparameterize: sigma = exp(s / 2) (lesson 06, section 1)")


def reparameterize_backward(dz, s, eps):
    """Backward of reparameterize: dz [B, N_z] -> (dmu, ds), both [B, N_z]."""
    raise NotImplementedError("reparameterize_backward: differentiate z = mu + exp(s / 2) eps "
                              "(lesson 06, section 4)")


def kl_divergence(mu, s):
    """KL(N(mu, sigma^2) || N(0, 1)) averaged over the batch and the N_z units (a float):
    -1 / (2 B N_z) * sum(1 + s - mu^2 - exp(s))."""
    raise NotImplementedError("kl_divergence: the closed form of lesson 06, section 3")


def kl_gradient(mu, s):
    """Gradient of kl_divergence: (dKL/dmu, dKL/ds), both [B, N_z]."""
    raise NotImplementedError("kl_gradient: differentiate each term of the sum (lesson 06, "
                              "section 4)")
