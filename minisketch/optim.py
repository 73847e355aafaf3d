"""Optimization: the learning-rate and KL-weight schedules, element-wise clipping + Adam.

Schedules (SPEC section 2; ``step`` = number of updates done so far, 0 for the first batch)::

    learning_rate(hp, step) = (lr - lr_min) * decay_rate**step + lr_min
    kl_weight(hp, step)     = w_KL - (w_KL - w_start) * R**step

The update works on the model's one flat parameter vector and its flat gradient (ARCHITECTURE,
"Model API"), so clipping and Adam are a single element-wise pass over every parameter at once.
:func:`clip_adam_update` is the reference; the Numba and CuPy kernel sets may provide a
``clip_adam_update`` with the same signature and formula, tested against this one.
"""
from __future__ import annotations

import math

import numpy as np

from .xp import get_xp, to_numpy
from .errors import ModelError


def learning_rate(hp, step: int) -> float:
    """``(lr - lr_min) * decay_rate**step + lr_min`` (reference ``sketch_rnn_train.train``)."""
    return ((hp.learning_rate - hp.min_learning_rate) * hp.decay_rate ** step
            + hp.min_learning_rate)


def kl_weight(hp, step: int) -> float:
    """KL annealing ``w_KL - (w_KL - w_start) * R**step`` (paper section 3, eq. after (4))."""
    return hp.kl_weight - (hp.kl_weight - hp.kl_weight_start) * hp.kl_decay_rate ** step


def adam_bias_corrections(step: int, beta1: float, beta2: float) -> tuple[float, float]:
    """``(1 - beta1**t, 1 - beta2**t)`` in float64 on the host, for Adam step ``t >= 1``."""
    if int(step) < 1:
        raise ValueError(f"the Adam step t counts updates from 1, got {step}")
    return 1.0 - beta1 ** int(step), 1.0 - beta2 ** int(step)


def clip_adam_update(flat, grad, m, v, step, lr, clip, beta1=0.9, beta2=0.999, eps=1e-8):
    """One clipped Adam update of every parameter, in place (Kingma & Ba 2015, Algorithm 1).

    Inputs (all 1-D, same length P and dtype, on the same array module, NumPy or CuPy):
        flat  [P]  parameters, updated in place
        grad  [P]  gradient of the loss (read only; not modified)
        m, v  [P]  first and second moment estimates, updated in place
    Scalars: ``step`` = t, the number of this update counting from 1; ``lr`` the learning rate
    for this update; ``clip`` the element-wise gradient bound (SPEC 2: not a global norm).

    Textbook form, for every element, with bias corrections bc1 = 1 - beta1**t and
    bc2 = 1 - beta2**t::

        g  = min(max(grad, -clip), clip)
        m  = beta1 * m + (1 - beta1) * g
        v  = beta2 * v + (1 - beta2) * g**2
        flat -= lr * (m / bc1) / (sqrt(v / bc2) + eps)

    Evaluated in this order, in the arrays' dtype, with the scalars ``beta1``, ``1 - beta1``,
    ``beta2``, ``1 - beta2``, ``bc2``, ``eps`` and ``s = lr / bc1`` computed in float64 on the
    host and then cast to that dtype (a kernel that does the same matches bit for bit)::

        g = clip(grad);  m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*(g*g)
        flat = flat - (m / (sqrt(v / bc2) + eps)) * s

    A non-finite gradient element stays non-finite (NaN is not clipped away): training detects
    it from the loss instead of silently skipping the update.
    """
    xp = get_xp(flat)
    bc1, bc2 = adam_bias_corrections(step, beta1, beta2)
    dt = flat.dtype.type
    g = xp.clip(grad, dt(-clip), dt(clip))           # the one temporary buffer
    m *= dt(beta1)
    m += dt(1.0 - beta1) * g
    g *= g
    v *= dt(beta2)
    v += dt(1.0 - beta2) * g
    # g now holds the step: (m / bc1) / (sqrt(v / bc2) + eps)
    xp.divide(v, dt(bc2), out=g)
    xp.sqrt(g, out=g)
    g += dt(eps)
    xp.divide(m, g, out=g)
    g *= dt(lr / bc1)
    flat -= g


class Adam:
    """Adam state for one flat parameter vector: moments ``m``, ``v`` and the step count ``t``.

    ``update_fn`` is the function doing the update (signature of :func:`clip_adam_update`);
    by default the backend kernel set's ``clip_adam_update`` if it has one, else the reference.
    """

    def __init__(self, flat, beta1=0.9, beta2=0.999, eps=1e-8, update_fn=None):
        xp = get_xp(flat)
        self.m = xp.zeros_like(flat)
        self.v = xp.zeros_like(flat)
        self.t = 0
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.update_fn = update_fn or clip_adam_update

    @classmethod
    def for_model(cls, model, **kw) -> "Adam":
        """Adam over ``model.flat``, using the model backend's fused kernel when it has one."""
        fn = getattr(model.backend.kernels, "clip_adam_update", None)
        return cls(model.flat, update_fn=fn, **kw)

    def update(self, flat, grad, lr: float, clip: float) -> None:
        """Clip ``grad`` element-wise and take one Adam step on ``flat`` (in place)."""
        self.t += 1
        self.update_fn(flat, grad, self.m, self.v, self.t, lr, clip,
                       self.beta1, self.beta2, self.eps)

    def state_dict(self) -> dict:
        """Host copies: ``{"m": [P], "v": [P], "t": int64 0-d, "betas_eps": [3] float64}``."""
        return {"m": to_numpy(self.m).copy(), "v": to_numpy(self.v).copy(),
                "t": np.asarray(self.t, dtype=np.int64),
                "betas_eps": np.array([self.beta1, self.beta2, self.eps], dtype=np.float64)}

    def load_state_dict(self, d: dict) -> None:
        """Restore ``m``, ``v`` and ``t`` (shapes must match the parameter vector)."""
        xp = get_xp(self.m)
        for key in ("m", "v"):
            a = np.asarray(d[key])
            if a.shape != self.m.shape:
                raise ModelError(f"optimizer state {key!r} has shape {a.shape}, "
                                 f"the model has {self.m.shape[0]} parameters")
        self.m[...] = xp.asarray(np.asarray(d["m"], dtype=self.m.dtype))
        self.v[...] = xp.asarray(np.asarray(d["v"], dtype=self.v.dtype))
        t = int(np.asarray(d["t"]))
        if t < 0:
            raise ModelError(f"optimizer step count must be >= 0, got {t}")
        self.t = t
        if "betas_eps" in d:
            b1, b2, e = (float(x) for x in np.asarray(d["betas_eps"]))
            if not all(map(math.isfinite, (b1, b2, e))):
                raise ModelError("optimizer state holds non-finite beta/eps values")
            self.beta1, self.beta2, self.eps = b1, b2, e
