"""The seed's MPI example (parallel_mpi.txt): a global sum with Allreduce."""

import numpy as np
from mpi4py import MPI


def psum(a):
    s = np.sum(a)
    rcvBuf = np.array(0.0, "d")
    MPI.COMM_WORLD.Allreduce([s, MPI.DOUBLE], [rcvBuf, MPI.DOUBLE], op=MPI.SUM)
    return rcvBuf
