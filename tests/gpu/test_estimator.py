"""fit_spectral_lda / SpectralLDA: validation, reproducibility, dtypes, progress, options."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from gpu import SpectralLDA, fit_spectral_lda
from gpu import estimator as estimator_module
from gpu.estimator import plausible_start_alpha
from gpu.matching import match_topics, mean_matched_l1
from gpu.spectral.moments import corpus_stats
from gpu.synthetic import make_lda_corpus


@pytest.fixture(scope="module")
def corpus():
    return make_lda_corpus(3000, 300, 5, alpha0=1.0, doc_length=60, seed=11)


@pytest.fixture(scope="module")
def fitted(corpus):
    return fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy")


def test_fit_returns_topics_on_the_simplex_sorted_by_alpha(corpus, fitted):
    assert fitted.topic_word.shape == (5, 300)
    assert (fitted.topic_word >= 0).all()
    np.testing.assert_allclose(fitted.topic_word.sum(axis=1), 1.0)
    assert np.all(np.diff(fitted.alpha) <= 0)
    assert fitted.tensor_eigenvalues.shape == (5,)
    assert fitted.m2_eigenvalues.shape[0] > 5 and np.all(np.diff(fitted.m2_eigenvalues) <= 0)
    assert fitted.n_features_in == 300
    assert set(fitted.timings) == {"moments", "whitening", "tensor", "decomposition", "recovery"}
    assert mean_matched_l1(corpus.topic_word, fitted.topic_word) < 0.3
    json.dumps(fitted.diagnostics)


def test_seed_reproducibility(corpus, fitted):
    again = fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy")
    np.testing.assert_array_equal(again.topic_word, fitted.topic_word)
    np.testing.assert_array_equal(again.alpha, fitted.alpha)


def test_threads_and_blocks_do_not_change_the_result(corpus, fitted):
    other = fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", n_threads=2, block_rows=211)
    np.testing.assert_allclose(other.topic_word, fitted.topic_word, atol=1e-9)
    no_cache = fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", projection_cache_bytes=0)
    np.testing.assert_allclose(no_cache.topic_word, fitted.topic_word, atol=1e-9)


def test_simultaneous_power_starts_find_the_topics_random_starts_find(corpus, fitted):
    """The refined path's start (power_starts="simultaneous") against the robust method's
    random starts: the same topics on a synthetic corpus; an implicit tensor keeps random
    starts (the simultaneous basis needs T(I, V, V) for k columns at once)."""
    simultaneous = fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", power_starts="simultaneous")
    assert simultaneous.diagnostics["power_starts"] == "simultaneous"
    assert fitted.diagnostics["power_starts"] == "random"
    _, _, l1 = match_topics(fitted.topic_word, simultaneous.topic_word)
    assert l1.max() < 1e-3
    implicit = fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", power_starts="simultaneous",
                                tensor_mode="implicit")
    assert implicit.diagnostics["power_starts"] == "random"
    assert SpectralLDA(5, refine_options={"max_sweeps": 0}, backend="numpy").fit(corpus.counts) \
        .diagnostics_["spectral"]["power_starts"] == "simultaneous"
    assert SpectralLDA(5, refine=False, backend="numpy").fit(corpus.counts).diagnostics_["spectral"]["power_starts"] == "random"


def test_float32_whitening_of_a_float64_fit(corpus, fitted):
    """whitening_dtype="float32": the Krylov passes read each block of counts cast to float32
    (the caller's matrix untouched), the tensor pass stays float64 without the projection
    cache; the topics match the all-float64 fit to float32 accuracy. A refined fit's start
    whitens in float32, a bare fit in its dtype."""
    counts = corpus.counts.astype(np.float64)
    before = counts.data.copy()
    mixed = fit_spectral_lda(counts, 5, 1.0, seed=3, backend="numpy", whitening_dtype="float32")
    assert counts.dtype == np.float64 and np.array_equal(counts.data, before)
    assert mixed.diagnostics["whitening_dtype"] == "float32" and mixed.diagnostics["dtype"] == "float64"
    assert mixed.diagnostics["projection_cache"] is False and fitted.diagnostics["projection_cache"] is True
    assert fitted.diagnostics["whitening_dtype"] == "float64"
    _, _, l1 = match_topics(fitted.topic_word, mixed.topic_word)
    assert 0 < l1.max() < 1e-3  # float32 sums in the basis: close, not equal
    same = fit_spectral_lda(counts, 5, 1.0, seed=3, backend="numpy", whitening_dtype="float64")
    np.testing.assert_array_equal(same.topic_word, fitted.topic_word)
    assert SpectralLDA(5, refine_options={"max_sweeps": 0}, backend="numpy").fit(corpus.counts) \
        .diagnostics_["spectral"]["whitening_dtype"] == "float32"
    assert SpectralLDA(5, refine=False, backend="numpy").fit(corpus.counts) \
        .diagnostics_["spectral"]["whitening_dtype"] == "float64"
    with pytest.raises(ValueError, match="whitening_dtype"):
        fit_spectral_lda(counts, 5, 1.0, backend="numpy", whitening_dtype="float16")


def test_corpus_stats_in_another_precision_cast_each_block_as_it_is_read(corpus):
    stats = corpus_stats(corpus.counts.astype(np.float64), blocks_for=lambda n: [(0, n)])
    assert stats.in_precision("float64") is stats and stats.dtype == np.float64
    single = stats.in_precision("float32")
    assert single.X is stats.X and single.dtype == np.float32 and single.doc_w2.dtype == np.float32
    block = single.rows(10, 40)
    assert block.dtype == np.float32
    np.testing.assert_array_equal(block.toarray(), stats.X[10:40].toarray().astype(np.float32))


def test_float32_agrees_with_float64(corpus, fitted):
    single = fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", dtype="float32")
    _, _, l1 = match_topics(fitted.topic_word, single.topic_word)
    assert l1.max() < 1e-2
    np.testing.assert_allclose(np.sort(single.alpha), np.sort(fitted.alpha), rtol=1e-2)


def test_implicit_tensor_mode_matches_dense(corpus, fitted):
    implicit = fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", tensor_mode="implicit")
    assert implicit.diagnostics["tensor_mode"] == "implicit"
    _, _, l1 = match_topics(fitted.topic_word, implicit.topic_word)
    assert l1.max() < 1e-4


def test_over_provisioning_keeps_the_largest_alpha(corpus):
    result = fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", n_extra_components=2)
    assert result.topic_word.shape == (5, 300)
    assert result.diagnostics["n_components_fitted"] == 7
    assert len(result.diagnostics["discarded_alpha"]) == 2
    assert max(result.diagnostics["discarded_alpha"]) <= result.alpha.min()


def test_short_documents_are_dropped_and_counted(corpus):
    counts = sp.vstack([corpus.counts, sp.csr_matrix(np.eye(4, 300, dtype=np.int32) * 2)]).tocsr()
    result = fit_spectral_lda(counts, 5, 1.0, seed=3, backend="numpy")
    assert result.n_dropped_docs == 4 + int((np.asarray(corpus.counts.sum(axis=1)).ravel() < 3).sum())


def test_dense_input_is_accepted(corpus, fitted):
    result = fit_spectral_lda(corpus.counts.toarray(), 5, 1.0, seed=3, backend="numpy")
    np.testing.assert_allclose(result.topic_word, fitted.topic_word, atol=1e-9)


def test_progress_reports_every_stage_in_order(corpus):
    calls = []
    fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", n_threads=2,
                     progress=lambda stage, done, total: calls.append((stage, done, total)))
    stages = [stage for stage, _, _ in calls]
    order = ["moments", "whitening", "tensor", "decomposition", "recovery"]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == order
    for stage in order:
        done = [d for s, d, t in calls if s == stage]
        total = {t for s, d, t in calls if s == stage}
        assert done == sorted(done) and done[-1] in total


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("failing_stage", ["moments", "whitening", "tensor", "decomposition", "recovery"])
def test_progress_exceptions_propagate(corpus, failing_stage, n_threads):
    class Cancelled(Exception):
        pass

    def progress(stage, done, total):
        if stage == failing_stage and done >= 1:
            raise Cancelled(stage)

    with pytest.raises(Cancelled, match=failing_stage):
        fit_spectral_lda(corpus.counts, 5, 1.0, seed=3, backend="numpy", progress=progress,
                         n_threads=n_threads, block_rows=500)


@pytest.mark.parametrize(
    "X, kwargs, message",
    [
        (np.ones(5), {}, "2-D"),
        (np.ones((2, 3, 4)), {}, "2-D"),
        (sp.csr_matrix(np.array([[1, 2, 3], [1, -1, 4], [3, 3, 3]] * 3, dtype=float)), {}, "negative count.*document 1"),
        (np.array([[1.0, 2, 3], [1, 2, 3], [np.nan, 1, 1]] * 3), {}, "non-finite.*document 2"),
        (np.array([[1, 2, 3], [0, 1, 0], [0, 0, 2], [5, 0, 0]]), {}, "fewer than 3 usable documents"),
        (None, {"n_topics": 0}, "n_topics"),
        (None, {"n_topics": 2.5}, "n_topics"),
        (None, {"alpha0": 0}, "alpha0"),
        (None, {"alpha0": -1.0}, "alpha0"),
        (None, {"n_topics": 301}, "vocabulary"),
        (None, {"dtype": "int8"}, "dtype"),
        (None, {"backend": "tpu"}, "backend"),
        (None, {"n_iter": 0}, "n_iter"),
        (None, {"tensor_mode": "sparse"}, "tensor_mode"),
        (None, {"power_starts": "best"}, "power_starts"),
        (None, {"colour": "red"}, "unknown option"),
        (None, {"progress": 3}, "progress"),
    ],
)
def test_bad_input_raises_value_error(corpus, X, kwargs, message):
    arguments = {"n_topics": 3, "alpha0": 1.0, "backend": "numpy", **kwargs}
    with pytest.raises(ValueError, match=message):
        fit_spectral_lda(corpus.counts if X is None else X, **arguments)


def test_n_topics_larger_than_usable_documents():
    X = sp.csr_matrix(np.random.default_rng(0).integers(1, 5, size=(6, 40)))
    with pytest.raises(ValueError, match="usable documents"):
        fit_spectral_lda(X, 7, backend="numpy")


def test_n_topics_larger_than_m2_rank():
    rng = np.random.default_rng(0)
    # every document draws from the same two words: M2 has numerical rank 1
    X = sp.csr_matrix(np.column_stack([rng.integers(5, 9, 200), rng.integers(5, 9, 200), np.zeros((200, 8), int)]))
    with pytest.raises(ValueError, match="numerical rank"):
        fit_spectral_lda(X, 3, backend="numpy")


def test_estimator_stores_parameters_and_learns_attributes(corpus, fitted):
    model = SpectralLDA(5, alpha0=1.0, seed=3, backend="numpy", n_iter=40, refine=False)  # the spectral fit alone
    assert model.get_params()["n_iter"] == 40 and not hasattr(model, "topic_word_")
    assert model.fit(corpus.counts) is model
    np.testing.assert_allclose(model.topic_word_, fitted.topic_word, atol=1e-6)
    assert model.alpha_.shape == (5,) and model.n_features_in_ == 300
    assert model.n_dropped_docs_ == fitted.n_dropped_docs
    assert set(model.timings_) == set(fitted.timings) | {"spectral"}  # the engine's stages and their total
    json.dumps(model.diagnostics_)
    assert "n_topics=5" in repr(model)


def test_estimator_validates_in_fit_not_in_init(corpus):
    model = SpectralLDA(-1, alpha0=-2.0)
    with pytest.raises(ValueError, match="n_topics"):
        model.fit(corpus.counts)


def test_transform_requires_fit_and_matching_vocabulary(corpus):
    model = SpectralLDA(5, backend="numpy")
    with pytest.raises(ValueError, match="not fitted"):
        model.transform(corpus.counts)
    model.fit(corpus.counts)
    with pytest.raises(ValueError, match="300"):
        model.transform(corpus.counts[:, :10])


def test_transform_infers_document_topics(corpus):
    pytest.importorskip("gpu.inference")
    model = SpectralLDA(5, backend="numpy", seed=3).fit(corpus.counts)
    doc_topic = model.transform(corpus.counts[:200])
    assert doc_topic.shape == (200, 5)
    np.testing.assert_allclose(doc_topic.sum(axis=1), 1.0, atol=1e-6)


def test_input_matrix_is_left_untouched(corpus, fitted):
    coo = corpus.counts.tocoo()
    # duplicated, unsorted entries: summed inside fit, but the caller's matrix is not modified
    X = sp.csr_matrix((np.concatenate([coo.data, coo.data])[::-1],
                       (np.concatenate([coo.row, coo.row])[::-1], np.concatenate([coo.col, coo.col])[::-1])),
                      shape=coo.shape)
    X.has_canonical_format = False
    before = (X.data.copy(), X.indices.copy())
    result = fit_spectral_lda(X, 5, 1.0, seed=3, backend="numpy")
    np.testing.assert_array_equal(X.data, before[0])
    np.testing.assert_array_equal(X.indices, before[1])
    doubled = fit_spectral_lda(corpus.counts * 2, 5, 1.0, seed=3, backend="numpy")
    np.testing.assert_allclose(result.topic_word, doubled.topic_word, atol=1e-9)


def test_set_params_round_trips_through_get_params():
    model = SpectralLDA(4).set_params(alpha0=2.0, n_restarts=3)
    params = model.get_params(deep=True)
    assert params["alpha0"] == 2.0 and params["n_restarts"] == 3 and params["n_topics"] == 4
    assert repr(SpectralLDA(**{k: v for k, v in params.items()})) == repr(model)


@pytest.mark.parametrize("alpha0", [0.1, 0.5, 1.0, 2.0, 5.0])
def test_the_refined_prior_recovers_the_true_concentration_whatever_alpha0_was_given(alpha0):
    """alpha_ means the Dirichlet prior: on LDA corpora its sum is within 25% of the truth
    with the default alpha0=1 given; the document-completion scale lives in completion_alpha_."""
    corpus = make_lda_corpus(5000, 2000, 10, alpha0=alpha0, doc_length=100, seed=3)
    model = SpectralLDA(10, seed=0, backend="numpy").fit(corpus.counts)
    assert abs(model.alpha_.sum() / alpha0 - 1.0) <= 0.25, model.alpha_.sum()
    assert model.diagnostics_["refinement"]["prior_alpha0"] == pytest.approx(model.alpha_.sum())
    # same shape, own scale
    np.testing.assert_allclose(model.alpha_ / model.alpha_.sum(),
                               model.completion_alpha_ / model.completion_alpha_.sum(), rtol=1e-12)


def test_an_impossible_spectral_alpha_is_clipped_before_refinement():
    plausible = np.array([0.5, 0.3, 0.2])
    same, clipped = plausible_start_alpha(plausible, 1.0)
    assert not clipped and same is not None and np.array_equal(same, plausible)
    wild, clipped = plausible_start_alpha(np.array([1.6e6, 0.5, 0.3]), 1.0)
    assert clipped and wild.sum() == pytest.approx(1.0) and wild.max() <= 1.0 and np.all(wild > 0)
    assert wild[1] > wild[2]  # the plausible ones keep their order


def test_refinement_starts_from_three_float32_krylov_blocks_at_scale(monkeypatch):
    """A refined fit whitens with 5 Krylov blocks in float64; from SCALED_START_DOCS training
    documents with 3 in float32 (the junk refit's extra components kept); a bare fit always
    with 3 in float64 (dtype None)."""
    counts = make_lda_corpus(400, 60, 3, alpha0=1.0, doc_length=50, seed=2).counts

    def blocks(**params):
        model = SpectralLDA(n_topics=3, seed=0, backend="numpy", **params).fit(counts)
        diagnostics = model.diagnostics_["spectral"]
        return diagnostics["options"]["n_krylov_blocks"], diagnostics["options"]["refit_extra_components"], \
            diagnostics["dtype"]

    assert blocks() == (5, 5, "float64") and blocks(refine=False) == (3, 0, "float64")
    monkeypatch.setattr(estimator_module, "SCALED_START_DOCS", 300)  # 360 training documents
    assert blocks() == (3, 5, "float32") and blocks(refine=False) == (3, 0, "float64")
    # what the caller sets wins
    assert blocks(n_krylov_blocks=4, dtype="float64") == (4, 5, "float64")
