"""Exercise 02 (lesson 02): the linear layer's backward pass and a gradient checker.

Write each function below from lesson 02's derivation, then run
``python lessons/grade.py 02``: it runs the lesson's checks on your functions (equality with
``minisketch.layers.linear`` and ``minisketch.gradcheck``) and says, per function, "correct",
"not yet implemented" or which tensor is wrong. ``--hint`` prints a hint. The worked solution
is lessons/solutions/02_linear_and_gradcheck.py: try first.
"""
import numpy as np


def linear_backward(dy, x, W):
    """Backward of y = x @ W + b.

    dy [N, O] upstream gradient dL/dy, x [N, D] the layer's input, W [D, O] its weights.
    Returns (dx [N, D], dW [D, O], db [O]).
    """
    raise NotImplementedError("linear_backward: chain rule one index at a time (lesson 02, "
                              "section 2), then match the shapes")


def numerical_grad(f, theta, eps=1e-6):
    """Central differences of the scalar function f() with respect to the array theta.

    f takes no arguments and reads theta's current contents; nudge each entry by +-eps in
    place, and restore it exactly afterwards. Returns an array shaped like theta.
    """
    raise NotImplementedError("numerical_grad: (f(theta + eps e_k) - f(theta - eps e_k)) / "
                              "(2 eps) for every entry k (lesson 02, section 3)")
