"""Vectorize new documents against a stored vocabulary with the corpus' own tokenizer."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from app.ingest.counting import count_chunk, remap_columns
from app.ingest.options import TextOptions
from gpu.errors import InvalidInput


def vectorize_texts(texts: Sequence[str], vocabulary: Sequence[str] | dict, options: TextOptions) -> sp.csr_matrix:
    """Count ``texts`` against a stored vocabulary with the corpus' own tokenizer.

    Parameters: texts (n,); vocabulary: term list (position = column) or {term: column};
    options: the corpus' TextOptions. Unknown words are ignored.
    Returns int32 CSR (n, V), V = len(vocabulary).
    """
    if isinstance(texts, str):
        raise InvalidInput("texts must be a sequence of strings, got a single string")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(f"texts[{index}] is {type(text).__name__}, expected str")
    if isinstance(vocabulary, dict):
        columns = dict(vocabulary)
        n_columns = (max(columns.values()) + 1) if columns else 0
    else:
        columns = {term: column for column, term in enumerate(vocabulary)}
        n_columns = len(vocabulary)
        if len(columns) != n_columns:
            raise InvalidInput("vocabulary has duplicate terms")
    chunk = count_chunk(list(texts), options)
    to_column = np.fromiter((columns.get(t, -1) for t in chunk.terms), dtype=np.int64, count=len(chunk.terms))
    return remap_columns(chunk.counts, to_column, n_columns)
