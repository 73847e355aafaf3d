"""Exercise 11 (lesson 11): drawing from a softmax with a temperature, and one sampling step.

Write each function below from lesson 11, then run ``python lessons/grade.py 11``: it draws
with your functions and with ``minisketch.sampling`` from the same random numbers and requires
the same rows, and says "correct", "not yet implemented" or where they differ. ``--hint``
prints a hint. The worked solution is lessons/solutions/11_sampling_and_temperature.py: try
first.
"""
import math

import numpy as np


def categorical(logits, u, tau):
    """One draw per row from softmax(logits / tau) by the inverse CDF.

    logits [a, K]; u [a] uniforms in (0, 1]. Row r gets the first k whose cumulative weight
    reaches u[r] times the row's total weight. Returns int [a] in 0..K-1.
    """
    raise NotImplementedError("categorical: weights exp((l - max l) / tau), their cumulative "
                              "sum, the first index reaching u * total (lesson 11, section 2)")


def sample_step(y, M, tau, u, e):
    """The next row of every sketch from the decoder's raw outputs y [a, 6M+3].

    u [a, 2]: the uniforms of the pen draw (column 0) and of the component draw (column 1);
    e [a, 2]: two independent standard normals per row. Temperature tau sharpens both softmaxes
    (divide the logits by tau) and scales each sigma by sqrt(tau).
    Returns (offsets [a, 2], pen [a] int: 0 down, 1 lift, 2 end, component [a] int).
    """
    raise NotImplementedError("sample_step: pen and component with categorical, then the "
                              "chosen component's correlated normal (lesson 11, section 3)")
