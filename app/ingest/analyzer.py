"""Text -> tokens -> per-document term counts: the one tokenizer used both to build a
corpus and to vectorize new documents for inference (same :class:`TextOptions`, same code).
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat

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


@functools.lru_cache(maxsize=16)
def _stop_set(stop_words: str | None, extra: tuple[str, ...], normalization: str | None, lowercase: bool) -> frozenset[str]:
    stop: set[str] = set(ENGLISH_STOP_WORDS) if stop_words == "english" else set()
    stop.update(extra)
    if normalization:
        stop = {unicodedata.normalize(normalization, w) for w in stop}
    return frozenset(w.lower() for w in stop) if lowercase else frozenset(stop)


class Analyzer:
    """Applies :class:`TextOptions` to one text at a time.

    ``prepare`` normalizes and lowercases; ``raw_tokens`` splits into words; ``keep`` says
    whether a word survives length, number and stop-word filtering.
    """

    def __init__(self, options: TextOptions):
        self.options = options
        self._stop = _stop_set(options.stop_words, tuple(options.extra_stop_words), options.normalization, options.lowercase)

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

    def keep_mask(self, words: list[str]) -> np.ndarray:
        """Vectorized :meth:`keep` over distinct words -> bool (n,)."""
        options, n = self.options, len(words)
        mask = np.fromiter(map(len, words), dtype=np.int64, count=n) >= options.min_token_length
        if options.drop_numbers:
            mask &= ~np.fromiter(map(str.isnumeric, words), dtype=bool, count=n)
        keys = words if options.lowercase else list(map(str.lower, words))
        mask &= ~np.fromiter(map(self._stop.__contains__, keys), dtype=bool, count=n)
        return mask

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

    def ids_of(self, words: list[str], keep_mask: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Ids of distinct ``words`` (n,), assigning new ones in bulk -> int64 (n,)."""
        known = np.fromiter(map(self.get, words, repeat(-3)), dtype=np.int64, count=len(words))
        fresh = np.flatnonzero(known == -3)
        if fresh.size:
            new_words = [words[i] for i in fresh.tolist()]
            kept = keep_mask(new_words)
            new_ids = np.full(fresh.size, -1, dtype=np.int64)
            new_ids[kept] = len(self.terms) + np.arange(int(kept.sum()))
            self.terms.extend(word for word, keep in zip(new_words, kept.tolist()) if keep)
            self.update(zip(new_words, new_ids.tolist()))
            known[fresh] = new_ids
        return known

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


# Documents joined into one string are tokenized by one call. In Unicode text they are
# separated by DOC_BREAK, upper case so it cannot occur in lowercased text; in ASCII bytes
# by a NUL byte, which the translation tables below turn into a token of its own.
DOC_BREAK = "ZZDOCBREAKZZ"
ASCII_BREAK = b"\x00"
_BREAK_ID = -2


@functools.lru_cache(maxsize=4)
def _ascii_table(lowercase: bool, separator: bytes) -> bytes:
    """bytes.translate table: letters and digits kept (upper case folded if ``lowercase``),
    ``separator`` -> NUL, every other byte -> space. On ASCII text this is exactly the
    Unicode pipeline (NFKC and str.lower are the identity / ASCII folding there)."""
    table = bytearray(b" " * 256)
    for code in range(256):
        char = chr(code)
        if code < 128 and char.isalnum():
            table[code] = ord(char.lower()) if lowercase else code
    table[separator[0]] = 0
    return bytes(table)


_HASH_MULTIPLIERS = (np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15))
# _BYTE_MASKS[n]: the low n bytes of a little-endian uint64 (n = 0..8).
_BYTE_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def _token_hashes(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit keys of each token codes[start:start+length] (tokens hold no NUL bytes).

    Tokens are read 8 bytes at a time through an overlapping uint64 view. A token of at
    most 8 bytes is its own first key (exact); longer ones are polynomial hashes of their
    8-byte blocks. The second key uses another multiplier and serves as a collision check.
    """
    padded = np.zeros(codes.size + 16, dtype=np.uint8)
    padded[: codes.size] = codes
    words = np.ndarray(shape=(codes.size + 9,), dtype="<u8", buffer=padded.data, offset=0, strides=(1,))
    first = words[starts] & _BYTE_MASKS[np.minimum(lengths, 8)]
    second = first.copy()
    active = np.flatnonzero(lengths > 8)
    offset = 8
    with np.errstate(over="ignore"):
        while active.size:
            remaining = lengths[active] - offset
            block = words[starts[active] + offset] & _BYTE_MASKS[np.minimum(remaining, 8)]
            first[active] = first[active] * _HASH_MULTIPLIERS[0] + block
            second[active] = second[active] * _HASH_MULTIPLIERS[1] + block
            offset += 8
            active = active[remaining > 8]
    return first, second


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal keys (n,): (index of one member per group (g,), group of each key (n,)).

    Like np.unique(return_index, return_inverse) but with the default (SIMD) argsort
    instead of a stable one: several times faster, and any member may represent a group.
    """
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.empty(ordered.size, dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(ordered.size, dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return order[starts], inverse


def _hashed_token_ids(translated: bytes, term_ids: "_TermIds", keep_mask) -> tuple[np.ndarray, np.ndarray] | None:
    """Token ids and local document numbers of a translated ASCII blob (tokens: runs of
    bytes other than space and NUL; NUL separates documents), or None on a hash collision.

    Tokens are grouped by hash with NumPy; Python touches each distinct token once.
    A collision is detected by comparing a second hash and the length of every token
    with its group's representative.
    """
    codes = np.frombuffer(translated, dtype=np.uint8)
    is_word = np.zeros(codes.size + 2, dtype=bool)
    np.greater(codes, 32, out=is_word[1:-1])  # only letters, digits, space and NUL remain
    edges = np.flatnonzero(is_word[1:] != is_word[:-1])
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    local_docs = np.searchsorted(np.flatnonzero(codes == 0), starts)
    first, second = _token_hashes(codes, starts, lengths)
    representative, inverse = _group(first)
    chosen = representative[inverse]
    if not (np.array_equal(lengths[chosen], lengths) and np.array_equal(second[chosen], second)):
        return None
    words = b" ".join([translated[a:b] for a, b in zip(starts[representative].tolist(), ends[representative].tolist())])
    unique_ids = term_ids.ids_of(words.decode("ascii").split(" ") if representative.size else [], keep_mask)
    return unique_ids[inverse], local_docs


class ChunkTokenizer:
    """Counts documents of one chunk into a shared local term table.

    Documents are added in groups (:meth:`add_ascii` for ASCII bytes joined by a
    separator byte, :meth:`add_texts` for any str); :meth:`counts` assembles the CSR.
    """

    def __init__(self, options: TextOptions, n_docs: int):
        self.options = options
        self.analyzer = Analyzer(options)
        self.n_docs = n_docs
        self.term_ids = _TermIds(self.analyzer.keep)
        self._ascii_ids = _AsciiTermIds(self.term_ids)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add_ascii(self, blob: bytes, separator: bytes, rows: np.ndarray) -> None:
        """blob: ASCII documents joined by ``separator`` (a byte absent from them);
        rows (n,): their row numbers in the chunk."""
        translated = blob.translate(_ascii_table(self.options.lowercase, separator))
        del blob
        found = _hashed_token_ids(translated, self.term_ids, self.analyzer.keep_mask)
        if found is None:  # hash collision (never seen in practice): exact dictionary path
            tokens = translated.replace(ASCII_BREAK, b" \x00 ").split()
            ids = np.fromiter(map(self._ascii_ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))
            self._add_part(ids, rows[np.cumsum(ids == _BREAK_ID)])
            return
        ids, local_docs = found
        self._add_part(ids, rows[local_docs])

    def add_texts(self, texts: Sequence[str], rows: np.ndarray) -> None:
        """texts (n,) of any content; rows (n,): their row numbers in the chunk."""
        prepare = self.analyzer.prepare
        if self.options.lowercase:
            tokens = find_words(f" {DOC_BREAK} ".join(map(prepare, texts)))
            self.term_ids[DOC_BREAK] = _BREAK_ID
            ids = np.fromiter(map(self.term_ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))
            del self.term_ids[DOC_BREAK]
            self._add_part(ids, rows[np.cumsum(ids == _BREAK_ID)])
            return
        token_lists = [find_words(prepare(text)) for text in texts]
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        ids = np.fromiter(map(self.term_ids.__getitem__, chain.from_iterable(token_lists)), dtype=np.int64, count=int(lengths.sum()))
        self._add_part(ids, np.repeat(rows, lengths))

    def _add_part(self, ids: np.ndarray, docs: np.ndarray) -> None:
        """ids (n_tokens,) term ids with -1 rejected and -2 breaks; docs (n_tokens,) rows."""
        self._parts.append((ids, docs))

    def counts(self) -> ChunkCounts:
        unigrams: list[tuple[np.ndarray, np.ndarray]] = []
        pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for ids, docs in self._parts:
            kept = ids >= 0
            unigrams.append((ids[kept], docs[kept]))
            if self.options.bigrams and ids.size > 1:
                pair = kept[:-1] & kept[1:] & (docs[:-1] == docs[1:])
                pairs.append((ids[:-1][pair], ids[1:][pair], docs[:-1][pair]))
        terms = list(self.term_ids.terms)
        all_ids = [ids for ids, _ in unigrams]
        all_docs = [docs for _, docs in unigrams]
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
        counts = sp.csr_matrix((np.ones(len(ids), dtype=np.int32), (docs, ids)), shape=(self.n_docs, len(terms)), dtype=np.int32)
        counts.sum_duplicates()
        return ChunkCounts(counts=counts, terms=terms)


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
