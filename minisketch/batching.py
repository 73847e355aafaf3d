"""Seeded batches: random training batches and in-order evaluation passes.

    it = BatchIterator(ds.train, batch_size=100, max_len=ds.max_seq_len,
                       scale_factor=ds.scale_factor, rng=0, augment=Augment.from_hparams(hp))
    x, lengths = it.next_batch()               # random batch, augmented
    state = it.get_state()                     # plain dict (JSON-able); it.set_state(state) resumes
    for batch, n_real in eval_batches(ds.valid, 100, ds.max_seq_len, ds.scale_factor):
        ...                                    # every sketch exactly once, in order

Training batches follow the reference: each batch is ``rng.permutation(n)[:B]`` (no repeats within
a batch, independent across batches), then each sketch is augmented in batch order with draws
from the same generator. Everything random comes from ``self.rng``, so saving
``rng.bit_generator.state`` and restoring it continues the exact sequence of batches.

Evaluation passes never use randomness or augmentation. The last batch holds the remaining
``n % B`` sketches (it is smaller, not padded), so a mean loss over the set is
``sum(loss_b * n_real_b) / sum(n_real_b)`` when ``loss_b`` averages over the batch's sketches.
With ``pad=True`` the last batch is filled up to B rows by repeating its last real sketch (for
code that needs a fixed batch shape); ``n_real`` then says how many leading rows are real.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np

from .errors import DataError
from .strokes import Augment, Batch, make_batch


class EvalBatch(NamedTuple):
    """One batch of an evaluation pass; ``batch, n_real = eval_batch``."""

    batch: Batch     # strokes [b, max_len + 1, 5], lengths [b]
    n_real: int      # leading rows that are real sketches (b unless pad=True on the last batch)


def eval_batches(sketches: Sequence[np.ndarray], batch_size: int, max_len: int,
                 scale_factor: float, pad: bool = False) -> Iterator[EvalBatch]:
    """In-order pass over all sketches, each exactly once, no augmentation.

    Yields ``ceil(n / batch_size)`` :class:`EvalBatch`; the last has ``n % batch_size`` rows
    (or is padded to ``batch_size`` by repeating its last sketch when ``pad``).
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(sketches)
    for start in range(0, n, batch_size):
        chunk = list(sketches[start:start + batch_size])
        n_real = len(chunk)
        if pad and n_real < batch_size:
            chunk += [chunk[-1]] * (batch_size - n_real)
        yield EvalBatch(make_batch(chunk, max_len, scale_factor), n_real)


class BatchIterator:
    """Random training batches from a list of stroke-3 sketches (data units).

    sketches:     the training set, e.g. ``Dataset.train``.
    batch_size:   B (must not exceed the number of sketches: no repeats within a batch).
    max_len:      N_max; batches are ``[B, max_len + 1, 5]``.
    scale_factor: the dataset's normalizing factor.
    rng:          an ``np.random.Generator`` (used as is) or a seed for ``np.random.default_rng``.
    augment:      an :class:`~minisketch.strokes.Augment` (random scale + point dropping) or None.

    Iterating gives batches forever; ``next_batch()`` gives one. ``get_state()``/``set_state()``
    save and restore the generator (``rng.bit_generator.state``, a dict of ints and strings).
    """

    def __init__(self, sketches: Sequence[np.ndarray], batch_size: int, max_len: int,
                 scale_factor: float, rng: np.random.Generator | int | None = 0,
                 augment: Augment | None = None):
        self.sketches = sketches
        self.batch_size = int(batch_size)
        self.max_len = int(max_len)
        self.scale_factor = float(scale_factor)
        self.augment = None if augment is None else Augment(*augment)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(sketches) < self.batch_size:
            raise DataError(f"batch size {self.batch_size} is larger than the {len(sketches)} "
                            "sketches available (a batch never repeats a sketch); "
                            "use a smaller --batch_size or more data")

    def __len__(self) -> int:
        """Number of sketches sampled from."""
        return len(self.sketches)

    def next_indices(self) -> np.ndarray:
        """Indices of the next batch: ``rng.permutation(n)[:B]`` (draws from ``rng``)."""
        return self.rng.permutation(len(self.sketches))[:self.batch_size]

    def next_batch(self) -> Batch:
        """The next random batch (augmented when ``augment`` is set)."""
        idx = self.next_indices()
        return make_batch([self.sketches[i] for i in idx], self.max_len, self.scale_factor,
                          rng=self.rng, augment=self.augment)

    def __iter__(self) -> "BatchIterator":
        return self

    def __next__(self) -> Batch:
        return self.next_batch()

    def get_state(self) -> dict:
        """A copy of the generator state (``rng.bit_generator.state``)."""
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        """Restore a state from :meth:`get_state` (the generator kind must match)."""
        kind = type(self.rng.bit_generator).__name__
        if state.get("bit_generator") != kind:
            raise DataError(f"saved batch RNG state is for {state.get('bit_generator')!r}, "
                            f"this iterator uses {kind!r}")
        self.rng.bit_generator.state = state

    def eval_batches(self, pad: bool = False) -> Iterator[EvalBatch]:
        """In-order pass over this iterator's sketches (no augmentation, no RNG draws)."""
        return eval_batches(self.sketches, self.batch_size, self.max_len, self.scale_factor,
                            pad=pad)
