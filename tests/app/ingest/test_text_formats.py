import numpy as np
import pytest

from app.ingest import IngestLimits, TextOptions
from gpu.errors import InvalidInput
from tests.app.ingest._reference import jsonb, reference_corpus

TEXTS = [
    "Spectral methods estimate topics from moments of word counts.",
    "Gibbs samplers make many passes over every token in the corpus.",
    "Topics are distributions over words; documents mix topics.",
    "The tensor power method decomposes the whitened third moment.",
    "",
    "the and of",
    "Word counts, word counts and more word counts.",
]


def assert_matches_reference(corpus, texts, options=TextOptions(), ids=None):
    expected, vocabulary, kept = reference_corpus(texts, options)
    assert corpus.vocabulary == vocabulary
    np.testing.assert_array_equal(corpus.counts.toarray(), expected)
    assert corpus.counts.indices.dtype == np.int32 and corpus.counts.data.dtype == np.int32
    if ids is not None:
        assert corpus.doc_ids == [ids[i] for i in kept]


def test_json_strings(run_ingest):
    info, corpus = run_ingest([("docs.json", jsonb(TEXTS))])
    assert_matches_reference(corpus, TEXTS, ids=[str(i) for i in range(len(TEXTS))])
    assert info.stats["dropped"] == {"empty_text": 1, "no_tokens": 1, "all_terms_pruned": 0}
    assert info.stats["n_documents"] == 5 and info.stats["n_input_documents"] == 7
    assert info.stats["n_tokens"] == int(corpus.counts.sum())
    assert info.stats["vocabulary_size"] == len(corpus.vocabulary)
    assert info.checksum == corpus.checksum


def test_json_objects_with_ids_and_metadata(run_ingest):
    docs = [{"id": f"d{i}", "text": t, "metadata": {"n": i}} for i, t in enumerate(TEXTS)]
    docs[1]["id"] = 17
    del docs[2]["metadata"]
    _, corpus = run_ingest([("docs.json", jsonb(docs))])
    ids = [str(d["id"]) for d in docs]
    assert_matches_reference(corpus, TEXTS, ids=ids)
    assert corpus.metadata[corpus.doc_ids.index("d0")] == {"n": 0}
    assert corpus.doc_ids.index("d2") not in corpus.metadata


def test_json_streams_large_arrays_in_blocks(run_ingest):
    texts = [f"alpha{i % 50} beta{i % 7} " * 40 for i in range(3000)]  # > 1 MiB of JSON
    _, corpus = run_ingest([("big.json", jsonb(texts))], chunk_bytes=100_000)
    assert_matches_reference(corpus, texts)


def test_jsonl_text_csv_tsv_agree(run_ingest):
    _, from_jsonl = run_ingest([("d.jsonl", b"\n".join(jsonb({"text": t}) for t in TEXTS) + b"\n\n")])
    lines = "\n".join(TEXTS).encode() + b"\n"
    _, from_text = run_ingest([("d.txt", lines)])
    _, from_crlf = run_ingest([("d.txt", lines.replace(b"\n", b"\r\n"))])
    import csv
    import io
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "title", "text"])
    for i, t in enumerate(TEXTS):
        writer.writerow([f"row{i}", "x,y", t])
    _, from_csv = run_ingest([("d.csv", buffer.getvalue().encode())], id_column="id")
    tsv = "label\ttext\n" + "".join(f"L\t{t}\n" for t in TEXTS)
    _, from_tsv = run_ingest([("d.tsv", tsv.encode())])
    for corpus in (from_jsonl, from_text, from_crlf, from_csv, from_tsv):
        assert_matches_reference(corpus, TEXTS)
    assert from_text.doc_ids[0] == "1" and from_csv.doc_ids[0] == "row0" and from_tsv.doc_ids[0] == "1"


def test_csv_quoted_multiline_field_and_bom(run_ingest):
    data = '\ufefftext,other\n"first line\nsecond line, quoted ""words""",1\nplain words here,2\n'.encode()
    _, corpus = run_ingest([("d.csv", data)])
    assert corpus.doc_ids == ["1", "2"]
    assert_matches_reference(corpus, ['first line\nsecond line, quoted "words"', "plain words here"])


def test_multiple_sources_prefix_ids(run_ingest):
    _, corpus = run_ingest([("a.txt", b"cats dogs\n"), ("b.jsonl", b'"dogs birds"\n')])
    assert corpus.doc_ids == ["a.txt:1", "b.jsonl:1"]


def test_options_apply_and_are_recorded(run_ingest):
    options = TextOptions(min_df=2, max_df=0.9, max_vocab=3, bigrams=True, bigram_min_df=2, extra_stop_words=["topics"])
    info, corpus = run_ingest([("docs.json", jsonb(TEXTS * 2 + ["word counts"]))], options=options)
    assert_matches_reference(corpus, TEXTS * 2 + ["word counts"], options)
    assert corpus.options == options and info.options == options
    assert info.stats["pruned_terms"]["max_vocab"] > 0


@pytest.mark.parametrize("name, payload, match", [
    ("d.txt", b"good line\nbad \xff\xfe line\n", r"d\.txt line 2: invalid UTF-8"),
    ("d.jsonl", b'"ok"\n{"txt": "no text"}\n', r"d\.jsonl line 2: missing text field 'text'"),
    ("d.jsonl", b'"ok"\n{not json}\n', r"d\.jsonl line 2: invalid JSON"),
    ("d.jsonl", b'"ok"\n[1, 2]\n', r"line 2: expected a string or an object, got array"),
    ("d.json", b'[{"text": 5}]', r"element 0: field 'text' must be a string"),
    ("d.json", b'["a", "b",', r"element 2: unexpected end"),
    ("d.json", b'{"text": "x"}', r"expected a JSON array"),
    ("d.json", b'["a"] trailing', r"unexpected data after"),
    ("d.json", b'[{"text": "a", "id": [1]}]', r"element 0: field 'id' must be"),
    ("d.json", b'[{"text": "a", "metadata": 3}]', r"element 0: field 'metadata' must be an object"),
    ("d.json", b'["same", {"id": "0", "text": "x"}]', r"element 1: duplicate document id '0'"),
    ("d.csv", b"title,body\nx,y\n", r"d\.csv: no text column 'text' in the header \(columns: 'title', 'body'\)"),
    ("d.csv", b"text\n", r"empty corpus"),
    ("d.csv", b"", r"empty CSV file"),
    ("d.csv", b"text,b\nx\n", r"d\.csv line 2: 1 fields, header has 2"),
    ("d.csv", b'text\n"unterminated\n', r"d\.csv line \d+: malformed CSV"),
    ("d.txt", b"", r"empty corpus: the input contains no documents"),
    ("d.txt", b"the of and\n  \n12 34\n", r"empty corpus: all 3 documents are empty after processing"),
])
def test_bad_text_input(assert_fails, name, payload, match):
    assert_fails([(name, payload)], match)


def test_oversized_documents_and_inputs(assert_fails):
    limits = IngestLimits(max_document_bytes=20)
    long = "word " * 10
    assert_fails([("d.txt", f"short\n{long}\n".encode())], r"d\.txt line 2: longer than max_document_bytes=20", limits=limits)
    assert_fails([("d.json", jsonb(["ok", long]))], r"d\.json element 1: document longer than max_document_bytes=20", limits=limits)
    assert_fails([("d.jsonl", jsonb({"text": long}))], r"line 1: document longer than max_document_bytes=20", limits=limits)
    assert_fails([("d.csv", f"text\n{long}\n".encode())], r"d\.csv line 2: document longer", limits=limits)
    assert_fails([("d.txt", b"aa bb\n" * 100)], r"d\.txt: input exceeds max_total_bytes=100", limits=IngestLimits(max_total_bytes=100))
    assert_fails([("d.txt", b"aa bb\n" * 10)], r"d\.txt line 4: more than max_documents=3", limits=IngestLimits(max_documents=3))


def test_missing_id_column(assert_fails):
    assert_fails([("d.csv", b"text\nx\n")], r"no id column 'key'", id_column="key")
    assert_fails([("d.jsonl", b'{"text": "x"}\n')], r"line 1: missing id field 'key'", id_column="key")


def test_unknown_format_and_no_sources(roots):
    import io

    from app.ingest import ingest
    corpora, tmp_root = roots
    with pytest.raises(InvalidInput, match="unknown format 'docx'"):
        ingest([("a.docx", io.BytesIO(b"x"))], corpora / "x", tmp_root=tmp_root, fmt="docx")
    with pytest.raises(InvalidInput, match="sources is empty"):
        ingest([], corpora / "x", tmp_root=tmp_root)
    assert list(corpora.iterdir()) == [] and list(tmp_root.iterdir()) == []


def test_jsonl_metadata_and_ids_survive_blocks(run_ingest):
    lines = [jsonb({"id": f"d{i}", "text": f"word{i % 7} shared text", "metadata": {"i": i}}) for i in range(300)]
    lines[5] = jsonb({"id": "d5", "text": "the and of"})  # dropped: no tokens
    info, corpus = run_ingest([("d.jsonl", b"\n".join(lines))], chunk_bytes=256)
    assert info.stats["dropped"]["no_tokens"] == 1
    assert corpus.doc_ids[:6] == ["d0", "d1", "d2", "d3", "d4", "d6"]
    assert all(corpus.metadata[row] == {"i": int(doc_id[1:])} for row, doc_id in enumerate(corpus.doc_ids))


def test_progress_error_after_write_removes_the_corpus(roots):
    import io

    from app.ingest import ingest
    corpora, tmp_root = roots

    def fail_at_end(stage, done, total):
        if (stage, done) == ("write", 1):
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        ingest([("d.txt", io.BytesIO(b"some words here\n"))], corpora / "c", tmp_root=tmp_root, progress=fail_at_end)
    assert list(corpora.iterdir()) == [] and list(tmp_root.iterdir()) == []
