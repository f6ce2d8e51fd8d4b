"""Refinement of spectral topics: :func:`refine_topics` resolves its options by method and
runs batched variational EM (:mod:`gpu.refine.variational_em`) or CVB0 (:mod:`gpu.refine.cvb0`).
NumPy/SciPy on the host (batches on threads), CuPy/cupyx when the counts are on the GPU.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpu.errors import InvalidInput
from gpu.passes import Progress, default_threads
from gpu.refine.alpha_rules import HELDOUT_SCALED_RULES
from gpu.refine.cvb0 import cvb0_fits, refine_cvb0
from gpu.refine.starts_and_scoring import RefineResult
from gpu.refine.variational_em import refine_variational
from gpu.validation import REFINE_OPTION_CONSTRAINTS, validate_parameters

METHOD_DEFAULTS = {
    # how each default was chosen: docs/decisions.md, "Refinement method defaults"
    "variational": {"max_sweeps": 20, "topic_smoothing": 0.01, "check_every": 1, "n_chunks": 8, "inner_iter": 4, "patience": 2, "tol": 1e-3,
                    "start_mixing": "auto"},
    "cvb0": {"max_sweeps": 100, "topic_smoothing": 0.01, "check_every": 10, "n_chunks": 1, "inner_iter": 5, "patience": 2, "tol": 5e-4,
             "start_mixing": 0.0},
}



def refine_topics(
    X: Any,
    topic_word: Any,
    alpha: Any,
    *,
    heldout: Any = None,
    max_sweeps: int | None = None,
    tol: float | None = None,
    seed: int = 0,
    progress: Progress = None,
    topic_smoothing: float | None = None,
    fit_alpha: bool | str = "auto",
    inner_iter: int | None = None,
    inner_tol: float = 1e-3,
    batch_size: int | None = None,
    patience: int | None = None,
    dtype: str = "float32",
    n_threads: int | None = None,
    method: str = "variational",
    check_every: int | None = None,
    memory_budget: int = 2 << 30,
    n_chunks: int | None = None,
    final_sweeps: int | None = None,
    n_active_topics: int | None = 8,
    start_mixing: float | str | None = None,
) -> RefineResult:
    """Refine topics by variational EM (or CVB0), starting from ``topic_word`` and ``alpha``.

    Parameters
    ----------
    X : (D, V) CSR training counts (SciPy, or cupyx to run on the GPU).
    topic_word : (k, V) starting topics, rows on the simplex (e.g. the spectral estimate).
    alpha : (k,) starting Dirichlet prior, > 0.
    heldout : optional (D_h, V) counts of held-out documents; their document-completion
        likelihood (tokens split with ``seed``) decides when to stop.
    max_sweeps : most EM sweeps (0 returns the start unchanged).
    tol : a sweep improves when the monitored per-word log likelihood rises by at least this (nats).
    patience : with held-out documents, stop after this many sweeps in a row without improving
        (the best held-out state is returned); without them, stop at the first such sweep.
    progress : called as progress("refinement", sweeps_done, max_sweeps); its exceptions propagate.
    topic_smoothing : pseudo-count added to every expected word-topic count (keeps topics > 0).
    fit_alpha : how alpha changes: "minka" (or True) re-estimates it each sweep by Minka's
        fixed point on the variational posteriors (which tends to shrink it); "heldout"
        keeps its shape and, once the sweeps stop, scales the best state's alpha by powers
        of sqrt(2) while that raises the held-out likelihood (:func:`gpu.refine.alpha_rules.polish_alpha_scale`);
        "polya" also re-estimates its shape after every sweep, its sum kept, by
        :data:`gpu.refine.alpha_rules.POLYA_SHAPE_STEPS` steps of Minka's Dirichlet-multinomial fixed point on the
        documents' expected topic counts (:func:`gpu.refine.alpha_rules.polya_alpha_shape`), then scales it like
        "heldout"; False keeps it; "auto" is "polya" with held-out documents and "minka" without.
    n_active_topics : variational only: after the first sweep, each document's E-step updates
        only its n_active_topics topics of largest posterior weight and leaves the others at
        their prior (:func:`gpu.batched_inference.active_topic_batch`), when k >= ACTIVE_SPEEDUP_RATIO
        times that (below, the full update is as cheap). Documents use a few topics each,
        so this changes the sweeps little and makes them several times cheaper at large k.
        The final sweeps restrict the training documents the same way (held-out documents,
        starting from the prior, update all topics). None or 0: always the full update.
    final_sweeps : variational only, with held-out documents: after stopping (and the alpha
        scaling), run this many batch sweeps over the training and held-out documents
        together, alpha fixed, and return their topics (held-out documents only choose when
        to stop). ``heldout_history`` describes the states before them. None: 5, or 2 from
        :data:`gpu.refine.variational_em.LARGE_CORPUS_DOCS` training documents up.
    inner_iter, inner_tol : E-step fixed-point iterations per sweep (warm-started) and tolerance.
    batch_size : documents per E-step batch (None: sized by memory).
    dtype : "float32" (default: E-steps about 5x faster, memory-bound gathers) or "float64";
        expected counts are always accumulated in float64.
    n_threads : threads for host E-step batches (None: all usable cores).
    method : "variational" (batched variational EM, the default) or "cvb0" (zero-order
        collapsed variational Bayes: cheaper sweeps, more of them; keeps nnz x k
        responsibilities, so beyond ``memory_budget`` bytes it falls back to "variational"; the
        budget also caps variational ``n_chunks``).
    check_every : sweeps between held-out checks (default 1 for variational, 10 for cvb0).
    n_chunks : variational only: after a first batch sweep, each sweep visits the documents in
        this many chunks of about equal nonzeros and re-estimates the topics after each chunk
        (incremental EM: the chunk's previous share of the expected counts is replaced), so a
        pass over the corpus makes n_chunks M-steps. 1 is plain batch EM. Each chunk keeps a
        (k, V) float32 share of the statistics, so fewer chunks are used beyond ``memory_budget``.
    start_mixing : "auto", or a weight in [0, 1) of the training documents' word
        distribution (:func:`gpu.refine.starts_and_scoring.corpus_word_distribution`) mixed into every starting topic
        before the first sweep (not with max_sweeps=0, which returns the start as given).
        "auto" (variational, with held-out documents) runs the first sweep from the start as
        given and from the start mixed at :data:`gpu.refine.variational_em.AUTO_START_MIXING`
        and goes on with whichever scores better on the held-out documents (without them:
        the start as given; cvb0: 0). Default "auto" for variational, 0 for cvb0.
    Why these defaults (with the figures): docs/decisions.md.
    Defaults of max_sweeps, tol, topic_smoothing, check_every, inner_iter, patience, n_chunks
    and start_mixing depend on ``method`` (:data:`METHOD_DEFAULTS`).

    Returns
    -------
    RefineResult
    """
    validate_parameters({"method": method}, REFINE_OPTION_CONSTRAINTS, kind="refine option")
    if method == "cvb0" and not cvb0_fits(X, topic_word, dtype, memory_budget):
        method = "variational"  # CVB0 keeps nnz x k responsibilities; too big for the budget
    given = {"max_sweeps": max_sweeps, "topic_smoothing": topic_smoothing, "check_every": check_every,
             "inner_iter": inner_iter, "patience": patience, "n_chunks": n_chunks, "tol": tol,
             "start_mixing": start_mixing}
    # one resolution step: what the caller left at None takes the method's default
    resolved = {name: METHOD_DEFAULTS[method][name] if value is None else value for name, value in given.items()}
    validate_parameters(
        {**resolved, "n_active_topics": n_active_topics, "final_sweeps": final_sweeps, "fit_alpha": fit_alpha,
         "dtype": dtype, "inner_tol": inner_tol, "batch_size": batch_size, "memory_budget": memory_budget,
         "n_threads": n_threads},
        REFINE_OPTION_CONSTRAINTS, kind="refine option",
    )
    max_sweeps, topic_smoothing, check_every = resolved["max_sweeps"], resolved["topic_smoothing"], resolved["check_every"]
    inner_iter, patience, n_chunks, tol = resolved["inner_iter"], resolved["patience"], resolved["n_chunks"], resolved["tol"]
    start_mixing = resolved["start_mixing"]
    if method == "cvb0" and start_mixing == "auto":
        start_mixing = 0.0
    alpha_rule = {True: "minka", False: None, None: None}.get(fit_alpha, fit_alpha) if isinstance(fit_alpha, (bool, type(None))) else fit_alpha
    if alpha_rule == "auto":
        alpha_rule = "polya" if heldout is not None else "minka"
    if alpha_rule in HELDOUT_SCALED_RULES and heldout is None:
        raise InvalidInput(f"fit_alpha={alpha_rule!r} needs held-out documents (heldout=...)")
    if method == "cvb0":
        return refine_cvb0(
            X, topic_word, alpha, heldout=heldout, max_sweeps=max_sweeps, tol=tol, seed=seed, progress=progress,
            eta=topic_smoothing, alpha_rule=alpha_rule, patience=patience, dtype=dtype, check_every=check_every,
            n_threads=n_threads or default_threads(), start_mixing=start_mixing,
        )
    n_threads = n_threads or default_threads()
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        return refine_variational(
            X, topic_word, alpha, heldout=heldout, max_sweeps=max_sweeps, tol=tol, seed=seed, progress=progress,
            topic_smoothing=topic_smoothing, alpha_rule=alpha_rule, inner_iter=inner_iter, inner_tol=inner_tol,
            batch_size=batch_size, patience=patience, dtype=dtype, n_threads=n_threads, pool=pool,
            n_chunks=n_chunks, memory_budget=memory_budget, final_sweeps=final_sweeps,
            n_active_topics=n_active_topics, start_mixing=start_mixing,
        )
