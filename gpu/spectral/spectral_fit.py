"""Spectral LDA as a pure function: :func:`fit_spectral_lda` and its :class:`SpectralLDAResult`.

Stages (each reported to ``progress(stage, done, total)`` and timed):
  moments       drop documents shorter than 3 tokens; M1 and diagonal corrections
  whitening     block Krylov range finder for S M2 S (word-scaled, applied implicitly), Rayleigh-Ritz -> W
  tensor        one pass P = X W -> the whitened tensor T = M3(W, W, W) (or T(I,u,u) implicitly)
  decomposition robust tensor power method with deflation
  recovery      alpha, topics with sign fixing and simplex projection, sorted by alpha

Memory: O(nnz + V (b m) + k^3) plus one block of rows, with b m the Krylov basis size
(about 3 (k + 10)), and at most ``projection_cache_bytes`` of kept products X K (which save a
sparse product); tensor_mode="implicit" (chosen for k > 200) keeps P = X W, (D, k), instead of T.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu.backend import get_array_module, synchronize, to_host
from gpu.errors import InvalidInput
from gpu.junk import junk_components
from gpu.passes import Progress, default_block_rows, default_threads, row_blocks, single_threaded_blas
from gpu.spectral.moments import corpus_stats
from gpu.spectral.power_method import robust_tensor_power_method
from gpu.spectral.recovery import alpha_from_eigenvalues, recover
from gpu.spectral.tensor import DenseTensor, ImplicitTensor, tensor_terms, whitened_document_sums, whitened_tensor
from gpu.spectral.whitening import Whitening, krylov_whitening, numerical_rank, word_scale
from gpu.validation import as_count_matrix, choose_backend, validate_parameters

DEFAULT_OPTIONS: dict[str, Any] = {
    "n_oversample": 10,
    "n_krylov_blocks": 3,
    "n_restarts": 10,
    "n_iter": 30,
    "tol": 1e-10,
    "n_extra_components": 0,
    "block_rows": None,
    "n_threads": None,
    "tensor_mode": "auto",
    "rank_tol": 1e-6,
    "projection_cache_bytes": 2**30,
    "word_scale_power": 0.2,
    "refit_extra_components": 0,
    "power_starts": "random",
    "whitening_dtype": None,
}
# the (k+extra)-th eigenvalue of M2 must be at least this share of the k-th (no spectral gap
# at k) for the junk refit (docs/decisions.md)
REFIT_MIN_EIGENVALUE_RATIO = 0.5
DENSE_TENSOR_MAX_COMPONENTS = 200  # tensor_mode="auto" forms T (k^3 floats) up to this k


@dataclass(frozen=True)
class SpectralLDAResult:
    """What a spectral LDA fit learned.

    topic_word:         (k, V) float64 host, rows on the simplex, sorted by decreasing alpha.
    alpha:              (k,) float64 Dirichlet parameters, same order.
    m2_eigenvalues:     (k + n_extra_components + n_oversample,) leading eigenvalues of M2
                        (Ritz values of the Krylov range finder), descending; the first
                        k + n_extra_components were kept by whitening, the rest are the next few.
    tensor_eigenvalues: (k,) lambda_i of the kept components, same order as topics.
    n_dropped_docs:     documents dropped for having fewer than 3 tokens.
    timings:            stage -> seconds.
    diagnostics:        JSON-serializable details (convergence, sizes, options).
    n_features_in:      V.
    """

    topic_word: np.ndarray
    alpha: np.ndarray
    m2_eigenvalues: np.ndarray
    tensor_eigenvalues: np.ndarray
    n_dropped_docs: int
    timings: dict[str, float]
    diagnostics: dict[str, Any]
    n_features_in: int


class _Stopwatch:
    """Seconds per stage. Each reading first waits for the work queued on the device of
    ``xp`` (set once the backend is chosen): CuPy returns before its kernels finish, so an
    unsynchronised reading would charge a stage's work to the next one."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.xp: Any = np
        self._stage: str | None = None
        self._start = 0.0

    def start(self, stage: str) -> None:
        self.stop()
        self._stage, self._start = stage, time.perf_counter()

    def stop(self) -> None:
        if self._stage is not None:
            synchronize(self.xp)
            self.timings[self._stage] = self.timings.get(self._stage, 0.0) + time.perf_counter() - self._start
            self._stage = None


def fit_spectral_lda(
    X: Any,
    n_topics: int,
    alpha0: float = 1.0,
    *,
    seed: int = 0,
    backend: str = "auto",
    dtype: str = "float64",
    progress: Progress = None,
    **options: Any,
) -> SpectralLDAResult:
    """Fit LDA topics to a (D, V) document-word count matrix by the method of moments.

    Parameters
    ----------
    X : (D, V) SciPy/cupyx sparse matrix (CSR preferred) or dense array of counts.
    n_topics : k, topics returned.
    alpha0 : sum of the Dirichlet parameters alpha_i (> 0).
    seed : seeds every random draw (host generator), so fits are reproducible.
    backend : "auto" (GPU when CuPy sees one, or when X is already on the GPU), "numpy", "cupy".
    dtype : "float32" or "float64" for the passes over documents; small dense algebra
        (eigenproblems, tensor decomposition) is always float64.
    progress : optional ``progress(stage, done, total)``; its exceptions propagate.
    options : n_oversample (10), n_krylov_blocks (3: M2 applications of the block Krylov range finder), n_restarts (10), n_iter (30),
        tol (1e-10, on 1 - |cos| between iterates), n_extra_components (0: fit that many
        more components and keep the k with the largest alpha), refit_extra_components (0:
        when the fit has junk components, alpha below 2% of the mean, such as the hex dumps
        and untranslated pages of real documentation, and M2 has no spectral gap at k, decompose
        again with J + that many extra components, J the number of junk components, from
        the same Krylov basis, which is built with room for them, and keep the k with the
        largest alpha: the topics a fit with n_extra_components=J+refit_extra_components would
        give (its basis built with as many columns), without its whitening passes over the
        data (the tensor pass runs again); reported in diagnostics["junk_refit"]), block_rows (None: auto),
        n_threads (None: all cores), tensor_mode ("auto" | "dense" | "implicit"),
        rank_tol (1e-6: eigenvalues of M2 below rank_tol x the largest count as zero),
        projection_cache_bytes (2**30: keep the D x (b m) products X K of the range finder
        when they fit, which saves one sparse product in the tensor pass; 0 disables),
        word_scale_power (0.2: whiten S M2 S with S = diag((M1_w / max M1)^-power), which
        lets specific, less frequent words shape the topics on real text; 0 whitens M2
        itself; see gpu.spectral.whitening), power_starts ("random": the robust power method's
        n_restarts random starts per component; "simultaneous": one orthonormal basis near all
        the eigenvectors at once, each component started from its best unused vector with no
        restart phase (gpu.spectral.power_method.simultaneous_basis); several times faster at
        k=100 on real text; a formed tensor only: with tensor_mode "implicit", random),
        whitening_dtype (None: ``dtype``; "float32" or "float64": the precision of the
        whitening's Krylov passes alone, each block of counts cast as it is read when it
        differs from ``dtype``, and then without the projection cache, whose products would
        carry that precision into the tensor pass; the refined start whitens in float32:
        docs/decisions.md).

    Returns
    -------
    SpectralLDAResult
    """
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise InvalidInput(f"unknown option(s) {sorted(unknown)} (known: {sorted(DEFAULT_OPTIONS)})")
    settings = {**DEFAULT_OPTIONS, **options}
    if isinstance(n_topics, str) or isinstance(alpha0, str):
        raise InvalidInput(f"fit_spectral_lda needs a number for n_topics and alpha0 (got {n_topics!r}, {alpha0!r}); "
                           "SpectralLDA chooses 'auto' ones")
    validate_parameters(
        {"n_topics": n_topics, "alpha0": alpha0, "seed": seed, "backend": backend, "dtype": dtype, "progress": progress, **settings}
    )
    alpha0 = float(alpha0)
    dtype = str(np.dtype(dtype))
    clock = _Stopwatch()
    clock.start("moments")

    concrete = choose_backend(X, backend)
    counts = as_count_matrix(X, concrete, dtype)
    clock.xp = get_array_module(counts)
    n_docs_all, n_words = (int(s) for s in counts.shape)
    n_components = n_topics + settings["n_extra_components"]
    if n_components > n_words:
        raise InvalidInput(
            f"n_topics={n_topics} (+{settings['n_extra_components']} extra components) is larger than the vocabulary (V={n_words})"
        )
    n_threads = 1 if concrete == "cupy" else (settings["n_threads"] or default_threads())
    plan = _FitPlan(
        counts=counts,
        n_topics=n_topics,
        n_components=n_components,
        alpha0=alpha0,
        seed=seed,
        dtype=dtype,
        settings=settings,
        backend=concrete,
        n_threads=n_threads,
        block_rows=default_block_rows(concrete, settings["block_rows"]),
    )
    with single_threaded_blas(concrete == "numpy" and n_threads > 1):
        return _fit(plan, clock, progress)


@dataclass(frozen=True)
class _FitPlan:
    """Validated inputs of one fit. counts: (D, V) CSR on the chosen backend."""

    counts: Any
    n_topics: int
    n_components: int
    alpha0: float
    seed: int
    dtype: str
    settings: dict[str, Any]
    backend: str
    n_threads: int
    block_rows: int | None

    def blocks_for(self, n_rows: int) -> list[tuple[int, int]]:
        return row_blocks(n_rows, self.n_threads, self.block_rows)


def _fit(plan: _FitPlan, clock: _Stopwatch, progress: Progress) -> SpectralLDAResult:
    """The stages of :func:`fit_spectral_lda` on a validated count matrix."""
    counts, n_topics, n_components, alpha0 = plan.counts, plan.n_topics, plan.n_components, plan.alpha0
    seed, dtype, settings, concrete, n_threads = plan.seed, plan.dtype, plan.settings, plan.backend, plan.n_threads
    blocks_for = plan.blocks_for
    n_docs_all, n_words = (int(size) for size in counts.shape)

    stats = corpus_stats(counts, blocks_for=blocks_for, n_threads=n_threads, progress=progress)
    if stats.n_docs < 3:
        raise InvalidInput(
            f"fewer than 3 usable documents: {stats.n_docs} of {n_docs_all} have at least 3 tokens "
            f"({stats.n_dropped} dropped)"
        )
    if n_components > stats.n_docs:
        raise InvalidInput(
            f"n_topics={n_topics} (+{settings['n_extra_components']} extra components) is larger than the "
            f"number of usable documents ({stats.n_docs})"
        )
    blocks = blocks_for(stats.n_docs)
    sketch_seed, rng = _seeded_streams(seed)
    refit_extra = settings["refit_extra_components"]

    clock.start("whitening")
    # room in each Krylov block for a refit with J + refit_extra more components from the same
    # basis (the J junk components come out of the oversampling)
    n_columns = min(n_components + settings["n_oversample"] + refit_extra, n_words)
    whitening_stats = stats.in_precision(settings["whitening_dtype"] or dtype)
    cache_bytes = stats.n_docs * n_columns * settings["n_krylov_blocks"] * np.dtype(dtype).itemsize
    cache = whitening_stats is stats and cache_bytes <= settings["projection_cache_bytes"]
    whitening = krylov_whitening(
        whitening_stats,
        n_components,
        n_columns,
        alpha0,
        seed=sketch_seed,
        n_krylov_blocks=settings["n_krylov_blocks"],
        rank_tol=settings["rank_tol"],
        blocks=blocks,
        n_threads=n_threads,
        progress=progress,
        cache_projections=cache,
        scale=word_scale(stats.m1, settings["word_scale_power"]),
    )

    def power_starts(mode: str) -> str:  # simultaneous starts need a formed tensor (section 6 of docs/design.md)
        return (settings["power_starts"] or "random") if mode == "dense" else "random"

    def decompose(whitening: Whitening, n_components: int, rng: np.random.Generator):
        """Whitened tensor, tensor power method and recovery of the k largest-alpha topics."""
        clock.start("tensor")
        mode = settings["tensor_mode"]
        if mode == "auto":
            mode = "dense" if n_components <= DENSE_TENSOR_MAX_COMPONENTS else "implicit"
        W = whitening.matrix()
        sums = whitened_document_sums(
            stats,
            W,
            blocks=blocks,
            with_third=mode == "dense",
            keep_projection=mode == "implicit",
            n_threads=n_threads,
            progress=progress,
            cached=whitening.cached_projection if cache else None,
        )
        terms = tensor_terms(stats, W, sums, alpha0)
        if mode == "dense":
            operator: Any = DenseTensor(whitened_tensor(sums, terms, dtype, n_threads=n_threads).astype(dtype))
        else:
            operator = ImplicitTensor(sums.projected, stats.doc_w3, terms)

        clock.start("decomposition")
        decomposition = robust_tensor_power_method(
            operator,
            n_components,
            rng=rng,
            n_restarts=settings["n_restarts"],
            n_iter=settings["n_iter"],
            tol=settings["tol"],
            progress=progress,
            starts=power_starts(mode),
        )

        clock.start("recovery")
        if progress is not None:
            progress("recovery", 0, 1)
        recovered = recover(
            whitening.pseudo_inverse_transpose(), decomposition.eigenvalues, decomposition.eigenvectors, alpha0,
            n_topics, n_threads=n_threads,
        )
        if progress is not None:
            progress("recovery", 1, 1)
        return mode, decomposition, recovered

    mode, decomposition, recovered = decompose(whitening, n_components, rng)
    junk_refit = None
    if refit_extra:
        junk_refit = _junk_refit_plan(recovered, whitening, n_components, refit_extra, min(n_words, stats.n_docs),
                                      settings["rank_tol"], alpha0)
        if junk_refit is not None and junk_refit["refitted"]:
            n_components += junk_refit["n_extra_components"]
            whitening = whitening.with_components(n_components, settings["rank_tol"])
            # the rng a fit with n_extra_components would hand the power method: the same topics
            mode, decomposition, recovered = decompose(whitening, n_components, _seeded_streams(seed)[1])
    topic_word = np.ascontiguousarray(to_host(recovered.topic_word), dtype=np.float64)
    clock.stop()

    order = recovered.order
    diagnostics = {
        "backend": concrete,
        "dtype": dtype,
        "tensor_mode": mode,
        "power_starts": power_starts(mode),
        "whitening_dtype": str(whitening_stats.dtype),
        "n_documents": n_docs_all,
        "n_documents_used": stats.n_docs,
        "n_words": n_words,
        "n_components_fitted": n_components,
        "n_components_kept": n_topics,
        "range_finder_columns": n_columns,
        "krylov_basis_size": int(whitening.basis.shape[1]),
        "n_blocks": len(blocks),
        "n_threads": n_threads,
        "projection_cache": bool(cache),
        "power_iterations": [int(decomposition.iterations[i]) for i in order],
        "power_converged": [bool(decomposition.converged[i]) for i in order],
        "all_converged": bool(all(decomposition.converged)),
        "sign_flipped": [bool(flag) for flag in recovered.sign_flipped],
        "alpha_sum": float(recovered.alpha.sum()),
        "discarded_alpha": [float(a) for a in np.sort(alpha_from_eigenvalues(decomposition.eigenvalues, alpha0))[::-1][n_topics:]],
        "m2_spectral_gap": _spectral_gap(whitening.eigenvalues, n_components),
        "junk_refit": junk_refit,
        "options": {name: settings[name] for name in sorted(settings)},
        "seed": int(seed),
        "alpha0": alpha0,
    }
    return SpectralLDAResult(
        topic_word=topic_word,
        alpha=np.asarray(recovered.alpha, dtype=np.float64),
        m2_eigenvalues=np.asarray(whitening.eigenvalues[:n_columns], dtype=np.float64),
        tensor_eigenvalues=np.asarray(decomposition.eigenvalues[order], dtype=np.float64),
        n_dropped_docs=stats.n_dropped,
        timings=dict(clock.timings),
        diagnostics=diagnostics,
        n_features_in=n_words,
    )


def _seeded_streams(seed: int) -> tuple[int, np.random.Generator]:
    """(the range finder's sketch seed, the power method's generator), both drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return int(rng.integers(2**62)), rng


def _junk_refit_plan(recovered: Any, whitening: Whitening, n_components: int, refit_extra: int,
                     max_components: int, rank_tol: float, alpha0: float) -> dict | None:
    """Whether a fit with J junk components (:func:`gpu.junk.junk_components` of the
    recovered alphas) is redone with J + ``refit_extra`` more components from the same
    Krylov basis (room for the J it found and for junk the larger decomposition turns up):
    only without a spectral gap (lambda_(k+extra) >= REFIT_MIN_EIGENVALUE_RATIO lambda_k of
    M2's Ritz values) and within ``max_components`` (V, usable documents) and the basis's
    rank. None without junk, else the report {junk_alpha, n_extra_components,
    m2_eigenvalue_ratio, refitted}."""
    junk = junk_components(np.asarray(recovered.alpha), alpha0=alpha0)
    if not junk:
        return None
    eigenvalues = whitening.eigenvalues
    n_extra = len(junk) + refit_extra
    wanted = n_components + n_extra
    ratio = None
    if len(eigenvalues) >= wanted and eigenvalues[n_components - 1] > 0:
        ratio = float(eigenvalues[wanted - 1] / eigenvalues[n_components - 1])
    refitted = (ratio is not None and ratio >= REFIT_MIN_EIGENVALUE_RATIO and wanted <= max_components
                and wanted <= numerical_rank(eigenvalues, rank_tol))
    return {"junk_alpha": junk, "n_extra_components": int(n_extra), "m2_eigenvalue_ratio": ratio,
            "refitted": bool(refitted)}


def _spectral_gap(eigenvalues: np.ndarray, n_components: int) -> float | None:
    """Ratio of the last kept to the first dropped eigenvalue of M2 (None when none dropped)."""
    if eigenvalues.size <= n_components or eigenvalues[n_components] <= 0:
        return None
    return float(eigenvalues[n_components - 1] / eigenvalues[n_components])
