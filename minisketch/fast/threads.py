"""Row-block threads around the fast whole-model functions, and a thread for drawing noise.

On the CPU backends a training step runs in ``threads`` Python threads: the Numba kernels,
NumPy's loops and BLAS release the GIL, and the rows of a batch are independent until their
losses and gradients are summed. ``StepThreads`` cuts a batch into row blocks and runs a
function over them (``map``), one thread each with BLAS on one thread inside; the fast model
(``fast/sketch_rnn.py``) hands it its per-block decoder functions and the encoder's two
directions. ``beside`` runs one more job (the decoder's noise) while the step goes on.
The split is fixed by ``threads`` and the batch size, so a run is deterministic on a machine;
one block gives exactly the unsplit numbers, several the same to float rounding.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from ..cpu import blas_threads, get_blas_threads
from ..errors import ModelError

MIN_ROWS_PER_THREAD = 16   # automatic threads: no row block smaller than this


def default_threads(backend_name: str) -> int:
    """Row blocks per step when ``threads`` is not given: ``MINISKETCH_THREADS`` if set; else, on
    the CPU backends, the cores this process may use when NumPy's BLAS runs on one thread (as
    ``python -m minisketch.train`` sets it), and 1 when BLAS has threads of its own (then the
    products are already parallel, and one BLAS thread per block is slower) or cannot be
    queried; 1 on the GPU."""
    if backend_name == "cupy":
        return 1
    env = os.environ.get("MINISKETCH_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ModelError(f"MINISKETCH_THREADS must be a positive integer, got {env!r}")
        return n
    if get_blas_threads() != 1:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # not Linux
        return max(1, os.cpu_count() or 1)


class StepThreads:
    """The row blocks of a step and the threads that run them.

    threads: blocks per step (at most B); auto: True when ``threads`` came from
    ``default_threads``, so that no block is smaller than ``MIN_ROWS_PER_THREAD`` rows."""

    def __init__(self, threads: int, auto: bool = False):
        self.threads, self.auto = int(threads), bool(auto)
        self._pool, self._pool_size = None, 0     # started on the first split step
        self._noise_pool = None

    def blocks(self, B: int) -> list:
        """The row blocks [(r0, r1), ...] of a batch of B rows: ``threads`` blocks of
        near-equal size, fewer when the batch is small."""
        n = self.threads
        if self.auto:
            n = min(n, B // MIN_ROWS_PER_THREAD)
        n = max(1, min(n, B))
        edges = [B * k // n for k in range(n + 1)]
        return list(zip(edges[:-1], edges[1:]))

    def map(self, fn, jobs) -> list:
        """[fn(job) for job in jobs]: in this thread when there is one job, else one worker
        thread per job (BLAS on one thread inside, restored after). Results in job order."""
        if len(jobs) == 1:
            return [fn(jobs[0])]
        if self._pool is None or self._pool_size < len(jobs):
            if self._pool is not None:
                self._pool.shutdown()
            self._pool_size = len(jobs)
            self._pool = ThreadPoolExecutor(max_workers=len(jobs),
                                            thread_name_prefix="minisketch")
        with blas_threads(1):
            futures = [self._pool.submit(fn, job) for job in jobs]
            return [f.result() for f in futures]

    def beside(self, fn, *args):
        """Start fn(*args) in a thread of its own; returns a function that waits for it and
        returns its result (or raises its exception)."""
        if self._noise_pool is None:
            self._noise_pool = ThreadPoolExecutor(max_workers=1,
                                                  thread_name_prefix="minisketch-noise")
        return self._noise_pool.submit(fn, *args).result
