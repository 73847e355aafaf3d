"""Exercise 09 (lesson 09): clipped Adam and the two schedules.

Write each function below from lesson 09, then run ``python lessons/grade.py 09``: it compares
your functions with ``minisketch.optim`` and says "correct", "not yet implemented" or which
tensor is wrong. ``--hint`` prints a hint. The worked solution is
lessons/solutions/09_optimizer_and_schedules.py: try first.
"""
import numpy as np


def clip_adam_update(theta, grad, m, v, t, lr, clip, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam update of theta, in place, after clipping grad element-wise to [-clip, clip].

    theta, grad, m, v [P]; m and v (the moment estimates) are updated in place; t counts the
    updates from 1 (the bias corrections need it). Returns nothing.
    """
    raise NotImplementedError("clip_adam_update: clip, the two moments, the bias-corrected step "
                              "(lesson 09, section 1)")


def learning_rate(hp, step):
    """The learning rate at ``step`` (updates done so far): it decays from hp.learning_rate
    toward hp.min_learning_rate by the factor hp.decay_rate per step."""
    raise NotImplementedError("learning_rate: lesson 09, section 2")


def kl_weight(hp, step):
    """The KL weight at ``step``: it rises from hp.kl_weight_start toward hp.kl_weight, the gap
    shrinking by the factor hp.kl_decay_rate per step."""
    raise NotImplementedError("kl_weight: lesson 09, section 2")
