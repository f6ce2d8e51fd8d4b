"""The worker's memory estimate follows the spectral start the estimator actually runs."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from gpu.errors import InvalidInput
from gpu.estimator import BARE_START_OPTIONS, REFINED_START_OPTIONS
from gpu.spectral.spectral_fit import DENSE_TENSOR_MAX_COMPONENTS as ENGINE_DENSE_MAX
from workers.fit_memory import (
    BARE_START, DENSE_TENSOR_MAX_COMPONENTS, REFINED_START, check_fit_memory, count_matrix_bytes, estimate_fit_bytes,
)


def test_the_copied_engine_defaults_are_the_engine_s():
    assert REFINED_START == REFINED_START_OPTIONS and BARE_START == BARE_START_OPTIONS
    assert DENSE_TENSOR_MAX_COMPONENTS == ENGINE_DENSE_MAX


def test_a_refined_fit_is_estimated_with_its_wider_start():
    shape = dict(n_docs=10_000, n_words=20_000, nnz=1_000_000, n_topics=50)
    refined, bare = estimate_fit_bytes(**shape, options={}), estimate_fit_bytes(**shape, options={"refine": False})
    # 5 Krylov blocks of k + 5 + 10 columns against 3 blocks of k + 10 (plus two work blocks each)
    krylov_gap = 20_000 * 8 * ((50 + 5 + 10) * (5 + 2) - (50 + 10) * (3 + 2))
    assert refined - bare >= krylov_gap
    assert estimate_fit_bytes(**shape, options={"n_krylov_blocks": 3}) < refined  # an explicit option wins


def test_the_budget_is_for_working_memory_beyond_the_count_matrix():
    """NYTimes scale (D=300k, V=100k, 70.5M nonzeros, k=100) fits the default 2 GiB: its
    estimate less the count matrices (1.7 GB) is under it, the whole estimate is not."""
    nytimes = SimpleNamespace(shape=(300_000, 100_000), nnz=70_532_834)
    total = estimate_fit_bytes(300_000, 100_000, 70_532_834, 100, {})
    working = check_fit_memory(2 << 30, nytimes, 100, {})
    assert working < 2 << 30 < total
    assert total - working == 2 * count_matrix_bytes(300_000, 70_532_834, 8)
    with pytest.raises(InvalidInput, match=r"beyond its count matrices .*FIT_MEMORY_BUDGET"):
        check_fit_memory(working - 1, nytimes, 100, {})
