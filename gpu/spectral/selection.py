"""Choosing k and alpha0 for spectral LDA from shared passes, and dropping junk topics.

The expensive work of a spectral fit is its passes over the documents: corpus statistics,
the randomized range finder for M2, and the projection pass that yields Q^T E2 Q, R_Q and
the projected third moment (gpu.spectral.tensor). None depends on k, and alpha0 enters M2 and M3
only through closed-form M1 terms, so :class:`SharedPasses` runs them once:

1. statistics and a wide range finder (k_max + oversampling columns), plus one M2 product
   pass, give M2's spectrum on that subspace for any alpha0 (a rank-one update);
2. the tensor pass (gpu.spectral.tensor.whitened_document_sums) runs once on the leading part B of
   that basis (n columns, sized for the largest candidate), giving the (n, n, n) third
   moment sums and X^T diag(w3) X B; every candidate (k, alpha0) is then small dense
   work: whitening W = B G from B^T M2 B, contracting the sums with G, the power method
   and recovery.

Selection:
- k: the largest ratio lambda_k / lambda_(k+1) of M2's eigenvalues in [k_min, k_max]
  proposes k. A clear gap (ratio >= ``gap_threshold``, or no held-out documents) decides:
  only that k is fitted (and scored, as evidence). Otherwise candidates around it are fitted
  and scored by held-out per-word likelihood (document completion) of their topics lightly
  smoothed with the corpus unigram, and the smallest candidate within ``k_tolerance``
  nats/word of the best score wins.
- alpha0: the moment identities tie alpha0 to the recovered weights: at the right alpha0
  the recovered alpha_i = 4 a0 (a0+1) / ((a0+2)^2 lambda_i^2) sum to a0. The ratio
  sum(alpha(a0)) / a0 is evaluated on a geometric grid and its crossing of 1 located by
  log-linear interpolation; without a crossing the held-out score picks from the grid.
- junk topics: with over-provisioning (extra components) every recovered component is
  kept at first; near-duplicates (the smaller-alpha one) and components whose alpha is a
  tiny share of the mean are dropped, then the k with the largest alpha are kept.
Everything considered is recorded as JSON-serialisable evidence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu.backend import array_module, to_host
from gpu.errors import InvalidInput
from gpu.junk import drop_junk_topics, projection_loss
from gpu.spectral.moments import apply_m2, corpus_stats, sketch_m2_range
from gpu.passes import Progress, default_block_rows, default_threads, row_blocks
from gpu.spectral.power_method import robust_tensor_power_method
from gpu.quality import CompletionSplit, completion_log_likelihood, split_document_tokens
from gpu.spectral.recovery import recover, unwhitened_topics
from gpu.spectral.tensor import DenseTensor, WhitenedSums, tensor_terms, whitened_document_sums, whitened_tensor
from gpu.validation import as_count_matrix, choose_backend
from gpu.spectral.whitening import numerical_rank, orthonormalize, scaled_ritz_vectors

SCORE_SMOOTHING = 0.01  # share of the corpus unigram mixed into topics before scoring them
DEFAULT_RANK_TOL = 1e-6  # SharedPasses.fit's rank_tol unless fit_options name one
ALPHA0_GRID = tuple(float(a) for a in np.geomspace(0.05, 50.0, 13))


@dataclass(frozen=True)
class CandidateFit:
    """One spectral fit from shared passes (host arrays, sorted by decreasing alpha).

    topic_word: (k, V); alpha: (k,); tensor_eigenvalues: (k,);
    dropped: one dict per recovered component that was not kept (index, alpha, reason).
    """

    n_topics: int
    alpha0: float
    topic_word: np.ndarray
    alpha: np.ndarray
    tensor_eigenvalues: np.ndarray
    dropped: list[dict] = field(default_factory=list)


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return 0.5 * (matrix + matrix.T)


def _m1_weight(alpha0: float) -> float:
    return alpha0 / (alpha0 + 1.0)


class SharedPasses:
    """The k-independent passes of a spectral fit, run once; fits of any k up to k_max.

    X: (D, V) counts. ``n_columns``: columns of the wide range finder (k_max + oversampling).
    ``alpha0_range``: alpha0 used inside the range finder's power iterations (the span
    depends on alpha0 only through a rank-one M1 term).
    """

    def __init__(
        self,
        X: Any,
        n_columns: int,
        *,
        alpha0_range: float = 1.0,
        seed: int = 0,
        backend: str = "auto",
        dtype: str = "float64",
        n_power_iter: int = 2,
        n_threads: int | None = None,
        block_rows: int | None = None,
        progress: Progress = None,
    ) -> None:
        concrete = choose_backend(X, backend)
        self.backend = concrete
        self.xp = array_module(concrete)
        self.dtype = str(np.dtype(dtype))
        self.progress = progress
        counts = as_count_matrix(X, concrete, self.dtype)
        self.n_docs_all, self.n_words = (int(s) for s in counts.shape)
        self.n_threads = 1 if concrete == "cupy" else (n_threads or default_threads())
        rows = default_block_rows(concrete, block_rows)
        self.stats = corpus_stats(
            counts, blocks_for=lambda n: row_blocks(n, self.n_threads, rows), n_threads=self.n_threads, progress=progress
        )
        if self.stats.n_docs < 3:
            raise InvalidInput(
                f"fewer than 3 usable documents: {self.stats.n_docs} of {self.n_docs_all} have at least 3 tokens"
            )
        self.blocks = row_blocks(self.stats.n_docs, self.n_threads, rows)
        self.n_columns = int(min(n_columns, self.n_words, self.stats.n_docs))
        pass_args = {"blocks": self.blocks, "n_threads": self.n_threads, "progress": progress}
        rng = np.random.default_rng(seed)
        wide = orthonormalize(sketch_m2_range(self.stats, self.n_columns, int(rng.integers(2**62)), **pass_args))
        for _ in range(n_power_iter):
            wide = orthonormalize(apply_m2(self.stats, wide, alpha0_range, **pass_args))
        image = apply_m2(self.stats, wide, alpha0_range, **pass_args)
        self.wide = wide  # (V, m) float64, orthonormal
        self.m1_wide = np.asarray(to_host(wide.T @ self.stats.m1), dtype=np.float64)
        m2_projected = _symmetric(np.asarray(to_host(wide.T @ image), dtype=np.float64))
        # Q^T E2 Q on the wide basis = Q^T M2 Q + w(alpha0) m m^T
        self.e2_wide = m2_projected + _m1_weight(alpha0_range) * np.outer(self.m1_wide, self.m1_wide)
        self.unigram = np.asarray(to_host(self.stats.m1), dtype=np.float64)
        self.leading: np.ndarray | None = None
        self.basis: Any = None
        self.third: Any = None
        self.word_third: Any = None

    def m2_on_wide(self, alpha0: float) -> np.ndarray:
        """(m, m) Q^T M2 Q on the wide basis for this alpha0."""
        return self.e2_wide - _m1_weight(alpha0) * np.outer(self.m1_wide, self.m1_wide)

    def spectrum(self, alpha0: float) -> np.ndarray:
        """(m,) eigenvalues of M2 on the wide range-finder subspace for this alpha0, descending."""
        return np.sort(np.linalg.eigvalsh(self.m2_on_wide(alpha0)))[::-1]

    def prepare(self, n_columns: int, alpha0: float = 1.0) -> None:
        """One tensor pass on the leading ``n_columns`` eigenvectors B of the wide M2:
        sum_d w3_d (B^T c_d)^(x3) and X^T diag(w3) X B (gpu.spectral.tensor.whitened_document_sums)."""
        n_columns = int(min(n_columns, self.n_columns))
        values, vectors = np.linalg.eigh(self.m2_on_wide(alpha0))
        self.leading = vectors[:, np.argsort(values)[::-1][:n_columns]]
        self.basis = self.wide @ self.xp.asarray(self.leading)
        sums = whitened_document_sums(
            self.stats, self.basis, blocks=self.blocks, with_third=True, keep_projection=False,
            n_threads=self.n_threads, progress=self.progress,
        )
        self.third = sums.third  # (n, n, n) symmetric
        self.word_third = sums.word_third  # (V, n)

    @property
    def prepared_columns(self) -> int:
        return 0 if self.basis is None else int(self.basis.shape[1])

    def _whitening(self, alpha0: float, n_components: int, rank_tol: float) -> tuple[np.ndarray, np.ndarray]:
        """(G, unwhiten), both (n, k): W = B G has W^T M2 W = I and (W^T)^+ = B unwhiten."""
        m2 = _symmetric(self.leading.T @ self.m2_on_wide(alpha0) @ self.leading)
        values, vectors = np.linalg.eigh(m2)
        order = np.argsort(values)[::-1]
        return scaled_ritz_vectors(values[order], vectors[:, order], n_components, rank_tol)

    def fit(
        self,
        n_topics: int,
        alpha0: float,
        *,
        n_extra_components: int = 0,
        n_restarts: int = 10,
        n_iter: int = 100,
        tol: float = 1e-10,
        rank_tol: float = DEFAULT_RANK_TOL,
        seed: int = 0,
        min_alpha_share: float = 0.02,
        max_similarity: float = 0.9,
        max_projection_loss: float = 0.2,
    ) -> CandidateFit:
        """Spectral topics for (n_topics, alpha0) from the shared passes (dense work only).

        With ``n_extra_components`` > 0 all components are recovered, junk is dropped
        (:func:`drop_junk_topics`) and the ``n_topics`` with the largest alpha are kept.
        """
        xp = self.xp
        n_components = n_topics + n_extra_components
        if self.basis is None or n_components > self.prepared_columns:
            raise ValueError(
                f"n_topics={n_topics} (+{n_extra_components} extra) needs prepare() with at least {n_components} columns"
            )
        G_host, unwhiten = self._whitening(alpha0, n_components, rank_tol)
        G = xp.asarray(G_host)
        W = self.basis @ G
        third = xp.tensordot(xp.tensordot(xp.tensordot(self.third, G, axes=([0], [0])), G, axes=([0], [0])), G, axes=([0], [0]))
        sums = WhitenedSums(third=third, word_third=self.word_third @ G, projected=None)
        terms = tensor_terms(self.stats, W, sums, alpha0)
        tensor = DenseTensor(whitened_tensor(sums, terms, self.dtype))
        decomposition = robust_tensor_power_method(
            tensor, n_components, rng=np.random.default_rng(seed), n_restarts=n_restarts, n_iter=n_iter, tol=tol
        )
        pseudo_inverse = self.basis @ xp.asarray(unwhiten)
        recovered = recover(pseudo_inverse, decomposition.eigenvalues, decomposition.eigenvectors, alpha0, n_components)
        topic_word = np.ascontiguousarray(to_host(recovered.topic_word), dtype=np.float64)
        alpha = np.asarray(recovered.alpha, dtype=np.float64)
        eigenvalues = np.asarray(decomposition.eigenvalues[recovered.order], dtype=np.float64)
        loss = None
        if n_extra_components:
            order = xp.asarray(recovered.order)
            raw = unwhitened_topics(pseudo_inverse, eigenvalues, decomposition.eigenvectors[:, order], alpha0)
            signed = np.asarray(to_host(raw), dtype=np.float64)
            signed[recovered.sign_flipped] *= -1.0
            loss = projection_loss(signed, topic_word)
        keep, dropped = drop_junk_topics(
            topic_word, alpha, n_keep=n_topics, projection_loss=loss, max_projection_loss=max_projection_loss,
            min_alpha_share=min_alpha_share if n_extra_components else 0.0,
            max_similarity=max_similarity if n_extra_components else 1.0,
        )
        return CandidateFit(
            n_topics=len(keep), alpha0=float(alpha0), topic_word=topic_word[keep], alpha=alpha[keep],
            tensor_eigenvalues=eigenvalues[keep], dropped=dropped,
        )

    def smoothed(self, topic_word: np.ndarray) -> np.ndarray:
        """(k, V) topics mixed with the corpus unigram distribution (no zero probabilities)."""
        return (1.0 - SCORE_SMOOTHING) * topic_word + SCORE_SMOOTHING * self.unigram[None, :]


def gap_choice(eigenvalues: np.ndarray, k_min: int, k_max: int, floor_share: float = 1e-3) -> tuple[int, list[float]]:
    """k in [k_min, k_max] with the largest ratio lambda_k / lambda_(k+1), and the ratios.

    eigenvalues: descending. Values below ``floor_share`` x lambda_(k_min) are raised to
    that floor, so that noise near zero and the estimate's negative eigenvalues cannot
    produce huge (or negative) ratios. The floor is relative to lambda_(k_min), not the
    largest: on a Zipf-shaped vocabulary the first eigenvalue (the direction every topic
    shares) can be 1000x the second, and a floor relative to it flattens the whole range.
    ratios[i] is for k_min + i.
    """
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.size < k_max + 1:
        raise ValueError(f"need {k_max + 1} eigenvalues to judge k up to {k_max}, got {values.size}")
    reference = values[k_min - 1]
    if reference <= 0:
        raise InvalidInput(
            f"M2 has fewer than {k_min} positive eigenvalues: the corpus carries no signal for k_min={k_min} topics"
        )
    floored = np.maximum(values, reference * floor_share)
    ratios = floored[k_min - 1 : k_max] / floored[k_min : k_max + 1]
    return int(k_min + int(np.argmax(ratios))), [float(r) for r in ratios]


def candidates_around(k: int, k_min: int, k_max: int, factors: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.25)) -> list[int]:
    """Sorted distinct candidates round(k * f) and k +- 1, clipped to [k_min, k_max]."""
    values = {round(k * f) for f in factors} | {k - 1, k + 1}
    return sorted({int(np.clip(v, k_min, k_max)) for v in values})


def consistent_alpha0(alpha0s: list[float], ratios: list[float]) -> float | None:
    """alpha0 where sum(alpha)/alpha0 falls through 1 (log-linear interpolation), or None.

    alpha0s ascending. The last downward crossing is used (the ratio is flat near 1 for
    small alpha0 when topics are well separated).
    """
    log_a = np.log(np.asarray(alpha0s, dtype=np.float64))
    log_r = np.log(np.maximum(np.asarray(ratios, dtype=np.float64), 1e-300))
    found = None
    for i in range(len(log_a) - 1):
        if log_r[i] >= 0 > log_r[i + 1]:
            t = log_r[i] / (log_r[i] - log_r[i + 1])
            found = float(np.exp(log_a[i] + t * (log_a[i + 1] - log_a[i])))
    return found


@dataclass(frozen=True)
class Selection:
    """Outcome of :func:`select_model`: the chosen fit and the evidence behind it."""

    fit: CandidateFit
    n_topics: int
    alpha0: float
    evidence: dict


def _score(passes: SharedPasses, split: CompletionSplit | None, fit: CandidateFit) -> float | None:
    if split is None:
        return None
    topics = passes.smoothed(fit.topic_word)
    return completion_log_likelihood(split, passes.xp.asarray(topics), passes.xp.asarray(fit.alpha))


def select_model(
    X: Any,
    n_topics: int | str,
    alpha0: float | str,
    *,
    heldout: Any = None,
    k_range: tuple[int, int] = (2, 100),
    seed: int = 0,
    backend: str = "auto",
    dtype: str = "float64",
    progress: Progress = None,
    n_oversample: int = 10,
    n_power_iter: int = 2,
    n_extra_components: int = 0,
    gap_threshold: float = 2.0,
    k_tolerance: float = 0.002,
    alpha0_grid: tuple[float, ...] = ALPHA0_GRID,
    fit_options: dict | None = None,
    n_threads: int | None = None,
    block_rows: int | None = None,
) -> Selection:
    """Spectral fit with k and/or alpha0 chosen from the data ("auto"), passes shared.

    X: (D, V) training counts; heldout: optional (D_h, V) counts used to score candidates
    (tokens split with ``seed``). ``k_range`` bounds k when n_topics == "auto".
    ``fit_options`` (n_restarts, n_iter, tol, rank_tol, ...) go to :meth:`SharedPasses.fit`
    for every candidate; ``n_threads`` and ``block_rows`` size the passes.
    Returns the chosen :class:`CandidateFit` and the evidence (spectrum, gap ratios,
    candidate scores, alpha0 consistency).
    """
    auto_k, auto_alpha0 = n_topics == "auto", alpha0 == "auto"
    k_min, k_max = (int(k_range[0]), int(k_range[1])) if auto_k else (int(n_topics), int(n_topics))
    if auto_k and not 1 <= k_min <= k_max:
        raise InvalidInput(f"k_range must satisfy 1 <= k_min <= k_max, got {k_range!r}")
    fit_options = dict(fit_options or {})
    fit_options.setdefault("seed", seed)
    start_alpha0 = 1.0 if auto_alpha0 else float(alpha0)
    wide_columns = k_max + n_extra_components + n_oversample + (1 if auto_k else 0)
    passes = SharedPasses(
        X, wide_columns, alpha0_range=start_alpha0, seed=seed, backend=backend, dtype=dtype,
        n_power_iter=n_power_iter, n_threads=n_threads, block_rows=block_rows, progress=progress,
    )
    if auto_k and k_max + 1 > passes.n_columns:
        k_max = passes.n_columns - 1
        k_min = min(k_min, k_max)
    split = split_document_tokens(heldout, seed=seed) if heldout is not None and heldout.shape[0] else None
    spectrum = passes.spectrum(start_alpha0)
    evidence: dict[str, Any] = {
        "m2_spectrum": [float(v) for v in spectrum],
        "auto_n_topics": auto_k,
        "auto_alpha0": auto_alpha0,
        "n_dropped_docs": int(passes.stats.n_dropped),
    }

    if auto_k:
        # candidates past M2's numerical rank cannot be whitened (scaled_ritz_vectors would
        # raise): k_max is clipped to it (docs/decisions.md, "n_topics='auto' at scale")
        rank = numerical_rank(spectrum, fit_options.get("rank_tol", DEFAULT_RANK_TOL))
        if k_max > rank:
            evidence["k_max_rank_limited"] = {"requested": k_max, "numerical_rank": rank}
            k_max = max(rank, 1)
            k_min = min(k_min, k_max)
        gap_k, ratios = gap_choice(spectrum, k_min, k_max)
        clear_gap = max(ratios) >= gap_threshold or split is None
        # a clear gap decides on its own: fitting its neighbours only for the record cost
        # more than the fixed-k fit itself at NYTimes scale (docs/decisions.md)
        candidates = [gap_k] if clear_gap else candidates_around(gap_k, k_min, k_max)
        evidence.update({"k_range": [k_min, k_max], "gap_k": gap_k, "gap_ratios": ratios, "gap_ratio": max(ratios),
                         "k_rule": "spectral_gap" if clear_gap else "heldout"})
    else:
        gap_k, candidates = k_min, [k_min]
    passes.prepare(max(candidates) + n_extra_components + n_oversample, start_alpha0)

    chosen_alpha0 = start_alpha0
    if auto_alpha0:
        rows, fits = [], {}
        for a0 in alpha0_grid:
            fit = passes.fit(gap_k, a0, n_extra_components=n_extra_components, **fit_options)
            fits[a0] = fit
            rows.append({"alpha0": a0, "alpha_sum": float(fit.alpha.sum()), "ratio": float(fit.alpha.sum() / a0)})
        # the consistency of sum(alpha) with alpha0 holds for LDA-like data, which shows a
        # spectral gap after the k-th eigenvalue; without one the held-out score decides
        # (docs/decisions.md, "alpha0 from the moment identities only with a spectral gap")
        gap_at_k = float(spectrum[gap_k - 1] / spectrum[gap_k]) if 0 < gap_k < len(spectrum) and spectrum[gap_k] > 0 else None
        evidence["alpha0_gap_ratio"] = gap_at_k
        lda_like = gap_at_k is None or gap_at_k >= gap_threshold
        crossing = consistent_alpha0([r["alpha0"] for r in rows], [r["ratio"] for r in rows]) if lda_like else None
        if crossing is None and split is not None:
            for row in rows:
                row["heldout_loglik"] = _score(passes, split, fits[row["alpha0"]])
            crossing = max(rows, key=lambda r: r["heldout_loglik"])["alpha0"]
            evidence["alpha0_rule"] = "heldout"
        else:
            evidence["alpha0_rule"] = "consistency" if crossing is not None else "default"
        chosen_alpha0 = float(crossing) if crossing is not None else start_alpha0
        evidence["alpha0_grid"] = rows

    scores = []
    fits_by_k = {}
    for done, k in enumerate(candidates):
        if progress is not None:
            progress("selection", done, len(candidates))
        fit = passes.fit(k, chosen_alpha0, n_extra_components=n_extra_components, **fit_options)
        fits_by_k[k] = fit
        scores.append({"n_topics": k, "n_kept": fit.n_topics, "heldout_loglik": _score(passes, split, fit)})
    if progress is not None:
        progress("selection", len(candidates), len(candidates))
    chosen_k = gap_k
    if auto_k:
        evidence["k_candidates"] = scores
        if evidence["k_rule"] == "heldout":
            best = max(s["heldout_loglik"] for s in scores)
            chosen_k = min(s["n_topics"] for s in scores if s["heldout_loglik"] >= best - k_tolerance)
    fit = fits_by_k[chosen_k]
    evidence.update({"n_topics": fit.n_topics, "alpha0": chosen_alpha0, "dropped_topics": fit.dropped})
    return Selection(fit=fit, n_topics=fit.n_topics, alpha0=chosen_alpha0, evidence=evidence)


@dataclass(frozen=True)
class SelectedFit:
    """A spectral fit with k / alpha0 possibly chosen and topics possibly refined.

    topic_word: (k, V) host float64; alpha: (k,); m2_eigenvalues: (m,) descending;
    tensor_eigenvalues: (k,) of the spectral components (before refinement);
    selection: evidence of :func:`select_model` (empty dict when nothing was chosen);
    refinement: sweeps, stop reason and likelihood histories (None without refinement).
    """

    topic_word: np.ndarray
    alpha: np.ndarray
    n_topics: int
    alpha0: float
    m2_eigenvalues: np.ndarray
    tensor_eigenvalues: np.ndarray
    n_dropped_docs: int
    timings: dict
    selection: dict
    refinement: dict | None
    n_heldout_docs: int
