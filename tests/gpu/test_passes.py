"""Row blocks, threaded passes and the block-independent sketch."""
import numpy as np
import pytest
import scipy.sparse as sp

from gpu.spectral.moments import sketch_assignments
from gpu.passes import row_blocks, row_slice, run_pass


@pytest.mark.parametrize("n_rows,n_threads,block_rows", [(1, 2, None), (10, 2, None), (200_001, 2, None), (50, 1, 7)])
def test_row_blocks_cover_the_rows_once(n_rows, n_threads, block_rows):
    blocks = row_blocks(n_rows, n_threads, block_rows)
    assert blocks[0][0] == 0 and blocks[-1][1] == n_rows
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert all(stop > start for start, stop in blocks)
    if block_rows is None and n_rows >= n_threads:
        assert len(blocks) % n_threads == 0


def test_row_slice_is_a_view_with_the_same_rows():
    X = sp.random(30, 8, density=0.4, format="csr", random_state=0)
    part = row_slice(X, 5, 17)
    np.testing.assert_array_equal(part.toarray(), X[5:17].toarray())
    assert np.shares_memory(part.data, X.data)


def test_run_pass_sums_in_block_order_whatever_the_threads():
    blocks = row_blocks(1000, 2, 37)
    values = np.random.default_rng(0).standard_normal(1000) * 1e8

    def partial(start, stop):
        return (values[start:stop].sum(), np.arange(start, stop).sum())

    single = run_pass(partial, blocks, n_threads=1, stage="t")
    threaded = run_pass(partial, blocks, n_threads=3, stage="t")
    assert single == threaded and single[1] == sum(range(1000))


def test_sketch_does_not_depend_on_blocking():
    whole = sketch_assignments(9, 0, 10_000, 50)
    parts = [sketch_assignments(9, start, stop, 50) for start, stop in [(0, 3000), (3000, 4097), (4097, 10_000)]]
    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(whole[1], np.concatenate([p[1] for p in parts]))
    assert set(np.unique(whole[1])) == {-1.0, 1.0} and whole[0].max() < 50
