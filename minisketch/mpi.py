"""Data-parallel training on MPI: ``mpiexec -n N python -m mpi4py -m minisketch.train ...``.

Every rank draws the same global batch [B, N+1, 5] from the same seeded iterator and computes
the losses and gradients of its own contiguous rows (``rows``; ``model.loss_and_grad(part=)``,
the row blocks' machinery one level up); one allreduce sums the flat gradient [P] with the
loss terms, and every rank then takes the same clip and Adam step. So N ranks follow the
one-process run with the same B to float rounding, and the ranks' parameters stay identical.

``get_world()`` is the :class:`World` of this process: one process (no MPI, mpi4py never
imported) unless started by an MPI launcher with several ranks. The sum runs through NCCL
(``cupy.cuda.nccl``) when the arrays are on a GPU and NCCL is there, else through host memory
and MPI. ``load_dataset`` reads the data once per machine into MPI shared memory
(:class:`~minisketch.datasets.PackedSketches`); the download of a QuickDraw class is done by
one rank per machine while the others wait. ``fatal`` ends the whole job when one rank
fails alone; an error every rank meets at the same point ends it cleanly (``Agreed``).
"""
from __future__ import annotations

import hashlib
import os
import sys
from contextlib import contextmanager

import numpy as np

from .cpu import return_freed_memory
from .datasets import (Dataset, PackedSketches, download_sources, load_dataset, load_parts,
                       merge_parts, merged_sizes)
from .errors import MinisketchError
from .layers.latent import kl_floor_forward
from .xp import get_xp, to_numpy

# variables that MPI launchers set to the number of processes (MPICH, Open MPI, Slurm's PMI)
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
FORCE_VAR = "MINISKETCH_MPI_WORLD"    # 1: the MPI path even for one process (GPU check, NCCL)
INSTALL_HINT = "pip install 'minisketch[mpi]' (mpi4py and an MPI runtime)"


class Agreed(MinisketchError):
    """An error that every rank raised at the same point: the job ends cleanly, rank 0 says
    why, and every rank exits with status 1."""


def launched_size() -> int:
    """The number of processes an MPI launcher says this job has (1 when none says)."""
    for var in LAUNCHER_SIZE_VARS:
        try:
            return max(1, int(os.environ.get(var, "")))
        except ValueError:
            continue
    return 1


def get_world() -> "World":
    """This process's :class:`World`: MPI's COMM_WORLD when mpi4py was loaded by its launcher
    (``python -m mpi4py``) or a launcher started several processes, and it has several ranks
    (or ``MINISKETCH_MPI_WORLD=1``: a one-rank world that still runs the MPI path); else one
    process."""
    if "mpi4py" not in sys.modules and launched_size() == 1:
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        raise MinisketchError(f"started by an MPI launcher with {launched_size()} processes, "
                              f"but mpi4py is not installed: {INSTALL_HINT}") from None
    if MPI.COMM_WORLD.Get_size() == 1 and os.environ.get(FORCE_VAR) != "1":
        return World()
    return World(MPI.COMM_WORLD)


class World:
    """The processes of a run. ``World()``: one process, every method a no-op.

    rank, size: this process and the count; local_rank, local_size: the same on this machine
    (``node``, a communicator of the ranks sharing memory). ``is_root``: rank 0, the one that
    prints and writes."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.node = None
        self.local_rank, self.local_size = 0, 1
        self._nccl = None
        self._windows = []
        self._buf = None
        if comm is not None:
            from mpi4py import MPI
            self.MPI = MPI
            self.node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
            self.local_rank, self.local_size = self.node.Get_rank(), self.node.Get_size()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ the rows of a batch

    def rows(self, B: int) -> tuple[int, int]:
        """This rank's contiguous rows (r0, r1) of a batch of B rows (sizes differ by 1 at most)."""
        return B * self.rank // self.size, B * (self.rank + 1) // self.size

    def loss_and_grad(self, model, batch, step: int, training: bool = True) -> dict:
        """``model.loss_and_grad`` of the whole batch, each rank computing its rows: one
        allreduce of [flat gradient, offset, pen]; ``model.flat_grad`` then holds the whole
        batch's gradient on every rank. Returns the whole batch's losses (0-d arrays)."""
        if self.comm is None:
            losses, _ = model.loss_and_grad(batch, step, training=training)
            return losses
        B = len(batch.lengths)
        r0, r1 = self.rows(B)
        losses, _ = model.loss_and_grad(batch, step, training=training,
                                        part=(r0, r1, self.sum_float))
        xp, P = model.xp, model.num_params
        if self._buf is None or self._buf.size != P + 2 or get_xp(self._buf) is not xp or \
                self._buf.dtype != model.flat_grad.dtype:
            self._buf = xp.empty(P + 2, dtype=model.flat_grad.dtype)
        buf = self._buf
        buf[:P] = model.flat_grad
        buf[P] = losses["offset"]
        buf[P + 1] = losses["pen"]
        self.allreduce(buf)
        model.flat_grad[...] = buf[:P]
        out = dict(losses)
        out["offset"], out["pen"] = buf[P].copy(), buf[P + 1].copy()
        out["recon"] = out["offset"] + out["pen"]
        kl_term = 0.0
        if model.hp.conditional:
            kl_term, _ = kl_floor_forward(losses["kl"], model.kl_weight(step),
                                          model.hp.kl_tolerance)
        out["loss"] = xp.asarray(out["recon"] + kl_term, dtype=buf.dtype)
        return out

    # ------------------------------------------------------------------ collectives

    def allreduce(self, buf) -> None:
        """Sum a 1-D array over the ranks, in place: NCCL for a CuPy array when this world
        has an NCCL communicator, else MPI over host memory."""
        if self.comm is None:
            return
        xp = get_xp(buf)
        if xp is np:
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        elif self._nccl is not None:
            from cupy.cuda import nccl
            kind = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}[buf.dtype.name]
            stream = xp.cuda.get_current_stream()
            self._nccl.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kind, nccl.NCCL_SUM,
                                 stream.ptr)
            stream.synchronize()
        else:
            host = to_numpy(buf)
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            buf[...] = xp.asarray(host)

    def sum_float(self, value: float) -> float:
        """The sum of one float over the ranks, added in rank order (the same bits on every
        rank, whatever the MPI library's reduction order)."""
        if self.comm is None:
            return float(value)
        total = 0.0
        for v in self.comm.allgather(float(value)):
            total += v
        return total

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank passes True."""
        if self.comm is None:
            return bool(flag)
        return bool(self.comm.allreduce(int(bool(flag)), op=self.MPI.MAX))

    def bcast(self, obj):
        """Rank 0's ``obj`` on every rank (pickled: objects of this program only)."""
        return obj if self.comm is None else self.comm.bcast(obj, root=0)

    def allgather(self, obj) -> list:
        return [obj] if self.comm is None else self.comm.allgather(obj)

    def bcast_array(self, a) -> None:
        """Overwrite ``a`` (NumPy or CuPy, contiguous) with rank 0's values, in place."""
        if self.comm is None:
            return
        if get_xp(a) is np:
            self.comm.Bcast(a, root=0)
        else:
            host = to_numpy(a).copy()
            self.comm.Bcast(host, root=0)
            a[...] = get_xp(a).asarray(host)

    def same_everywhere(self, a) -> bool:
        """Whether ``a`` holds the same bytes on every rank (a hash of it, gathered)."""
        if self.comm is None:
            return True
        digest = hashlib.blake2b(np.ascontiguousarray(to_numpy(a)).tobytes(),
                                 digest_size=16).hexdigest()
        return len(set(self.comm.allgather(digest))) == 1

    def agree(self, error: BaseException | None) -> None:
        """Every rank passes its error of a step all ranks took (or None); if any rank has one,
        every rank raises :class:`Agreed` with the first one's message (rank named if not 0)."""
        if self.comm is None:
            if error is not None:
                raise error
            return
        message = None
        if error is not None:
            message = str(error) if isinstance(error, MinisketchError) else \
                f"{type(error).__name__}: {error}"
        messages = self.comm.allgather(message)
        for rank, m in enumerate(messages):
            if m is not None:
                raise Agreed(m if rank == 0 else f"rank {rank}: {m}") from error

    @contextmanager
    def fatal(self):
        """Work of one rank alone (rank 0's writes): an error in it ends the whole job (its
        ``error:`` line first), since the other ranks would wait for this one forever."""
        try:
            yield
        except BaseException as e:
            if self.comm is None:
                raise
            self.abort(e)

    def abort(self, error: BaseException, status: int = 1) -> None:
        """Print ``error`` as one line and end every rank of the job with ``status``."""
        who = "" if self.rank == 0 else f"rank {self.rank}: "
        if isinstance(error, KeyboardInterrupt):
            text, status = "interrupted", 130
        elif isinstance(error, MinisketchError):
            text = str(error)
        else:
            text = f"{type(error).__name__}: {error}"
        print(f"error: {who}{text}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        self.comm.Abort(status)

    def finish(self) -> None:
        """End MPI on every rank after a common last step (the exit status is then the
        program's own, with no abort)."""
        if self.comm is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Barrier()
        for win in self._windows:
            win.Free()
        self._windows = []
        if self._nccl is not None:
            self._nccl.destroy()
            self._nccl = None
        self.MPI.Finalize()

    # ------------------------------------------------------------------ threads and devices

    def cores(self) -> int:
        """The CPU cores this rank owns: its affinity set, shared with the ranks of this
        machine that have the same set (no binding by the launcher: the cores are divided)."""
        try:
            mine = sorted(os.sched_getaffinity(0))
        except AttributeError:                       # not Linux
            mine = list(range(os.cpu_count() or 1))
        if self.node is None:
            return max(1, len(mine))
        sharing = sum(1 for s in self.node.allgather(mine) if s == mine)
        return max(1, len(mine) // sharing)

    def use_backend(self, name: str, nccl: bool = True) -> None:
        """Before the model is built: on ``cupy``, this rank's GPU is number local_rank (mod
        the count), and the gradients are summed by NCCL when every rank has it (``nccl``
        True; its unique id sent from rank 0 over MPI)."""
        if self.comm is None or name != "cupy":
            return
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device(self.local_rank % count).use()
        ok = nccl and self.local_size <= count          # NCCL takes one rank per GPU
        try:
            from cupy.cuda import nccl as cuda_nccl
            ok = ok and bool(getattr(cuda_nccl, "available", True))
        except ImportError:
            ok = False
        if not self.any(not ok):                     # every rank has it, or none uses it
            uid = self.bcast(cuda_nccl.get_unique_id() if self.is_root else None)
            self._nccl = cuda_nccl.NcclCommunicator(self.size, uid, self.rank)

    @property
    def transport(self) -> str:
        """How gradients are summed: "nccl", "mpi" or "none"."""
        return "none" if self.comm is None else ("nccl" if self._nccl is not None else "mpi")

    # ------------------------------------------------------------------ data

    def load_dataset(self, sources, max_seq_len=None):
        """``datasets.load_dataset`` once per machine: its first rank downloads what is missing
        while the others wait, loads one source at a time (``load_parts``) and merges them into
        MPI shared memory that every rank of the machine reads (one copy per machine)."""
        if self.comm is None:
            return load_dataset(sources, max_seq_len=max_seq_len)
        error, parts, sizes = None, None, None
        if self.local_rank == 0:
            try:
                download_sources(sources)
                parts = load_parts(sources, max_seq_len=max_seq_len)
                sizes = merged_sizes(parts)
            except (MinisketchError, OSError, MemoryError) as e:
                error = e
        self.agree(error)
        sizes = self.node.bcast(sizes, root=0)
        arrays = {k: (self._shared((n_points, 3), np.float32), self._shared((n + 1,), np.int64))
                  for k, (n_points, n) in sizes.items()}
        ds = None
        if self.local_rank == 0:
            ds = merge_parts(parts, arrays)
            del parts
            return_freed_memory()                   # the parts' arrays and lists
        meta = self.node.bcast(None if ds is None else {
            k: getattr(ds, k) for k in ("scale_factor", "max_seq_len", "dropped", "name",
                                        "labels", "class_names")}, root=0)
        if ds is None:                              # filled by the first rank, read here
            ds = Dataset(**{k: PackedSketches(*arrays[k]) for k in arrays}, **meta)
        return ds

    def _shared(self, shape, dtype) -> np.ndarray:
        """A NumPy array in memory shared by this machine's ranks (an MPI window that the
        machine's first rank allocates; freed by ``finish``)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        win = self.MPI.Win.Allocate_shared(nbytes if self.local_rank == 0 else 0, 1,
                                           comm=self.node)
        self._windows.append(win)
        buf, _ = win.Shared_query(0)
        return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
