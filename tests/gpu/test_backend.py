"""The backend helpers the GPU path leans on, checked on the host (and with stand-in modules
where the check is about how CuPy is probed, not about CUDA itself)."""
import itertools
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import digamma

from gpu.backend import gpu_available, rowwise_dot, synchronize, transposed_product
from gpu.batched_inference import InferenceInputs, active_topic_batch, csr_with_data
from gpu.inference import DEFAULT_GATHER_BUDGET, GPU_GATHER_BUDGET, batch_bounds, gather_budget


def _stand_in_cupy(device_count: int) -> types.ModuleType:
    """A module shaped like the corner of CuPy that gpu_available probes, backed by NumPy."""
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: device_count))
    cupy.eye, cupy.ones, cupy.float32 = np.eye, np.ones, np.float32
    return cupy


def _stand_in_cupyx_sparse() -> dict[str, types.ModuleType]:
    cupyx, scipy_part, sparse = (types.ModuleType(name) for name in ("cupyx", "cupyx.scipy", "cupyx.scipy.sparse"))
    sparse.csr_matrix = sp.csr_matrix
    cupyx.scipy, scipy_part.sparse = scipy_part, sparse
    return {"cupyx": cupyx, "cupyx.scipy": scipy_part, "cupyx.scipy.sparse": sparse}


def test_gpu_available_needs_a_device_and_working_sparse_products(monkeypatch):
    # a device but no cupyx sparse module (a host without the cuSPARSE libraries): not usable
    monkeypatch.setitem(sys.modules, "cupy", _stand_in_cupy(1))
    for name in ("cupyx", "cupyx.scipy", "cupyx.scipy.sparse"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes the import fail
    assert gpu_available() is False
    for name, module in _stand_in_cupyx_sparse().items():
        monkeypatch.setitem(sys.modules, name, module)
    assert gpu_available() is True
    monkeypatch.setitem(sys.modules, "cupy", _stand_in_cupy(0))
    assert gpu_available() is False


def test_transposed_product_and_rowwise_dot_match_dense_products():
    rng = np.random.default_rng(0)
    counts = sp.random(30, 12, density=0.3, format="csr", random_state=1)
    dense = rng.random((30, 4))
    assert np.allclose(transposed_product(counts, dense), counts.toarray().T @ dense, rtol=1e-12, atol=0)
    a, b = rng.random((7, 5)), rng.random((7, 5))
    assert np.allclose(rowwise_dot(a, b), (a * b).sum(axis=1), rtol=1e-12, atol=0)


def test_synchronize_waits_on_a_device_and_is_nothing_on_the_host():
    calls = []
    device = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(
        synchronize=lambda: calls.append("synchronized"))))
    synchronize(np)
    assert calls == []
    synchronize(device)
    assert calls == ["synchronized"]


def test_csr_with_data_shares_the_structure_and_keeps_the_canonical_flag():
    counts = sp.random(20, 15, density=0.3, format="csr", random_state=2)
    counts.sum_duplicates()
    values = np.arange(counts.nnz, dtype=np.float64)
    out = csr_with_data(counts, values)
    assert np.shares_memory(out.indices, counts.indices) and np.shares_memory(out.indptr, counts.indptr)
    assert out.has_canonical_format
    assert np.array_equal(out.data, values)
    # duplicate entries are not canonical: the flag is not claimed for them
    duplicated = sp.csr_matrix((np.ones(3), np.array([1, 1, 0]), np.array([0, 3])), shape=(1, 2))
    assert not csr_with_data(duplicated, np.ones(3)).has_canonical_format


def test_gpu_batches_are_larger_than_host_batches():
    assert gather_budget(np) == DEFAULT_GATHER_BUDGET < GPU_GATHER_BUDGET
    indptr = np.arange(0, 200 * 20_000 + 1, 200)  # 20,000 documents of 200 nonzeros
    host = batch_bounds(indptr, 100, None)
    device = batch_bounds(indptr, 100, None, elements=GPU_GATHER_BUDGET)
    assert len(device) * 4 <= len(host)
    for bounds in (host, device):  # contiguous, covering every document once
        assert bounds[0][0] == 0 and bounds[-1][1] == 20_000
        assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(bounds))
    assert max(stop - start for start, stop in device) * 200 * 100 <= GPU_GATHER_BUDGET


@pytest.mark.parametrize("n_active", [3, 6])
def test_active_topic_expected_counts_match_an_independent_sum(n_active):
    """The restricted E-step's expected counts (a transposed product now, no scatter-add)
    against a per-entry loop over the same final state."""
    rng = np.random.default_rng(3)
    n_docs, n_words, n_topics = 12, 25, 8
    counts = sp.random(n_docs, n_words, density=0.4, format="csr", random_state=4)
    counts.data = np.ceil(counts.data * 5)
    topics = rng.dirichlet(np.ones(n_words), size=n_topics)
    alpha = np.full(n_topics, 0.3)
    gamma = alpha + rng.random((n_docs, n_topics)) * 5
    inputs = InferenceInputs(counts=counts, topic_word=topics, alpha=alpha, xp=np)
    full, expected = active_topic_batch(inputs, counts, gamma, n_active, 3)
    want = np.zeros((n_topics, n_words))
    for d in range(n_docs):
        active = np.argsort(-gamma[d])[:n_active]
        weights = np.exp(digamma(full[d, active]) - digamma(full[d].sum()))
        for j in range(counts.indptr[d], counts.indptr[d + 1]):
            w = counts.indices[j]
            want[active, w] += counts.data[j] * weights / (weights @ topics[active, w])
    assert np.allclose(expected, want, rtol=1e-10, atol=1e-12)
