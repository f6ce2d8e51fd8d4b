"""Before a fit starts: read its options again and estimate its working memory (beyond the
count matrix) against FIT_MEMORY_BUDGET.

The API validates ``options`` at submit (app.api.fit_options); the worker reads them back
through the same model, so a stored job can never hand the estimator an unbounded or
unknown option. :func:`check_fit_memory` refuses a fit whose estimated peak, less its count matrices,
exceeds the budget with :class:`gpu.errors.InvalidInput` (failed at once, never retried), naming the
budget and what the fit would need.
"""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from app.api.fit_options import FitOptions
from gpu.errors import InvalidInput

# The engine's defaults for the options the estimate depends on (gpu/estimator.py).
# The spectral start of a refined fit (the default) and of a bare one (refine=False), as
# gpu.estimator's REFINED_START_OPTIONS / BARE_START_OPTIONS resolve them (copied: the worker's
# parent process must not import gpu/ before it forks; tests/workers/test_fit_memory.py keeps
# them equal).
REFINED_START = {"n_krylov_blocks": 5, "refit_extra_components": 5, "power_starts": "simultaneous",
                 "whitening_dtype": "float32"}
BARE_START = {"n_krylov_blocks": 3, "refit_extra_components": 0, "power_starts": "random"}
_DEFAULTS = {"n_oversample": 10, "n_restarts": 10, "n_extra_components": 0, "refine": True,
             "k_range": (2, 100), "dtype": "float64"}
DENSE_TENSOR_MAX_COMPONENTS = 200  # the engine forms the k^3 tensor up to this many components
_FLOAT64 = 8
_INDEX = 4


def read_fit_options(raw: Any) -> FitOptions:
    """The stored ``options`` of a fit job as :class:`FitOptions`; InvalidInput if they are not."""
    try:
        return FitOptions.model_validate(raw or {})
    except ValidationError as exc:
        raise InvalidInput(f"invalid fit options: {exc}") from exc


def estimate_fit_bytes(n_docs: int, n_words: int, nnz: int, n_topics: int | str, options: dict[str, Any]) -> int:
    """A conservative estimate of a fit's peak memory in bytes.

    Counts the count matrix twice (the training slice and its cast to ``dtype``), the Krylov
    basis (V x p per block, p = k + extra + refit extra + oversample, plus two work blocks;
    5 blocks and 5 refit extra for a refined fit, as the estimator resolves them), the dense
    whitened tensor when the engine forms it (p^3), the power-method iterates (restarts x
    p^2, a few copies; with simultaneous starts, T(I, V, V) of a p-column basis: one more
    p^3), the projected documents and mixtures (D x p, twice) and the topic
    matrices of recovery and refinement (k x V, six copies). With ``n_topics='auto'`` the
    largest k of ``k_range`` is used.
    """
    given = {k: v for k, v in options.items() if v is not None}
    start = REFINED_START if given.get("refine", _DEFAULTS["refine"]) else BARE_START
    values = {**_DEFAULTS, **start, **given}
    k = int(values["k_range"][1]) if n_topics == "auto" else int(n_topics)
    # the junk refit decomposes again with (at least) refit_extra_components more components
    components = k + int(values["n_extra_components"]) + int(values["refit_extra_components"])
    p = components + int(values["n_oversample"])
    itemsize = 4 if values["dtype"] == "float32" else 8
    counts = 2 * count_matrix_bytes(n_docs, nnz, itemsize)
    krylov = n_words * p * (int(values["n_krylov_blocks"]) + 2) * _FLOAT64
    dense = components <= DENSE_TENSOR_MAX_COMPONENTS
    tensor = components ** 3 * _FLOAT64 if dense else 0
    power = 4 * int(values["n_restarts"]) * components * components * _FLOAT64
    if dense and values["power_starts"] == "simultaneous":
        power += components ** 3 * _FLOAT64
    documents = 2 * n_docs * p * _FLOAT64
    topics = 6 * k * n_words * _FLOAT64
    return counts + krylov + tensor + power + documents + topics


def count_matrix_bytes(n_docs: int, nnz: int, itemsize: int) -> int:
    """Bytes of a (n_docs, V) CSR count matrix with ``nnz`` entries of ``itemsize`` bytes."""
    return nnz * (itemsize + _INDEX) + (n_docs + 1) * _INDEX


def check_fit_memory(budget_bytes: int, counts, n_topics: int | str, options: dict[str, Any]) -> int:
    """Raise InvalidInput when the fit of ``counts`` would need more than ``budget_bytes`` of
    working memory beyond its count matrix (the estimate less the two copies of the counts
    it counts: the worker holds the corpus whatever the fit); returns that working estimate."""
    n_docs, n_words = (int(s) for s in counts.shape)
    itemsize = 4 if (options.get("dtype") or _DEFAULTS["dtype"]) == "float32" else 8
    matrices = 2 * count_matrix_bytes(n_docs, int(counts.nnz), itemsize)
    needed = estimate_fit_bytes(n_docs, n_words, int(counts.nnz), n_topics, options) - matrices
    if needed > budget_bytes:
        raise InvalidInput(
            f"this fit would need about {_mib(needed)} MiB of working memory beyond its count matrices "
            f"({_mib(matrices)} MiB; D={n_docs}, V={n_words}, nnz={int(counts.nnz)}, n_topics={n_topics}, "
            f"options={sorted(options)}), more than the worker's memory budget of {_mib(budget_bytes)} MiB "
            "(FIT_MEMORY_BUDGET): ask for fewer topics or extra components, or a smaller corpus")
    return needed


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / (1 << 20):,.1f}"
