"""SpectralLDA: the scikit-learn estimator, and the default pipeline in one place.

``fit`` reads top-down:
  1. validate the parameters (:data:`gpu.validation.PARAMETER_CONSTRAINTS`) and the counts;
  2. split off a seeded ``validation_fraction`` of the documents when something is chosen
     ("auto" k / alpha0) or refined: they score candidates and stop refinement;
  3. the spectral topics: :func:`gpu.spectral.selection.select_model` over shared passes when
     k / alpha0 are "auto" or components are over-provisioned, else (and for the chosen pair,
     unless over-provisioned or unscaled) :func:`gpu.spectral.spectral_fit.fit_spectral_lda`;
  4. refinement by :func:`gpu.refine.refine_topics` from those topics (``refine=True``).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from gpu.backend import array_module, backend_of, csr_on_module, get_array_module, to_host
from gpu.errors import InvalidInput
from gpu.inference import infer_doc_topic
from gpu.passes import Progress, default_threads, row_blocks
from gpu.quality import CompletionSplit, completion_log_likelihood, split_document_tokens, split_heldout
from gpu.refine import refine_topics
from gpu.spectral.moments import concentration_from_pairs, corpus_stats
from gpu.spectral.selection import select_model
from gpu.spectral.spectral_fit import DEFAULT_OPTIONS, fit_spectral_lda
from gpu.validation import PARAMETER_CONSTRAINTS, as_count_matrix, choose_backend, validate_parameters

# Engine options of a spectral fit that refinement starts from, and of a bare one, where the
# parameter is None (reasons and figures: docs/decisions.md, "The refined start").
REFINED_START_OPTIONS = {"n_krylov_blocks": 5, "refit_extra_components": 5, "power_starts": "simultaneous",
                         "whitening_dtype": "float32"}
BARE_START_OPTIONS = {"n_krylov_blocks": 3, "refit_extra_components": 0, "power_starts": "random"}
# from this many training documents refinement starts from 3 Krylov blocks, in float32 where
# dtype is None (docs/decisions.md, "Refinement at scale"): the sweeps make up for the coarser
# start, for a third of its time
SCALED_START_DOCS = 200_000
SCALED_START_OPTIONS = {"n_krylov_blocks": 3, "refit_extra_components": 5, "power_starts": "simultaneous",
                        "whitening_dtype": "float32"}
# power-method iterations where n_iter is None: the engine's fit, and each candidate of a selection
ENGINE_N_ITER = 30
CANDIDATE_N_ITER = 100
MIN_DOCS_TO_SPLIT = 10  # fewer documents than this: nothing is held out for validation
CANDIDATE_OPTIONS = ("n_restarts", "n_iter", "tol", "rank_tol")  # what select_model's candidate fits take


def plausible_start_alpha(alpha: np.ndarray, alpha0: float) -> tuple[np.ndarray, bool]:
    """The refinement's starting prior: the spectral alpha (k,) as it is, unless a component
    claims more than the whole concentration alpha0 (impossible under LDA: a tensor eigenvalue
    near zero, as on corpora with too few documents for their vocabulary, gives alpha_i in
    the millions, which would flatten every document's mixture); then each alpha_i is clipped
    to alpha0 and the vector rescaled to sum to alpha0. Returns (alpha, whether it was clipped)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    if not np.all(np.isfinite(alpha)) or alpha.max() > alpha0:
        clipped = np.clip(np.nan_to_num(alpha, nan=alpha0, posinf=alpha0), 1e-12, alpha0)
        return clipped * (alpha0 / clipped.sum()), True
    return alpha, False


class SpectralLDA(TransformerMixin, BaseEstimator):
    """Latent Dirichlet allocation by the method of moments (spectral), refined by variational EM.

    Parameters
    ----------
    n_topics : int >= 1 or "auto", default 10
        Topics k; "auto" chooses k in ``k_range`` from M2's spectral gap and held-out scores.
    alpha0 : float > 0 or "auto", default 1.0
        Sum of the Dirichlet parameters; "auto" chooses it from the data.
    seed : int >= 0, default 0
        Seeds every random draw (the validation split, sketches, power method, refinement).
    backend : {"auto", "numpy", "cupy"}, default "auto"
        "auto": the GPU when CuPy sees one or X is already there.
    dtype : {"float32", "float64"} or None, default None
        Precision of the spectral passes over documents. None: "float64", or "float32" for the
        start of a refined fit from SCALED_START_DOCS training documents (refinement's own
        passes run in float32 by default: ``refine_options["dtype"]``).
    progress : callable(stage, done, total) or None
        Called through every long loop; its exceptions propagate (cancellation).
    refine : bool, default True
        Refine the spectral topics by variational EM (:func:`gpu.refine.refine_topics`).
    validation_fraction : float in [0, 1), default 0.1
        Share of the documents held out (seeded) to score candidates of "auto" and to stop
        refinement; the topics are learned from the rest. Unused by a bare spectral fit.
    k_range : (k_min, k_max), default (2, 100)
        Bounds of k for ``n_topics="auto"``.
    refine_options : dict or None
        Options of :func:`gpu.refine.refine_topics` (method, max_sweeps, tol, fit_alpha, ...).
    n_oversample, n_restarts, tol, n_extra_components, block_rows, n_threads, tensor_mode,
    rank_tol, projection_cache_bytes, word_scale_power :
        Options of :func:`gpu.spectral.spectral_fit.fit_spectral_lda` (same defaults).
    n_krylov_blocks : int or None
        M2 applications of the range finder; None: 5 when refining, 3 for a bare fit.
    refit_extra_components : int or None
        Extra components of the junk refit (see fit_spectral_lda); None: 5 when refining, 0 bare.
    power_starts : {"random", "simultaneous"} or None
        Starts of the tensor power method (see fit_spectral_lda); None: "simultaneous" when
        refining (refinement needs a start, not the robust method's restarts), "random" bare.
    whitening_dtype : {"float32", "float64"} or None
        Precision of the whitening's Krylov passes alone (see fit_spectral_lda); None:
        "float32" when refining (the sweeps need the subspace, not its last digits:
        docs/decisions.md), ``dtype`` for a bare fit.
    n_iter : int or None
        Power-method iterations; None: 30 for the engine's fit, 100 for each candidate of a
        selection ("auto" or ``n_extra_components`` > 0).

    Attributes
    ----------
    topic_word_ : ndarray of shape (n_topics_, n_features_in_)
        Topic-word distributions (rows on the simplex), sorted by decreasing alpha.
    alpha_ : ndarray of shape (n_topics_,)
        The Dirichlet prior, same order. Refined fits: the refined shape, its sum the alpha0
        that the training documents' pair moment gives for the refined topics
        (:func:`gpu.spectral.moments.concentration_from_pairs`; ``diagnostics_["refinement"]
        ["prior_alpha0"]``; where the moment gives none, None there and the sum of the alpha
        refinement started from).
        Bare fits: the spectral recovery's alpha. :meth:`transform` infers under this prior.
    completion_alpha_ : ndarray of shape (n_topics_,)
        alpha scaled (shape kept) to what scores best for document completion on the
        validation documents (the refinement's alpha rule); :meth:`score` uses it. Equal to
        ``alpha_`` for bare fits.
    n_topics_, alpha0_ : the k and alpha0 fitted (chosen for "auto").
    m2_eigenvalues_ : ndarray, descending
        Leading eigenvalue estimates of the second moment that was whitened for the spectral
        topics: S M2 S with the word scale (M2 itself at ``word_scale_power=0`` and for
        topics from the shared passes of a selection), k + extras + oversampling of them.
    tensor_eigenvalues_ : ndarray of shape (n_topics_,)
        Eigenvalues of the whitened tensor for the spectral topics (before refinement).
    n_dropped_docs_ : int, documents with fewer than 3 tokens dropped by the spectral fit.
    timings_ : dict, stage -> seconds ("spectral" in total, "refinement", and the engine's stages).
    diagnostics_ : dict, the same keys on every path:
        {"spectral": the engine's diagnostics or None (topics from shared passes),
         (with its "junk_refit" report), "selection": the evidence of the selection or None,
         "refinement": sweeps, stop reason, histories, final_heldout or None,
         "n_validation_docs": documents held out}.
    n_features_in_, feature_names_in_ : as in scikit-learn.
    """

    _parameter_constraints = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        n_topics: int | str = 10,
        *,
        alpha0: float | str = 1.0,
        seed: int = 0,
        backend: str = "auto",
        dtype: str | None = None,
        progress: Progress = None,
        refine: bool = True,
        validation_fraction: float = 0.1,
        k_range: tuple[int, int] = (2, 100),
        refine_options: dict | None = None,
        n_oversample: int = 10,
        n_krylov_blocks: int | None = None,
        n_restarts: int = 10,
        n_iter: int | None = None,
        tol: float = 1e-10,
        n_extra_components: int = 0,
        refit_extra_components: int | None = None,
        block_rows: int | None = None,
        n_threads: int | None = None,
        tensor_mode: str = "auto",
        rank_tol: float = 1e-6,
        projection_cache_bytes: int = 2**30,
        word_scale_power: float = 0.2,
        power_starts: str | None = None,
        whitening_dtype: str | None = None,
    ) -> None:
        self.n_topics = n_topics
        self.alpha0 = alpha0
        self.seed = seed
        self.backend = backend
        self.dtype = dtype
        self.progress = progress
        self.refine = refine
        self.validation_fraction = validation_fraction
        self.k_range = k_range
        self.refine_options = refine_options
        self.n_oversample = n_oversample
        self.n_krylov_blocks = n_krylov_blocks
        self.n_restarts = n_restarts
        self.n_iter = n_iter
        self.tol = tol
        self.n_extra_components = n_extra_components
        self.refit_extra_components = refit_extra_components
        self.block_rows = block_rows
        self.n_threads = n_threads
        self.tensor_mode = tensor_mode
        self.rank_tol = rank_tol
        self.projection_cache_bytes = projection_cache_bytes
        self.word_scale_power = word_scale_power
        self.power_starts = power_starts
        self.whitening_dtype = whitening_dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    # -- fit: validate -> split -> spectral (select or fit) -> refine ------------------------

    def fit(self, X: Any, y: Any = None) -> "SpectralLDA":
        """Learn topics from X, {array-like, sparse matrix} of shape (n_documents, n_words) of
        non-negative counts (SciPy or cupyx sparse, dense arrays, lists); returns self."""
        params = self.get_params(deep=False)
        validate_parameters({name: params[name] for name in PARAMETER_CONSTRAINTS})
        backend = choose_backend(X, self.backend)
        checked = self._checked_input(X, reset=True)
        xp = array_module(backend)
        choose = self.n_topics == "auto" or self.alpha0 == "auto"
        select = choose or self.n_extra_components > 0  # over-provisioned fits drop junk in the selection
        train_rows, validation_rows = self._split_rows(int(checked.shape[0]), choose or self.refine)
        dtype = self._spectral_dtype(len(train_rows))
        counts = as_count_matrix(checked, backend, dtype)
        del checked
        train = counts[xp.asarray(train_rows)] if len(validation_rows) else counts
        validation = counts[xp.asarray(validation_rows)] if len(validation_rows) else None
        del counts  # a cast copy of X is not kept beside its two parts for the whole fit
        options = self._engine_options(int(train.shape[0]))

        started = time.perf_counter()
        if select:
            spectral = self._select(train, validation, backend, dtype, options)
        else:
            spectral = self._engine_fit(train, int(self.n_topics), float(self.alpha0), backend, dtype, options)
        timings = {**spectral["timings"], "spectral": time.perf_counter() - started}

        topic_word, alpha, refinement = spectral["topic_word"], spectral["alpha"], None
        completion_alpha = alpha
        if self.refine:
            started = time.perf_counter()
            start_alpha, clipped = plausible_start_alpha(alpha, float(spectral["alpha0"]))
            topic_word, completion_alpha, refinement = self._refine(train, validation, topic_word, start_alpha, xp)
            refinement["start_alpha_clipped"] = clipped
            timings["refinement"] = time.perf_counter() - started
            started = time.perf_counter()
            alpha, refinement["prior_alpha0"] = self._prior(train, topic_word, completion_alpha, xp,
                                                            fallback_alpha0=float(np.sum(start_alpha)))
            timings["concentration"] = time.perf_counter() - started

        self.topic_word_ = np.asarray(topic_word, dtype=np.float64)
        self.alpha_ = np.asarray(alpha, dtype=np.float64)
        self.completion_alpha_ = np.asarray(completion_alpha, dtype=np.float64)
        self.n_topics_, self.alpha0_ = int(spectral["n_topics"]), float(spectral["alpha0"])
        self.m2_eigenvalues_ = np.asarray(spectral["m2_eigenvalues"], dtype=np.float64)
        self.tensor_eigenvalues_ = np.asarray(spectral["tensor_eigenvalues"], dtype=np.float64)
        self.n_dropped_docs_ = int(spectral["n_dropped_docs"])
        self.timings_ = timings
        self.diagnostics_ = {
            "spectral": spectral["diagnostics"],
            "selection": spectral["selection"],
            "refinement": refinement,
            "n_validation_docs": int(len(validation_rows)),
        }
        return self

    def _checked_input(self, X: Any, *, reset: bool) -> Any:
        """X through scikit-learn's validate_data (n_features_in_, feature_names_in_); GPU
        input is left on the GPU and only its width is checked or recorded."""
        if backend_of(X) == "cupy":
            if reset:
                self.n_features_in_ = int(X.shape[1])
            elif int(X.shape[1]) != self.n_features_in_:
                raise InvalidInput(f"X has {int(X.shape[1])} features, but SpectralLDA is expecting "
                                   f"{self.n_features_in_} features as input.")
            return X
        try:
            X = validate_data(self, X, reset=reset, accept_sparse="csr", dtype=[np.float64, np.float32],
                              ensure_min_samples=3 if reset else 1)
            check_non_negative(X, f"SpectralLDA.{'fit' if reset else 'transform'}")
            return X
        except ValueError as error:  # scikit-learn's messages: shape, NaN / inf, too few documents
            raise InvalidInput(str(error)) from error

    def _split_rows(self, n_docs: int, wanted: bool) -> tuple[np.ndarray, np.ndarray]:
        """(train_rows, validation_rows) of the seeded split; none held out unless ``wanted``."""
        if not wanted or self.validation_fraction <= 0 or n_docs < MIN_DOCS_TO_SPLIT:
            return np.arange(n_docs), np.zeros(0, dtype=np.int64)
        return split_heldout(np.empty((n_docs, 0)), self.validation_fraction, seed=self.seed)

    def _engine_options(self, n_train_docs: int) -> dict[str, Any]:
        """Options of fit_spectral_lda, with the None defaults resolved for this path and size."""
        if not self.refine:
            start = BARE_START_OPTIONS
        else:
            start = SCALED_START_OPTIONS if n_train_docs >= SCALED_START_DOCS else REFINED_START_OPTIONS
        params = self.get_params(deep=False)
        options = {name: params[name] for name in DEFAULT_OPTIONS}
        for name, value in start.items():
            if options[name] is None:
                options[name] = value
        return options

    def _spectral_dtype(self, n_train_docs: int) -> str:
        """The spectral passes' precision: ``dtype``, or where it is None float64, float32 for
        a refined fit from SCALED_START_DOCS training documents (docs/decisions.md)."""
        if self.dtype is not None:
            return str(np.dtype(self.dtype))
        return "float32" if self.refine and n_train_docs >= SCALED_START_DOCS else "float64"

    def _engine_fit(self, train: Any, n_topics: int, alpha0: float, backend: str, dtype: str, options: dict) -> dict:
        result = fit_spectral_lda(train, n_topics, alpha0, seed=self.seed, backend=backend, dtype=dtype,
                                  progress=self.progress, **{**options, "n_iter": self.n_iter or ENGINE_N_ITER})
        return {
            "topic_word": result.topic_word, "alpha": result.alpha, "n_topics": n_topics, "alpha0": alpha0,
            "m2_eigenvalues": result.m2_eigenvalues, "tensor_eigenvalues": result.tensor_eigenvalues,
            "n_dropped_docs": result.n_dropped_docs, "timings": dict(result.timings),
            "diagnostics": result.diagnostics, "selection": None,
        }

    def _select(self, train: Any, validation: Any, backend: str, dtype: str, options: dict) -> dict:
        """k / alpha0 chosen (and junk dropped) over shared passes; the chosen pair is then
        fitted by the engine (its word-scaled whitening finds more specific topics on real
        text) unless over-provisioned or unscaled, whose topics come from the passes."""
        candidate = {name: options[name] for name in CANDIDATE_OPTIONS}
        candidate["n_iter"] = self.n_iter or CANDIDATE_N_ITER
        selection = select_model(
            train, self.n_topics, self.alpha0, heldout=validation, k_range=tuple(self.k_range), seed=self.seed,
            backend=backend, dtype=dtype, progress=self.progress, fit_options=candidate,
            n_oversample=self.n_oversample, n_extra_components=self.n_extra_components,
            n_threads=self.n_threads, block_rows=self.block_rows,
        )
        evidence = selection.evidence
        if not self.n_extra_components and self.word_scale_power:
            chosen = self._engine_fit(train, selection.n_topics, selection.alpha0, backend, dtype, options)
            evidence["final_fit"] = "engine (word-scaled whitening) at the chosen n_topics and alpha0"
            return {**chosen, "selection": evidence}
        return {
            "topic_word": selection.fit.topic_word, "alpha": selection.fit.alpha, "n_topics": selection.n_topics,
            "alpha0": selection.alpha0, "m2_eigenvalues": np.asarray(evidence["m2_spectrum"]),
            "tensor_eigenvalues": selection.fit.tensor_eigenvalues,
            "n_dropped_docs": int(evidence.get("n_dropped_docs", 0)), "timings": {}, "diagnostics": None,
            "selection": evidence,
        }

    def _prior(self, train: Any, topic_word: np.ndarray, alpha: np.ndarray, xp: Any, *,
               fallback_alpha0: float) -> tuple[np.ndarray, float | None]:
        """The Dirichlet prior of the refined topics: alpha's shape, scaled to the alpha0 the
        pair moment of the training documents gives (:func:`concentration_from_pairs`), or to
        ``fallback_alpha0`` (the refinement's start) where the moment gives no estimate.
        Returns (alpha (k,), the pair moment's alpha0 or None)."""
        n_threads = 1 if backend_of(train) == "cupy" else (self.n_threads or default_threads())
        stats = corpus_stats(train, blocks_for=lambda n: row_blocks(n, n_threads, self.block_rows),
                             n_threads=n_threads, progress=self.progress)
        alpha0 = concentration_from_pairs(stats, xp.asarray(topic_word), alpha,
                                          blocks=row_blocks(stats.n_docs, n_threads, self.block_rows),
                                          n_threads=n_threads, progress=self.progress)
        scale = fallback_alpha0 if alpha0 is None else alpha0
        return np.asarray(alpha, dtype=np.float64) * (scale / float(np.sum(alpha))), alpha0

    def _refine(self, train: Any, validation: Any, topic_word: np.ndarray, alpha: np.ndarray, xp: Any):
        refined = refine_topics(train, xp.asarray(topic_word), xp.asarray(alpha), heldout=validation, seed=self.seed,
                                progress=self.progress, **(self.refine_options or {}))
        order = np.argsort(-refined.alpha, kind="stable")  # the engine's convention: by alpha
        report = {
            "sweeps": refined.sweeps,
            "stopped": refined.stopped,
            "heldout_history": refined.heldout_history,
            "train_history": refined.train_history,
            "alpha_scale": refined.alpha_scale,
            "final_heldout": refined.final_heldout,
            "final_sweeps": refined.final_sweeps,
            "start_mixing": refined.start_mixing,
            "alpha_rule": refined.alpha_rule,
        }
        return refined.topic_word[order], refined.alpha[order], report

    # -- using a fitted model ---------------------------------------------------------------

    def transform(self, X: Any, **inference_options: Any) -> Any:
        """Document-topic mixtures, array of shape (n_documents, n_topics_), rows on the
        simplex, with the learned topics fixed (:func:`gpu.inference.infer_doc_topic`; on the
        device of X)."""
        check_is_fitted(self)
        X = self._checked_input(X, reset=False)
        xp = get_array_module(X)
        return infer_doc_topic(X, xp.asarray(self.topic_word_), xp.asarray(self.alpha_), **inference_options)

    def score(self, X: Any, y: Any = None) -> float:
        """Per-word log likelihood of X by document completion (nats per word, higher is better).

        Each document's tokens are split (seeded by ``seed``) into halves; theta is inferred
        from the first half with the topics fixed and ``completion_alpha_`` and the second half
        is scored:
        sum log(theta_d @ topic_word_[:, w]) / scored tokens (:mod:`gpu.quality`). Counts
        that are not integers are split in two equal fractional halves instead.
        """
        check_is_fitted(self)
        counts = csr_on_module(as_count_matrix(self._checked_input(X, reset=False), "numpy", "float64"), np)
        data = counts.data
        if np.all(np.equal(np.mod(data, 1), 0)):
            split = split_document_tokens(counts, seed=self.seed)
        else:
            split = CompletionSplit(observed=counts * 0.5, scored=counts * 0.5)
        return float(completion_log_likelihood(split, np.asarray(to_host(self.topic_word_)),
                                               np.asarray(to_host(self.completion_alpha_))))

    def perplexity(self, X: Any) -> float:
        """exp(-score(X)): the per-word perplexity of X by document completion (lower is better)."""
        return float(np.exp(-self.score(X)))
