"""Array-module selection: NumPy/SciPy on the CPU, CuPy/cupyx on a GPU.

The only module of gpu/ that names CuPy: it owns the choice of the dense and the sparse
array module (from a backend name or from the data), special functions (digamma), CSR
helpers that differ by device, and host copies. Other modules ask it instead of testing
``xp is np`` themselves.

CuPy is imported lazily, only when a GPU backend is asked for or a CuPy array is seen, so
importing this package never touches CUDA (a worker may fork after importing it).
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma as host_digamma

from gpu.errors import InvalidInput

BACKENDS = ("auto", "numpy", "cupy")


def _cupy_if_loaded() -> ModuleType | None:
    return sys.modules.get("cupy")


def gpu_available() -> bool:
    """True when CuPy imports, sees at least one CUDA device (initialises CUDA) and runs a
    sparse product: a host with the CUDA driver but without the cuSPARSE libraries would
    otherwise pick CuPy and fail at the fit's first sparse product."""
    try:
        cupy = importlib.import_module("cupy")
        if int(cupy.cuda.runtime.getDeviceCount()) <= 0:
            return False
        probe = importlib.import_module("cupyx.scipy.sparse").csr_matrix(cupy.eye(2, dtype=cupy.float32))
        return bool(float((probe @ cupy.ones((2, 1), dtype=cupy.float32)).sum()) == 2.0)
    except Exception:  # ImportError, CUDARuntimeError, missing driver or cuSPARSE libraries
        return False


def resolve_backend(backend: str) -> str:
    """Map ``"auto" | "numpy" | "cupy"`` to the concrete ``"numpy"`` or ``"cupy"``.

    Raises InvalidInput for an unknown name, or for ``"cupy"`` when no GPU is usable.
    """
    if backend not in BACKENDS:
        raise InvalidInput(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numpy":
        return "numpy"
    if gpu_available():
        return "cupy"
    if backend == "cupy":
        raise InvalidInput("backend='cupy' was requested but no CUDA device is usable by CuPy")
    return "numpy"


def array_module(name: str) -> ModuleType:
    """The dense array module for a concrete backend name."""
    if name == "cupy":
        return importlib.import_module("cupy")
    return np


def sparse_module(name: str) -> ModuleType:
    """The sparse matrix module for a concrete backend name (scipy.sparse or cupyx's)."""
    if name == "cupy":
        return importlib.import_module("cupyx.scipy.sparse")
    return sp


def get_array_module(x: Any) -> ModuleType:
    """NumPy or CuPy, chosen from the data (dense or sparse)."""
    cupy = _cupy_if_loaded()
    if cupy is not None:
        if isinstance(x, cupy.ndarray):
            return cupy
        cupyx_sparse = sys.modules.get("cupyx.scipy.sparse")
        if cupyx_sparse is not None and cupyx_sparse.issparse(x):
            return cupy
    return np


def backend_of(x: Any) -> str:
    """``"cupy"`` when ``x`` lives on the GPU, else ``"numpy"``."""
    return "cupy" if get_array_module(x) is not np else "numpy"


def to_host(x: Any) -> Any:
    """Copy a CuPy array (dense or sparse) to the host; NumPy/SciPy input is returned as is."""
    if get_array_module(x) is np:
        return x
    if hasattr(x, "get"):
        return x.get()
    return np.asarray(x)


def is_host(xp: ModuleType) -> bool:
    """True for NumPy (host arrays), False for CuPy."""
    return xp is np


def threads_for(xp: ModuleType, n_threads: int) -> int:
    """Host threads to use for batches on ``xp``: ``n_threads`` on the host, 1 on a GPU
    (GPU batches run in turn on the device)."""
    return n_threads if is_host(xp) else 1


def sparse_module_for(xp: ModuleType) -> ModuleType:
    """scipy.sparse for NumPy, cupyx.scipy.sparse for CuPy."""
    return sp if is_host(xp) else importlib.import_module("cupyx.scipy.sparse")


def sparse_module_of(x: Any) -> ModuleType:
    """The sparse matrix module of the device ``x`` lives on (dense or sparse input)."""
    return sparse_module_for(get_array_module(x))


def is_sparse(x: Any) -> bool:
    """True for a SciPy sparse matrix/array, or a cupyx sparse matrix when cupyx is loaded."""
    if sp.issparse(x):
        return True
    cupyx_sparse = sys.modules.get("cupyx.scipy.sparse")
    return cupyx_sparse is not None and bool(cupyx_sparse.issparse(x))


def host_indptr(csr: Any) -> np.ndarray:
    """The (D+1,) row pointer of a SciPy or cupyx CSR matrix, as a host array."""
    return np.asarray(to_host(csr.indptr))


def csr_row_indices(csr: Any) -> Any:
    """(nnz,) row index of every stored entry of a CSR matrix, in storage order, on its device."""
    xp = get_array_module(csr)
    if is_host(xp):
        return np.repeat(np.arange(csr.shape[0], dtype=csr.indptr.dtype), np.diff(csr.indptr))
    positions = xp.arange(csr.nnz, dtype=csr.indptr.dtype)
    return xp.searchsorted(csr.indptr, positions, side="right") - 1


def transposed_product(csr: Any, dense: Any) -> Any:
    """(V, m) ``csr.T @ dense`` for an (n, V) CSR matrix and an (n, m) dense array on its device.

    On a GPU the transpose is first formed as a CSR matrix (cuSPARSE's csr2csc, which always
    gives the same matrix) and multiplied untransposed: cuSPARSE's transposed product adds
    into the output with atomics, in an order that changes from run to run, so two fits with
    one seed would differ. SciPy's transposed product is already deterministic.
    """
    if is_host(get_array_module(dense)):
        return csr.T @ dense
    return csr.T.tocsr() @ dense


def rowwise_dot(a: Any, b: Any) -> Any:
    """(n,) sum_j a_ij b_ij of two (n, m) arrays on one device: NumPy's einsum on the host,
    one fused product-and-sum on a GPU (CuPy's einsum lowers it to many tiny batched
    matrix products)."""
    xp = get_array_module(a)
    if is_host(xp):
        return np.einsum("ij,ij->i", a, b)
    return (a * b).sum(axis=1)


def synchronize(xp: ModuleType) -> None:
    """Wait for the work queued on ``xp``'s device (nothing on the host): a stage timer read
    without it measures only the launches."""
    if not is_host(xp):
        xp.cuda.Device().synchronize()


def digamma(xp: ModuleType, values: Any) -> Any:
    """Elementwise digamma on the array module ``xp`` (scipy.special or cupyx.scipy.special)."""
    if is_host(xp):
        return host_digamma(values)
    return importlib.import_module("cupyx.scipy.special").digamma(values)


def csr_on_module(matrix: Any, xp: ModuleType) -> Any:
    """The CSR matrix on the array module ``xp`` (copied host -> GPU or GPU -> host when needed)."""
    if get_array_module(matrix) is xp:
        return matrix
    if is_host(xp):
        return to_host(matrix).tocsr()
    host = matrix.tocsr()
    if host.dtype not in (np.float32, np.float64):
        host = host.astype(np.float64)
    return sparse_module_for(xp).csr_matrix(host)

