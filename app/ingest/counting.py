"""Per-chunk term counting: documents -> int32 CSR counts against the chunk's own terms.

Used for corpus building and for vectorizing new documents, so both
see exactly the same tokens.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat

import numpy as np
import scipy.sparse as sp

from app.ingest.analyzer import BIGRAM_JOINER, Analyzer, find_words
from app.ingest.ascii_tokens import ascii_table, scan_ascii
from app.ingest.options import TextOptions

# Documents joined into one string are tokenized by one call. In Unicode text they are
# separated by DOC_BREAK, upper case so it cannot occur in lowercased text; in ASCII bytes
# by a NUL byte, which the translation tables below turn into a token of its own.
DOC_BREAK = "ZZDOCBREAKZZ"
ASCII_BREAK = b"\x00"
_BREAK_ID = -2


class _TermIds(dict):
    """token -> local term id, assigning ids on first sight; rejected tokens map to -1.

    Looking known tokens up through ``dict.get`` keeps the per-token loop in C; unseen
    tokens are filtered and assigned in bulk (:meth:`lookup`, :meth:`ids_of`), or one at
    a time through ``__missing__`` on the exact fallback path.
    """

    def __init__(self, keep: Callable[[str], bool], keep_mask: Callable[[list[str]], np.ndarray]):
        super().__init__()
        self._keep = keep
        self._keep_mask = keep_mask
        self.terms: list[str] = []

    def ids_of(self, words: list[str], keep_mask: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Ids of distinct ``words`` (n,), assigning new ones in bulk -> int64 (n,)."""
        known = np.fromiter(map(self.get, words, repeat(-3)), dtype=np.int64, count=len(words))
        fresh = np.flatnonzero(known == -3)
        if fresh.size:
            new_words = [words[i] for i in fresh.tolist()]
            kept = keep_mask(new_words)
            new_ids = np.full(fresh.size, -1, dtype=np.int64)
            new_ids[kept] = len(self.terms) + np.arange(int(kept.sum()))
            self.terms.extend(compress(new_words, kept.tolist()))
            self.update(zip(new_words, new_ids.tolist()))
            known[fresh] = new_ids
        return known

    def lookup(self, tokens: list[str]) -> np.ndarray:
        """Ids of ``tokens`` (n,) in order (repeats allowed), new distinct ones assigned in
        bulk -> int64 (n,)."""
        ids = np.fromiter(map(self.get, tokens, repeat(-3)), dtype=np.int64, count=len(tokens))
        fresh = np.flatnonzero(ids == -3)
        if fresh.size:
            fresh_tokens = [tokens[i] for i in fresh.tolist()]
            distinct = list(dict.fromkeys(fresh_tokens))
            self.ids_of(distinct, self._keep_mask)
            ids[fresh] = np.fromiter(map(self.__getitem__, fresh_tokens), dtype=np.int64, count=fresh.size)
        return ids

    def __missing__(self, token: str) -> int:
        if self._keep(token):
            term_id = len(self.terms)
            self.terms.append(token)
        else:
            term_id = -1
        self[token] = term_id
        return term_id


class _AsciiTermIds(dict):
    """bytes token -> the id its text has in ``text_ids`` (the ASCII fast path)."""

    def __init__(self, text_ids: _TermIds):
        super().__init__()
        self._text_ids = text_ids
        self[ASCII_BREAK] = _BREAK_ID

    def __missing__(self, token: bytes) -> int:
        term_id = self[token] = self._text_ids[token.decode("ascii")]
        return term_id


@dataclass
class ChunkCounts:
    """Term counts of a chunk of documents against the chunk's own term list.

    counts: int32 CSR (n_docs, len(terms)), indices sorted within rows.
    terms: local vocabulary (position = column).
    """

    counts: sp.csr_matrix
    terms: list[str]


class ChunkTokenizer:
    """Counts documents of one chunk into a shared local term table.

    Documents are added in groups (:meth:`add_ascii` for ASCII bytes joined by a
    separator byte, :meth:`add_texts` for any str); :meth:`counts` assembles the CSR.
    """

    def __init__(self, options: TextOptions, n_docs: int):
        self.options = options
        self.analyzer = Analyzer(options)
        self.n_docs = n_docs
        self.term_ids = _TermIds(self.analyzer.keep, self.analyzer.keep_mask)
        self._ascii_ids = _AsciiTermIds(self.term_ids)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add_ascii(self, blob: bytes, separator: bytes, rows: np.ndarray) -> None:
        """blob: ASCII documents joined by ``separator`` (a byte absent from them);
        rows (n,): their row numbers in the chunk."""
        translated = blob.translate(ascii_table(self.options.lowercase, separator))
        del blob
        # Short tokens can be skipped early unless they must break bigrams.
        found = scan_ascii(translated, 1 if self.options.bigrams else self.options.min_token_length)
        if found is None:  # key collision (never seen in practice): exact dictionary path
            tokens = translated.replace(ASCII_BREAK, b" \x00 ").split()
            ids = np.fromiter(map(self._ascii_ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))
            self._add_part(ids, rows[np.cumsum(ids == _BREAK_ID)])
            return
        words, word_of_token, local_docs = found
        ids = self.term_ids.ids_of(words, self.analyzer.keep_mask)[word_of_token]
        self._add_part(ids, rows[local_docs])

    def add_texts(self, texts: Sequence[str], rows: np.ndarray) -> None:
        """texts (n,) of any content; rows (n,): their row numbers in the chunk."""
        prepare = self.analyzer.prepare
        if self.options.lowercase:
            tokens = find_words(f" {DOC_BREAK} ".join(map(prepare, texts)))
            self.term_ids[DOC_BREAK] = _BREAK_ID
            ids = self.term_ids.lookup(tokens)
            del self.term_ids[DOC_BREAK]
            self._add_part(ids, rows[np.cumsum(ids == _BREAK_ID)])
            return
        token_lists = [find_words(prepare(text)) for text in texts]
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        ids = self.term_ids.lookup(list(chain.from_iterable(token_lists)))
        self._add_part(ids, np.repeat(rows, lengths))

    def _add_part(self, ids: np.ndarray, docs: np.ndarray) -> None:
        """ids (n_tokens,) term ids with -1 rejected and -2 breaks; docs (n_tokens,) rows."""
        self._parts.append((ids, docs))

    def counts(self) -> ChunkCounts:
        pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if self.options.bigrams:
            for ids, docs in self._parts:
                if ids.size > 1:
                    kept = ids >= 0
                    pair = kept[:-1] & kept[1:] & (docs[:-1] == docs[1:])
                    pairs.append((ids[:-1][pair], ids[1:][pair], docs[:-1][pair]))
        terms = list(self.term_ids.terms)
        all_ids = [ids for ids, _ in self._parts]  # count_pairs skips the negative ones
        all_docs = [docs for _, docs in self._parts]
        if pairs:
            n_unigrams = max(len(terms), 1)
            first = np.concatenate([p[0] for p in pairs])
            second = np.concatenate([p[1] for p in pairs])
            keys, inverse = np.unique(first * n_unigrams + second, return_inverse=True)
            terms += [terms[int(k) // n_unigrams] + BIGRAM_JOINER + terms[int(k) % n_unigrams] for k in keys]
            all_ids.append(len(self.term_ids.terms) + inverse.reshape(-1))
            all_docs.append(np.concatenate([p[2] for p in pairs]))
        ids = np.concatenate(all_ids) if all_ids else np.empty(0, np.int64)
        docs = np.concatenate(all_docs) if all_docs else np.empty(0, np.int64)
        return ChunkCounts(counts=count_pairs(docs, ids, self.n_docs, len(terms)), terms=terms)


def count_pairs(rows: np.ndarray, columns: np.ndarray, n_rows: int, n_columns: int,
                values: np.ndarray | None = None) -> sp.csr_matrix:
    """Occurrences (or the sum of ``values``) of each (row, column) pair (n,) -> int32 CSR
    (n_rows, n_columns) with sorted indices: one sort of combined int64 keys (SIMD)
    instead of COO -> CSR; the column takes the low bits of a key. Pairs with a negative
    column are skipped: their key is negative (OR keeps the sign bit), so they sort first
    and are cut off, instead of being filtered out of the arrays beforehand."""
    shift = _column_bits(n_columns)
    keys = (rows.astype(np.int64) << shift) | columns
    if values is None:
        keys.sort()
    else:
        keys, values = _sort_with_values(keys, values)
    skipped = int(np.searchsorted(keys, 0))
    return _csr_from_sorted_keys(keys[skipped:], None if values is None else values[skipped:], shift, n_rows, n_columns)


def _column_bits(n_columns: int) -> int:
    return max(n_columns - 1, 0).bit_length()


def _csr_from_sorted_keys(keys: np.ndarray, values: np.ndarray | None, shift: int, n_rows: int,
                          n_columns: int) -> sp.csr_matrix:
    """Sorted keys (n,) (row << shift | column) and their values (n,) (None: 1 each) ->
    int32 CSR (n_rows, n_columns), summing the values of equal keys."""
    if keys.size:
        first = np.empty(keys.size, dtype=bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        if values is None:
            data = np.diff(np.append(starts, keys.size)).astype(np.int32)
        else:
            data = (values if starts.size == keys.size else np.add.reduceat(values, starts)).astype(np.int32)
        unique = keys[starts]
    else:
        data, unique = np.empty(0, np.int32), np.empty(0, np.int64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(unique >> shift, minlength=n_rows), out=indptr[1:])
    index_dtype = np.int32 if unique.size < 2**31 and n_columns < 2**31 else np.int64
    counts = sp.csr_matrix((data, (unique & ((1 << shift) - 1)).astype(index_dtype), indptr.astype(index_dtype)),
                           shape=(n_rows, n_columns))
    counts.has_sorted_indices = True
    return counts


def _sort_with_values(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """keys (n,) int64 sorted, with values (n,) (non-negative integers) carried along ->
    (keys, values as int64). Both fit in one int64 in practice (bits of the largest key +
    value bits <= 63): then one plain sort of packed keys (a negative key stays negative
    and comes back intact: shifts are arithmetic), else a stable argsort."""
    if not keys.size:
        return keys, values.astype(np.int64)
    key_bits, value_bits = int(keys.max()).bit_length(), int(values.max()).bit_length()
    if key_bits + value_bits <= 63 and int(values.min()) >= 0:
        packed = (keys << value_bits) | values.astype(np.int64)
        packed.sort()
        return packed >> value_bits, packed & ((1 << value_bits) - 1)
    order = np.argsort(keys, kind="stable")
    return keys[order], values[order].astype(np.int64)


def count_chunk(texts: Sequence[str], options: TextOptions) -> ChunkCounts:
    """Tokenize ``texts`` (n,) and count terms per document -> ChunkCounts (n, n_terms).

    ASCII documents take a bytes fast path (translate + split) that gives exactly the
    tokens of the Unicode path; the others go through :class:`Analyzer`.
    """
    tokenizer = ChunkTokenizer(options, len(texts))
    is_ascii = np.fromiter(map(str.isascii, texts), dtype=bool, count=len(texts))
    ascii_rows, other_rows = np.flatnonzero(is_ascii), np.flatnonzero(~is_ascii)
    if ascii_rows.size:
        ascii_texts = [texts[i] for i in ascii_rows]
        blob = "\x00".join(ascii_texts).encode("ascii")
        if blob.count(ASCII_BREAK) == ascii_rows.size - 1:
            tokenizer.add_ascii(blob, ASCII_BREAK, ascii_rows)
        else:  # some text contains NUL itself: no free separator byte
            other_rows = np.arange(len(texts))
    if other_rows.size:
        tokenizer.add_texts([texts[i] for i in other_rows], other_rows)
    return tokenizer.counts()


def remap_columns(counts: sp.csr_matrix, to_column: np.ndarray, n_columns: int) -> sp.csr_matrix:
    """Move column j of ``counts`` (n, m) to ``to_column[j]`` (m,), dropping columns mapped to
    -1; returns int32 CSR (n, n_columns) with sorted indices (merging columns that collide).

    Entries of dropped columns are skipped by count_pairs (see there)."""
    new_columns = to_column[counts.indices] if counts.nnz else np.empty(0, dtype=np.int64)
    rows = np.repeat(np.arange(counts.shape[0], dtype=np.int64), np.diff(counts.indptr))
    return count_pairs(rows, new_columns, counts.shape[0], n_columns, values=counts.data)
