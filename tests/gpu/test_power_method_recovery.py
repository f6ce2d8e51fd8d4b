"""Robust tensor power method on known decompositions; recovery formulas and simplex projection."""
import numpy as np
import pytest

from gpu.spectral.power_method import reconstruct, robust_tensor_power_method, simultaneous_basis
from gpu.spectral.recovery import alpha_from_eigenvalues, fix_signs_and_project, project_rows_to_simplex, recover
from gpu.spectral.tensor import DenseTensor
from tests.gpu.brute_force import multilinear


def orthogonal_tensor(k, seed):
    rng = np.random.default_rng(seed)
    V, _ = np.linalg.qr(rng.standard_normal((k, k)))
    lam = np.sort(rng.uniform(1.0, 5.0, size=k))[::-1]
    return reconstruct(lam, V), lam, V


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_power_method_recovers_orthogonal_decomposition(dtype):
    T, lam, V = orthogonal_tensor(6, seed=3)
    result = robust_tensor_power_method(DenseTensor(T.astype(dtype)), 6, rng=np.random.default_rng(0))
    tol = 1e-8 if dtype == np.float64 else 1e-4
    assert all(result.converged)
    order = np.argsort(result.eigenvalues)[::-1]
    np.testing.assert_allclose(result.eigenvalues[order], lam, rtol=tol)
    overlaps = np.abs(V.T @ np.asarray(result.eigenvectors, dtype=np.float64)[:, order])
    np.testing.assert_allclose(np.diag(overlaps), 1.0, atol=tol)
    residual = T - reconstruct(result.eigenvalues, np.asarray(result.eigenvectors, dtype=np.float64))
    assert np.abs(residual).max() < 50 * tol * lam.max()


def test_power_method_is_seeded():
    T, _, _ = orthogonal_tensor(5, seed=1)
    a = robust_tensor_power_method(DenseTensor(T), 3, rng=np.random.default_rng(7), n_restarts=4)
    b = robust_tensor_power_method(DenseTensor(T), 3, rng=np.random.default_rng(7), n_restarts=4)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    np.testing.assert_array_equal(a.eigenvectors, b.eigenvectors)


def test_power_method_reports_non_convergence():
    T, _, _ = orthogonal_tensor(5, seed=1)
    result = robust_tensor_power_method(DenseTensor(T + 0.3), 5, rng=np.random.default_rng(0), n_iter=1)
    assert not all(result.converged)


def test_simultaneous_basis_is_the_eigenvectors_of_an_orthogonal_tensor():
    """T(I, I, theta) of T = sum lambda_i v_i^(x3) has the eigenvectors v_i: the basis is V
    up to the order and signs of its columns, whatever theta."""
    T, _, V = orthogonal_tensor(8, seed=4)
    for seed in (0, 1):
        basis = simultaneous_basis(DenseTensor(T), np.random.default_rng(seed), n_iter=5, tol=1e-12)
        np.testing.assert_allclose(basis.T @ basis, np.eye(8), atol=1e-10)
        overlaps = np.abs(V.T @ basis)
        np.testing.assert_allclose(np.sort(overlaps.max(axis=0)), 1.0, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_simultaneous_starts_recover_a_noisy_orthogonal_decomposition_as_random_starts_do(dtype):
    """Noise (a symmetric perturbation) moves the eigenvectors: both kinds of starts reach
    the same eigenpairs, the simultaneous ones with no restart phase and fewer iterations."""
    T, _, _ = orthogonal_tensor(12, seed=6)
    noise = np.random.default_rng(2).standard_normal(T.shape) * 0.01
    noise = sum(noise.transpose(order) for order in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]) / 6
    T = (T + noise).astype(dtype)
    robust = robust_tensor_power_method(DenseTensor(T), 12, rng=np.random.default_rng(0))
    simultaneous = robust_tensor_power_method(DenseTensor(T), 12, rng=np.random.default_rng(0), starts="simultaneous")
    tol = 1e-7 if dtype == np.float64 else 1e-3
    assert all(simultaneous.converged)
    np.testing.assert_allclose(np.sort(simultaneous.eigenvalues), np.sort(robust.eigenvalues), rtol=tol)
    matched = np.abs(np.asarray(robust.eigenvectors, dtype=np.float64).T @ np.asarray(simultaneous.eigenvectors, dtype=np.float64))
    np.testing.assert_allclose(matched.max(axis=0), 1.0, atol=tol)
    assert sum(simultaneous.iterations) < sum(robust.iterations) / 2
    again = robust_tensor_power_method(DenseTensor(T), 12, rng=np.random.default_rng(0), starts="simultaneous")
    np.testing.assert_array_equal(again.eigenvectors, simultaneous.eigenvectors)  # seeded


def brute_simplex_projection(y):
    """Projection by bisection on the threshold theta: sum(max(y - theta, 0)) = 1."""
    lo, hi = y.min() - 1.0, y.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(y - mid, 0).sum() > 1 else (lo, mid)
    return np.maximum(y - 0.5 * (lo + hi), 0)


def test_simplex_projection_matches_bisection():
    rng = np.random.default_rng(0)
    Y = np.concatenate([rng.standard_normal((5, 30)), rng.uniform(0, 0.01, (2, 30)), np.full((1, 30), -3.0)])
    got = project_rows_to_simplex(Y)
    for row, y in zip(got, Y):
        np.testing.assert_allclose(row, brute_simplex_projection(y), atol=1e-10)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    assert (got >= 0).all()


def test_sign_fixing_keeps_the_sign_closer_to_the_simplex():
    mu = np.random.default_rng(1).dirichlet(np.ones(10), size=3)
    raw = mu * np.array([1, -1, 1])[:, None]
    projected, flipped = fix_signs_and_project(raw)
    np.testing.assert_array_equal(flipped, [False, True, False])
    np.testing.assert_allclose(projected, mu, atol=1e-12)


def test_alpha_formula_inverts_the_population_eigenvalues():
    alpha0 = 1.5
    alpha = np.array([0.2, 0.5, 0.8])
    lam = 2.0 / (alpha0 + 2.0) * np.sqrt(alpha0 * (alpha0 + 1.0) / alpha)
    np.testing.assert_allclose(alpha_from_eigenvalues(lam, alpha0), alpha)


def test_exact_population_moments_give_back_topics_and_alpha():
    """Whiten population M2, decompose population M3(W,W,W), recover: exact up to rounding."""
    rng = np.random.default_rng(4)
    k, n_words, alpha0 = 4, 12, 2.0
    mu = rng.dirichlet(np.full(n_words, 0.5), size=k)
    alpha = np.array([0.3, 0.4, 0.5, 0.8])
    M2 = np.einsum("i,ia,ib->ab", alpha, mu, mu) / (alpha0 * (alpha0 + 1))
    M3 = 2 * np.einsum("i,ia,ib,ic->abc", alpha, mu, mu, mu) / (alpha0 * (alpha0 + 1) * (alpha0 + 2))
    values, vectors = np.linalg.eigh(M2)
    U, s = vectors[:, -k:], values[-k:]
    W = U / np.sqrt(s)
    T = multilinear(M3, W)
    result = robust_tensor_power_method(DenseTensor(T), k, rng=np.random.default_rng(0))
    recovered = recover(U * np.sqrt(s), result.eigenvalues, result.eigenvectors, alpha0, k)
    order = np.argsort(-alpha)
    np.testing.assert_allclose(recovered.alpha, alpha[order], rtol=1e-8)
    np.testing.assert_allclose(recovered.topic_word, mu[order], atol=1e-8)


def test_recover_keeps_the_largest_alpha_when_over_provisioned():
    rng = np.random.default_rng(0)
    vectors = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    lam = np.array([1.0, 4.0, 2.0, 8.0, 3.0])  # alpha ~ 1/lambda^2
    recovered = recover(rng.uniform(0, 1, (20, 5)), lam, vectors, 1.0, 3)
    np.testing.assert_array_equal(recovered.order, [0, 2, 4])
    assert np.all(np.diff(recovered.alpha) <= 0)
    assert recovered.topic_word.shape == (3, 20)


def test_recover_ranks_an_alpha_above_alpha0_after_the_plausible_ones():
    rng = np.random.default_rng(0)
    vectors = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    lam = np.array([1e-4, 4.0, 2.0, 8.0, 3.0])  # component 0: alpha ~ 1e8, above alpha0 = 1
    alpha = alpha_from_eigenvalues(lam, 1.0)
    assert alpha[0] > 1.0 and np.all(alpha[1:] <= 1.0)
    recovered = recover(rng.uniform(0, 1, (20, 5)), lam, vectors, 1.0, 3)
    np.testing.assert_array_equal(recovered.order, [2, 4, 1])  # the impossible one is dropped
    everything = recover(rng.uniform(0, 1, (20, 5)), lam, vectors, 1.0, 5)
    assert everything.order[-1] == 0  # kept last when every component is kept


def test_implicit_and_in_place_deflation_agree():
    T, _, _ = orthogonal_tensor(6, seed=5)
    T = T + 0.01 * np.random.default_rng(0).standard_normal(T.shape)

    class ApplyOnly:  # same tensor without deflate(): deflation is applied implicitly
        def __init__(self, tensor):
            self.inner = DenseTensor(tensor)
            self.dim, self.xp, self.dtype = self.inner.dim, np, self.inner.dtype

        def apply(self, U):
            return self.inner.apply(U)

    dense = robust_tensor_power_method(DenseTensor(T), 6, rng=np.random.default_rng(1))
    implicit = robust_tensor_power_method(ApplyOnly(T), 6, rng=np.random.default_rng(1))
    np.testing.assert_allclose(dense.eigenvalues, implicit.eigenvalues, rtol=1e-8)
    np.testing.assert_allclose(np.abs(dense.eigenvectors), np.abs(implicit.eigenvectors), atol=1e-7)


def test_threaded_recovery_matches_single_threaded():
    rng = np.random.default_rng(3)
    vectors = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    lam = np.array([1.0, 4.0, 2.0, 8.0, 3.0])
    pinv = rng.standard_normal((40, 5))
    single = recover(pinv, lam, vectors, 1.0, 5)
    threaded = recover(pinv, lam, vectors, 1.0, 5, n_threads=3)
    np.testing.assert_array_equal(single.topic_word, threaded.topic_word)
    np.testing.assert_array_equal(single.sign_flipped, threaded.sign_flipped)
