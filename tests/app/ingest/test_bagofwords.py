import gzip
import io

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from app.ingest import IngestLimits, TextOptions
from tests.app.ingest._reference import jsonb

VOCAB = ["apple", "banana", "cherry", "date"]
DENSE = np.array([[1, 0, 3, 0], [0, 0, 0, 0], [2, 5, 0, 1], [0, 1, 0, 0]])


def uci_docword(dense=DENSE) -> bytes:
    rows, cols = np.nonzero(dense)
    lines = [f"{dense.shape[0]}", f"{dense.shape[1]}", f"{len(rows)}"]
    lines += [f"{r + 1} {c + 1} {dense[r, c]}" for r, c in zip(rows, cols)]
    return ("\n".join(lines) + "\n").encode()


def mm_bytes(dense=DENSE, field="integer") -> bytes:
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, sp.coo_matrix(dense), field=field)
    return buffer.getvalue()


def npz_bytes(matrix) -> bytes:
    buffer = io.BytesIO()
    sp.save_npz(buffer, matrix)
    return buffer.getvalue()


def vocab_txt(vocab=VOCAB) -> bytes:
    return ("\n".join(vocab) + "\n").encode()


def check(corpus, info):
    np.testing.assert_array_equal(corpus.counts.toarray(), DENSE[[0, 2, 3]])
    assert corpus.vocabulary == VOCAB and corpus.doc_ids == ["1", "3", "4"]
    assert info.stats["dropped"]["no_tokens"] == 1
    assert corpus.counts.indices.dtype == np.int32 and corpus.counts.data.dtype == np.int32


@pytest.mark.parametrize("sources", [
    [("docword.test.txt", uci_docword()), ("vocab.test.txt", vocab_txt())],
    [("vocab.test.txt", vocab_txt()), ("docword.test.txt", uci_docword())],
    [("docword.test.txt.gz", gzip.compress(uci_docword())), ("vocab.test.txt", vocab_txt())],
    [("m.mtx", mm_bytes()), ("vocab.json", jsonb(VOCAB))],
    [("m.mtx", mm_bytes(field="real")), ("terms.txt", vocab_txt())],
    [("m.npz", npz_bytes(sp.csr_matrix(DENSE))), ("vocab.txt", vocab_txt())],
    [("m.npz", npz_bytes(sp.csc_matrix(DENSE.astype(np.float32)))), ("vocab.txt", vocab_txt())],
])
def test_bag_of_words_formats(run_ingest, sources):
    info, corpus = run_ingest(sources, options=TextOptions())
    check(corpus, info)


def test_explicit_format_and_pruning(run_ingest):
    info, corpus = run_ingest([("counts", mm_bytes()), ("vocab", vocab_txt())], fmt="mm", options=TextOptions(min_df=2))
    assert corpus.vocabulary == ["apple", "banana"]
    np.testing.assert_array_equal(corpus.counts.toarray(), [[1, 0], [2, 5], [0, 1]])
    assert info.stats["pruned_terms"]["min_df"] == 2


def test_pattern_matrix_market(run_ingest):
    data = b"%%MatrixMarket matrix coordinate pattern general\n% comment\n2 4 3\n1 1\n2 2\n2 4\n"
    _, corpus = run_ingest([("p.mtx", data), ("vocab.txt", vocab_txt())])
    # "cherry" never occurs: terms below min_df (here 1) leave the vocabulary.
    assert corpus.vocabulary == ["apple", "banana", "date"]
    np.testing.assert_array_equal(corpus.counts.toarray(), [[1, 0, 0], [0, 1, 1]])


@pytest.mark.parametrize("matrix, vocab, match", [
    (b"2\n4\n1\n1 1 1\n", vocab_txt(VOCAB[:3]), r"4 terms declared but the vocabulary has 3"),
    (b"2\n4\n2\n1 1 1\n", vocab_txt(), r"header declares 2 entries, found 1"),
    (b"2\n4\n1\n3 1 1\n", vocab_txt(), r"document index 3 outside 1\.\.2"),
    (b"2\n4\n1\n1 9 1\n", vocab_txt(), r"term index 9 outside 1\.\.4"),
    (b"2\n4\n2\n1 1 1\n2 2\n", vocab_txt(), r"docword.txt line 5: expected 3 numbers, found 2"),
    (b"2\n4\n1\n1 1 x\n", vocab_txt(), r"docword.txt line 4: not a number"),
    (b"2\n4\n1\n1 1 -3\n", vocab_txt(), r"non-negative"),
    (b"two\n4\n1\n", vocab_txt(), r"docword.txt line 1: expected D"),
    (b"0\n4\n0\n", vocab_txt(), r"empty corpus"),
    (b"2\n4\n1\n1 1 1\n", b"apple\napple\nc\nd\n", r"vocab.txt line 2: term 'apple' repeats"),
    (b"2\n4\n1\n1 1 1\n", b"apple\n\nc\nd\n", r"vocab.txt line 2: vocabulary terms must be non-empty"),
    (b"2\n4\n1\n1 1 1\n", b"", r"empty vocabulary"),
])
def test_bad_uci(assert_fails, matrix, vocab, match):
    assert_fails([("docword.txt", matrix), ("vocab.txt", vocab)], match)


@pytest.mark.parametrize("matrix, match", [
    (b"%%MatrixMarket matrix array integer general\n2 4\n", r"only 'coordinate"),
    (b"%%MatrixMarket matrix coordinate integer symmetric\n4 4 0\n", r"only 'coordinate"),
    (b"%%MatrixMarket matrix coordinate real general\n1 4 1\n1 1 0.5\n", r"counts must be integers"),
    (b"%%MatrixMarket matrix coordinate real general\n1 4 1\n1 1 nan\n", r"NaN"),
    (b"%%MatrixMarket matrix coordinate integer general\n", r"missing size line"),
    (b"%%MatrixMarket matrix coordinate integer general\n1 4\n", r"expected 'rows columns entries'"),
    # scipy.io.mmread's own errors keep the file and line:
    (b"%%MatrixMarket matrix coordinate integer general\n2 4 2\n1 1 1\n2 2\n", r"m\.mtx line 4: Invalid integer value"),
    (b"%%MatrixMarket matrix coordinate integer general\n% c\n2 4 1\n3 1 1\n", r"m\.mtx line 4: Row index out of bounds"),
    (b"%%MatrixMarket matrix coordinate integer general\n2 4 1\n1 9 1\n", r"m\.mtx line 3: Column index out of bounds"),
    (b"%%MatrixMarket matrix coordinate integer general\n2 4 1\n1 1 99999999999999999999\n", r"m\.mtx line 3: Integer out of range"),
    (b"%%MatrixMarket matrix coordinate integer general\n2 4 3\n1 1 1\n2 2 1\n", r"m\.mtx: Truncated file"),
    (b"%%MatrixMarket matrix coordinate integer general\n2 4 1\n1 1 -3\n", r"m\.mtx: counts must be non-negative"),
    # A header's claim is checked against the bytes before mmread allocates for it:
    (b"%%MatrixMarket matrix coordinate integer general\n2 4 1000000000000\n1 1 1\n",
     r"m\.mtx: header declares 1000000000000 entries, more than its \d+ bytes can hold"),
    (b"%%MatrixMarket matrix coordinate integer general\n3 4 1\n1 1 1\n", r"m\.mtx: 3 documents, more than max_documents=2"),
])
def test_bad_matrix_market(assert_fails, matrix, match):
    assert_fails([("m.mtx", matrix), ("vocab.txt", vocab_txt())], match, limits=IngestLimits(max_documents=2))


def test_gzipped_matrix_market_is_capped(run_ingest, assert_fails):
    sources = [("m.mtx.gz", gzip.compress(mm_bytes())), ("vocab.txt", vocab_txt())]
    info, corpus = run_ingest(sources, fmt="mm", options=TextOptions())
    check(corpus, info)
    assert_fails(sources, r"m\.mtx\.gz: input exceeds max_decompressed_bytes=64", fmt="mm",
                 limits=IngestLimits(max_decompressed_bytes=64))


def test_bad_npz_and_source_count(assert_fails):
    assert_fails([("m.npz", b"PK\x03\x04nonsense"), ("vocab.txt", vocab_txt())], r"m\.npz: not a")
    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(3))
    assert_fails([("m.npz", buffer.getvalue()), ("vocab.txt", vocab_txt())], r"not a scipy sparse \.npz")
    assert_fails([("m.npz", npz_bytes(sp.csr_matrix(DENSE[:, :3]))), ("vocab.txt", vocab_txt())], r"3 columns but the vocabulary has 4")
    assert_fails([("m.npz", npz_bytes(sp.csr_matrix(-DENSE))), ("vocab.txt", vocab_txt())], r"non-negative")
    assert_fails([("m.npz", npz_bytes(sp.csr_matrix(DENSE)))], r"needs two sources")
    big = npz_bytes(sp.csr_matrix(np.ones((50, 4))))
    assert_fails([("m.npz", big), ("vocab.txt", vocab_txt())], r"max_decompressed_bytes=100",
                 limits=IngestLimits(max_decompressed_bytes=100))
    assert_fails([("m.npz", npz_bytes(sp.csr_matrix(DENSE))), ("vocab.txt", vocab_txt())], r"more than max_documents=2",
                 limits=IngestLimits(max_documents=2))
