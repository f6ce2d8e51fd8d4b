"""Numerical core of spectral-topics: spectral LDA on NumPy/SciPy or CuPy.

Imports no web, queue or settings code, and never touches CUDA at import time.
"""
