"""The worker's memory estimate follows the spectral start the estimator actually runs."""
from __future__ import annotations

from gpu.estimator import BARE_START_OPTIONS, REFINED_START_OPTIONS
from gpu.spectral.spectral_fit import DENSE_TENSOR_MAX_COMPONENTS as ENGINE_DENSE_MAX
from workers.fit_memory import BARE_START, DENSE_TENSOR_MAX_COMPONENTS, REFINED_START, estimate_fit_bytes


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
