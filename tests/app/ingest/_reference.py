"""Brute-force reference tokenization and counting, written independently of app.ingest
(character-by-character loop, Counter, dense matrices) to check it against."""
from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter

import numpy as np

from app.ingest import ENGLISH_STOP_WORDS, TextOptions


def _is_word_char(ch: str) -> bool:
    return ch != "_" and (ch.isalnum() or unicodedata.category(ch).startswith("M"))


def reference_tokens(text: str, options: TextOptions) -> list[str]:
    if options.normalization:
        text = unicodedata.normalize(options.normalization, text)
    if options.lowercase:
        text = text.lower()
    words, current = [], ""
    for ch in text + " ":
        if _is_word_char(ch):
            current += ch
        elif current:
            words.append(current)
            current = ""
    stop = set()
    if options.stop_words == "english":
        stop |= set(ENGLISH_STOP_WORDS)
    stop |= {w.lower() for w in options.extra_stop_words}
    kept = []
    for word in words:
        ok = len(word) >= options.min_token_length and not (options.drop_numbers and word.isnumeric()) and word.lower() not in stop
        kept.append(word if ok else None)
    out = [w for w in kept if w is not None]
    if options.bigrams:
        out += [f"{a}_{b}" for a, b in zip(kept, kept[1:]) if a is not None and b is not None]
    return out


def reference_corpus(texts: list[str], options: TextOptions) -> tuple[np.ndarray, list[str], list[int]]:
    """Dense counts (D, V) over kept documents, sorted vocabulary, kept input indices."""
    bags = [Counter(reference_tokens(t, options)) for t in texts]
    n_with = sum(1 for b in bags if b)
    df, tf = Counter(), Counter()
    for bag in bags:
        df.update(bag.keys())
        tf.update(bag)
    lo = options.min_df if isinstance(options.min_df, int) else math.ceil(options.min_df * n_with)
    hi = options.max_df if isinstance(options.max_df, int) else math.floor(options.max_df * n_with + 1e-9)
    vocab = [w for w in df if lo <= df[w] <= hi and ("_" not in w or not options.bigrams or df[w] >= options.bigram_min_df)]
    if options.max_vocab is not None and len(vocab) > options.max_vocab:
        vocab = sorted(vocab, key=lambda w: (-tf[w], w))[: options.max_vocab]
    vocab = sorted(vocab)
    rows, kept = [], []
    for i, bag in enumerate(bags):
        row = [bag.get(w, 0) for w in vocab]
        if any(row):
            rows.append(row)
            kept.append(i)
    return np.array(rows, dtype=np.int64).reshape(len(rows), len(vocab)), vocab, kept


def jsonb(value) -> bytes:
    return json.dumps(value).encode("utf-8")
