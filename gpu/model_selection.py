"""Choosing k and alpha0 for spectral LDA from shared passes, and dropping junk topics.

The expensive work of a spectral fit is its passes over the documents: corpus statistics,
the randomized range finder for M2, and the projection pass that yields Q^T E2 Q, R_Q and
the projected third moment (gpu.tensor). None depends on k, and alpha0 enters M2 and M3
only through closed-form M1 terms, so :class:`SharedPasses` runs them once:

1. statistics and a wide range finder (k_max + oversampling columns), plus one M2 product
   pass, give M2's spectrum on that subspace for any alpha0 (a rank-one update);
2. the projection pass runs once on the leading part of that basis, sized for the largest
   candidate; every candidate (k, alpha0) is then small dense work: whitening, the
   (k, k, k) tensor, the power method and recovery.

Selection:
- k: the largest ratio lambda_k / lambda_(k+1) of M2's eigenvalues in [k_min, k_max]
  proposes k; candidates around it are fitted and scored by held-out per-word likelihood
  (document completion) of their topics lightly smoothed with the corpus unigram. A
  clear gap (ratio >= ``gap_threshold``) decides; otherwise the smallest candidate
  within ``k_tolerance`` nats/word of the best score wins.
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
from typing import Any, Callable

import numpy as np

from gpu.backend import array_module, to_host
from gpu.moments import apply_m2, corpus_stats
from gpu.passes import default_threads, row_blocks
from gpu.power_method import robust_tensor_power_method
from gpu.quality import CompletionSplit, completion_log_likelihood, split_document_tokens
from gpu.recovery import recover, unwhitened_topics
from gpu.tensor import DenseTensor, project_documents, tensor_terms, whitened_tensor
from gpu.validation import as_count_matrix, choose_backend
from gpu.whitening import Whitening, find_m2_range

Progress = Callable[[str, int, int], None] | None

SCORE_SMOOTHING = 0.01  # share of the corpus unigram mixed into topics before scoring them
GPU_BLOCK_ROWS = 262_144
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
    ``alpha0_range``: alpha0 used inside the range finder's power iterations (its span
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
        rows = block_rows or (GPU_BLOCK_ROWS if concrete == "cupy" else None)
        self.stats = corpus_stats(
            counts, blocks_for=lambda n: row_blocks(n, self.n_threads, rows), n_threads=self.n_threads, progress=progress
        )
        if self.stats.n_docs < 3:
            raise ValueError(
                f"fewer than 3 usable documents: {self.stats.n_docs} of {self.n_docs_all} have at least 3 tokens"
            )
        self.blocks = row_blocks(self.stats.n_docs, self.n_threads, rows)
        self.n_columns = int(min(n_columns, self.n_words, self.stats.n_docs))
        rng = np.random.default_rng(seed)
        self.wide = find_m2_range(
            self.stats, self.n_columns, alpha0_range, seed=int(rng.integers(2**62)), n_power_iter=n_power_iter,
            blocks=self.blocks, n_threads=self.n_threads, progress=progress,
        )
        m2_wide = apply_m2(self.stats, self.wide, alpha0_range, blocks=self.blocks, n_threads=self.n_threads, progress=progress)
        wide64 = self.wide.astype(self.xp.float64)
        self.m1_wide = np.asarray(to_host(wide64.T @ self.stats.m1), dtype=np.float64)
        m2_projected = _symmetric(np.asarray(to_host(wide64.T @ m2_wide), dtype=np.float64))
        # Q^T E2 Q on the wide basis: M2 + w(alpha0) m m^T
        self.e2_wide = m2_projected + _m1_weight(alpha0_range) * np.outer(self.m1_wide, self.m1_wide)
        self.unigram = np.asarray(to_host(self.stats.m1), dtype=np.float64)
        self.basis: Any = None
        self.projection: Any = None
        self.e2_basis: np.ndarray | None = None
        self.m1_basis: np.ndarray | None = None

    def m2_on_wide(self, alpha0: float) -> np.ndarray:
        """(m, m) Q^T M2 Q on the wide basis for this alpha0."""
        return self.e2_wide - _m1_weight(alpha0) * np.outer(self.m1_wide, self.m1_wide)

    def spectrum(self, alpha0: float) -> np.ndarray:
        """(m,) eigenvalues of M2 on the wide range-finder subspace for this alpha0, descending."""
        return np.sort(np.linalg.eigvalsh(self.m2_on_wide(alpha0)))[::-1]

    def prepare(self, n_columns: int, alpha0: float = 1.0) -> None:
        """Run the projection pass on the leading ``n_columns`` eigenvectors of the wide M2."""
        n_columns = int(min(n_columns, self.n_columns))
        values, vectors = np.linalg.eigh(self.m2_on_wide(alpha0))
        leading = vectors[:, np.argsort(values)[::-1][:n_columns]]
        basis = (self.wide.astype(self.xp.float64) @ self.xp.asarray(leading)).astype(self.stats.X.dtype)
        self.basis = basis
        self.projection = project_documents(
            self.stats, basis, blocks=self.blocks, with_third=True, keep_projection=False,
            n_threads=self.n_threads, progress=self.progress,
        )
        basis64 = basis.astype(self.xp.float64)
        diagonal = np.asarray(to_host(basis64.T @ (self.stats.word_w2[:, None] * basis64)))
        self.e2_basis = _symmetric((np.asarray(self.projection.gram) - diagonal) / self.stats.n_docs)
        self.m1_basis = np.asarray(to_host(basis64.T @ self.stats.m1), dtype=np.float64)

    @property
    def prepared_columns(self) -> int:
        return 0 if self.basis is None else int(self.basis.shape[1])

    def _whitening(self, alpha0: float, n_components: int, rank_tol: float) -> Whitening:
        m2 = self.e2_basis - _m1_weight(alpha0) * np.outer(self.m1_basis, self.m1_basis)
        values, vectors = np.linalg.eigh(_symmetric(m2))
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        top = max(float(values[0]), 0.0)
        rank = int(np.sum(values > top * rank_tol)) if top > 0 else 0
        if rank < n_components:
            raise ValueError(
                f"n_topics is larger than M2's numerical rank: {n_components} components requested, rank {rank}"
            )
        kept = values[:n_components]
        return Whitening(
            Q=self.basis, G=vectors[:, :n_components] / np.sqrt(kept),
            unwhiten=vectors[:, :n_components] * np.sqrt(kept), eigenvalues=values,
        )

    def fit(
        self,
        n_topics: int,
        alpha0: float,
        *,
        n_extra_components: int = 0,
        n_restarts: int = 10,
        n_iter: int = 100,
        tol: float = 1e-10,
        rank_tol: float = 1e-6,
        seed: int = 0,
        min_alpha_share: float = 0.02,
        max_similarity: float = 0.9,
        max_projection_loss: float = 0.25,
    ) -> CandidateFit:
        """Spectral topics for (n_topics, alpha0) from the shared passes (dense work only).

        With ``n_extra_components`` > 0 all components are recovered, junk is dropped
        (:func:`drop_junk_topics`) and the ``n_topics`` with the largest alpha are kept.
        """
        n_components = n_topics + n_extra_components
        if self.basis is None or n_components > self.prepared_columns:
            raise ValueError(
                f"n_topics={n_topics} (+{n_extra_components} extra) needs prepare() with at least {n_components} columns"
            )
        whitening = self._whitening(alpha0, n_components, rank_tol)
        terms = tensor_terms(self.stats, whitening, self.projection, self.e2_basis, alpha0)
        tensor = DenseTensor(whitened_tensor(whitening, self.projection, terms, self.dtype))
        decomposition = robust_tensor_power_method(
            tensor, n_components, rng=np.random.default_rng(seed), n_restarts=n_restarts, n_iter=n_iter, tol=tol
        )
        pseudo_inverse = whitening.Q.astype(self.xp.float64) @ self.xp.asarray(whitening.unwhiten)
        recovered = recover(pseudo_inverse, decomposition.eigenvalues, decomposition.eigenvectors, alpha0, n_components)
        topic_word = np.ascontiguousarray(to_host(recovered.topic_word), dtype=np.float64)
        alpha = np.asarray(recovered.alpha, dtype=np.float64)
        eigenvalues = np.asarray(decomposition.eigenvalues[recovered.order], dtype=np.float64)
        loss = None
        if n_extra_components:
            order = self.xp.asarray(recovered.order)
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


def topic_similarity(topic_word: np.ndarray) -> np.ndarray:
    """(k, k) cosine similarity between topics (rows)."""
    norms = np.linalg.norm(topic_word, axis=1)
    unit = topic_word / np.where(norms > 0, norms, 1.0)[:, None]
    return unit @ unit.T


def projection_loss(raw: np.ndarray, projected: np.ndarray) -> np.ndarray:
    """(r,) share of each raw (sign-fixed) topic's L1 mass moved by the simplex projection.

    Components recovered from noise directions of an over-provisioned whitening have raw
    mass far from 1 and lose a large share (>0.3) to the projection; real topics lose ~0.1.
    """
    mass = np.abs(raw).sum(axis=1)
    return np.abs(projected - raw).sum(axis=1) / np.where(mass > 0, mass, 1.0)


def drop_junk_topics(
    topic_word: np.ndarray,
    alpha: np.ndarray,
    *,
    n_keep: int,
    projection_loss: np.ndarray | None = None,
    max_projection_loss: float = 0.25,
    min_alpha_share: float = 0.02,
    max_similarity: float = 0.9,
) -> tuple[np.ndarray, list[dict]]:
    """Indices of topics to keep (largest alpha first, at most ``n_keep``) and what was dropped.

    topic_word: (r, V); alpha: (r,); projection_loss: optional (r,) from
    :func:`projection_loss`. A topic is junk when its projection loss exceeds
    ``max_projection_loss`` ("unrecoverable"), when its alpha is below ``min_alpha_share``
    x the mean alpha of the recoverable topics ("tiny_alpha"), or when its cosine similarity to a kept topic with
    larger alpha exceeds ``max_similarity`` ("duplicate", with duplicate_of). Beyond the
    ``n_keep`` best, the rest are dropped as "surplus". Indices refer to the input rows.
    """
    order = np.argsort(-alpha, kind="stable")
    similarity = topic_similarity(topic_word)
    recoverable = np.ones(alpha.shape, dtype=bool) if projection_loss is None else projection_loss <= max_projection_loss
    mean_alpha = float(alpha[recoverable].mean()) if recoverable.any() else 0.0
    kept: list[int] = []
    dropped: list[dict] = []
    for index in order:
        index = int(index)
        if not recoverable[index]:
            dropped.append({"index": index, "alpha": float(alpha[index]), "reason": "unrecoverable",
                            "projection_loss": float(projection_loss[index])})
            continue
        if alpha[index] < min_alpha_share * mean_alpha:
            dropped.append({"index": index, "alpha": float(alpha[index]), "reason": "tiny_alpha"})
            continue
        twins = [j for j in kept if similarity[index, j] > max_similarity]
        if twins:
            dropped.append(
                {"index": index, "alpha": float(alpha[index]), "reason": "duplicate", "duplicate_of": twins[0],
                 "similarity": float(similarity[index, twins[0]])}
            )
            continue
        if len(kept) >= n_keep:
            dropped.append({"index": index, "alpha": float(alpha[index]), "reason": "surplus"})
            continue
        kept.append(index)
    return np.asarray(kept, dtype=np.int64), dropped


def gap_choice(eigenvalues: np.ndarray, k_min: int, k_max: int, floor_share: float = 1e-3) -> tuple[int, list[float]]:
    """k in [k_min, k_max] with the largest ratio lambda_k / lambda_(k+1), and the ratios.

    eigenvalues: descending. Values below ``floor_share`` x the largest are raised to that
    floor, so that noise near zero cannot produce huge ratios. ratios[i] is for k_min + i.
    """
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.size < k_max + 1:
        raise ValueError(f"need {k_max + 1} eigenvalues to judge k up to {k_max}, got {values.size}")
    if values[0] <= 0:
        raise ValueError("M2 has no positive eigenvalue: the corpus carries no topic signal")
    floored = np.maximum(values, values[0] * floor_share)
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
) -> Selection:
    """Spectral fit with k and/or alpha0 chosen from the data ("auto"), passes shared.

    X: (D, V) training counts; heldout: optional (D_h, V) counts used to score candidates
    (tokens split with ``seed``). ``k_range`` bounds k when n_topics == "auto".
    Returns the chosen :class:`CandidateFit` and the evidence (spectrum, gap ratios,
    candidate scores, alpha0 consistency).
    """
    auto_k, auto_alpha0 = n_topics == "auto", alpha0 == "auto"
    k_min, k_max = (int(k_range[0]), int(k_range[1])) if auto_k else (int(n_topics), int(n_topics))
    if auto_k and not 1 <= k_min <= k_max:
        raise ValueError(f"k_range must satisfy 1 <= k_min <= k_max, got {k_range!r}")
    fit_options = dict(fit_options or {})
    fit_options.setdefault("seed", seed)
    start_alpha0 = 1.0 if auto_alpha0 else float(alpha0)
    wide_columns = k_max + n_extra_components + n_oversample + (1 if auto_k else 0)
    passes = SharedPasses(
        X, wide_columns, alpha0_range=start_alpha0, seed=seed, backend=backend, dtype=dtype,
        n_power_iter=n_power_iter, progress=progress,
    )
    if auto_k and k_max + 1 > passes.n_columns:
        k_max = passes.n_columns - 1
        k_min = min(k_min, k_max)
    split = split_document_tokens(heldout, seed=seed) if heldout is not None and heldout.shape[0] else None
    spectrum = passes.spectrum(start_alpha0)
    evidence: dict[str, Any] = {"m2_spectrum": [float(v) for v in spectrum], "auto_n_topics": auto_k, "auto_alpha0": auto_alpha0}

    if auto_k:
        gap_k, ratios = gap_choice(spectrum, k_min, k_max)
        candidates = candidates_around(gap_k, k_min, k_max)
        evidence.update({"k_range": [k_min, k_max], "gap_k": gap_k, "gap_ratios": ratios, "gap_ratio": max(ratios)})
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
        crossing = consistent_alpha0([r["alpha0"] for r in rows], [r["ratio"] for r in rows])
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
    for k in candidates:
        fit = passes.fit(k, chosen_alpha0, n_extra_components=n_extra_components, **fit_options)
        fits_by_k[k] = fit
        scores.append({"n_topics": k, "n_kept": fit.n_topics, "heldout_loglik": _score(passes, split, fit)})
    chosen_k = gap_k
    if auto_k:
        evidence["k_candidates"] = scores
        if max(evidence["gap_ratios"]) >= gap_threshold or split is None:
            evidence["k_rule"] = "spectral_gap"
        else:
            best = max(s["heldout_loglik"] for s in scores)
            chosen_k = min(s["n_topics"] for s in scores if s["heldout_loglik"] >= best - k_tolerance)
            evidence["k_rule"] = "heldout"
    fit = fits_by_k[chosen_k]
    evidence.update({"n_topics": fit.n_topics, "alpha0": chosen_alpha0, "dropped_topics": fit.dropped})
    return Selection(fit=fit, n_topics=fit.n_topics, alpha0=chosen_alpha0, evidence=evidence)
