"""Numerical core of spectral-topics: spectral LDA on NumPy/SciPy or CuPy.

Imports no web, queue or settings code, and never touches CUDA at import time.
"""

from gpu.estimator import SpectralLDA
from gpu.spectral.spectral_fit import SpectralLDAResult, fit_spectral_lda

__all__ = ["SpectralLDA", "SpectralLDAResult", "fit_spectral_lda"]
