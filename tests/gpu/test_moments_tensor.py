"""Moments, whitening and the whitened tensor against dense brute force (DESIGN.md section 3)."""
import numpy as np
import pytest
import scipy.sparse as sp

from gpu.spectral.moments import apply_m2, concentration_from_pairs, corpus_stats
from gpu.passes import row_blocks
from gpu.spectral.tensor import DenseTensor, ImplicitTensor, tensor_terms, whitened_document_sums, whitened_tensor
from gpu.spectral.whitening import krylov_whitening, orthonormalize, word_scale
from gpu.synthetic import make_lda_corpus
from tests.gpu.brute_force import dense_moments, multilinear

ALPHA0 = 0.7


def tiny_corpus(seed=0, n_docs=40, n_words=9):
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(n_words, 0.3), size=3)
    rows = []
    for d in range(n_docs):
        theta = rng.dirichlet(np.full(3, ALPHA0 / 3))
        length = int(rng.integers(1, 12))  # some documents shorter than 3 tokens
        rows.append(rng.multinomial(length, theta @ topics))
    return sp.csr_matrix(np.array(rows, dtype=np.int64))


def pipeline(X, n_components, *, n_threads=1, block_rows=None, dtype="float64", n_columns=None, cache=True, scale=None):
    X = X.astype(dtype).tocsr()

    def blocks_for(n):
        return row_blocks(n, n_threads, block_rows)

    stats = corpus_stats(X, blocks_for=blocks_for, n_threads=n_threads)
    blocks = blocks_for(stats.n_docs)
    whitening = krylov_whitening(
        stats, n_components, n_columns or X.shape[1], ALPHA0, seed=5, n_krylov_blocks=2, rank_tol=1e-9,
        blocks=blocks, n_threads=n_threads, cache_projections=cache, scale=scale,
    )
    W = whitening.matrix()
    sums = whitened_document_sums(
        stats, W, blocks=blocks, with_third=True, keep_projection=True, n_threads=n_threads,
        cached=whitening.cached_projection if cache else None,
    )
    terms = tensor_terms(stats, W, sums, ALPHA0)
    return stats, whitening, W, sums, terms, blocks


@pytest.fixture(scope="module")
def corpus():
    X = tiny_corpus()
    return X, dense_moments(X, ALPHA0)


def test_documents_shorter_than_three_tokens_are_dropped(corpus):
    X, dense = corpus
    stats, *_ = pipeline(X, 3)
    lengths = np.asarray(X.sum(axis=1)).ravel()
    assert stats.n_dropped == int((lengths < 3).sum()) > 0
    assert stats.n_docs == dense["n_docs"]
    np.testing.assert_allclose(stats.m1, dense["M1"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_threads,block_rows", [(1, None), (2, 7)])
def test_implicit_m2_matches_dense(corpus, n_threads, block_rows):
    X, dense = corpus
    stats, *_ = pipeline(X, 3)
    blocks = row_blocks(stats.n_docs, n_threads, block_rows)
    Q = np.random.default_rng(1).standard_normal((X.shape[1], 4))
    got = apply_m2(stats, Q, ALPHA0, blocks=blocks, n_threads=n_threads)
    np.testing.assert_allclose(got, dense["M2"] @ Q, rtol=0, atol=1e-12)


def test_whitening_whitens_m2_and_keeps_its_top_eigenvalues(corpus):
    X, dense = corpus
    _, whitening, W, *_ = pipeline(X, 3)
    np.testing.assert_allclose(W.T @ dense["M2"] @ W, np.eye(3), atol=1e-8)
    top = np.sort(np.linalg.eigvalsh(dense["M2"]))[::-1][:3]
    np.testing.assert_allclose(whitening.eigenvalues[:3], top, rtol=1e-8)
    # (W^T)^+ maps whitened space back: W^T (W^T)^+ = I
    np.testing.assert_allclose(W.T @ whitening.pseudo_inverse_transpose(), np.eye(3), atol=1e-8)


@pytest.mark.parametrize("n_threads,block_rows", [(1, None), (2, 5)])
def test_whitened_tensor_matches_dense_m3(corpus, n_threads, block_rows):
    X, dense = corpus
    _, _, W, sums, terms, _ = pipeline(X, 3, n_threads=n_threads, block_rows=block_rows)
    T = whitened_tensor(sums, terms, np.float64)
    expected = multilinear(dense["M3"], W)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(T, expected, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(T, T.transpose(1, 2, 0), atol=1e-12 * scale)


@pytest.mark.parametrize("cache", [True, False])
def test_partial_krylov_basis_whitens_exactly(corpus, cache):
    """Basis smaller than V (2 blocks of 4 columns, V=9): Rayleigh-Ritz whitening is exact on
    it, with or without the kept projections (which replace the last block's M2 product)."""
    X, dense = corpus
    _, whitening, W, sums, terms, _ = pipeline(X, 3, n_columns=4, cache=cache, n_threads=2, block_rows=9)
    assert whitening.basis.shape[1] == 8
    np.testing.assert_allclose(W.T @ dense["M2"] @ W, np.eye(3), atol=1e-8)
    expected = multilinear(dense["M3"], W)
    T = whitened_tensor(sums, terms, np.float64)
    np.testing.assert_allclose(T, expected, rtol=0, atol=1e-8 * np.abs(expected).max())


@pytest.mark.parametrize("cache", [True, False])
def test_word_scaled_whitening_whitens_m2_on_the_top_space_of_s_m2_s(corpus, cache):
    X, dense = corpus
    stats, *_ = pipeline(X, 3)
    scale = word_scale(stats.m1, 0.5)
    np.testing.assert_allclose(scale, (stats.m1 / stats.m1.max()) ** -0.5)
    _, whitening, W, sums, terms, _ = pipeline(X, 3, n_columns=5, cache=cache, n_threads=2, block_rows=9, scale=scale)
    # W = S W_s still whitens M2 itself, and (W^T)^+ inverts W^T
    np.testing.assert_allclose(W.T @ dense["M2"] @ W, np.eye(3), atol=1e-8)
    np.testing.assert_allclose(W.T @ whitening.pseudo_inverse_transpose(), np.eye(3), atol=1e-8)
    # the kept space is the top eigenspace of S M2 S (not of M2), with its eigenvalues
    scaled_m2 = scale[:, None] * dense["M2"] * scale[None, :]
    values, vectors = np.linalg.eigh(scaled_m2)
    top = vectors[:, np.argsort(values)[::-1][:3]]
    kept = (W / scale[:, None])  # S^-1 W spans the kept space of S M2 S
    np.testing.assert_allclose(np.linalg.svd(top.T @ kept / np.linalg.norm(kept, axis=0), compute_uv=False), 1.0, atol=1e-6)
    np.testing.assert_allclose(whitening.eigenvalues[:3], np.sort(values)[::-1][:3], rtol=1e-8)
    # the tensor pass (from kept X S K when cached) gives the dense M3(W, W, W)
    tensor = whitened_tensor(sums, terms, "float64")
    np.testing.assert_allclose(tensor, multilinear(dense["M3"], W), atol=1e-8)


def test_word_scale_gives_absent_words_the_rarest_scale_and_power_zero_none():
    m1 = np.array([0.5, 0.0, 0.25, 0.25])
    np.testing.assert_allclose(word_scale(m1, 1.0), [1.0, 2.0, 2.0, 2.0])
    assert word_scale(m1, 0.0) is None


def test_implicit_tensor_applies_the_same_tensor(corpus):
    X, dense = corpus
    stats, _, W, sums, terms, _ = pipeline(X, 3)
    expected = multilinear(dense["M3"], W)
    U = np.random.default_rng(2).standard_normal((3, 5))
    implicit = ImplicitTensor(sums.projected, stats.doc_w3, terms).apply(U)
    dense_apply = DenseTensor(expected).apply(U)
    brute = np.einsum("ijk,jl,kl->il", expected, U, U)
    np.testing.assert_allclose(dense_apply, brute, atol=1e-10 * np.abs(brute).max())
    np.testing.assert_allclose(implicit, brute, atol=1e-8 * np.abs(brute).max())


def test_float32_pipeline_agrees_with_float64(corpus):
    X, _ = corpus
    *_, sums64, terms64, _ = pipeline(X, 3)
    *_, sums32, terms32, _ = pipeline(X, 3, dtype="float32")
    T64 = whitened_tensor(sums64, terms64, np.float64)
    T32 = whitened_tensor(sums32, terms32, np.float32)
    # whitening bases may differ in sign/rotation only through rounding; compare invariants
    np.testing.assert_allclose(np.linalg.norm(T32), np.linalg.norm(T64), rtol=1e-4)


def test_orthonormalize_drops_directions_already_spanned():
    rng = np.random.default_rng(0)
    K = orthonormalize(rng.standard_normal((20, 4)))
    np.testing.assert_allclose(K.T @ K, np.eye(4), atol=1e-12)
    Y = np.concatenate([K @ rng.standard_normal((4, 3)), rng.standard_normal((20, 2))], axis=1)
    Q = orthonormalize(Y, K)
    assert Q.shape == (20, 2)
    np.testing.assert_allclose(Q.T @ Q, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(K.T @ Q, 0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 5, 30, 53])
def test_blocked_symmetric_sums_match_einsum(k):
    from gpu.spectral.tensor import sum_pair_outer, sum_symmetric_cube

    rng = np.random.default_rng(k)
    P = rng.standard_normal((70, k))
    w = rng.uniform(0.1, 1.0, 70)
    expected = np.einsum("b,bi,bj,bl->ijl", w, P, P, P)
    np.testing.assert_allclose(sum_symmetric_cube(P, w[:, None] * P), expected, rtol=1e-12, atol=1e-12)
    Z = rng.standard_normal((70, 4))
    np.testing.assert_allclose(sum_pair_outer(P, Z), np.einsum("bi,bj,bq->ijq", P, P, Z), rtol=1e-12, atol=1e-12)


def _stats(X):
    stats = corpus_stats(X, blocks_for=lambda n: row_blocks(n, 1, None))
    return stats, row_blocks(stats.n_docs, 1, None)


def test_concentration_from_pairs_matches_a_dense_least_squares_fit():
    rng = np.random.default_rng(4)
    X = sp.csr_matrix(rng.poisson(1.5, size=(40, 7)).astype(np.float64))
    topics = rng.dirichlet(np.ones(7), size=3)
    alpha = np.array([0.5, 0.3, 0.2])
    stats, blocks = _stats(X)
    E2, M1 = dense_moments(X, 1.0)["E2"], dense_moments(X, 1.0)["M1"]
    M, p = topics.T, alpha / alpha.sum()
    pinv = np.linalg.pinv(M)  # (k, V), independent of the code's (M^T M)^+ M^T
    G, q = pinv @ E2 @ pinv.T, pinv @ M1
    off = ~np.eye(3, dtype=bool)
    data, model = (G - np.outer(q, q))[off], (np.diag(p) - np.outer(q, q))[off]
    c = data @ model / (model @ model)
    estimate = concentration_from_pairs(stats, topics, alpha, blocks=blocks)
    if 0 < c < 1:
        assert estimate == pytest.approx(1 / c - 1, rel=1e-9)
    else:
        assert estimate is None


@pytest.mark.parametrize("alpha0", [0.2, 1.0, 4.0])
def test_concentration_from_pairs_recovers_the_truth_from_the_true_topics(alpha0):
    corpus = make_lda_corpus(4000, 300, 6, alpha0=alpha0, doc_length=80, seed=9)
    stats, blocks = _stats(corpus.counts.astype(np.float64))
    estimate = concentration_from_pairs(stats, corpus.topic_word, corpus.alpha * 7.0, blocks=blocks)
    assert estimate == pytest.approx(alpha0, rel=0.1)  # alpha's scale is not used, only its shape
