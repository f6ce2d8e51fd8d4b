"""ASCII fast path of the tokenizer: bytes.translate + NumPy instead of a regex and a
Python loop per token. On ASCII text it yields exactly the tokens of the Unicode path
(NFKC is the identity there and lowercasing folds A-Z), several times faster.
"""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def ascii_table(lowercase: bool, separator: bytes) -> bytes:
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


def token_keys(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def group_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def scan_ascii(translated: bytes) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Distinct tokens of a translated ASCII blob (tokens: runs of bytes other than space
    and NUL; NUL separates documents) -> (distinct words (g,), word index of each token
    (n,), document number of each token (n,)), or None on a key collision.

    Tokens are grouped by key with NumPy; Python touches each distinct token once. A
    collision is detected by comparing the second key and the length of every token with
    its group's representative (then the caller takes the exact dictionary path).
    """
    codes = np.frombuffer(translated, dtype=np.uint8)
    is_word = np.zeros(codes.size + 2, dtype=bool)
    np.greater(codes, 32, out=is_word[1:-1])  # only letters, digits, space and NUL remain
    edges = np.flatnonzero(is_word[1:] != is_word[:-1])
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    local_docs = np.searchsorted(np.flatnonzero(codes == 0), starts)
    first, second = token_keys(codes, starts, lengths)
    representative, inverse = group_keys(first)
    chosen = representative[inverse]
    if not (np.array_equal(lengths[chosen], lengths) and np.array_equal(second[chosen], second)):
        return None
    if not representative.size:
        return [], inverse, local_docs
    words = b" ".join([translated[a:b] for a, b in zip(starts[representative].tolist(), ends[representative].tolist())])
    return words.decode("ascii").split(" "), inverse, local_docs
