import io
import json

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from app.artifacts.artifact_files import (
    ArtifactCorrupt,
    directory_checksum,
    file_sha256,
    write_json,
)
from app.ingest import (
    IngestLimits,
    TextOptions,
    delete_corpus,
    detect_format,
    ingest,
    load_corpus,
    vectorize_texts,
)
from app.ingest.store import _write_strings
from gpu.errors import InvalidInput
from tests.app.ingest._reference import jsonb, reference_corpus


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(60)] + ["the", "and", "42", "x", "Ünïcödé", "naïve"]
    return [" ".join(rng.choice(words, size=rng.integers(0, 30))) for _ in range(n)]


OPTIONS = TextOptions(min_df=2, max_df=0.5, max_vocab=40, bigrams=True, bigram_min_df=3)


def test_round_trip_chunked_equals_reference(run_ingest):
    texts = make_texts(300)
    payload = [("d.json", jsonb(texts))]
    info_one, one_chunk = run_ingest(payload, options=OPTIONS)
    info_many, many_chunks = run_ingest(payload, options=OPTIONS, chunk_bytes=500)
    expected, vocabulary, kept = reference_corpus(texts, OPTIONS)
    for corpus in (one_chunk, many_chunks):
        assert corpus.vocabulary == vocabulary
        assert corpus.doc_ids == [str(i) for i in kept]
        np.testing.assert_array_equal(corpus.counts.toarray(), expected)
    assert info_one.checksum == info_many.checksum  # byte-identical artifacts
    assert sum(info_many.stats["dropped"].values()) == len(texts) - len(kept)


def test_vectorize_texts_reproduces_stored_counts(run_ingest):
    texts = make_texts(120, seed=2)
    _, corpus = run_ingest([("d.json", jsonb(texts))], options=OPTIONS)
    again = vectorize_texts([texts[int(i)] for i in corpus.doc_ids], corpus.vocabulary, corpus.options)
    np.testing.assert_array_equal(again.toarray(), corpus.counts.toarray())


def test_progress_reports_and_can_abort(roots):
    corpora, tmp_root = roots
    calls = []
    texts = make_texts(200)
    ingest([("d.json", io.BytesIO(jsonb(texts)))], corpora / "p", tmp_root=tmp_root, chunk_bytes=1000,
           progress=lambda *call: calls.append(call))
    stages = [stage for stage, _, _ in calls]
    assert {"tokenize", "finalize", "write"} <= set(stages)
    assert ("write", 1, 1) == calls[-1]
    tokenize = [c for c in calls if c[0] == "tokenize"]
    assert tokenize[-1][1] == tokenize[-1][2] == 200

    def cancel(stage, done, total):
        if stage == "finalize":
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        ingest([("d.json", io.BytesIO(jsonb(texts)))], corpora / "q", tmp_root=tmp_root, chunk_bytes=1000, progress=cancel)
    assert not (corpora / "q").exists() and list(tmp_root.iterdir()) == []


def test_store_load_checksum_and_delete(run_ingest, roots):
    corpora, tmp_root = roots
    info, corpus = run_ingest([("d.txt", b"alpha beta\nbeta gamma\n")])
    path = corpus.path
    assert sorted(p.name for p in path.iterdir()) == [
        "corpus.json", "data.npy", "doc_ids.json", "indices.npy", "indptr.npy", "snippet_offsets.npy", "snippets.txt",
        "vocabulary.json"]
    assert info.checksum == directory_checksum(path)
    indptr, indices, data = (np.load(path / f"{name}.npy") for name in ("indptr", "indices", "data"))
    assert indptr.tolist() == [0, 2, 4] and indices.dtype == np.int32 and data.dtype == np.int32
    assert load_corpus(path, expected_checksum=info.checksum).counts.nnz == 4
    with pytest.raises(FileExistsError):
        ingest([("d.txt", io.BytesIO(b"x y\n"))], path, tmp_root=tmp_root)
    (path / "vocabulary.json").write_text('["alpha", "beta", "zeta"]')
    with pytest.raises(ArtifactCorrupt, match="corrupt"):
        load_corpus(path, expected_checksum=info.checksum)
    delete_corpus(path)
    assert not path.exists()
    delete_corpus(path)  # idempotent
    with pytest.raises(ArtifactCorrupt, match="missing"):
        load_corpus(path)
    stranger = corpora / "not-a-corpus"
    stranger.mkdir()
    with pytest.raises(ArtifactCorrupt, match="not a corpus folder"):
        delete_corpus(stranger)


@pytest.mark.parametrize("name, content_type, head, expected", [
    ("a.json", None, b"[", "json"), ("a.JSONL", None, b"{", "jsonl"), ("a.txt", None, b"hi", "text"),
    ("a.csv", None, b"text", "csv"), ("a.tsv", None, b"text", "tsv"), ("a.zip", None, b"PK\x03\x04", "zip"),
    ("a.tar.gz", None, b"\x1f\x8b", "tar.gz"), ("a.tgz", None, b"", "tar.gz"), ("upload", None, b"PK\x03\x04", "zip"),
    ("m.npz", None, b"PK\x03\x04", "npz"), ("docword.nytimes.txt", None, b"3\n", "uci"),
    ("docword.kos.txt.gz", None, b"\x1f\x8b", "uci"), ("m.mtx", None, b"%%MatrixMarket", "mm"),
    ("blob", None, b"%%MatrixMarket matrix", "mm"), (None, "text/csv; charset=utf-8", b"a,b", "csv"),
    (None, "application/x-ndjson", b"", "jsonl"), (None, None, b'  ["x"]', "json"), (None, None, b"hello", "text"),
])
def test_detect_format(name, content_type, head, expected):
    assert detect_format(name, content_type, head) == expected


def test_detect_format_fails_clearly():
    with pytest.raises(InvalidInput, match="cannot detect the format of 'blob'"):
        detect_format("blob", None, b"")


def test_line_formats_in_many_blocks(run_ingest, assert_fails):
    texts = make_texts(200, seed=3)
    lines = "\ufeff" + "\n".join(texts) + "\n"
    _, from_text = run_ingest([("d.txt", lines.encode())], options=OPTIONS, chunk_bytes=64)
    jsonl = b"\n".join(jsonb({"id": f"k{i}", "text": t}) for i, t in enumerate(texts))
    _, from_jsonl = run_ingest([("d.jsonl", jsonl)], options=OPTIONS, chunk_bytes=64)
    expected, vocabulary, kept = reference_corpus(texts, OPTIONS)
    for corpus in (from_text, from_jsonl):
        assert corpus.vocabulary == vocabulary
        np.testing.assert_array_equal(corpus.counts.toarray(), expected)
    assert from_text.doc_ids == [str(i + 1) for i in kept]
    assert from_jsonl.doc_ids == [f"k{i}" for i in kept]
    bad = ("\n".join(texts[:150]) + "\nbroken \udcff line\n").encode("utf-8", "surrogateescape")
    assert_fails([("d.txt", bad)], r"d\.txt line 151: invalid UTF-8", chunk_bytes=64)
    repeated = jsonl + b"\n" + jsonb({"id": "k3", "text": "again"})
    assert_fails([("d.jsonl", repeated)], r"d\.jsonl: duplicate document id 'k3'", chunk_bytes=64)
    assert_fails([("d.txt", b"a b\n" * 50)], r"d\.txt line 41: more than max_documents=40", chunk_bytes=64,
                 limits=IngestLimits(max_documents=40))
    assert_fails([("d.txt", b"short\n" + b"x" * 5000 + b"\nok\n")], r"d\.txt line 2: longer than max_document_bytes=100",
                 chunk_bytes=64, limits=IngestLimits(max_document_bytes=100))
    assert_fails([("d.txt", b"short\n" + b"x" * 150 + b"\nok\n")], r"d\.txt line 2: longer than max_document_bytes=100",
                 chunk_bytes=1 << 20, limits=IngestLimits(max_document_bytes=100))


@given(st.lists(st.text(alphabet=st.sampled_from(['a', 'é', '"', '\\', '\n', '\x00', '\x1f', '\x7f', '\u2028', '😀', ' ']),
                        max_size=4), max_size=6))
@settings(max_examples=300, deadline=None)
def test_string_lists_are_written_exactly_as_json(tmp_path_factory, strings):
    folder = tmp_path_factory.mktemp("strings")
    _write_strings(folder / "fast.json", strings)
    write_json(folder / "plain.json", strings)
    assert (folder / "fast.json").read_bytes() == (folder / "plain.json").read_bytes()


def test_checksum_with_known_digests_is_the_same(run_ingest):
    info, corpus = run_ingest([("d.txt", b"alpha beta\ngamma alpha\n")])
    data = corpus.path / "data.npy"
    assert directory_checksum(corpus.path, {"data.npy": file_sha256(data)}) == info.checksum
    assert directory_checksum(corpus.path, {"data.npy": "0" * 64}) != info.checksum


def test_format_version_1_corpora_still_load(run_ingest):
    """Version 1 stored the counts as one counts.npz (scipy.sparse.save_npz)."""
    _, corpus = run_ingest([("d.txt", b"alpha beta\nbeta gamma gamma\n")])
    path = corpus.path
    sp.save_npz(path / "counts.npz", corpus.counts, compressed=False)
    for name in ("indptr.npy", "indices.npy", "data.npy"):
        (path / name).unlink()
    manifest = json.loads((path / "corpus.json").read_text())
    (path / "corpus.json").write_text(json.dumps({**manifest, "format_version": 1}))
    old = load_corpus(path)
    assert (old.counts != corpus.counts).nnz == 0 and old.counts.indices.dtype == np.int32
    assert old.vocabulary == corpus.vocabulary and old.doc_ids == corpus.doc_ids


def test_counts_files_that_do_not_fit_are_refused(run_ingest):
    _, corpus = run_ingest([("d.txt", b"alpha beta\nbeta gamma gamma\n")])
    np.save(corpus.path / "indptr.npy", np.array([0, 1, 2], dtype=np.int32))  # 2 + 2 entries stored
    with pytest.raises(ArtifactCorrupt, match="do not form a 2 x 3 CSR matrix"):
        load_corpus(corpus.path)
