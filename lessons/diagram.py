"""Lesson 01's map of sketch-rnn: every block of the model, with the lesson that builds it.

``save_model_diagram(path)`` draws it with matplotlib: the encoder reads the sketch, the latent
layer turns its summary into z, the decoder reads the previous row and z and emits a mixture
over the next row; training, sampling and the latent space build on top.
"""
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

BLOCKS = {  # name: (x, y, width, text, colour)
    "sketch": (0.0, 2.0, 1.7, "sketch S\nrows $(\\Delta x, \\Delta y, p_1, p_2, p_3)$\n"
               "lesson 01", "#eeeeee"),
    "encoder": (2.1, 2.0, 2.0, "bidirectional LSTM encoder\n"
                "$h = [h_\\rightarrow ; h_\\leftarrow]$\nlessons 03, 04, 05", "#cfe2f3"),
    "latent": (4.5, 2.0, 1.9, "latent vector z\n$\\mu, \\sigma$ from h;\n"
               "$z = \\mu + \\sigma \\odot \\epsilon$\nlesson 06", "#d9ead3"),
    "decoder": (6.8, 2.0, 2.1, "decoder LSTM\nreads $[S_{i-1}, z]$,\n"
                "starts at $\\tanh(W_z z + b_z)$\nlessons 03, 04, 08", "#cfe2f3"),
    "mixture": (9.3, 2.0, 2.2, "output $y_i$: mixture of M\nbivariate normals for "
                "$(\\Delta x, \\Delta y)$\n+ pen softmax\nlesson 07", "#fce5cd"),
    "train": (2.1, 0.0, 2.0, "training: loss, Adam,\nschedules, the run\nlessons 08, 09, 10",
              "#fff2cc"),
    "sample": (6.8, 0.0, 2.1, "sampling one row at a\ntime, temperature\nlesson 11", "#fff2cc"),
    "space": (4.5, 0.0, 1.9, "latent space:\ninterpolate, analogies\nlesson 12", "#fff2cc"),
    "more": (9.3, 0.0, 2.2, "other cells (13), completion\nand magenta.js (14),\n"
             "speed: Numba (15), GPU (16)", "#f3f3f3"),
}
HEIGHT = 1.25


def _box(ax, x, y, w, text, colour):
    ax.add_patch(FancyBboxPatch((x, y), w, HEIGHT, boxstyle="round,pad=0.05", fc=colour,
                                ec="0.3", lw=1))
    ax.text(x + w / 2, y + HEIGHT / 2, text, ha="center", va="center", fontsize=7.5)


def _arrow(ax, a, b, text="", rad=0.0):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, lw=1.2, color="0.2",
                                 connectionstyle=f"arc3,rad={rad}"))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, text, ha="center", fontsize=7,
                color="0.25")


def save_model_diagram(path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(11, 3.9))
    for x, y, w, text, colour in BLOCKS.values():
        _box(ax, x, y, w, text, colour)
    mid = 2.0 + HEIGHT / 2
    right = {k: BLOCKS[k][0] + BLOCKS[k][2] for k in BLOCKS}
    _arrow(ax, (right["sketch"], mid), (BLOCKS["encoder"][0], mid), "S")
    _arrow(ax, (right["encoder"], mid), (BLOCKS["latent"][0], mid), "h")
    _arrow(ax, (right["latent"], mid), (BLOCKS["decoder"][0], mid), "z")
    _arrow(ax, (right["decoder"], mid), (BLOCKS["mixture"][0], mid), "$h_i$")
    # the sampled (or, in training, the true) row goes back into the decoder
    _arrow(ax, (BLOCKS["mixture"][0] + 1.1, 2.0 + HEIGHT + 0.05),
           (BLOCKS["decoder"][0] + 1.05, 2.0 + HEIGHT + 0.05), rad=0.45)
    ax.text((right["decoder"] + BLOCKS["mixture"][0]) / 2, 4.05,
            "next row $S_i$: sampled, or the true row in training", ha="center", fontsize=7,
            color="0.25")
    for k in ("train", "space", "sample", "more"):
        x, _, w, _, _ = BLOCKS[k]
        ax.plot([x + w / 2, x + w / 2], [HEIGHT + 0.08, 1.9], ":", color="0.5", lw=1)
    ax.set_xlim(-0.2, 11.7)
    ax.set_ylim(-0.2, 4.3)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
