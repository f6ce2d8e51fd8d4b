"""Passes over documents written as "partial sums over a shard of rows" + "add the partials".

A pass is a function ``partial(start, stop) -> tuple of arrays`` over a row range of the
count matrix. :func:`run_pass` evaluates it over row blocks (on a thread pool on the CPU,
since SciPy sparse products and BLAS release the GIL; in order on the GPU), adds the
partials, and reports progress from the calling thread so that an exception raised by the
progress callback propagates and cancels the blocks not yet started.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence

import scipy.sparse as sp

try:  # optional: only a speed-up
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

Partial = tuple[Any, ...]
# progress(stage, done, total), reported by every long loop of gpu/; its exceptions
# propagate (a job's cancellation raises through it). The one definition of the type.
Progress = Callable[[str, int, int], None] | None

DEFAULT_MAX_BLOCK_ROWS = 65_536
GPU_BLOCK_ROWS = 262_144  # rows per block of a pass on a GPU (fewer, bigger kernels)


def single_threaded_blas(active: bool = True) -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread while our own thread pool parallelises (no oversubscription).

    Small products (the k x k x k tensor, per-block sums) run several times faster on one
    BLAS thread than on contended ones. Uses threadpoolctl when installed; else a no-op.
    """
    if not active or threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def default_threads() -> int:
    """Worker threads for CPU passes: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_block_rows(backend: str, block_rows: int | None = None) -> int | None:
    """Rows per block of a pass: ``block_rows`` when given, else GPU_BLOCK_ROWS on a GPU and
    None (sized by :func:`row_blocks` for the threads) on the host."""
    return block_rows or (GPU_BLOCK_ROWS if backend == "cupy" else None)


def row_blocks(n_rows: int, n_threads: int, block_rows: int | None = None) -> list[tuple[int, int]]:
    """Split ``range(n_rows)`` into contiguous (start, stop) blocks.

    With ``block_rows=None`` the number of blocks is a multiple of ``n_threads`` and each
    block has at most DEFAULT_MAX_BLOCK_ROWS rows, so threads stay evenly loaded.
    """
    if block_rows is None:
        per_thread = max(1, -(-n_rows // DEFAULT_MAX_BLOCK_ROWS))
        n_blocks = max(1, min(n_rows, n_threads * -(-per_thread // max(1, n_threads))))
        block_rows = -(-n_rows // n_blocks)
    return [(start, min(n_rows, start + block_rows)) for start in range(0, n_rows, block_rows)]


def row_slice(X: Any, start: int, stop: int) -> Any:
    """Rows start:stop of a CSR matrix; on the CPU a view of X's arrays (no copy of the data)."""
    if not isinstance(X, sp.csr_matrix | sp.csr_array):
        return X[start:stop]
    lo, hi = int(X.indptr[start]), int(X.indptr[stop])
    # the (data, indices, indptr) constructor copies even with copy=False: set the arrays
    part = sp.csr_matrix((stop - start, X.shape[1]), dtype=X.dtype)
    part.data, part.indices = X.data[lo:hi], X.indices[lo:hi]
    part.indptr = (X.indptr[start : stop + 1] - lo).astype(X.indices.dtype, copy=False)
    return part


def sub_progress(progress: Progress, offset: int, grand_total: int) -> Progress:
    """Progress for one of several passes of a stage: block counts shifted by ``offset`` of
    ``grand_total`` blocks, so the stage reports one increasing count (start reported once)."""
    if progress is None:
        return None

    def report(stage: str, done: int, total: int) -> None:
        if done == 0 and offset > 0:
            return
        progress(stage, offset + done, grand_total)

    return report


def add_partials(total: Partial | None, part: Partial) -> Partial:
    """Element-wise sum of two partial tuples (``None`` is the empty sum)."""
    if total is None:
        return tuple(part)
    return tuple(a + b for a, b in zip(total, part))


def run_pass(
    partial: Callable[[int, int], Partial],
    blocks: Sequence[tuple[int, int]],
    *,
    n_threads: int = 1,
    stage: str,
    progress: Progress = None,
) -> Partial:
    """Sum ``partial(start, stop)`` over ``blocks``; call ``progress(stage, done, total)``.

    The sum is taken in block order, so the result does not depend on thread timing.
    """
    total_blocks = len(blocks)
    if progress is not None:
        progress(stage, 0, total_blocks)
    if n_threads <= 1 or total_blocks <= 1:
        total: Partial | None = None
        for done, (start, stop) in enumerate(blocks, start=1):
            total = add_partials(total, partial(start, stop))
            if progress is not None:
                progress(stage, done, total_blocks)
        assert total is not None
        return total

    results: dict[int, Partial] = {}
    total = None
    next_to_add = 0
    executor = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix=f"pass-{stage}")
    try:
        pending = {executor.submit(partial, start, stop): index for index, (start, stop) in enumerate(blocks)}
        done_count = 0
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                results[index] = future.result()
                done_count += 1
                while next_to_add in results:
                    total = add_partials(total, results.pop(next_to_add))
                    next_to_add += 1
                if progress is not None:
                    progress(stage, done_count, total_blocks)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    assert total is not None
    return total
