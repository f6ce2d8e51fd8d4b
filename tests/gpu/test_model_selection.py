import json

import numpy as np
import pytest

from gpu.estimator import REFINED_START_OPTIONS, SpectralLDA
from gpu.junk import junk_components
from gpu.matching import mean_matched_l1
from gpu.quality import split_heldout
from gpu.errors import InvalidInput
from gpu.spectral.selection import SharedPasses, candidates_around, consistent_alpha0, gap_choice, select_model
from gpu.spectral.spectral_fit import REFIT_MIN_EIGENVALUE_RATIO, fit_spectral_lda
from gpu.synthetic import make_lda_corpus, with_junk_documents


@pytest.fixture(scope="module")
def corpus5():
    return make_lda_corpus(2500, 300, 5, alpha0=0.5, doc_length=80, seed=5)


@pytest.fixture(scope="module")
def corpus10():
    return make_lda_corpus(4000, 400, 10, alpha0=2.0, doc_length=80, seed=10)


def test_gap_choice_finds_the_largest_ratio_and_ignores_noise_near_zero():
    values = np.array([10.0, 8.0, 6.0, 5.0, 0.5, 0.4, 0.35, 0.3, 0.2])
    k, ratios = gap_choice(values, 1, 7)
    assert k == 4
    assert ratios[3] == pytest.approx(10.0)
    # without the floor the noise ratio 1e-6 / 1e-9 = 1000 would beat the real gap (800)
    assert gap_choice(np.array([1.0, 0.9, 0.8, 1e-6, 1e-9]), 1, 3)[0] == 3
    with pytest.raises(ValueError, match="eigenvalues"):
        gap_choice(values, 1, 9)


def test_candidates_and_alpha0_crossing():
    assert candidates_around(20, 2, 40) == [16, 18, 19, 20, 21, 22, 25]
    assert candidates_around(2, 2, 3) == [2, 3]
    assert candidates_around(5, 2, 40) == [4, 5, 6]
    grid = [0.1, 1.0, 10.0]
    # ratio 2 at 1 and 0.5 at 10: crossing at sqrt(10) in log-linear interpolation
    assert consistent_alpha0(grid, [1.01, 2.0, 0.5]) == pytest.approx(10 ** 0.5)
    assert consistent_alpha0(grid, [2.0, 1.5, 1.2]) is None


def test_shared_passes_agree_with_the_engine_fit(corpus5):
    passes = SharedPasses(corpus5.counts, 20, backend="numpy", alpha0_range=0.5)
    passes.prepare(15, 0.5)
    shared = passes.fit(5, 0.5)
    engine = fit_spectral_lda(corpus5.counts, 5, 0.5, backend="numpy")
    assert mean_matched_l1(engine.topic_word, shared.topic_word) < 0.05
    assert mean_matched_l1(corpus5.topic_word, shared.topic_word) < 0.1
    np.testing.assert_allclose(np.sort(shared.alpha), np.sort(engine.alpha), rtol=0.1)
    # the spectrum on the wide basis shows the k = 5 gap for any alpha0
    for a0 in (0.1, 0.5, 3.0):
        assert gap_choice(passes.spectrum(a0), 2, 15)[0] == 5


@pytest.mark.parametrize("name", ["corpus5", "corpus10"])
def test_auto_recovers_k_and_alpha0(name, request):
    corpus = request.getfixturevalue(name)
    k_true, alpha0_true = corpus.topic_word.shape[0], corpus.alpha.sum()
    train, heldout = split_heldout(corpus.counts, 0.1, seed=0)
    selection = select_model(
        corpus.counts[train], "auto", "auto", heldout=corpus.counts[heldout], k_range=(2, 2 * k_true), backend="numpy"
    )
    assert abs(selection.n_topics - k_true) <= int(0.1 * k_true)
    assert alpha0_true / 1.5 < selection.alpha0 < alpha0_true * 1.5, (selection.alpha0, alpha0_true)
    evidence = selection.evidence
    json.dumps(evidence)
    assert evidence["gap_k"] == k_true and evidence["k_rule"] == "spectral_gap"
    assert evidence["alpha0_rule"] == "consistency"
    # a clear gap decides on its own: only its k is fitted, and scored for the record
    assert [c["n_topics"] for c in evidence["k_candidates"]] == [k_true]
    assert all(c["heldout_loglik"] < 0 for c in evidence["k_candidates"])
    assert mean_matched_l1(corpus.topic_word, selection.fit.topic_word) < 0.25


def test_auto_k_without_a_clear_gap_scores_the_candidates_around_it(corpus5):
    """Below gap_threshold the held-out score chooses among the candidates around the gap's k:
    all of them are fitted and scored, and the smallest within k_tolerance of the best wins."""
    train, heldout = split_heldout(corpus5.counts, 0.1, seed=0)
    selection = select_model(corpus5.counts[train], "auto", 1.0, heldout=corpus5.counts[heldout], k_range=(2, 10),
                             backend="numpy", gap_threshold=1e9, k_tolerance=0.002)
    evidence = selection.evidence
    assert evidence["k_rule"] == "heldout"
    scored = [c["n_topics"] for c in evidence["k_candidates"]]
    assert scored == candidates_around(evidence["gap_k"], *evidence["k_range"]) and len(scored) > 1
    best = max(c["heldout_loglik"] for c in evidence["k_candidates"])
    assert selection.n_topics == min(c["n_topics"] for c in evidence["k_candidates"]
                                     if c["heldout_loglik"] >= best - 0.002)


def test_auto_alpha0_without_a_spectral_gap_at_k_uses_the_heldout_score(corpus5):
    """Asking for 8 topics of 5-topic data: no gap after the 8th eigenvalue, so the
    alpha0 consistency rule (an LDA identity) is not trusted; the held-out score decides."""
    train, heldout = split_heldout(corpus5.counts, 0.1, seed=0)
    selection = select_model(corpus5.counts[train], 8, "auto", heldout=corpus5.counts[heldout], backend="numpy")
    evidence = selection.evidence
    assert evidence["alpha0_gap_ratio"] < 2.0
    assert evidence["alpha0_rule"] == "heldout"
    best = max(evidence["alpha0_grid"], key=lambda row: row["heldout_loglik"])
    assert selection.alpha0 == best["alpha0"]


def test_over_provisioning_drops_unrecoverable_components(corpus10):
    selection = select_model(corpus10.counts, 10, 2.0, n_extra_components=5, backend="numpy")
    dropped = selection.evidence["dropped_topics"]
    assert selection.n_topics == 10 and len(dropped) == 5
    assert "unrecoverable" in {d["reason"] for d in dropped}
    assert mean_matched_l1(corpus10.topic_word, selection.fit.topic_word) < 0.25


def test_fixed_k_and_bad_range(corpus5):
    selection = select_model(corpus5.counts, 5, 0.5, backend="numpy")
    assert selection.n_topics == 5 and selection.alpha0 == 0.5
    assert "gap_k" not in selection.evidence
    with pytest.raises(ValueError, match="k_range"):
        select_model(corpus5.counts, "auto", 0.5, k_range=(5, 2), backend="numpy")


def heldout_rows(n_docs, fraction, seed):
    """The estimator's validation split of ``n_docs`` documents."""
    return split_heldout(np.empty((n_docs, 0)), fraction, seed=seed)


def test_estimator_refines_by_default_and_chooses_auto(corpus5):
    plain = SpectralLDA(5, alpha0=0.5, backend="numpy", refine=False).fit(corpus5.counts)
    refined = SpectralLDA(5, alpha0=0.5, backend="numpy").fit(corpus5.counts)
    assert plain.diagnostics_["refinement"] is None and refined.diagnostics_["refinement"]["sweeps"] >= 1
    report = refined.diagnostics_["refinement"]
    assert report["final_sweeps"] == 5 and report["start_mixing"] in (0.0, 0.5)
    assert report["alpha_rule"] == "polya"
    assert refined.diagnostics_["n_validation_docs"] == 250
    assert set(plain.diagnostics_) == set(refined.diagnostics_)  # one structure on every path
    assert mean_matched_l1(corpus5.topic_word, refined.topic_word_) < mean_matched_l1(corpus5.topic_word, plain.topic_word_)
    assert np.all(np.diff(refined.alpha_) <= 0)  # sorted by alpha, as the engine does
    doc_topic = refined.transform(corpus5.counts[:7])
    np.testing.assert_allclose(doc_topic.sum(axis=1), 1.0)

    auto = SpectralLDA("auto", alpha0="auto", backend="numpy", k_range=(2, 12), refine=False).fit(corpus5.counts)
    assert auto.n_topics_ == 5 and auto.topic_word_.shape == (5, 300)
    assert 0.5 / 1.5 < auto.alpha0_ < 0.5 * 1.5
    json.dumps(auto.diagnostics_)
    assert auto.diagnostics_["selection"]["k_rule"] == "spectral_gap"
    # the chosen pair is fitted by the engine (word-scaled whitening) on the same training rows
    assert auto.diagnostics_["selection"]["final_fit"].startswith("engine")
    assert set(auto.diagnostics_) == set(plain.diagnostics_)
    train_rows, _ = heldout_rows(corpus5.counts.shape[0], 0.1, 0)
    engine = fit_spectral_lda(corpus5.counts[train_rows], 5, auto.alpha0_, backend="numpy")
    np.testing.assert_allclose(auto.topic_word_, engine.topic_word, atol=1e-12)
    # m2_eigenvalues_ means the same on both paths: the Ritz values of the engine's whitening
    np.testing.assert_allclose(auto.m2_eigenvalues_, engine.m2_eigenvalues, atol=1e-12)


def test_estimator_rejects_bad_auto_values(corpus5):
    with pytest.raises(ValueError, match="n_topics"):
        SpectralLDA("many", backend="numpy").fit(corpus5.counts)
    with pytest.raises(ValueError, match="alpha0"):
        SpectralLDA(5, alpha0="big", backend="numpy").fit(corpus5.counts)


def test_set_params_reaches_the_refinement_switches():
    model = SpectralLDA(5).set_params(refine=False, k_range=(2, 9), n_iter=7)
    params = model.get_params()
    assert params["refine"] is False and params["k_range"] == (2, 9) and params["n_iter"] == 7
    assert model.refine is False and model.n_iter == 7
    with pytest.raises(ValueError, match="colour"):
        SpectralLDA(5).set_params(colour="red")


def test_estimator_over_provisioning_reports_dropped_components(corpus10):
    model = SpectralLDA(10, alpha0=2.0, backend="numpy", refine=False, n_extra_components=5).fit(corpus10.counts)
    dropped = model.diagnostics_["selection"]["dropped_topics"]
    assert model.topic_word_.shape == (10, 400) and len(dropped) == 5
    assert "unrecoverable" in {d["reason"] for d in dropped}
    assert model.diagnostics_["n_validation_docs"] == 0  # nothing to choose or refine: all documents used
    assert mean_matched_l1(corpus10.topic_word, model.topic_word_) < 0.25


def test_a_refined_fit_starts_from_the_engine_with_the_refined_start_options(corpus5):
    train_rows, _ = heldout_rows(corpus5.counts.shape[0], 0.1, 0)
    train = corpus5.counts[train_rows]
    no_sweeps = {"max_sweeps": 0}  # the refinement returns its start as given
    started = SpectralLDA(5, alpha0=0.5, backend="numpy", refine_options=no_sweeps).fit(corpus5.counts)
    assert REFINED_START_OPTIONS == {"n_krylov_blocks": 5, "refit_extra_components": 5, "power_starts": "simultaneous",
                                     "whitening_dtype": "float32"}
    engine = fit_spectral_lda(train, 5, 0.5, backend="numpy", **REFINED_START_OPTIONS)
    assert engine.diagnostics["junk_refit"] is None and started.diagnostics_["spectral"]["junk_refit"] is None  # no junk
    np.testing.assert_allclose(started.topic_word_, engine.topic_word, atol=1e-12)
    np.testing.assert_allclose(started.m2_eigenvalues_, engine.m2_eigenvalues, atol=1e-12)
    # options the caller gives win, and a bare spectral fit keeps the engine's defaults
    told = SpectralLDA(5, alpha0=0.5, backend="numpy", refine_options=no_sweeps, n_krylov_blocks=3,
                       refit_extra_components=0, power_starts="random", whitening_dtype="float64").fit(corpus5.counts)
    default_engine = fit_spectral_lda(train, 5, 0.5, backend="numpy")
    np.testing.assert_allclose(told.topic_word_, default_engine.topic_word, atol=1e-12)
    assert np.abs(engine.topic_word - default_engine.topic_word).max() > 1e-9
    bare = SpectralLDA(5, alpha0=0.5, backend="numpy", refine=False).fit(corpus5.counts)
    np.testing.assert_allclose(bare.topic_word_, fit_spectral_lda(corpus5.counts, 5, 0.5, backend="numpy").topic_word,
                               atol=1e-12)


def test_junk_components_are_decomposed_again_with_extra_components_from_the_same_basis(corpus10):
    counts = with_junk_documents(corpus10.counts)
    plain = fit_spectral_lda(counts, 4, 1.0, backend="numpy", n_krylov_blocks=5, n_oversample=15)
    junk = junk_components(plain.alpha)
    assert len(junk) == 1 and plain.topic_word[np.argmin(plain.alpha), -2:].sum() > 0.9  # the junk words' topic
    stages = []
    refit = fit_spectral_lda(counts, 4, 1.0, backend="numpy", n_krylov_blocks=5, refit_extra_components=5,
                             progress=lambda stage, done, total: stages.append(stage))
    report = refit.diagnostics["junk_refit"]
    assert report["refitted"] and report["m2_eigenvalue_ratio"] >= REFIT_MIN_EIGENVALUE_RATIO
    # one extra component for the junk one found, 5 more for junk the larger fit turns up
    assert report["junk_alpha"] == pytest.approx(junk) and report["n_extra_components"] == 6
    # exactly the topics of an over-provisioned fit whose Krylov basis has the same columns
    # (k + 6 extra + 9 oversampled = k + 5 refit room + 10 oversampled)
    extra = fit_spectral_lda(counts, 4, 1.0, backend="numpy", n_krylov_blocks=5, n_extra_components=6, n_oversample=9)
    np.testing.assert_allclose(refit.topic_word, extra.topic_word, atol=1e-12)
    assert refit.diagnostics["n_components_fitted"] == 10 and min(refit.diagnostics["discarded_alpha"]) == pytest.approx(
        junk[0], rel=1e-3)
    assert junk_components(refit.alpha) == [] and refit.topic_word[:, -2:].sum(axis=1).max() < 0.1
    # ... without whitening again: one whitening, then two tensor passes and decompositions
    order = [stage for i, stage in enumerate(stages) if i == 0 or stages[i - 1] != stage]
    assert order.count("whitening") == 1 and order[-6:] == ["tensor", "decomposition", "recovery"] * 2
    # the refined path asks for it (REFINED_START_OPTIONS) and reports it with the selection
    fit = SpectralLDA(4, alpha0=1.0, backend="numpy", refine_options={"max_sweeps": 0}).fit(counts)
    assert fit.diagnostics_["spectral"]["junk_refit"]["refitted"]
    bare = SpectralLDA(4, alpha0=1.0, backend="numpy", refine=False, refit_extra_components=5).fit(counts)
    np.testing.assert_allclose(bare.topic_word_, fit_spectral_lda(counts, 4, 1.0, backend="numpy", n_extra_components=6,
                                                                  n_oversample=9).topic_word, atol=1e-12)
    with pytest.raises(ValueError, match="refit_extra_components"):
        fit_spectral_lda(counts, 4, 1.0, backend="numpy", refit_extra_components=-1)


def test_no_refit_past_a_spectral_gap(corpus5):
    counts = with_junk_documents(corpus5.counts)  # rank-5 LDA: the 6th-10th eigenvalues of M2 are noise
    fit = fit_spectral_lda(counts, 5, 0.5, backend="numpy", n_krylov_blocks=5, refit_extra_components=5)
    report = fit.diagnostics["junk_refit"]
    assert not report["refitted"] and report["m2_eigenvalue_ratio"] < REFIT_MIN_EIGENVALUE_RATIO
    wanted = 5 + len(report["junk_alpha"]) + 5
    assert report["n_extra_components"] == wanted - 5
    assert report["m2_eigenvalue_ratio"] == pytest.approx(fit.m2_eigenvalues[wanted - 1] / fit.m2_eigenvalues[4])
    plain = fit_spectral_lda(counts, 5, 0.5, backend="numpy", n_krylov_blocks=5, n_oversample=15)
    np.testing.assert_allclose(fit.topic_word, plain.topic_word, atol=1e-12)


def test_gap_choice_is_not_flattened_by_a_dominant_first_eigenvalue():
    """Zipf-shaped vocabularies: lambda_1 (the shared direction) ~1000x lambda_2; a floor
    relative to lambda_1 had made every ratio 1 and chosen k_min."""
    values = np.array([5.6e-3, 3.9e-6, 3.0e-6, 2.5e-6, 2.0e-6, 1e-8, -1e-7, -2e-7])
    k, ratios = gap_choice(values, 2, 6)
    assert k == 5 and max(ratios) > 100
    with pytest.raises(InvalidInput, match="positive eigenvalues"):
        gap_choice(values, 7, 7)
