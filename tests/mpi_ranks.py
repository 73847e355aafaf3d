"""Train like ``python -m minisketch.train`` on every rank of an MPI job, then save each rank's
parameters as ``<dump>/rank<rank>.npz`` (tests/test_mpi.py: the ranks must hold the same bits).

    mpiexec -n 2 python -m mpi4py tests/mpi_ranks.py DUMP_FOLDER TRAIN_OPTIONS...
"""
import sys
from pathlib import Path

import numpy as np

from minisketch import train


def main():
    dump, argv = Path(sys.argv[1]), sys.argv[2:]
    world = train.get_world()
    run = train.setup_run(train.build_parser(argv).parse_args(argv), world)
    rc = train.train(run)
    np.savez(dump / f"rank{world.rank}.npz", **run.model.state_dict())
    world.finish()
    return rc


if __name__ == "__main__":
    sys.exit(main())
