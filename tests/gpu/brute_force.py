"""Dense moment tensors straight from the DESIGN.md section 3 definitions (tiny inputs only)."""
from __future__ import annotations

import numpy as np


def dense_counts(X) -> np.ndarray:
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)


def kept_documents(X) -> np.ndarray:
    C = dense_counts(X)
    return C[C.sum(axis=1) >= 3]


def dense_moments(X, alpha0: float) -> dict[str, np.ndarray]:
    """M1 (V,), E2 (V,V), M2 (V,V), E3 (V,V,V), M3 (V,V,V) by per-document loops."""
    C = kept_documents(X)
    n_docs, n_words = C.shape
    eye = np.eye(n_words)
    M1 = np.zeros(n_words)
    E2 = np.zeros((n_words, n_words))
    E3 = np.zeros((n_words, n_words, n_words))
    for c in C:
        l = c.sum()
        M1 += c / l
        E2 += (np.outer(c, c) - np.diag(c)) / (l * (l - 1))
        ccc = np.einsum("i,j,k->ijk", c, c, c)
        # sum_t c_t (e_t(x)e_t(x)c + e_t(x)c(x)e_t + c(x)e_t(x)e_t)
        first = np.einsum("t,it,jt,k->ijk", c, eye, eye, c)
        second = np.einsum("t,it,j,kt->ijk", c, eye, c, eye)
        third = np.einsum("t,i,jt,kt->ijk", c, c, eye, eye)
        diagonal = np.einsum("t,it,jt,kt->ijk", c, eye, eye, eye)
        E3 += (ccc - first - second - third + 2 * diagonal) / (l * (l - 1) * (l - 2))
    M1 /= n_docs
    E2 /= n_docs
    E3 /= n_docs
    M2 = E2 - alpha0 / (alpha0 + 1) * np.outer(M1, M1)
    E2M1 = (
        np.einsum("ij,k->ijk", E2, M1) + np.einsum("ik,j->ijk", E2, M1) + np.einsum("jk,i->ijk", E2, M1)
    )
    M3 = (
        E3
        - alpha0 / (alpha0 + 2) * E2M1
        + 2 * alpha0**2 / ((alpha0 + 1) * (alpha0 + 2)) * np.einsum("i,j,k->ijk", M1, M1, M1)
    )
    return {"M1": M1, "E2": E2, "M2": M2, "E3": E3, "M3": M3, "n_docs": n_docs}


def multilinear(T: np.ndarray, W: np.ndarray) -> np.ndarray:
    """T(W, W, W) for a (V, V, V) tensor and (V, k) W."""
    return np.einsum("abc,ai,bj,ck->ijk", T, W, W, W)
