"""Text -> tokens -> per-document term counts: the one tokenizer used both to build a
corpus and to vectorize new documents for inference (same :class:`TextOptions`, same code).
"""
from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import scipy.sparse as sp

from app.ingest.options import TextOptions
from app.ingest.stopwords import ENGLISH_STOP_WORDS

BIGRAM_JOINER = "_"


# Planes holding combining marks (categories M*): the BMP, the SMP and plane 14 (variation
# selectors); planes 2-3 are ideographs (letters), 15-16 private use. Scanning only these
# keeps building the pattern cheap in every worker process.
_MARK_PLANES = ((0x0000, 0x1FFFF), (0xE0000, 0xE0FFF))
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def _mark_ranges(low: int, high: int) -> list[tuple[int, int]]:
    ranges, start = [], None
    for code in range(low, high + 2):
        is_mark = code <= high and unicodedata.category(chr(code))[0] == "M"
        if is_mark and start is None:
            start = code
        elif not is_mark and start is not None:
            ranges.append((start, code - 1))
            start = None
    return ranges


@functools.lru_cache(maxsize=1)
def word_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(pattern for text without astral characters, pattern for any text).

    A word is a run of Unicode letters and digits (``\\w``; ``_`` is replaced by a space
    before matching) and combining marks, so words of scripts written with combining vowel
    signs stay whole. Astral mark ranges make the character class several times slower,
    so they are only used on the rare texts that contain astral characters.
    """
    ranges = [r for low, high in _MARK_PLANES for r in _mark_ranges(low, high)]
    bmp = "".join(f"\\u{a:04x}-\\u{min(b, 0xFFFF):04x}" for a, b in ranges if a <= 0xFFFF)
    astral = "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges if a > 0xFFFF)
    return re.compile(f"[\\w{bmp}]+"), re.compile(f"[\\w{bmp}{astral}]+")


def find_words(text: str) -> list[str]:
    """Words of an already prepared text (see :func:`word_patterns`)."""
    fast, full = word_patterns()
    if text.isascii() or not _ASTRAL.search(text):
        return fast.findall(text)
    return full.findall(text)


class Analyzer:
    """Applies :class:`TextOptions` to one text at a time.

    ``prepare`` normalizes and lowercases; ``raw_tokens`` splits into words; ``keep`` says
    whether a word survives length, number and stop-word filtering.
    """

    def __init__(self, options: TextOptions):
        self.options = options
        stop: set[str] = set(ENGLISH_STOP_WORDS) if options.stop_words == "english" else set()
        stop.update(options.extra_stop_words)
        if options.normalization:
            stop = {unicodedata.normalize(options.normalization, w) for w in stop}
        self._stop = frozenset(w.lower() for w in stop) if options.lowercase else frozenset(stop)

    def prepare(self, text: str) -> str:
        options = self.options
        if options.normalization:
            text = unicodedata.normalize(options.normalization, text)
        if options.lowercase:
            text = text.lower()
        return text.replace("_", " ")

    def raw_tokens(self, text: str) -> list[str]:
        return find_words(self.prepare(text))

    def keep(self, token: str) -> bool:
        options = self.options
        if len(token) < options.min_token_length:
            return False
        if options.drop_numbers and token.isnumeric():
            return False
        key = token if options.lowercase else token.lower()
        return key not in self._stop

    def tokens(self, text: str) -> list[str]:
        """Kept tokens of one text in order, then its bigrams if enabled (for display/debug)."""
        raw = self.raw_tokens(text)
        kept = [t if self.keep(t) else None for t in raw]
        out = [t for t in kept if t is not None]
        if self.options.bigrams:
            out += [a + BIGRAM_JOINER + b for a, b in zip(kept, kept[1:]) if a is not None and b is not None]
        return out


class _TermIds(dict):
    """token -> local term id, assigning ids on first sight; rejected tokens map to -1.

    Looking known tokens up through ``dict.__getitem__`` keeps the per-token loop in C;
    Python runs only once per distinct token (``__missing__``).
    """

    def __init__(self, keep: Callable[[str], bool]):
        super().__init__()
        self._keep = keep
        self.terms: list[str] = []

    def __missing__(self, token: str) -> int:
        if self._keep(token):
            term_id = len(self.terms)
            self.terms.append(token)
        else:
            term_id = -1
        self[token] = term_id
        return term_id


@dataclass
class ChunkCounts:
    """Term counts of a chunk of documents against the chunk's own term list.

    counts: int32 CSR (n_docs, len(terms)), indices sorted within rows.
    terms: local vocabulary (position = column).
    """

    counts: sp.csr_matrix
    terms: list[str]


# Separates documents joined into one string so one regex call tokenizes a whole chunk.
# Upper case, so it cannot occur in lowercased text; it maps to term id -2.
DOC_BREAK = "ZZDOCBREAKZZ"
_BREAK_ID = -2


def count_chunk(texts: Sequence[str], options: TextOptions) -> ChunkCounts:
    """Tokenize ``texts`` (n,) and count terms per document -> ChunkCounts (n, n_terms)."""
    analyzer = Analyzer(options)
    if options.lowercase:
        joined = f" {DOC_BREAK} ".join(map(analyzer.prepare, texts))
        return count_prepared(joined, len(texts), options, analyzer)
    token_lists = [find_words(analyzer.prepare(text)) for text in texts]
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    docs = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    return _count_tokens(chain.from_iterable(token_lists), int(lengths.sum()), docs, len(texts), options, analyzer)


def count_prepared(joined: str, n_docs: int, options: TextOptions, analyzer: Analyzer) -> ChunkCounts:
    """Count ``n_docs`` prepared (normalized, lowercased) documents joined by DOC_BREAK."""
    tokens = find_words(joined)
    del joined
    return _count_tokens(tokens, len(tokens), None, n_docs, options, analyzer)


def _count_tokens(tokens, n_tokens: int, docs: np.ndarray | None, n_docs: int, options: TextOptions,
                  analyzer: Analyzer) -> ChunkCounts:
    """tokens: iterable of n_tokens words; docs (n_tokens,) their document, or None when
    documents are delimited by DOC_BREAK tokens."""
    term_ids = _TermIds(analyzer.keep)
    if docs is None:
        term_ids[DOC_BREAK] = _BREAK_ID
    ids = np.fromiter(map(term_ids.__getitem__, tokens), dtype=np.int64, count=n_tokens)
    if docs is None:
        docs = np.cumsum(ids == _BREAK_ID)
    terms = term_ids.terms
    kept = ids >= 0
    if options.bigrams and n_tokens > 1:
        pair = kept[:-1] & kept[1:] & (docs[:-1] == docs[1:])
        first, second = ids[:-1][pair], ids[1:][pair]
        pair_docs = docs[:-1][pair]
        n_unigrams = max(len(terms), 1)
        keys, inverse = np.unique(first * n_unigrams + second, return_inverse=True)
        terms = terms + [terms[int(k) // n_unigrams] + BIGRAM_JOINER + terms[int(k) % n_unigrams] for k in keys]
        ids = np.concatenate([ids[kept], len(term_ids.terms) + inverse.reshape(-1)])
        docs = np.concatenate([docs[kept], pair_docs])
    else:
        ids, docs = ids[kept], docs[kept]
    counts = sp.csr_matrix(
        (np.ones(len(ids), dtype=np.int32), (docs, ids)),
        shape=(n_docs, len(terms)),
        dtype=np.int32,
    )
    counts.sum_duplicates()
    return ChunkCounts(counts=counts, terms=terms)


def vectorize_texts(texts: Sequence[str], vocabulary: Sequence[str] | dict, options: TextOptions) -> sp.csr_matrix:
    """Count ``texts`` against a stored vocabulary with the corpus' own tokenizer.

    Parameters: texts (n,); vocabulary: term list (position = column) or {term: column};
    options: the corpus' TextOptions. Unknown words are ignored.
    Returns int32 CSR (n, V), V = len(vocabulary).
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, got a single string")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{index}] is {type(text).__name__}, expected str")
    if isinstance(vocabulary, dict):
        columns = dict(vocabulary)
        n_columns = (max(columns.values()) + 1) if columns else 0
    else:
        columns = {term: column for column, term in enumerate(vocabulary)}
        n_columns = len(vocabulary)
        if len(columns) != n_columns:
            raise ValueError("vocabulary has duplicate terms")
    chunk = count_chunk(list(texts), options)
    to_column = np.fromiter((columns.get(t, -1) for t in chunk.terms), dtype=np.int64, count=len(chunk.terms))
    return remap_columns(chunk.counts, to_column, n_columns)


def remap_columns(counts: sp.csr_matrix, to_column: np.ndarray, n_columns: int) -> sp.csr_matrix:
    """Move column j of ``counts`` (n, m) to ``to_column[j]`` (m,), dropping columns mapped to
    -1; returns int32 CSR (n, n_columns) with sorted indices (merging columns that collide)."""
    new_indices = to_column[counts.indices] if counts.nnz else np.empty(0, dtype=np.int64)
    keep = new_indices >= 0
    rows = np.repeat(np.arange(counts.shape[0], dtype=np.int64), np.diff(counts.indptr))[keep]
    result = sp.csr_matrix(
        (counts.data[keep].astype(np.int32, copy=False), (rows, new_indices[keep])),
        shape=(counts.shape[0], n_columns),
        dtype=np.int32,
    )
    result.sum_duplicates()
    result.indices = result.indices.astype(np.int32, copy=False)
    result.indptr = result.indptr.astype(np.int32, copy=False) if result.nnz < 2**31 else result.indptr
    return result
