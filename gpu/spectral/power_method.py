"""Robust tensor power method with deflation, all restarts run as one matrix product.

Works on any operator with ``dim``, ``xp`` and ``apply(U) -> T(I, U, U)`` for a (k, L)
block U (gpu.spectral.tensor.DenseTensor or ImplicitTensor). An operator with ``deflate(lambda, v)``
(a formed tensor) is deflated in place; otherwise deflation is applied implicitly:
T_r(I, U, U) = T(I, U, U) - sum_j lambda_j v_j (v_j^T U)^2.

Starts: ``"random"`` draws ``n_restarts`` random vectors per component and iterates them all
(the robust method). ``"simultaneous"`` first finds an orthonormal basis close to every
eigenvector at once (:func:`simultaneous_basis`: the eigenvectors of T(I, I, theta) for one
random theta, then orthogonal iteration V <- polar(T(I, V, V))); each component then starts
from the basis vector of largest deflated T(u, u, u) not yet used and is refined as usual.
That skips the restart phase, whose iterations (each one read of T) are most of the
decomposition on real text, where they rarely meet the tolerance (docs/decisions.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gpu.backend import get_array_module, to_host

CHECK_EVERY = 5  # iterations between convergence checks (each check synchronises a GPU)


@dataclass(frozen=True)
class PowerMethodResult:
    """eigenvalues: (r,) host float64 lambda_i.  eigenvectors: (k, r) backend v_i (operator dtype).

    iterations: per component, restart-phase plus refinement iterations run.
    converged:  per component, whether the refinement met the tolerance.
    """

    eigenvalues: np.ndarray
    eigenvectors: Any
    iterations: list[int] = field(default_factory=list)
    converged: list[bool] = field(default_factory=list)


def _normalize(U: Any) -> Any:
    xp = get_array_module(U)
    norms = xp.linalg.norm(U, axis=0)
    return U / xp.where(norms > 0, norms, 1.0)[None, :]


def _iterate(apply: Callable[[Any], Any], U: Any, n_iter: int, tol: float) -> tuple[Any, int, bool]:
    """Run u <- T(I,u,u)/||T(I,u,u)|| on every column; stop when all columns move < tol.

    The change 1 - |cos(u_old, u_new)| is checked every CHECK_EVERY iterations.
    """
    xp = get_array_module(U)
    previous = U
    for iteration in range(1, n_iter + 1):
        U = _normalize(apply(U))
        if iteration % CHECK_EVERY == 0 or iteration == n_iter:
            change = float(xp.max(1.0 - xp.abs((U * previous).sum(axis=0))))
            if change < tol:
                return U, iteration, True
            previous = U
        elif iteration % CHECK_EVERY == CHECK_EVERY - 1:
            previous = U
    return U, n_iter, False


def simultaneous_basis(operator: Any, rng: np.random.Generator, n_iter: int, tol: float) -> Any:
    """(k, k) orthonormal columns near the eigenvectors of the symmetric tensor of ``operator``.

    The eigenvectors of M = T(I, I, theta) for a random unit theta (from the host ``rng``;
    for T = sum_i lambda_i v_i (x) v_i (x) v_i with orthonormal v_i, M = sum_i lambda_i
    (v_i . theta) v_i v_i^T), then up to ``n_iter`` steps of V <- polar(T(I, V, V)) (the
    orthogonal factor of its SVD) until no column moves by ``tol`` (1 - |cos|). M's columns
    come from ``apply`` by polarisation: T(I, e_j, theta) = [T(I, e_j + theta, e_j + theta)
    - T(I, e_j - theta, e_j - theta)] / 4. The small eigen- and singular-value problems run
    on the host in float64; the result is on the operator's device in its dtype.
    """
    xp, dim = operator.xp, operator.dim
    dtype = getattr(operator, "dtype", np.dtype(np.float64))
    theta = rng.standard_normal(dim)
    theta /= np.linalg.norm(theta)
    identity = np.eye(dim)
    plus = operator.apply(xp.asarray((identity + theta[:, None]).astype(dtype)))
    minus = operator.apply(xp.asarray((identity - theta[:, None]).astype(dtype)))
    pencil = to_host(plus - minus).astype(np.float64) / 4.0
    _, basis = np.linalg.eigh((pencil + pencil.T) / 2.0)
    for _ in range(n_iter):
        image = to_host(operator.apply(xp.asarray(basis.astype(dtype)))).astype(np.float64)
        left, _, right = np.linalg.svd(image, full_matrices=False)
        updated = left @ right
        moved = float(np.max(1.0 - np.abs((updated * basis).sum(axis=0))))
        basis = updated
        if moved < tol:
            break
    return xp.asarray(basis.astype(dtype))


def robust_tensor_power_method(
    operator: Any,
    n_components: int,
    *,
    rng: np.random.Generator,
    n_restarts: int = 10,
    n_iter: int = 100,
    tol: float = 1e-10,
    progress: Callable[[str, int, int], None] | None = None,
    starts: str = "random",
) -> PowerMethodResult:
    """Find ``n_components`` robust eigenpairs (lambda_i, v_i) of a symmetric tensor.

    For each component, with ``starts="random"``: ``n_restarts`` random unit starts (drawn
    from the host ``rng``) iterate together for up to ``n_iter`` steps; with
    ``starts="simultaneous"``: the unused column of :func:`simultaneous_basis` (computed once,
    ``n_iter`` steps at most) of largest deflated T(u,u,u), with no restart phase. The chosen
    start is refined for up to ``n_iter`` steps; lambda = T(u,u,u); then the tensor is
    deflated. ``tol`` bounds 1 - |cos| between iterates (raised to 100 ulps of the operator
    dtype). ``iterations`` counts the restart phase (0 for simultaneous starts) and the
    refinement of each component.
    """
    dim = operator.dim
    xp = operator.xp
    dtype = getattr(operator, "dtype", np.dtype(np.float64))
    vectors = xp.zeros((dim, 0), dtype=dtype)
    values: list[float] = []
    iterations: list[int] = []
    converged: list[bool] = []

    lam = xp.zeros((0,), dtype=dtype)  # found eigenvalues, kept on the device

    explicit = hasattr(operator, "deflate")  # a formed tensor is deflated in place: fewer kernels

    def deflated(U: Any) -> Any:
        out = operator.apply(U)
        if values and not explicit:
            out = out - vectors @ (lam[:, None] * (vectors.T @ U) ** 2)
        return out

    # 1 - |cos| cannot be resolved below a few hundred ulps of the working precision
    tol = max(tol, 100.0 * float(np.finfo(dtype).eps))
    if progress is not None:
        progress("decomposition", 0, n_components)
    unused = simultaneous_basis(operator, rng, n_iter, tol) if starts == "simultaneous" else None
    # T(u, u, u) of every basis vector, once: the deflated tensor's is that less
    # sum_j lambda_j (v_j . u)^3 over the components found so far (what deflation subtracts),
    # so each component ranks the basis in O(k r) instead of one k^3 x (columns) application
    base_scores = (unused * operator.apply(unused)).sum(axis=0) if unused is not None else None
    for component in range(n_components):
        from_basis = unused is not None and unused.shape[1] > 0  # (past dim components: random starts)
        if from_basis:
            U, used = unused, 0
            scores = base_scores - (lam[:, None] * (vectors.T @ U) ** 3).sum(axis=0)  # (0, m) before any
        else:
            U, used, _ = _iterate(deflated, _normalize(xp.asarray(rng.standard_normal((dim, n_restarts)).astype(dtype))),
                                  n_iter, tol)
            scores = (U * deflated(U)).sum(axis=0)
        best_index = int(xp.argmax(scores))
        best = U[:, best_index : best_index + 1]
        if from_basis:
            unused = xp.concatenate([unused[:, :best_index], unused[:, best_index + 1:]], axis=1)
            base_scores = xp.concatenate([base_scores[:best_index], base_scores[best_index + 1:]])
        u, refined, ok = _iterate(deflated, best, n_iter, tol)
        value = float((u * deflated(u)).sum())
        values.append(value)
        vectors = xp.concatenate([vectors, u], axis=1)
        lam = xp.asarray(np.asarray(values, dtype=dtype))
        if explicit:
            operator.deflate(value, u)
        iterations.append(used + refined)
        converged.append(bool(ok))
        if progress is not None:
            progress("decomposition", component + 1, n_components)
    return PowerMethodResult(
        eigenvalues=np.asarray(values, dtype=np.float64),
        eigenvectors=vectors,
        iterations=iterations,
        converged=converged,
    )


def reconstruct(eigenvalues: np.ndarray, eigenvectors: Any) -> Any:
    """(k, k, k) sum_i lambda_i v_i (x) v_i (x) v_i (for tests and diagnostics)."""
    xp = get_array_module(eigenvectors)
    lam = xp.asarray(eigenvalues)
    return xp.einsum("i,ai,bi,ci->abc", lam, eigenvectors, eigenvectors, eigenvectors)

