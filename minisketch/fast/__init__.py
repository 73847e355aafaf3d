"""The reference math of ``minisketch/layers`` skipping work, tested against it to float rounding.

One module per reference module: ``lstm.py``, ``layer_norm_lstm.py``, ``hyper_lstm.py``,
``encoder.py`` and ``sketch_rnn.py`` (the whole model), with the shared options in
``sequence.py`` (z projected once, only the real rows computed, packed products, per-step sums),
the fast cells by name in ``cells.py`` and the row-block threads in ``threads.py``.
"""
