"""The fit job: corpus artifact -> SpectralLDA -> document mixtures -> model artifact + row."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from app.artifacts.artifact_files import remove_path
from app.artifacts.model_artifact import write_model_artifact
from app.core.context import ServiceContext
from app.core.db import transaction, utcnow
from app.core.tables import CorpusRow, JobRow, ModelRow
from gpu.errors import InvalidInput
from workers.fit_memory import check_fit_memory, read_fit_options
from workers.fit_stages import doc_topic_in_chunks, quality_in_chunks
from workers.test_hooks import run_test_hook

Progress = Callable[[str, int, int], None]
EstimatorFactory = Callable[..., Any]


def _default_estimator(**kwargs):
    from gpu import SpectralLDA

    return SpectralLDA(**kwargs)


def _as_list(values) -> list[float] | None:
    if values is None:
        return None
    return [float(v) for v in np.asarray(values).ravel()]


def _split(counts, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, heldout_rows); nothing is held out when ``fraction`` is 0."""
    if fraction <= 0:
        return np.arange(counts.shape[0]), np.zeros(0, dtype=np.int64)
    from gpu.quality import split_heldout

    return split_heldout(counts, fraction, seed=seed)


def run_fit(ctx: ServiceContext, job: JobRow, progress: Progress,
            make_estimator: EstimatorFactory = _default_estimator) -> None:
    """Fit the model of ``job`` and record it; InvalidInput for bad input (options, a deleted corpus)."""
    params = job.params
    with ctx.sessions() as session:
        corpus_row = session.get(CorpusRow, job.corpus_id)
        model = session.get(ModelRow, job.model_id)
    if model is None:
        raise InvalidInput(f"model {job.model_id!r} was deleted before its fit ran")
    if corpus_row is None:
        raise InvalidInput(f"corpus {job.corpus_id!r} does not exist (deleted?)")
    corpus = ctx.corpus(corpus_row.id, corpus_row.checksum)

    options = read_fit_options(params.get("options"))
    if ctx.settings.enable_test_hooks and options.test_hook is not None:
        run_test_hook(dict(options.test_hook), progress)
    elif options.test_hook is not None:
        raise InvalidInput("options.test_hook is not an option (test deployments only)")
    kwargs = {"backend": ctx.settings.fit_backend, **options.estimator_kwargs()}
    seed = int(params.get("seed", 0))
    check_fit_memory(ctx.settings.fit_memory_budget, corpus.counts, params["n_topics"], kwargs)
    try:
        estimator = make_estimator(n_topics=params["n_topics"], alpha0=params.get("alpha0", 1.0), seed=seed,
                                   progress=progress, **kwargs)
    except TypeError as exc:
        raise InvalidInput(f"invalid estimator options {sorted(kwargs)}: {exc}") from exc
    counts = corpus.counts
    train_rows, heldout_rows = _split(counts, float(params.get("heldout_fraction", 0.0)), seed)
    estimator.fit(counts[train_rows] if heldout_rows.size else counts)
    doc_topic = doc_topic_in_chunks(estimator.transform, counts, progress)

    topic_word = np.asarray(estimator.topic_word_, dtype=np.float64)
    alpha = np.asarray(estimator.alpha_, dtype=np.float64)
    # document completion scores with the alpha tuned for it (the prior where there is none)
    completion_alpha = np.asarray(getattr(estimator, "completion_alpha_", alpha), dtype=np.float64)
    quality = None
    if heldout_rows.size:
        quality = quality_in_chunks(topic_word, alpha, doc_topic[train_rows], counts[train_rows],
                                    counts[heldout_rows], seed=seed, vocabulary=corpus.vocabulary, progress=progress,
                                    completion_alpha=completion_alpha)
    result = {
        "n_topics": int(topic_word.shape[0]),
        "alpha0": float(getattr(estimator, "alpha0_", alpha.sum())),  # requested (or chosen by "auto")
        "alpha": _as_list(alpha),
        "n_dropped_docs": int(getattr(estimator, "n_dropped_docs_", 0)),
        "m2_eigenvalues": _as_list(getattr(estimator, "m2_eigenvalues_", None)),
        "tensor_eigenvalues": _as_list(getattr(estimator, "tensor_eigenvalues_", None)),
        "timings": {k: float(v) for k, v in (getattr(estimator, "timings_", None) or {}).items()},
        "diagnostics": {**(getattr(estimator, "diagnostics_", None) or {}),
                        "completion_alpha": _as_list(completion_alpha)},
        "quality": quality,
    }
    progress("saving", 0, 1)
    final = ctx.layout.model_dir(model.id)
    remove_path(final)  # debris of an earlier attempt that died after writing it
    checksum = write_model_artifact(final, ctx.layout.tmp, topic_word=topic_word, alpha=alpha,
                                    doc_topic=doc_topic, meta=result)
    try:
        with transaction(ctx.sessions) as session:
            _check_still_leased(session, job)
            row = session.get(ModelRow, model.id)
            if row is None:
                raise InvalidInput(f"model {model.id!r} was deleted while it was being fitted")
            for key, value in result.items():
                setattr(row, key, value)
            row.checksum = checksum
            row.status = "ready"
            row.finished_at = utcnow()
    except BaseException:
        remove_path(final)
        raise


def _check_still_leased(session, job: JobRow) -> None:
    """Raise LeaseLost unless ``job`` still runs under the lease it was started with (the
    hard limit or the reconciler may have moved it on); locks the job row meanwhile."""
    from workers.jobs import LeaseLost

    current = session.get(JobRow, job.id, with_for_update=True, populate_existing=True)
    if current is None or current.state != "running" or current.lease_owner != job.lease_owner:
        raise LeaseLost(f"job {job.id} is no longer leased to {job.lease_owner}; its model is not recorded")
