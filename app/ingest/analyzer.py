"""Text -> tokens: Unicode normalization, lowercasing, word splitting and token filtering
as set by :class:`TextOptions` (the reference semantics; app.ingest.counting applies them
to whole chunks, with an exact ASCII fast path)."""
from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np

from app.ingest.options import TextOptions
from app.ingest.stopwords import ENGLISH_STOP_WORDS

BIGRAM_JOINER = "_"


# Planes holding combining marks (categories M*): the BMP, the SMP and plane 14 (variation
# selectors); planes 2-3 are ideographs (letters), 15-16 private use. Scanning only these
# keeps building the pattern cheap in every process that tokenizes.
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
