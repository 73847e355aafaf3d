"""The fast twin of each recurrent cell, by the cell's name (as ``layers/cells.py``).

    cell = fast_cell(get_cell("hyper", **cell_options("hyper", hp)))
    hs, state_T, cache = cell.forward(x, state0, p, keep=None, mask=None, kernels=None,
                                      x_const=None, active=None)
    dx, dstate0, grads = cell.backward(dhs, dstate_T, cache, need_dx=True)
    # dx = (dx_seq, dx_const) with x_const; need_dx=False: dx (or dx_seq) is None

``init``, ``state_size`` and ``step`` are the reference cell's; the options are explained in
``fast/sequence.py``.
"""
from __future__ import annotations

from types import SimpleNamespace

from . import hyper_lstm, layer_norm_lstm, lstm

# cell name -> (forward, backward) of its fast sequence functions
_FAST = {
    "lstm": (lstm.lstm_forward, lstm.lstm_backward),
    "layer_norm": (layer_norm_lstm.ln_lstm_forward, layer_norm_lstm.ln_lstm_backward),
    "hyper": (hyper_lstm.hyper_lstm_forward, hyper_lstm.hyper_lstm_backward),
}


def fast_cell(cell: SimpleNamespace) -> SimpleNamespace:
    """A copy of the reference cell namespace ``cell`` (from ``layers.cells.get_cell``) whose
    forward and backward are the fast sequence functions."""
    forward, backward = _FAST[cell.name]
    return SimpleNamespace(**{**vars(cell), "forward": forward, "backward": backward})
