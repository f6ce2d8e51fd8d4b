"""Array-module selection: NumPy/SciPy on the CPU, CuPy/cupyx on a GPU.

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

BACKENDS = ("auto", "numpy", "cupy")


def _cupy_if_loaded() -> ModuleType | None:
    return sys.modules.get("cupy")


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device (initialises CUDA)."""
    try:
        cupy = importlib.import_module("cupy")
        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # ImportError, CUDARuntimeError, missing driver libraries
        return False


def resolve_backend(backend: str) -> str:
    """Map ``"auto" | "numpy" | "cupy"`` to the concrete ``"numpy"`` or ``"cupy"``.

    Raises ValueError for an unknown name, or for ``"cupy"`` when no GPU is usable.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numpy":
        return "numpy"
    if gpu_available():
        return "cupy"
    if backend == "cupy":
        raise ValueError("backend='cupy' was requested but no CUDA device is usable by CuPy")
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
