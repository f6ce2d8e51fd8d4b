"""Numerical core of spectral-topics: spectral LDA on NumPy/SciPy or CuPy.

Imports no web, queue or settings code, and never touches CUDA at import time. The package
loads its engine lazily (PEP 562): ``import gpu.errors`` (what the API and ingestion need
for :class:`gpu.errors.InvalidInput`) loads no numerical code; ``from gpu import
SpectralLDA`` loads the estimator.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SpectralLDA": "gpu.estimator",
    "SpectralLDAResult": "gpu.spectral.spectral_fit",
    "fit_spectral_lda": "gpu.spectral.spectral_fit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpu' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
