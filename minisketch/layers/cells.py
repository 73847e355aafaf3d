"""Registry of the recurrent cells by their hyperparameter name.

    cell = get_cell("hyper", **cell_options("hyper", hp))
    p = cell.init(rng, input_size, hidden_size, dtype)          # {key: NumPy array}
    S = cell.state_size(hidden_size)                             # state array width
    hs, state_T, cache = cell.forward(x, state0, p, keep=None, mask=None, kernels=None)
    dx, dstate0, grads = cell.backward(dhs, dstate_T, cache)
    h, new_state = cell.step(x_t, state, p, kernels=None)

| name         | module                    | state layout           |
|--------------|---------------------------|------------------------|
| "lstm"       | layers/lstm.py            | [c, h]                 |
| "layer_norm" | layers/layer_norm_lstm.py | [c, h]                 |
| "hyper"      | layers/hyper_lstm.py      | [h, h_hat, c, c_hat]   |

Cell-specific options (the HyperLSTM's ``hyper_num_units`` and ``hyper_embedding_size``) are bound
here once, so callers use every cell the same way. Shapes and semantics of each function are in
its module's docstring; ``fast/cells.py`` gives each cell's fast twin.
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

from ..errors import ModelError
from . import hyper_lstm, layer_norm_lstm, lstm

# name -> (module, function prefix, option names)
_CELLS = {
    "lstm": (lstm, "lstm", ()),
    "layer_norm": (layer_norm_lstm, "ln_lstm", ()),
    "hyper": (hyper_lstm, "hyper_lstm", ("hyper_num_units", "hyper_embedding_size")),
}


def cell_options(name: str, hp) -> dict:
    """The options of cell ``name`` taken from an HParams (empty for "lstm" and "layer_norm")."""
    _entry(name)
    return {opt: int(getattr(hp, opt)) for opt in _CELLS[name][2]}


def _entry(name: str):
    if name not in _CELLS:
        raise ModelError(f"unknown cell {name!r}; choose one of {', '.join(_CELLS)}")
    return _CELLS[name]


def get_cell(name: str, **opts) -> SimpleNamespace:
    """Namespace(name, init, state_size, forward, backward, step) for cell ``name``.

    opts: the cell's options (see ``cell_options``); every option the cell has must be given, and
    no others. ``init`` and ``state_size`` get them bound; the other functions read what they need
    from the parameters and the cache.
    """
    mod, prefix, option_names = _entry(name)
    if set(opts) != set(option_names):
        raise ModelError(f"cell {name!r} takes the options {list(option_names)}, "
                         f"got {sorted(opts)}")
    init = getattr(mod, f"{prefix}_init")
    state_size = getattr(mod, f"{prefix}_state_size")
    return SimpleNamespace(
        name=name,
        options=dict(opts),
        init=functools.partial(init, **opts) if opts else init,
        state_size=functools.partial(state_size, **opts) if opts else state_size,
        forward=getattr(mod, f"{prefix}_forward"),
        backward=getattr(mod, f"{prefix}_backward"),
        step=getattr(mod, f"{prefix}_step"),
    )
