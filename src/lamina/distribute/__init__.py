"""Data-parallel training over MPI (the ``mpi`` extra: ``pip install "lamina[mpi]"``).

Launch the same script on N processes (``mpiexec -n 4 python train.py``) and train with
``MPIStrategy``: rank 0's weights are broadcast, each rank trains on its shard of every global batch,
gradients are averaged with one allreduce per step, metrics are summed across ranks, and only rank 0
prints and writes checkpoints. Importing this package does not import ``mpi4py``; constructing an
``MPIStrategy`` does.
"""

from lamina.distribute.errors import DistributedError
from lamina.distribute.strategy import MPIStrategy, current

__all__ = ["DistributedError", "MPIStrategy", "current"]
