"""CPU-side helpers of bench/quality.py on a tiny synthetic corpus (the real-text run is a bench)."""
import numpy as np
import pytest

from gpu.synthetic import make_lda_corpus
from tests.bench_scripts import load_bench_script


@pytest.fixture(scope="module")
def bench():
    return load_bench_script("quality")


def test_fit_spectral_passes_refine_options_through(bench):
    corpus = make_lda_corpus(400, 120, 4, alpha0=1.0, doc_length=60, seed=2)
    counts = corpus.counts.tocsr()
    topic_word, alpha, seconds, note = bench.fit_spectral(counts, 4, 0, refine=True, refine_options={"max_sweeps": 2, "n_chunks": 2})
    assert topic_word.shape == (4, 120) and alpha.shape == (4,) and seconds > 0
    np.testing.assert_allclose(topic_word.sum(axis=1), 1.0)
    assert note.startswith("variational sweeps=") and int(note.split("=")[1].split()[0]) <= 2


def test_rows_as_token_lists_repeats_each_word_by_its_count(bench):
    import scipy.sparse as sp

    counts = sp.csr_matrix(np.array([[2, 0, 1], [0, 0, 0], [0, 3, 0]]))
    assert bench.rows_as_token_lists(counts) == [[0, 0, 2], [], [1, 1, 1]]


def test_summary_compares_means_over_seeds_with_tomotopy(bench, capsys):
    rows = {name: [(0.10, -6.40, 0.5, 1.0), (0.20, -6.30, 0.5, 3.0)] for name in ("spectral", "spectral+refine", "spectral+cvb0")}
    rows["tomotopy"] = [(0.12, -6.35, 0.6, 10.0), (0.14, -6.33, 0.6, 30.0)]
    bench.print_summary(50, rows)
    out = capsys.readouterr().out
    assert "spectral+refine  over 2 seed(s): npmi +0.1500 (+0.1000..+0.2000), heldout_loglik -6.3500 (-6.4000..-6.3000)" in out
    assert "spectral+refine  vs tomotopy (means over seeds): npmi +0.0200, heldout_loglik -0.0100 nats/word, time ratio 0.100 (targets: gaps >= 0, ratio <= 0.1: MISSED)" in out
