"""Import first: one thread per process for Numba, OpenMP, MKL and OpenBLAS.

The variables must be set before NumPy or Numba is imported, so benchmark scripts import this
module before anything else (``import single_thread  # noqa: F401``).
"""

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
