import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest import Analyzer, TextOptions, vectorize_texts
from app.ingest.counting import count_chunk
from tests.app.ingest._reference import reference_tokens

SAMPLES = [
    "The quick brown Fox jumps over the lazy dog; the DOG sleeps.",
    "Numbers 1999 and 42 vanish, but mp3 and 3d stay. snake_case splits.",
    "Café CAFÉ café — naïve façade; ﬁnance (ligature) and ＦＵＬＬ width.",
    "हिन्दी भाषा में शब्द — combining vowel signs stay inside words.",
    "İstanbul ΣΟΦΙΑ σοφία Ωμέγα 東京 タワー",
    "",
    "   \t  ",
    "a I x y z",
]


@pytest.mark.parametrize("options", [
    TextOptions(),
    TextOptions(lowercase=False, stop_words=None, min_token_length=1, drop_numbers=False),
    TextOptions(normalization=None, extra_stop_words=["Fox", "words"], min_token_length=3),
    TextOptions(bigrams=True),
])
def test_tokens_match_reference(options):
    analyzer = Analyzer(options)
    for text in SAMPLES:
        assert analyzer.tokens(text) == reference_tokens(text, options), text


def test_known_tokens():
    tokens = Analyzer(TextOptions()).tokens(SAMPLES[1])
    assert tokens == ["numbers", "vanish", "mp3", "3d", "stay", "snake", "case", "splits"]
    assert Analyzer(TextOptions()).tokens("ﬁnance ＦＵＬＬ") == ["finance", "full"]
    # A Devanagari word with combining vowel signs is one token, not fragments.
    assert Analyzer(TextOptions()).tokens("हिन्दी") == ["हिन्दी"]


def test_bigrams_only_join_adjacent_kept_tokens():
    tokens = Analyzer(TextOptions(bigrams=True)).tokens("New York and the Bank of America, new york")
    assert tokens.count("new_york") == 2
    assert "bank_america" not in tokens and "york_bank" not in tokens
    assert "america_new" in tokens


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=6), st.booleans())
def test_count_chunk_matches_reference_counts(texts, bigrams):
    options = TextOptions(bigrams=bigrams, min_token_length=1)
    chunk = count_chunk(texts, options)
    dense = chunk.counts.toarray()
    assert chunk.counts.indices.dtype == np.int32 and chunk.counts.data.dtype == np.int32
    for row, text in enumerate(texts):
        expected = {}
        for token in reference_tokens(text, options):
            expected[token] = expected.get(token, 0) + 1
        got = {chunk.terms[j]: int(dense[row, j]) for j in np.flatnonzero(dense[row])}
        assert got == expected


def test_vectorize_texts_ignores_unknown_words_and_accepts_dict():
    vocabulary = ["cat", "dog", "fish"]
    counts = vectorize_texts(["Cat dog DOG zebra", "", "fish fish the"], vocabulary, TextOptions())
    assert counts.shape == (3, 3) and counts.dtype == np.int32
    np.testing.assert_array_equal(counts.toarray(), [[1, 2, 0], [0, 0, 0], [0, 0, 2]])
    by_dict = vectorize_texts(["dog fish"], {"fish": 0, "dog": 4}, TextOptions())
    np.testing.assert_array_equal(by_dict.toarray(), [[1, 0, 0, 0, 1]])


def test_vectorize_texts_bad_input():
    with pytest.raises(ValueError, match="single string"):
        vectorize_texts("cat dog", ["cat"], TextOptions())
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        vectorize_texts(["cat", 3], ["cat"], TextOptions())
    with pytest.raises(ValueError, match="duplicate"):
        vectorize_texts(["cat"], ["cat", "cat"], TextOptions())


def test_options_round_trip_and_validation():
    options = TextOptions(min_df=0.01, max_df=50, max_vocab=1000, bigrams=True, extra_stop_words=["foo", " "])
    assert options.extra_stop_words == ["foo"]
    again = TextOptions.model_validate_json(options.model_dump_json())
    assert again == options and isinstance(again.min_df, float) and isinstance(again.max_df, int)
    assert TextOptions.model_validate_json(TextOptions().model_dump_json()) == TextOptions()
    for bad in ({"min_df": 0}, {"min_df": 1.5}, {"max_df": 0.0}, {"min_df": 0.5, "max_df": 0.2},
                {"min_token_length": 0}, {"stop_words": "klingon"}, {"unknown": 1}, {"min_df": True}):
        with pytest.raises(ValueError):
            TextOptions(**bad)


LONG_WORDS = ["abcdefgh", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq", "x" * 40, "supercalifragilistic", "a1b2c3d4e5"]


def _ascii_counts(texts, options):
    chunk = count_chunk(texts, options)
    return {(row, chunk.terms[col]): int(value) for row, col, value in zip(*sp_find(chunk.counts))}


def sp_find(matrix):
    coo = matrix.tocoo()
    return coo.row, coo.col, coo.data


def test_ascii_fast_path_matches_unicode_path_on_long_tokens():
    options = TextOptions(min_token_length=1, bigrams=True)
    texts = [" ".join(LONG_WORDS * 2), "ABCDEFGH abcdefgh", "\x00nul inside\x00 text", "mixed café abcdefghi"]
    expected = {}
    for row, text in enumerate(texts):
        for token in reference_tokens(text, options):
            expected[(row, token)] = expected.get((row, token), 0) + 1
    assert _ascii_counts(texts, options) == expected
    assert _ascii_counts(texts[:2], options) == {k: v for k, v in expected.items() if k[0] < 2}


def test_key_collision_falls_back_to_exact_path(monkeypatch):
    import app.ingest.ascii_tokens as ascii_tokens

    def colliding(codes, starts, lengths):
        first = np.zeros(len(starts), dtype=np.uint64)  # every token in one bucket
        return first, np.arange(len(starts), dtype=np.uint64)

    options = TextOptions(min_token_length=1)
    texts = ["alpha beta alpha", "gamma beta"]
    honest = _ascii_counts(texts, options)
    monkeypatch.setattr(ascii_tokens, "token_keys", colliding)
    assert ascii_tokens.scan_ascii(b"alpha beta") is None
    assert _ascii_counts(texts, options) == honest == {(0, "alpha"): 2, (0, "beta"): 1, (1, "gamma"): 1, (1, "beta"): 1}


def test_token_keys_are_exact_for_short_tokens_and_group_equal_tokens():
    from app.ingest.ascii_tokens import group_keys, scan_ascii, token_keys

    codes = np.frombuffer(b"ab abcdefgh abcdefghi ab", dtype=np.uint8)
    first, second = token_keys(codes, np.array([0, 3, 12, 22]), np.array([2, 8, 9, 2]))
    assert first[0] == first[3] == int.from_bytes(b"ab", "little") and first[1] == int.from_bytes(b"abcdefgh", "little")
    assert second[0] == first[0] and second[2] != first[2]
    representative, inverse = group_keys(first)
    assert inverse[0] == inverse[3] and len(set(inverse.tolist())) == 3 and representative.size == 3
    words, word_of_token, docs = scan_ascii(b"bb aa\x00aa  cc\x00\x00bb")
    assert [words[i] for i in word_of_token] == ["bb", "aa", "aa", "cc", "bb"]
    assert docs.tolist() == [0, 0, 1, 1, 3]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(max_codepoint=127), max_size=60), max_size=6),
       st.booleans(), st.booleans(), st.integers(1, 3))
def test_ascii_texts_match_reference(texts, bigrams, lowercase, min_length):
    options = TextOptions(bigrams=bigrams, lowercase=lowercase, min_token_length=min_length)
    expected = {}
    for row, text in enumerate(texts):
        for token in reference_tokens(text, options):
            expected[(row, token)] = expected.get((row, token), 0) + 1
    assert _ascii_counts(texts, options) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=40))
def test_count_pairs_matches_dense_counting(n_rows, n_columns, pairs):
    from app.ingest.counting import count_pairs

    pairs = [(r % n_rows, c % n_columns) for r, c in pairs]
    dense = np.zeros((n_rows, n_columns), dtype=np.int64)
    for r, c in pairs:
        dense[r, c] += 1
    rows = np.array([r for r, _ in pairs], dtype=np.int64)
    columns = np.array([c for _, c in pairs], dtype=np.int64)
    counts = count_pairs(rows, columns, n_rows, n_columns)
    np.testing.assert_array_equal(counts.toarray(), dense)
    assert counts.indices.dtype == np.int32 and counts.data.dtype == np.int32
    assert all(np.all(np.diff(counts.indices[a:b]) > 0) for a, b in zip(counts.indptr[:-1], counts.indptr[1:]))
