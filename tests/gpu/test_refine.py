import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import digamma, gammaln

from gpu.inference import infer_doc_topic
from gpu.matching import mean_matched_l1
from gpu.quality import split_heldout, word_log_likelihood
from gpu.refine import refine_topics
from gpu.refine.alpha_rules import inverse_digamma, minka_polya_alpha, polya_alpha_shape, update_alpha
from gpu.refine import starts_and_scoring, variational_em
from gpu.refine.starts_and_scoring import scoring_split
from gpu.refine.variational_em import CHUNK_STATS_DTYPE
from gpu.synthetic import make_lda_corpus


def perturbed_start(corpus, seed=0, mix=0.5):
    rng = np.random.default_rng(seed)
    k, n_words = corpus.topic_word.shape
    noise = rng.dirichlet(np.ones(n_words), size=k)
    return (1 - mix) * corpus.topic_word + mix * noise


def training_loglik(counts, topic_word, alpha):
    doc_topic = infer_doc_topic(counts, topic_word, alpha, max_iter=200, tol=1e-6)
    total, tokens = word_log_likelihood(counts.astype(np.float64), doc_topic, topic_word)
    return total / tokens


def brute_force_word_topic_counts(row, topic_word, alpha, n_iter):
    """(k, V) expected word-topic counts of one dense document (V,) after ``n_iter``
    plain variational updates with the topics fixed: the textbook per-document E-step."""
    k, n_words = topic_word.shape
    words = np.nonzero(row)[0]
    gamma = alpha + row.sum() / k
    for _ in range(n_iter):
        log_phi = np.log(topic_word[:, words].T) + digamma(gamma) - digamma(gamma.sum())
        phi = np.exp(log_phi - log_phi.max(axis=1, keepdims=True))
        phi /= phi.sum(axis=1, keepdims=True)
        gamma = alpha + (row[words, None] * phi).sum(axis=0)
    out = np.zeros((k, n_words))
    out[:, words] = (row[words, None] * phi).T
    return out


@pytest.fixture(scope="module")
def corpus():
    return make_lda_corpus(600, 150, 5, alpha0=1.0, doc_length=60, seed=11)


def tiny_em_problem(seed, n_words, *doc_counts):
    """Three random topics over ``n_words`` words, alpha (0.3, 0.5, 0.8), and one dense
    (n, n_words) Poisson(1.5) count array per entry of ``doc_counts``, drawn in turn."""
    rng = np.random.default_rng(seed)
    topic_word = rng.dirichlet(np.ones(n_words), size=3)
    return (topic_word, np.array([0.3, 0.5, 0.8]), *(rng.poisson(1.5, size=(n, n_words)) for n in doc_counts))


def brute_force_sweep(dense, topic_word, alpha, smoothing):
    """Topics after one converged batch EM sweep over the dense documents (n, V)."""
    expected = sum(brute_force_word_topic_counts(row, topic_word, alpha, 5000) for row in dense) + smoothing
    return expected / expected.sum(axis=1, keepdims=True)


def test_one_sweep_matches_dense_brute_force_em():
    topic_word, alpha, dense = tiny_em_problem(0, 10, 6)
    smoothing = 0.01
    expected = brute_force_sweep(dense, topic_word, alpha, smoothing)
    result = refine_topics(
        sp.csr_matrix(dense), topic_word, alpha, max_sweeps=1, fit_alpha=False,
        topic_smoothing=smoothing, inner_iter=5000, inner_tol=1e-14, dtype="float64", method="variational",
        start_mixing=0,
    )
    np.testing.assert_allclose(result.topic_word, expected, atol=1e-9)
    np.testing.assert_allclose(result.alpha, alpha)


def test_start_mixing_sweeps_from_the_start_mixed_with_the_corpus_word_distribution():
    topic_word, alpha, dense = tiny_em_problem(5, 10, 6)
    dense[:, 3] = 0  # a word no document uses keeps a half pseudo-count
    frequency = dense.sum(axis=0) + 0.5
    mixed = 0.7 * topic_word + 0.3 * frequency / frequency.sum()
    options = dict(max_sweeps=1, fit_alpha=False, topic_smoothing=0.01, inner_iter=5000, inner_tol=1e-14,
                   dtype="float64", method="variational")
    result = refine_topics(sp.csr_matrix(dense), topic_word, alpha, start_mixing=0.3, **options)
    np.testing.assert_allclose(result.topic_word, brute_force_sweep(dense, mixed, alpha, 0.01), atol=1e-9)
    unmixed = refine_topics(sp.csr_matrix(dense), topic_word, alpha, start_mixing=0, **options)
    assert np.abs(unmixed.topic_word - result.topic_word).max() > 1e-3


def test_final_sweeps_cover_training_and_heldout_documents_from_the_best_state():
    k, smoothing = 3, 0.01
    topic_word, alpha, train, held = tiny_em_problem(3, 10, 6, 4)
    options = dict(max_sweeps=1, fit_alpha=False, topic_smoothing=smoothing, inner_iter=5000, inner_tol=1e-14,
                   dtype="float64", n_chunks=1, tol=0.0, start_mixing=0)
    result = refine_topics(sp.csr_matrix(train), topic_word, alpha, heldout=sp.csr_matrix(held), **options)
    without = refine_topics(sp.csr_matrix(train), topic_word, alpha, heldout=sp.csr_matrix(held), final_sweeps=0,
                            **options)
    twice = refine_topics(sp.csr_matrix(train), topic_word, alpha, heldout=sp.csr_matrix(held), final_sweeps=2,
                          **options)
    assert (result.final_sweeps, without.final_sweeps, twice.final_sweeps) == (5, 0, 2)  # 5 by default
    swept = brute_force_sweep(train, topic_word, alpha, smoothing)
    best = swept if result.heldout_history[1] > result.heldout_history[0] else topic_word
    np.testing.assert_allclose(without.topic_word, best, atol=1e-9)
    everything = np.vstack([train, held])
    once = brute_force_sweep(everything, best, alpha, smoothing)
    np.testing.assert_allclose(twice.topic_word, brute_force_sweep(everything, once, alpha, smoothing), atol=1e-9)
    assert result.doc_topic.shape == (6, k)
    with pytest.raises(ValueError, match="final_sweeps"):
        refine_topics(sp.csr_matrix(train), topic_word, alpha, final_sweeps=-1)


def test_auto_start_mixing_keeps_the_start_whose_first_sweep_scores_better(corpus):
    train, heldout = split_heldout(corpus.counts, 0.2, seed=0)
    train, heldout = corpus.counts[train], corpus.counts[heldout]
    # the truth is an accurate start; keeping only each topic's top 3 words zeroes the rest
    truncated = np.where(corpus.topic_word >= np.sort(corpus.topic_word, axis=1)[:, -3:-2], corpus.topic_word, 0.0)
    options = dict(max_sweeps=3, tol=0.0, dtype="float64", final_sweeps=0)
    for start, expected in ((corpus.topic_word, 0.0), (truncated / truncated.sum(axis=1, keepdims=True), 0.5)):
        auto = refine_topics(train, start, corpus.alpha, heldout=heldout, **options)
        fixed = {w: refine_topics(train, start, corpus.alpha, heldout=heldout, start_mixing=w, **options) for w in (0.0, 0.5)}
        assert auto.start_mixing == expected
        # the choice is the better held-out score after the first sweep, and the run goes on from it
        assert fixed[expected].heldout_history[1] >= fixed[0.5 - expected].heldout_history[1]
        np.testing.assert_allclose(auto.topic_word, fixed[expected].topic_word, atol=1e-12)
        assert auto.heldout_history == fixed[expected].heldout_history
    # without held-out documents there is nothing to choose by: the start as given
    assert refine_topics(train, truncated + 1e-3, corpus.alpha, max_sweeps=1).start_mixing == 0.0
    with pytest.raises(ValueError, match="start_mixing"):
        refine_topics(train, corpus.topic_word, corpus.alpha, start_mixing="sometimes")


def test_at_scale_auto_start_mixing_is_chosen_on_a_sample_and_two_final_sweeps_run(corpus, monkeypatch):
    """From LARGE_CORPUS_DOCS training documents: the two starts are compared after one batch
    step over a sample of MIXING_SAMPLE_DOCS documents (then only the chosen one sweeps over
    all), and final_sweeps=None resolves to FINAL_SWEEPS_AT_SCALE; below, 5 final sweeps."""
    train, heldout = split_heldout(corpus.counts, 0.2, seed=0)
    train, heldout = corpus.counts[train], corpus.counts[heldout]
    truncated = np.where(corpus.topic_word >= np.sort(corpus.topic_word, axis=1)[:, -3:-2], corpus.topic_word, 0.0)
    truncated /= truncated.sum(axis=1, keepdims=True)
    options = dict(max_sweeps=2, tol=0.0, dtype="float64")
    assert refine_topics(train, corpus.topic_word, corpus.alpha, heldout=heldout, **options).final_sweeps == 5
    monkeypatch.setattr(variational_em, "LARGE_CORPUS_DOCS", 100)
    monkeypatch.setattr(variational_em, "MIXING_SAMPLE_DOCS", 200)
    for start, expected in ((corpus.topic_word, 0.0), (truncated, 0.5)):
        auto = refine_topics(train, start, corpus.alpha, heldout=heldout, **options)
        assert auto.start_mixing == expected and auto.final_sweeps == variational_em.FINAL_SWEEPS_AT_SCALE
        # after the choice the run is the one from that start alone
        fixed = refine_topics(train, start, corpus.alpha, heldout=heldout, start_mixing=expected, **options)
        np.testing.assert_allclose(auto.topic_word, fixed.topic_word, atol=1e-12)
    assert refine_topics(train, corpus.topic_word, corpus.alpha, heldout=heldout, final_sweeps=1,
                         **options).final_sweeps == 1


def test_the_heldout_scorer_completes_a_seeded_sample_of_at_most_its_cap(corpus, monkeypatch):
    heldout = corpus.counts[:300]
    monkeypatch.setattr(starts_and_scoring, "HELDOUT_SCORING_MAX_DOCS", 120)
    split = scoring_split(heldout, seed=4)
    again = scoring_split(heldout, seed=4)
    assert split.observed.shape == (120, heldout.shape[1])
    np.testing.assert_array_equal(split.observed.toarray(), again.observed.toarray())
    # every sampled row is one held-out document, split into halves that add up to it
    whole = (split.observed + split.scored).toarray()
    rows = [int(np.flatnonzero((heldout.toarray() == row).all(axis=1))[0]) for row in whole]
    assert len(set(rows)) == 120 and rows == sorted(rows)
    monkeypatch.setattr(starts_and_scoring, "HELDOUT_SCORING_MAX_DOCS", 5000)
    assert scoring_split(heldout, seed=4).observed.shape[0] == 300


def test_refinement_never_lowers_training_likelihood(corpus):
    start = perturbed_start(corpus)
    alpha = np.full(5, 0.2)
    result = refine_topics(corpus.counts, start, alpha, max_sweeps=6, tol=0.0, fit_alpha="minka", method="variational")
    assert result.sweeps == 6
    assert np.all(np.diff(result.train_history) >= -1e-9), result.train_history
    before = training_loglik(corpus.counts, start, alpha)
    after = training_loglik(corpus.counts, result.topic_word, result.alpha)
    assert after > before
    np.testing.assert_allclose(result.topic_word.sum(axis=1), 1.0)
    assert (result.topic_word > 0).all()


def test_perturbed_start_moves_towards_truth_and_alpha_towards_truth(corpus):
    train, heldout = split_heldout(corpus.counts, 0.2, seed=0)
    start = perturbed_start(corpus, seed=1)
    alpha = np.full(5, 1.0)
    result = refine_topics(corpus.counts[train], start, alpha, heldout=corpus.counts[heldout], max_sweeps=20,
                           method="variational")
    before = mean_matched_l1(corpus.topic_word, start)
    after = mean_matched_l1(corpus.topic_word, result.topic_word)
    assert after < 0.6 * before, (before, after)
    assert abs(result.alpha.sum() - corpus.alpha.sum()) < abs(alpha.sum() - corpus.alpha.sum())
    # the returned state is the best held-out one seen
    assert len(result.heldout_history) == result.sweeps + 1
    assert result.heldout_history[0] < max(result.heldout_history)
    assert result.stopped in {"converged", "heldout_worse", "max_sweeps"}
    assert result.doc_topic.shape == (len(train), 5)


def test_active_topic_sweeps_track_full_sweeps():
    """k=12 with 4 active topics per document (k >= ACTIVE_SPEEDUP_RATIO x 4): after the first
    full sweep the restricted updates run, and recover the topics nearly as well."""
    corpus = make_lda_corpus(1200, 200, 12, alpha0=1.0, doc_length=60, seed=11)
    start, alpha = perturbed_start(corpus, seed=2), np.full(12, 1.0 / 12)
    options = dict(max_sweeps=5, tol=0.0, fit_alpha=False, method="variational", n_chunks=1)
    full = refine_topics(corpus.counts, start, alpha, n_active_topics=0, **options)
    active = refine_topics(corpus.counts, start, alpha, n_active_topics=4, **options)
    assert not np.allclose(active.topic_word, full.topic_word)  # the restricted path ran
    full_l1, active_l1 = (mean_matched_l1(corpus.topic_word, r.topic_word) for r in (full, active))
    assert active_l1 < full_l1 + 0.03, (active_l1, full_l1)
    assert active_l1 < 0.2 * mean_matched_l1(corpus.topic_word, start)
    with pytest.raises(ValueError, match="n_active_topics"):
        refine_topics(corpus.counts, start, alpha, n_active_topics=-1)


def test_final_sweeps_update_only_the_training_documents_active_topics(monkeypatch):
    """With the restricted E-step in use (k=12, 4 active topics), the final sweeps update each
    training document's 4 topics of largest warm gamma (held-out documents, starting afresh,
    all 12): other topics than the full final sweeps', as close to the truth; a best state
    at the start (no sweep's posteriors to rank by) keeps the full update."""
    corpus = make_lda_corpus(1200, 200, 12, alpha0=1.0, doc_length=60, seed=11)
    train_rows, held_rows = split_heldout(corpus.counts, 0.2, seed=0)
    train, held = corpus.counts[train_rows], corpus.counts[held_rows]
    start, alpha = perturbed_start(corpus, seed=2), np.full(12, 1.0 / 12)
    options = {"heldout": held, "max_sweeps": 3, "tol": 0.0, "fit_alpha": False, "n_chunks": 1, "final_sweeps": 2,
               "n_active_topics": 4, "start_mixing": 0.0}
    seen = []
    restricted = variational_em._sweeps_with_heldout

    def recording(*args, **kwargs):
        seen.append(kwargs["n_active"])
        return restricted(*args, **kwargs)

    monkeypatch.setattr(variational_em, "_sweeps_with_heldout", recording)
    active = refine_topics(train, start, alpha, **options)
    monkeypatch.setattr(variational_em, "_sweeps_with_heldout",
                        lambda *args, **kwargs: restricted(*args, **{**kwargs, "n_active": None}))
    full = refine_topics(train, start, alpha, **options)
    assert seen == [4] and active.final_sweeps == full.final_sweeps == 2
    assert not np.allclose(active.topic_word, full.topic_word)  # the restricted final sweeps ran
    full_l1, active_l1 = (mean_matched_l1(corpus.topic_word, r.topic_word) for r in (full, active))
    assert active_l1 < full_l1 + 0.01, (active_l1, full_l1)

    monkeypatch.setattr(variational_em, "_sweeps_with_heldout", recording)
    scores = iter(range(100, 0, -1))  # every sweep scores worse than the start
    monkeypatch.setattr(variational_em.HeldoutScorer, "__call__", lambda *args, **kwargs: (float(next(scores)), None))
    refine_topics(train, start, alpha, **options)
    assert seen[-1] is None


def test_progress_callback_and_its_exceptions(corpus):
    calls = []
    refine_topics(corpus.counts[:50], corpus.topic_word, corpus.alpha, max_sweeps=3, tol=0.0,
                  progress=lambda *a: calls.append(a))
    assert calls == [("refinement", i, 3) for i in range(4)]

    def explode(stage, done, total):
        if done == 2:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        refine_topics(corpus.counts[:50], corpus.topic_word, corpus.alpha, max_sweeps=5, tol=0.0, progress=explode)


def test_zero_sweeps_returns_the_start(corpus):
    result = refine_topics(corpus.counts[:20], corpus.topic_word, corpus.alpha, max_sweeps=0)
    assert result.sweeps == 0 and result.train_history == []
    np.testing.assert_allclose(result.topic_word, corpus.topic_word, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.alpha, corpus.alpha)


def test_inverse_digamma_and_alpha_fixed_point():
    x = np.array([-10.0, -3.0, -0.5, 0.0, 2.0, 6.0])
    np.testing.assert_allclose(digamma(inverse_digamma(x)), x, atol=1e-10)
    truth = np.array([0.1, 0.4, 2.0])
    mean_log_theta = digamma(truth) - digamma(truth.sum())
    np.testing.assert_allclose(update_alpha(np.ones(3), mean_log_theta, iterations=2000), truth, rtol=1e-6)


def dirichlet_multinomial_loglik(alpha, counts):
    """log p(counts | alpha) of (D, k) topic counts under the Dirichlet-multinomial, up to
    the multinomial coefficients (which do not depend on alpha)."""
    lengths = counts.sum(axis=1)
    return float((gammaln(alpha.sum()) - gammaln(lengths + alpha.sum())).sum()
                 + (gammaln(counts + alpha) - gammaln(alpha)).sum())


def test_polya_fixed_point_maximises_the_dirichlet_multinomial_likelihood():
    rng = np.random.default_rng(3)
    truth = np.array([0.05, 0.3, 0.6, 1.5])
    theta = rng.dirichlet(truth, size=3000)
    counts = np.stack([rng.multinomial(n, p) for n, p in zip(rng.poisson(30, 3000) + 1, theta)]).astype(np.float64)
    lengths = counts.sum(axis=1)
    fitted = minka_polya_alpha(np.ones(4), counts, lengths, np, iterations=500)
    # an independent maximiser of the same likelihood, over log alpha
    direct = minimize(lambda log_a: -dirichlet_multinomial_loglik(np.exp(log_a), counts), np.zeros(4),
                      method="L-BFGS-B", options={"ftol": 1e-14, "gtol": 1e-10}).x
    np.testing.assert_allclose(fitted, np.exp(direct), rtol=2e-3)
    np.testing.assert_allclose(fitted, truth, rtol=0.25)  # 3000 documents of ~30 tokens
    # summed in blocks of 7 documents: the same steps
    np.testing.assert_allclose(minka_polya_alpha(np.ones(4), counts, lengths, np, iterations=5, block_rows=7),
                               minka_polya_alpha(np.ones(4), counts, lengths, np, iterations=5), rtol=1e-12)


def test_polya_shape_step_moves_the_shape_and_keeps_the_sum():
    rng = np.random.default_rng(4)
    counts = rng.poisson([0.2, 1.0, 4.0], size=(500, 3)).astype(np.float64)
    lengths = counts.sum(axis=1)
    alpha = np.array([0.5, 0.5, 0.5])
    shaped = polya_alpha_shape(alpha, counts.astype(np.float32), lengths, np, steps=3)
    assert shaped.sum() == pytest.approx(alpha.sum())
    stepped = minka_polya_alpha(alpha, counts, lengths, np, iterations=3)
    np.testing.assert_allclose(shaped, stepped * alpha.sum() / stepped.sum(), rtol=1e-5)
    assert shaped[0] < shaped[1] < shaped[2]  # the topic used most gets the largest share
    assert dirichlet_multinomial_loglik(shaped, counts) > dirichlet_multinomial_loglik(alpha, counts)


def test_polya_alpha_rule_learns_the_shape_and_scales_it_on_heldout_documents(corpus):
    train, heldout = split_heldout(corpus.counts, 0.2, seed=1)
    flat = np.full(5, corpus.alpha.sum() / 5)
    wrong = flat * np.array([4.0, 0.25, 1.0, 1.0, 1.0]) / 1.25  # same sum, wrong shape
    options = dict(heldout=corpus.counts[heldout], max_sweeps=6, tol=0.0, method="variational", final_sweeps=0)
    result = refine_topics(corpus.counts[train], corpus.topic_word, wrong, fit_alpha="polya", **options)
    shape, true_shape = result.alpha / result.alpha.sum(), corpus.alpha / corpus.alpha.sum()
    assert np.abs(shape - true_shape).sum() < 0.3 * np.abs(wrong / wrong.sum() - true_shape).sum()
    # the sum is left to the held-out scaling: powers of sqrt(2) of the starting sum
    steps = np.log(result.alpha.sum() / wrong.sum()) / np.log(2 ** 0.5)
    assert abs(steps - round(steps)) < 1e-6 and result.alpha_scale == pytest.approx(2 ** (0.5 * round(steps)))
    # "auto" with held-out documents is this rule
    auto = refine_topics(corpus.counts[train], corpus.topic_word, wrong, fit_alpha="auto", **options)
    np.testing.assert_allclose(auto.alpha, result.alpha)
    assert result.alpha_rule == auto.alpha_rule == "polya"
    # CVB0 re-fits the shape from its expected topic counts the same way
    cvb0 = refine_topics(corpus.counts[train], perturbed_start(corpus), wrong, fit_alpha="polya", heldout=options["heldout"],
                         max_sweeps=20, check_every=5, tol=0.0, method="cvb0")
    assert cvb0.alpha_rule == "polya" and cvb0.method == "cvb0"
    assert np.abs(cvb0.alpha / cvb0.alpha.sum() - true_shape).sum() < 0.3 * np.abs(wrong / wrong.sum() - true_shape).sum()
    steps = np.log(cvb0.alpha.sum() / wrong.sum()) / np.log(2 ** 0.5)
    assert abs(steps - round(steps)) < 1e-6
    assert refine_topics(corpus.counts, corpus.topic_word, wrong, max_sweeps=1).alpha_rule == "minka"  # no held-out
    with pytest.raises(ValueError, match="held-out"):
        refine_topics(corpus.counts, corpus.topic_word, corpus.alpha, fit_alpha="polya")


@pytest.mark.parametrize(
    "kwargs, name",
    [({"max_sweeps": -1}, "max_sweeps"), ({"topic_smoothing": 0.0}, "topic_smoothing"),
     ({"inner_iter": 0}, "inner_iter"), ({"tol": -1.0}, "tol"), ({"start_mixing": 1.0}, "start_mixing"),
     ({"start_mixing": -0.1}, "start_mixing"), ({"start_mixing": float("nan")}, "start_mixing")],
)
def test_bad_parameters(corpus, kwargs, name):
    with pytest.raises(ValueError, match=name):
        refine_topics(corpus.counts, corpus.topic_word, corpus.alpha, **kwargs)


def test_heldout_alpha_rule_and_bad_rule(corpus):
    train, heldout = split_heldout(corpus.counts, 0.2, seed=1)
    tiny_alpha = np.full(5, 0.01)  # far too small: the held-out rule should scale it up
    result = refine_topics(corpus.counts[train], corpus.topic_word, tiny_alpha, heldout=corpus.counts[heldout],
                           max_sweeps=4, tol=0.0, fit_alpha="heldout", method="variational")
    assert result.alpha.sum() > 2 * tiny_alpha.sum()
    np.testing.assert_allclose(result.alpha / result.alpha.sum(), 0.2)  # shape kept
    # scaled by powers of sqrt(2), to a held-out score above every sweep's at the first alpha
    steps = np.log(result.alpha_scale) / np.log(2 ** 0.5)
    assert steps >= 2 and abs(steps - round(steps)) < 1e-9
    assert result.final_heldout > max(result.heldout_history)
    with pytest.raises(ValueError, match="fit_alpha"):
        refine_topics(corpus.counts, corpus.topic_word, corpus.alpha, fit_alpha="sometimes")
    with pytest.raises(ValueError, match="held-out"):
        refine_topics(corpus.counts, corpus.topic_word, corpus.alpha, fit_alpha="heldout")


def test_cupy_refinement_matches_numpy_when_a_gpu_is_present(corpus):
    from gpu.backend import gpu_available

    if not gpu_available():
        pytest.skip("no CUDA device: the CuPy path runs on the GPU machine only")
    import cupyx.scipy.sparse as cupy_sparse

    start = perturbed_start(corpus)
    host = refine_topics(corpus.counts, start, corpus.alpha, max_sweeps=3, tol=0.0, dtype="float64", fit_alpha=False)
    device = refine_topics(cupy_sparse.csr_matrix(corpus.counts.astype(np.float64)), start, corpus.alpha,
                           max_sweeps=3, tol=0.0, dtype="float64", fit_alpha=False)
    np.testing.assert_allclose(device.topic_word, host.topic_word, atol=1e-6)
    # with held-out documents: the mixed starts, the alpha shape fits and the final sweeps
    train, heldout = split_heldout(corpus.counts, 0.2, seed=1)
    options = dict(heldout=corpus.counts[heldout], max_sweeps=3, tol=0.0, dtype="float64", fit_alpha="polya")
    host = refine_topics(corpus.counts[train].astype(np.float64), start, corpus.alpha, **options)
    device = refine_topics(cupy_sparse.csr_matrix(corpus.counts[train].astype(np.float64)), start, corpus.alpha,
                           **options)
    np.testing.assert_allclose(device.topic_word, host.topic_word, atol=1e-6)
    np.testing.assert_allclose(device.alpha, host.alpha, rtol=1e-6)


def brute_force_cvb0_sweep(dense, phi, alpha, eta):
    """One parallel CVB0 update, entry by entry with explicit loops."""
    n_docs, n_words = dense.shape
    entries = [(d, w) for d in range(n_docs) for w in range(n_words) if dense[d, w] > 0]
    k = phi.shape[1]
    doc_counts = np.zeros((n_docs, k))
    word_counts = np.zeros((n_words, k))
    for j, (d, w) in enumerate(entries):
        doc_counts[d] += dense[d, w] * phi[j]
        word_counts[w] += dense[d, w] * phi[j]
    totals = word_counts.sum(axis=0)
    new = np.zeros_like(phi)
    for j, (d, w) in enumerate(entries):
        for t in range(k):
            new[j, t] = ((word_counts[w, t] - phi[j, t] + eta) / (totals[t] - phi[j, t] + n_words * eta)
                         * (doc_counts[d, t] - phi[j, t] + alpha[t]))
        new[j] /= new[j].sum()
    return new


def test_cvb0_sweep_matches_entrywise_brute_force():
    from gpu.refine.cvb0 import _Cvb0State

    rng = np.random.default_rng(3)
    dense = rng.poisson(1.2, size=(5, 8)).astype(np.float64)
    counts = sp.csr_matrix(dense)
    k = 3
    state = _Cvb0State(counts, np, np.float64)
    state.phi = rng.dirichlet(np.ones(k), size=counts.nnz)
    alpha = np.array([0.2, 0.5, 0.9])
    expected = brute_force_cvb0_sweep(dense, state.phi.copy(), alpha, 0.05)
    state.sweep(alpha, 0.05)
    np.testing.assert_allclose(state.phi, expected, rtol=1e-10)


def test_cvb0_refinement_moves_towards_truth_and_raises_likelihood(corpus):
    train, heldout = split_heldout(corpus.counts, 0.2, seed=0)
    start = perturbed_start(corpus, seed=1)
    alpha = np.full(5, 0.2)
    result = refine_topics(corpus.counts[train], start, alpha, heldout=corpus.counts[heldout], max_sweeps=60,
                           check_every=5, method="cvb0")
    assert result.method == "cvb0"
    before = mean_matched_l1(corpus.topic_word, start)
    after = mean_matched_l1(corpus.topic_word, result.topic_word)
    assert after < 0.6 * before, (before, after)
    assert max(result.heldout_history) > result.heldout_history[0]
    assert training_loglik(corpus.counts[train], result.topic_word, result.alpha) > training_loglik(
        corpus.counts[train], start, alpha)
    assert result.doc_topic.shape == (len(train), 5)
    np.testing.assert_allclose(result.doc_topic.sum(axis=1), 1.0, rtol=1e-5)


def test_cvb0_without_heldout_and_minka_alpha(corpus):
    result = refine_topics(corpus.counts, perturbed_start(corpus), np.full(5, 1.0), max_sweeps=30, check_every=5,
                           fit_alpha="minka", tol=0.0, method="cvb0")
    assert result.method == "cvb0" and result.sweeps == 30 and len(result.train_history) == 6
    # the documents were drawn with alpha0 = 1: Minka's estimate moves there from 5
    assert abs(result.alpha.sum() - corpus.alpha.sum()) < 0.5 * abs(5.0 - corpus.alpha.sum())


def test_cvb0_falls_back_to_variational_beyond_the_memory_budget(corpus):
    result = refine_topics(corpus.counts[:40], corpus.topic_word, corpus.alpha, max_sweeps=1, memory_budget=1000,
                           method="cvb0")
    assert result.method == "variational"
    with pytest.raises(ValueError, match="method"):
        refine_topics(corpus.counts, corpus.topic_word, corpus.alpha, method="gibbs")


def test_cvb0_chunks_on_threads_match_one_chunk(corpus):
    from gpu.refine.cvb0 import _Cvb0State

    counts = corpus.counts.astype(np.float64)
    one = _Cvb0State(counts, np, np.float64, n_threads=1)
    many = _Cvb0State(counts, np, np.float64, n_threads=3)
    assert len(one.chunks) == 1 and len(many.chunks) > 2
    theta = np.full((counts.shape[0], 5), 0.2)
    for state in (one, many):
        state.start(theta, perturbed_start(corpus))
        state.sweep(np.full(5, 0.3), 0.01)
        state.sweep(np.full(5, 0.3), 0.01)
    np.testing.assert_allclose(many.phi, one.phi, rtol=1e-9)


def test_incremental_chunks_partition_the_documents_by_nonzeros():
    from gpu.refine.e_step import incremental_chunks

    indptr = np.cumsum(np.r_[0, np.arange(1, 41)])  # 40 documents with 1..40 nonzeros
    chunks = incremental_chunks(indptr, 4)
    assert chunks[0][0] == 0 and chunks[-1][1] == 40
    assert all(a < b for a, b in chunks) and all(chunks[i][1] == chunks[i + 1][0] for i in range(len(chunks) - 1))
    shares = [indptr[b] - indptr[a] for a, b in chunks]
    assert len(chunks) == 4 and max(shares) - min(shares) <= 40
    assert incremental_chunks(indptr, 1) == [(0, 40)]
    assert incremental_chunks(np.array([0]), 4) == [(0, 0)]
    assert incremental_chunks(np.array([0, 3]), 4) == [(0, 1)]


def test_incremental_sweeps_match_brute_force_incremental_em():
    """Two sweeps with 2 chunks: a batch sweep, then per-chunk replacement of the statistics."""
    topic_word, alpha, dense = tiny_em_problem(3, 12, 8)
    dense[:, 0] += 1
    smoothing = 0.05

    def doc_stats(row, topics):
        return brute_force_word_topic_counts(row, topics, alpha, 3000)

    def normalise(total):
        smoothed = total + smoothing
        return smoothed / smoothed.sum(axis=1, keepdims=True)

    from gpu.refine.e_step import incremental_chunks

    chunks = incremental_chunks(np.r_[0, np.cumsum((dense > 0).sum(axis=1))], 2)
    assert len(chunks) == 2
    shares = [sum(doc_stats(dense[d], topic_word) for d in range(a, b)) for a, b in chunks]
    topics = normalise(sum(shares))
    for i, (a, b) in enumerate(chunks):
        shares[i] = sum(doc_stats(dense[d], topics) for d in range(a, b))
        topics = normalise(sum(shares))
    result = refine_topics(
        sp.csr_matrix(dense), topic_word, alpha, max_sweeps=2, tol=0.0, fit_alpha=False, topic_smoothing=smoothing,
        inner_iter=3000, inner_tol=1e-14, dtype="float64", method="variational", n_chunks=2, start_mixing=0,
    )
    assert result.sweeps == 2
    np.testing.assert_allclose(result.topic_word, topics, atol=1e-8)


def test_incremental_refinement_moves_towards_truth_and_rejects_bad_chunks(corpus):
    start = perturbed_start(corpus, seed=2)
    result = refine_topics(corpus.counts, start, np.full(5, 0.2), max_sweeps=5, tol=0.0, method="variational",
                           n_chunks=4, fit_alpha=False)
    assert mean_matched_l1(corpus.topic_word, result.topic_word) < 0.6 * mean_matched_l1(corpus.topic_word, start)
    assert result.train_history[-1] > result.train_history[0]
    with pytest.raises(ValueError, match="n_chunks"):
        refine_topics(corpus.counts, start, np.full(5, 0.2), n_chunks=0)


def test_heldout_scorer_is_independent_of_earlier_calls_and_agrees_with_the_shared_measure(corpus):
    from gpu.quality import heldout_log_likelihood, split_document_tokens
    from gpu.refine.starts_and_scoring import HeldoutScorer as _HeldoutScorer

    heldout = corpus.counts[:120].astype(np.float64)
    scorer = _HeldoutScorer(split_document_tokens(heldout, seed=4), np, np.float64)
    far = perturbed_start(corpus, seed=5, mix=0.9)
    fresh, _ = _HeldoutScorer(split_document_tokens(heldout, seed=4), np, np.float64)(corpus.topic_word, corpus.alpha)
    scorer(far, corpus.alpha * 0.1)
    again, _ = scorer(corpus.topic_word, corpus.alpha)
    assert again == pytest.approx(fresh, abs=1e-12)
    shared = heldout_log_likelihood(corpus.topic_word, corpus.alpha, heldout, seed=4)
    assert abs(fresh - shared) < 0.01


def test_incremental_chunks_are_capped_by_the_memory_budget(corpus):
    """Beyond the budget for per-chunk (k, V) statistics the refinement is plain batch EM."""
    start = perturbed_start(corpus, seed=6)
    kwargs = dict(max_sweeps=3, tol=0.0, fit_alpha=False, dtype="float64", method="variational")
    batch = refine_topics(corpus.counts, start, np.full(5, 0.2), n_chunks=1, **kwargs)
    capped = refine_topics(corpus.counts, start, np.full(5, 0.2), n_chunks=4, memory_budget=np.dtype(CHUNK_STATS_DTYPE).itemsize * start.size, **kwargs)
    chunked = refine_topics(corpus.counts, start, np.full(5, 0.2), n_chunks=4, **kwargs)
    np.testing.assert_allclose(capped.topic_word, batch.topic_word, atol=1e-12)
    assert np.abs(chunked.topic_word - batch.topic_word).max() > 1e-6
