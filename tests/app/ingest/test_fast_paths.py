"""The vectorized pieces of the chunk path against plain per-item Python."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest import chunks
from app.ingest.ascii_tokens import group_keys
from app.ingest.options import TextOptions


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=300), st.booleans())
def test_group_keys_matches_unique(values, spread):
    keys = np.array(values, dtype=np.uint64)
    if spread:  # many distinct keys: several hashing rounds
        keys = keys * np.uint64(0x9E3779B97F4A7C15) + np.arange(keys.size, dtype=np.uint64) // 3
    representative, inverse = group_keys(keys)
    assert representative.size == np.unique(keys).size
    np.testing.assert_array_equal(keys[representative[inverse]], keys)
    assert inverse.min(initial=0) >= 0 and (inverse.max(initial=-1) < representative.size)


def test_group_keys_many_distinct_keys_all_placed():
    keys = np.random.default_rng(0).integers(0, 2**63, size=50_000, dtype=np.uint64)
    keys = np.concatenate([keys, keys[:1000]])
    representative, inverse = group_keys(keys)
    assert representative.size == np.unique(keys).size
    np.testing.assert_array_equal(keys[representative[inverse]], keys)


_LINE = st.text(alphabet=st.sampled_from(list(" \t\r\x0b\x0cab1.\x00é\u00a0\u3000")), max_size=8)


@settings(max_examples=120, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=12))
def test_text_lines_empty_flags_and_counts_match_per_line(lines):
    block = "".join(line + "\n" for line in lines).encode("utf-8")  # blocks end after a line feed
    options = TextOptions(min_token_length=1)
    result = chunks.run_text_lines(block, "f", 1, 0, 1 << 20, options)
    assert result.n_docs == len(lines)
    expected_empty = [not line or line.isspace() for line in lines]
    assert result.empty.tolist() == expected_empty
    per_line = [chunks.run_texts([line], options).chunk for line in lines]
    counts = result.chunk.counts.toarray()
    for row, single in enumerate(per_line):
        got = {result.chunk.terms[j]: int(counts[row, j]) for j in np.flatnonzero(counts[row])}
        dense = single.counts.toarray()[0]
        assert got == {single.terms[j]: int(dense[j]) for j in np.flatnonzero(dense)}


def test_line_number_ids_still_checked_for_duplicates(assert_fails, run_ingest):
    text = b"".join(b"word%d alpha beta\n" % i for i in range(40))
    # Two sources with the same name give the same generated ids.
    assert_fails([("a.txt", text), ("a.txt", text)], r"duplicate document id 'a\.txt:1'", fmt="text", chunk_bytes=64)
    # Explicit ids after generated ones are checked against them.
    clash = b'{"id": "a.txt:2", "text": "alpha"}\n'
    assert_fails([("a.txt", text), ("b.jsonl", clash)], r"duplicate document id 'a\.txt:2'", chunk_bytes=64)
    _, corpus = run_ingest([("a.txt", text), ("b.jsonl", b'{"id": "1", "text": "alpha"}\n')], chunk_bytes=64)
    assert corpus.doc_ids[:3] == ["a.txt:1", "a.txt:2", "a.txt:3"] and corpus.doc_ids[-1] == "1"
    _, corpus = run_ingest([("a.txt", text)], chunk_bytes=64)
    assert corpus.doc_ids == [str(i) for i in range(1, 41)]


def test_first_bad_line_is_reported_across_chunks(assert_fails):
    lines = [b"alpha beta gamma %d" % i for i in range(400)]
    for row in range(150, 170, 2):  # bad lines in consecutive chunks: the first one is named
        lines[row] = b"bad \xff byte %d" % row
    assert_fails([("d.txt", b"\n".join(lines))], r"d\.txt line 151: invalid UTF-8 at byte \d+", chunk_bytes=64)


def test_zip_member_with_empty_name_is_refused(assert_fails):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(""), "alpha beta")
    assert_fails([("d.zip", buffer.getvalue())], r"d\.zip: a member has an empty name")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), max_size=60), st.integers(0, 3))
def test_dropped_counting_matches_row_by_row(rows, offset):
    import collections

    from app.ingest import finalize

    empty_rows = np.array([i for i, (is_empty, _, _) in enumerate(rows) if is_empty], dtype=np.int64)
    had_terms = np.array([had for _, had, _ in rows], dtype=bool)
    empty_text = np.array([False] * offset + [blank for _, _, blank in rows], dtype=bool)
    doc_ids = [f"d{i}" for i in range(offset + len(rows))]
    expected, expected_examples = collections.Counter(), collections.defaultdict(list)
    for row in empty_rows.tolist():
        document = offset + row
        reason = finalize.ALL_PRUNED if had_terms[row] else (finalize.EMPTY_TEXT if empty_text[document] else finalize.NO_TOKENS)
        expected[reason] += 1
        if len(expected_examples[reason]) < 3:
            expected_examples[reason].append(doc_ids[document])
    dropped, examples = collections.Counter(), collections.defaultdict(list)
    original = finalize._MAX_DROPPED_EXAMPLES
    finalize._MAX_DROPPED_EXAMPLES = 3
    try:
        finalize._count_dropped(empty_rows, offset, had_terms, empty_text, doc_ids, dropped, examples)
    finally:
        finalize._MAX_DROPPED_EXAMPLES = original
    assert dropped == expected
    assert list(examples.items()) == list(expected_examples.items())
