"""Lesson 09's checks: clipped Adam against optim.clip_adam_update over several steps (1e-15),
the schedules against optim.learning_rate and optim.kl_weight (1e-15)."""
import numpy as np

import minisketch as ms
from minisketch import optim

from grading import Check, Wrong, compare

PRESETS = {"paper": ms.HParams(),
           "fast schedules": ms.HParams(learning_rate=3e-3, decay_rate=0.999, kl_decay_rate=0.99,
                                        kl_weight_start=0.1, min_learning_rate=1e-5)}


def check_adam(fn):
    rng = np.random.default_rng(0)
    P = 200
    theta, m, v = np.zeros(P), np.zeros(P), np.zeros(P)
    theta_l, m_l, v_l = np.zeros(P), np.zeros(P), np.zeros(P)
    for t in range(1, 7):
        grad = 2.0 * rng.standard_normal(P)              # some entries beyond the clip bound
        grad_copy = grad.copy()
        if fn(theta, grad, m, v, t, 1e-3, 1.0) is not None:
            raise Wrong("clip_adam_update works in place and returns nothing")
        if not np.array_equal(grad, grad_copy):
            raise Wrong("clip_adam_update must not change grad (clip a copy)")
        optim.clip_adam_update(theta_l, grad, m_l, v_l, t, 1e-3, 1.0)
        for name, got, want in (("theta", theta, theta_l), ("m", m, m_l), ("v", v, v_l)):
            compare(f"{name} after update t={t}", got, want, 1e-15)


def _check_schedule(fn, reference, what):
    for label, hp in PRESETS.items():
        for step in (0, 1, 10, 1000, 12345, 100000):
            compare(f"{what} at step {step} ({label})", fn(hp, step), reference(hp, step), 1e-15)


CHECKS = [
    Check("clip_adam_update", check_adam, [
        "Clip first (np.clip), then m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2, in place "
        "(m[:] = ...), then the update.",
        "The bias corrections divide by 1 - b1^t and 1 - b2^t: they undo the zero start of m "
        "and v. theta -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps).",
    ]),
    Check("learning_rate", lambda fn: _check_schedule(fn, optim.learning_rate, "learning rate"), [
        "An exponential decay toward a floor: the distance to min_learning_rate shrinks by "
        "decay_rate every step.",
        "(hp.learning_rate - hp.min_learning_rate) * hp.decay_rate**step + hp.min_learning_rate",
    ]),
    Check("kl_weight", lambda fn: _check_schedule(fn, optim.kl_weight, "KL weight"), [
        "The mirror image: the distance from kl_weight shrinks by kl_decay_rate every step, "
        "starting from kl_weight - kl_weight_start.",
        "hp.kl_weight - (hp.kl_weight - hp.kl_weight_start) * hp.kl_decay_rate**step",
    ]),
]
