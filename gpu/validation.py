"""Input checks for the spectral LDA engine: count matrices and the one parameter table.

:data:`PARAMETER_CONSTRAINTS` declares every parameter of :class:`gpu.estimator.SpectralLDA`
(and so of :func:`gpu.spectral.spectral_fit.fit_spectral_lda` and of the selection, which
take subsets of them); its ``refine_options`` entry checks the keys of that dict against
:data:`REFINE_OPTION_CONSTRAINTS` (the options of :func:`gpu.refine.refine_topics`).
:func:`validate_parameters` is the one place they are checked.

Bad input raises :class:`gpu.errors.InvalidInput` saying what was wrong and where
(parameter name and value, document index). Nothing here touches CUDA unless the input
already lives on the GPU.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gpu.backend import backend_of, get_array_module, host_indptr, is_sparse, resolve_backend, sparse_module, to_host
from gpu.errors import InvalidInput

DTYPES = ("float32", "float64")
TENSOR_MODES = ("auto", "dense", "implicit")
POWER_STARTS = ("random", "simultaneous")


@dataclass(frozen=True)
class Constraint:
    """One declared rule for a parameter: ``check(value) -> bool`` and what it means."""

    check: Callable[[Any], bool]
    description: str


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _non_negative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _in_unit_interval(value: Any) -> bool:
    return _is_real(value) and 0 <= value < 1


def _k_range(value: Any) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value)
            and 1 <= value[0] <= value[1])


REFINE_OPTION_CONSTRAINTS: dict[str, Constraint] = {
    "max_sweeps": Constraint(_non_negative_int, "an integer >= 0"),
    "tol": Constraint(lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "topic_smoothing": Constraint(lambda v: _is_real(v) and v > 0, "a number > 0"),
    "inner_iter": Constraint(_positive_int, "an integer >= 1"),
    "inner_tol": Constraint(lambda v: _is_real(v) and v > 0, "a number > 0"),
    "patience": Constraint(_positive_int, "an integer >= 1"),
    "n_chunks": Constraint(_positive_int, "an integer >= 1"),
    "check_every": Constraint(_positive_int, "an integer >= 1"),
    "final_sweeps": Constraint(_optional(_non_negative_int), "None or an integer >= 0"),
    "n_active_topics": Constraint(_optional(_non_negative_int), "None or an integer >= 0"),
    "start_mixing": Constraint(lambda v: v == "auto" or _in_unit_interval(v), "'auto' or a number in [0, 1)"),
    "fit_alpha": Constraint(lambda v: v in ("auto", "minka", "heldout", "polya", True, False, None),
                            "'auto', 'minka', 'heldout', 'polya', True or False"),
    "method": Constraint(lambda v: v in ("cvb0", "variational"), "'cvb0' or 'variational'"),
    "dtype": Constraint(lambda v: str(v) in DTYPES, "'float32' or 'float64'"),
    "batch_size": Constraint(_optional(_positive_int), "None or an integer >= 1"),
    "memory_budget": Constraint(_non_negative_int, "an integer >= 0"),
    "n_threads": Constraint(_optional(_positive_int), "None or an integer >= 1"),
}


def _refine_options(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    validate_parameters(value, REFINE_OPTION_CONSTRAINTS, kind="refine option")
    return True


PARAMETER_CONSTRAINTS: dict[str, Constraint] = {
    "n_topics": Constraint(lambda v: v == "auto" or _positive_int(v), "an integer >= 1 or 'auto'"),
    "alpha0": Constraint(lambda v: v == "auto" or (_is_real(v) and v > 0), "a finite number > 0 or 'auto'"),
    "seed": Constraint(_non_negative_int, "an integer >= 0"),
    "backend": Constraint(lambda v: v in ("auto", "numpy", "cupy"), "one of 'auto', 'numpy', 'cupy'"),
    "dtype": Constraint(lambda v: v is None or (str(np.dtype(v)) in DTYPES if _dtype_like(v) else False),
                        "None, 'float32' or 'float64'"),
    "progress": Constraint(lambda v: v is None or callable(v), "None or a callable(stage, done, total)"),
    "refine": Constraint(lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "validation_fraction": Constraint(_in_unit_interval, "a number in [0, 1)"),
    "k_range": Constraint(_k_range, "a pair (k_min, k_max) of integers with 1 <= k_min <= k_max"),
    "refine_options": Constraint(_refine_options, "None or a dict of refine_topics options"),
    "n_oversample": Constraint(_non_negative_int, "an integer >= 0"),
    "n_krylov_blocks": Constraint(_optional(_positive_int), "an integer >= 1"),
    "n_restarts": Constraint(_positive_int, "an integer >= 1"),
    "n_iter": Constraint(_optional(_positive_int), "an integer >= 1"),
    "tol": Constraint(lambda v: _is_real(v) and v > 0, "a finite number > 0"),
    "n_extra_components": Constraint(_non_negative_int, "an integer >= 0"),
    "refit_extra_components": Constraint(_optional(_non_negative_int), "an integer >= 0"),
    "block_rows": Constraint(_optional(_positive_int), "None or an integer >= 1"),
    "n_threads": Constraint(_optional(_positive_int), "None or an integer >= 1"),
    "tensor_mode": Constraint(lambda v: v in TENSOR_MODES, f"one of {TENSOR_MODES}"),
    "power_starts": Constraint(lambda v: v is None or v in POWER_STARTS, f"None or one of {POWER_STARTS}"),
    "whitening_dtype": Constraint(lambda v: v is None or v in DTYPES, f"None or one of {DTYPES}"),
    "projection_cache_bytes": Constraint(_non_negative_int, "an integer >= 0"),
    "rank_tol": Constraint(lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)"),
    "word_scale_power": Constraint(lambda v: _is_real(v) and 0 <= v <= 1, "a number in [0, 1]"),
}


def _dtype_like(value: Any) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def validate_parameters(params: dict[str, Any], constraints: dict[str, Constraint] | None = None, *,
                        kind: str = "parameter") -> None:
    """Check every parameter against ``constraints`` (default :data:`PARAMETER_CONSTRAINTS`).

    Raises InvalidInput naming the parameter and its value; unknown names are errors too.
    """
    constraints = PARAMETER_CONSTRAINTS if constraints is None else constraints
    for name, value in params.items():
        constraint = constraints.get(name)
        if constraint is None:
            known = ", ".join(sorted(constraints))
            raise InvalidInput(f"unknown {kind} {name!r} (known: {known})")
        if not constraint.check(value):
            raise InvalidInput(f"{kind} {name!r} must be {constraint.description}, got {value!r}")


def choose_backend(X: Any, backend: str) -> str:
    """Concrete backend for input ``X``: data already on the GPU stays there under ``auto``."""
    if backend == "auto" and backend_of(X) == "cupy":
        return "cupy"
    return resolve_backend(backend)


def as_count_matrix(X: Any, backend: str, dtype: str) -> Any:
    """Validate a document-word count matrix and return it as CSR on ``backend``.

    X: (D, V) SciPy/cupyx sparse matrix or dense array of non-negative finite counts.
    Returns a (D, V) CSR matrix of ``dtype`` (cupyx CSR with int32 indices on the GPU).
    """
    if not (is_sparse(X) or hasattr(X, "shape")):
        raise InvalidInput(f"X must be a 2-D sparse matrix or array of counts, got {type(X).__name__}")
    if len(X.shape) != 2:
        raise InvalidInput(f"X must be 2-D (documents x words), got shape {tuple(X.shape)}")
    n_docs, n_words = (int(s) for s in X.shape)
    if n_docs == 0 or n_words == 0:
        raise InvalidInput(f"X is empty: shape {(n_docs, n_words)}")

    on_gpu = backend_of(X) == "cupy"
    if not is_sparse(X):
        X = X if on_gpu else np.asarray(X)
        _check_values(X.ravel(), lambda flat_index: f"document {int(flat_index) // n_words}")
        X = sparse_module(backend_of(X)).csr_matrix(X.astype(dtype))
    else:
        X = X.tocsr()
        if not X.has_canonical_format:
            X = X.copy()  # never modify the caller's matrix
            X.sum_duplicates()
        def where(position: int) -> str:
            return f"document {int(np.searchsorted(host_indptr(X), position, side='right') - 1)}"

        _check_values(X.data, where)
        if X.dtype != np.dtype(dtype):  # cupyx's astype has no copy=False
            X = X.astype(dtype)

    if backend == "cupy" and not on_gpu:
        if X.nnz >= 2**31:
            raise InvalidInput(f"X has {X.nnz} non-zeros; cupyx sparse needs fewer than 2**31")
        X = sparse_module("cupy").csr_matrix(X)
    elif backend == "numpy" and on_gpu:
        X = to_host(X).tocsr()
    return X


def _check_values(values: Any, where: Callable[[int], str]) -> None:
    xp = get_array_module(values)
    if values.size == 0:
        return
    if values.dtype.kind not in "biuf":
        raise InvalidInput(f"X must hold numeric counts, got dtype {values.dtype}")
    smallest = values.min()
    if bool(smallest >= 0) and (values.dtype.kind != "f" or bool(xp.isfinite(values.sum(dtype=xp.float64)))):
        return  # fast path: two reductions, no temporaries; below only to say where it fails
    finite = xp.isfinite(values) if values.dtype.kind == "f" else xp.ones(values.shape, dtype=bool)
    if not bool(finite.all()):
        position = int(xp.argmin(finite))
        raise InvalidInput(f"X has a non-finite count ({to_host(values[position])}) in {where(position)}")
    if bool((values < 0).any()):
        position = int(xp.argmax(values < 0))
        raise InvalidInput(f"X has a negative count ({to_host(values[position])}) in {where(position)}")
