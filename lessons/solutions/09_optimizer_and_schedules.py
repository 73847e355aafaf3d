"""Exercise 09 (lesson 09): clipped Adam and the two schedules.

Write each function below from lesson 09, then run ``python lessons/grade.py 09``: it compares
your functions with ``minisketch.optim`` and says "correct", "not yet implemented" or which
tensor is wrong. ``--hint`` prints a hint. This file is the worked solution
(``python lessons/grade.py 09 --solution``).
"""
import numpy as np


def clip_adam_update(theta, grad, m, v, t, lr, clip, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam update of theta, in place, after clipping grad element-wise to [-clip, clip].

    theta, grad, m, v [P]; m and v (the moment estimates) are updated in place; t counts the
    updates from 1 (the bias corrections need it). Returns nothing.
    """
    g = np.clip(grad, -clip, clip)
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    theta -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


def learning_rate(hp, step):
    """The learning rate at ``step`` (updates done so far): it decays from hp.learning_rate
    toward hp.min_learning_rate by the factor hp.decay_rate per step."""
    return (hp.learning_rate - hp.min_learning_rate) * hp.decay_rate ** step \
        + hp.min_learning_rate


def kl_weight(hp, step):
    """The KL weight at ``step``: it rises from hp.kl_weight_start toward hp.kl_weight, the gap
    shrinking by the factor hp.kl_decay_rate per step."""
    return hp.kl_weight - (hp.kl_weight - hp.kl_weight_start) * hp.kl_decay_rate ** step
