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


_HASH_MULTIPLIERS = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0x9E3779B97F4A7C15))
_HASH_SHIFTS = (np.uint64(29), np.uint64(31))
# _BYTE_MASKS[n]: the low n bytes of a little-endian uint64 (n = 0..8).
_BYTE_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def token_keys(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit keys of each token codes[start:start+length] (tokens hold no NUL bytes).

    Tokens are read 8 bytes at a time through an overlapping uint64 view. A token of at
    most 8 bytes is its own first key (exact); longer ones hash their 8-byte blocks, each
    step folding the high bits down (xor-shift) before multiplying, so that differences in
    the top bytes of blocks cannot cancel out. The second key uses another multiplier and
    shift and serves as a collision check.
    """
    padded = np.zeros(codes.size + 16, dtype=np.uint8)
    padded[: codes.size] = codes
    words = np.ndarray(shape=(codes.size + 9,), dtype="<u8", buffer=padded.data, offset=0, strides=(1,))
    first = words[starts] & _BYTE_MASKS[np.minimum(lengths, 8)]
    active = np.flatnonzero(lengths > 8)
    second = first.copy() if active.size else first
    offset = 8
    while active.size:
        remaining = lengths[active] - offset
        block = words[starts[active] + offset] & _BYTE_MASKS[np.minimum(remaining, 8)]
        head, tail = first[active], second[active]
        first[active] = (head ^ (head >> _HASH_SHIFTS[0])) * _HASH_MULTIPLIERS[0] + block
        second[active] = (tail ^ (tail >> _HASH_SHIFTS[1])) * _HASH_MULTIPLIERS[1] + block
        offset += 8
        active = active[remaining > 8]
    return first, second


# Odd multipliers for the multiplicative hashing of group_keys, one per round.
_GROUP_MULTIPLIERS = tuple(np.uint64(m) for m in (
    0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
    0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9,
))


def _sorted_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """group_keys by sorting (the fallback when hashing rounds leave keys unplaced)."""
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.empty(ordered.size, dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(ordered.size, dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return order[starts], inverse


def group_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal keys (n,): (index of one member per group (g,), group of each key (n,)).

    Like np.unique(return_index, return_inverse), in linear time: each round scatters the
    keys into a hash table (multiplicative hashing, a fresh multiplier per round) and keeps
    those that own their slot; keys that lost their slot to another key go to the next
    round. Groups come in no particular order, and any member may represent a group.
    """
    n = keys.size
    inverse = np.empty(n, dtype=np.int64)
    representatives = []
    members: np.ndarray | None = None  # positions of the keys still unplaced (None: all)
    pending, n_groups = keys, 0
    for multiplier in _GROUP_MULTIPLIERS:
        if not pending.size:
            break
        bits = max(pending.size.bit_length() - 2, 8)  # about 2-4 keys per slot at worst
        slots = ((pending * multiplier) >> np.uint64(64 - bits)).astype(np.intp)
        table = np.empty(1 << bits, dtype=np.uint64)  # only written slots are read back
        table[slots] = pending
        owns = table[slots] == pending
        placed = np.arange(n) if members is None else members
        if not owns.all():
            placed, owned_slots = placed[owns], slots[owns]
        else:
            owned_slots = slots
        occupied = np.zeros(1 << bits, dtype=bool)
        occupied[owned_slots] = True
        group_of_slot = np.cumsum(occupied) - (1 - n_groups)
        member_of_slot = np.empty(1 << bits, dtype=np.int64)
        member_of_slot[owned_slots] = placed
        inverse[placed] = group_of_slot[owned_slots]
        representatives.append(member_of_slot[occupied])
        n_groups += representatives[-1].size
        if members is None:
            members = np.arange(n)
        lost = ~owns
        members, pending = members[lost], pending[lost]
    if pending.size:
        first, rest = _sorted_groups(pending)
        inverse[members] = rest + n_groups
        representatives.append(members[first])
    if not representatives:
        return np.empty(0, dtype=np.int64), inverse
    return np.concatenate(representatives), inverse


def scan_ascii(translated: bytes, min_length: int = 1) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Distinct tokens of a translated ASCII blob (tokens: runs of bytes other than space
    and NUL; NUL separates documents) -> (distinct words (g,), word index of each token
    (n,), document number of each token (n,)), or None on a key collision.

    Tokens shorter than ``min_length`` bytes are skipped (the caller would reject them).
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
    if min_length > 1:
        long_enough = lengths >= min_length
        starts, ends, lengths = starts[long_enough], ends[long_enough], lengths[long_enough]
    breaks = np.flatnonzero(codes == 0)
    tokens_before_break = np.searchsorted(starts, breaks)
    per_document = np.diff(tokens_before_break, prepend=0, append=starts.size)
    local_docs = np.repeat(np.arange(breaks.size + 1), per_document)
    first, second = token_keys(codes, starts, lengths)
    representative, inverse = group_keys(first)
    chosen = representative[inverse]
    if not (np.array_equal(lengths[chosen], lengths) and np.array_equal(second[chosen], second)):
        return None
    if not representative.size:
        return [], inverse, local_docs
    return _words_at(codes, starts[representative], lengths[representative]), inverse, local_docs


def _words_at(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[str]:
    """The tokens codes[start:start+length] (g,) as str, gathered into one space-separated
    buffer with NumPy and split at C speed."""
    sizes = lengths + 1
    out_starts = np.cumsum(sizes) - sizes
    positions = np.arange(int(sizes.sum())) - np.repeat(out_starts - starts, sizes)
    joined = np.take(codes, positions, mode="clip")
    joined[out_starts + lengths] = 32
    return joined[:-1].tobytes().decode("ascii").split(" ")
