"""CPU-side parts of bench/gpu_check.py (the GPU parts need a CUDA device)."""
import numpy as np
import pytest

from gpu.backend import gpu_available
from gpu.synthetic import make_lda_corpus
from tests.bench_scripts import load_bench_script


@pytest.fixture(scope="module")
def gpu_check():
    return load_bench_script("gpu_check")


def test_exits_cleanly_without_a_gpu(gpu_check, capsys):
    if gpu_available():
        pytest.skip("a GPU is present; the no-GPU path is not taken")
    assert gpu_check.main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_parity_l1_matches_permuted_topics(gpu_check):
    topics = np.random.default_rng(0).dirichlet(np.ones(50), size=4)
    assert gpu_check.parity_l1(topics, topics[[2, 0, 3, 1]]) == 0.0
    shifted = topics.copy()
    shifted[0, :2] += [0.01, -0.01]
    assert gpu_check.parity_l1(topics, shifted) == pytest.approx(0.02)


def test_parity_report_on_the_cpu_backend(gpu_check):
    counts = make_lda_corpus(1500, 200, 4, doc_length=50, seed=2).counts
    worst, met, line = gpu_check.parity_report(counts, 4, "float64", gpu_backend="numpy")
    assert worst == 0.0 and met and "met" in line


def test_junk_refit_parity_report_on_the_cpu_backend(gpu_check):
    from gpu.synthetic import with_junk_documents

    counts = with_junk_documents(make_lda_corpus(4000, 400, 10, 2.0, 80.0, seed=10).counts)
    worst, met, line = gpu_check.parity_report(counts, 4, "float64", gpu_backend="numpy", refit_extra_components=5,
                                               n_krylov_blocks=5)
    assert worst == 0.0 and met and "junk refit CPU True, numpy True" in line


def test_refine_parity_report_on_the_host(gpu_check):
    from gpu import fit_spectral_lda

    counts = make_lda_corpus(400, 60, 4, seed=3).counts.astype(np.float64)
    start = fit_spectral_lda(counts[:320], 4, 1.0, seed=0, backend="numpy")
    worst, met, line = gpu_check.refine_parity_report(counts[:320], counts[320:], start.topic_word, start.alpha)
    assert worst == 0.0 and met and "refinement parity float64 (4 sweeps, k=4, alpha polya)" in line
