"""The count matrix of a stored corpus (format 2): a CSR matrix (D, V) as three .npy files.

    indptr.npy    (D + 1,) int32 (int64 past 2**31 entries): row starts
    indices.npy   (nnz,) int32: the column of each entry, sorted within rows
    data.npy      (nnz,) int32: its count

The indices and data files are created at their full size first and then filled range by
range (:class:`CountsTarget`), chunk by chunk, so the builder never copies the entries of
the whole matrix into one array.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from app.artifacts.artifact_files import ArtifactCorrupt

INDPTR, INDICES, DATA = "indptr.npy", "indices.npy", "data.npy"
_ENTRY = np.dtype("<i4")


@dataclass(frozen=True)
class CountsTarget:
    """indices.npy and data.npy of a folder, created at their final length; entries
    [start, stop) of the matrix lie at ``offset + 4 * start`` of each file."""

    indices: Path
    data: Path
    offset: int  # .npy header length (the same for both files)

    @classmethod
    def create(cls, folder: Path, indptr: np.ndarray) -> CountsTarget:
        """Write indptr (D + 1,) and create the indices and data files for indptr[-1]
        entries (their content is written later through :meth:`put`)."""
        folder = Path(folder)
        np.save(folder / INDPTR, indptr)
        nnz = int(indptr[-1])
        offsets = {_create_array_file(folder / name, nnz) for name in (INDICES, DATA)}
        (offset,) = offsets
        return cls(folder / INDICES, folder / DATA, offset)

    def put(self, start: int, indices: np.ndarray, data: np.ndarray) -> None:
        """Write entries start .. start + n: indices (n,) and data (n,), any integer dtype
        (stored as int32)."""
        for path, values in ((self.indices, indices), (self.data, data)):
            with open(path, "r+b") as file:
                file.seek(self.offset + _ENTRY.itemsize * start)
                file.write(np.ascontiguousarray(values, dtype=_ENTRY).data)


def _create_array_file(path: Path, length: int) -> int:
    """An .npy file for an int32 array (length,) with its content still to be written
    (zeros); returns the header length."""
    header = {"descr": np.lib.format.dtype_to_descr(_ENTRY), "fortran_order": False, "shape": (length,)}
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        offset = file.tell()
        file.truncate(offset + _ENTRY.itemsize * length)
    return offset


def write_counts(folder: Path, counts: sp.csr_matrix) -> None:
    """Store an in-memory CSR matrix (int32 indices and data, sorted indices)."""
    CountsTarget.create(folder, counts.indptr).put(0, counts.indices, counts.data)


def read_counts(folder: Path, shape: tuple[int, int]) -> sp.csr_matrix:
    """The stored CSR matrix of ``shape``; raises ArtifactCorrupt if the files do not fit it."""
    folder = Path(folder)
    indptr, indices, data = (np.load(folder / name, allow_pickle=False) for name in (INDPTR, INDICES, DATA))
    if indptr.ndim != 1 or indptr.size != shape[0] + 1 or indices.shape != data.shape or indptr[-1] != indices.size:
        raise ArtifactCorrupt(f"corpus {folder}: count arrays do not form a {shape[0]} x {shape[1]} CSR matrix")
    if indices.dtype != np.int32 or data.dtype != np.int32:
        raise ArtifactCorrupt(f"corpus {folder}: counts must be int32 (found {indices.dtype}, {data.dtype})")
    return sp.csr_matrix((data, indices, indptr), shape=shape)
