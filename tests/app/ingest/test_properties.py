"""Property: any byte string either ingests or raises ValueError — never another exception,
and a failure leaves nothing behind. Checked for every parser, on raw bytes and on
mutations (byte flips, truncations) of valid inputs that get deeper into each parser."""
import gzip
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.ingest import IngestLimits, TextOptions, ingest
from tests.app.ingest._archives import make_tar_gz, make_zip
from tests.app.ingest._reference import jsonb

LIMITS = IngestLimits(max_document_bytes=4096, max_member_bytes=8192, max_decompressed_bytes=32768,
                      max_total_bytes=65536, max_archive_members=20, max_documents=200)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _npz():
    buffer = io.BytesIO()
    sp.save_npz(buffer, sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]])))
    return buffer.getvalue()


VALID = {
    "json": jsonb(["alpha beta", {"id": "x", "text": "gamma delta", "metadata": {"k": 1}}]),
    "jsonl": b'"alpha beta"\n{"id": "x", "text": "gamma delta"}\n',
    "text": b"alpha beta\ngamma delta\n",
    "csv": b'id,text\n1,"alpha, beta"\n2,gamma delta\n',
    "tsv": b"id\ttext\n1\talpha beta\n2\tgamma delta\n",
    "zip": make_zip({"a.txt": b"alpha beta", "b.jsonl": b'"gamma delta"\n', "c.csv": b"text\nepsilon zeta\n"}),
    "tar.gz": make_tar_gz({"a.txt": b"alpha beta", "b.jsonl": b'"gamma delta"\n', "c.csv": b"text\nepsilon zeta\n"}),
    "uci": b"2\n3\n3\n1 1 1\n1 3 2\n2 2 3\n",
    "mm": b"%%MatrixMarket matrix coordinate integer general\n2 3 3\n1 1 1\n1 3 2\n2 2 3\n",
    "npz": _npz(),
}
VOCAB = b"alpha\nbeta\ngamma\n"


def _check(fmt: str, payload: bytes, vocab: bytes = VOCAB) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = [("input", io.BytesIO(payload))]
        if fmt in ("uci", "mm", "npz"):
            sources.append(("vocab.txt", io.BytesIO(vocab)))
        dest = root / "corpus"
        try:
            info = ingest(sources, dest, tmp_root=root / "tmp", fmt=fmt, limits=LIMITS,
                          options=TextOptions(min_token_length=1, stop_words=None), id_column="id" if fmt in ("csv", "tsv") else None)
        except ValueError:
            assert not dest.exists()
            assert list((root / "tmp").iterdir()) == []
        else:
            assert dest.is_dir() and info.stats["n_documents"] > 0


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        out[position % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


@pytest.mark.parametrize("fmt", sorted(VALID))
def test_valid_seed_inputs_ingest(fmt):
    _check(fmt, VALID[fmt])


@pytest.mark.parametrize("fmt", sorted(VALID))
@PROPERTY
@given(payload=st.binary(max_size=300))
def test_any_bytes_ingest_or_value_error(fmt, payload):
    _check(fmt, payload)


@pytest.mark.parametrize("fmt", sorted(VALID))
@PROPERTY
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       cut=st.none() | st.integers(0, 2000))
def test_mutated_valid_inputs_ingest_or_value_error(fmt, flips, cut):
    _check(fmt, _mutate(VALID[fmt], flips, cut))


@pytest.mark.parametrize("fmt", ["uci", "mm", "npz"])
@PROPERTY
@given(vocab=st.binary(max_size=100) | st.lists(st.text(max_size=5), max_size=5).map(lambda ws: "\n".join(ws).encode()))
def test_any_vocabulary_ingests_or_value_error(fmt, vocab):
    _check(fmt, VALID[fmt], vocab)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "text", "csv", "tsv"])
@PROPERTY
@given(texts=st.lists(st.text(max_size=30), max_size=5))
def test_text_shaped_inputs(fmt, texts):
    if fmt == "json":
        payload = jsonb(texts)
    elif fmt == "jsonl":
        payload = b"\n".join(jsonb({"text": t}) for t in texts)
    else:
        payload = ("id,text\n" if fmt == "csv" else "id\ttext\n" if fmt == "tsv" else "").encode()
        payload += "\n".join(texts).encode("utf-8", "surrogatepass")
    _check(fmt, payload)


@PROPERTY
@given(data=st.binary(max_size=200))
def test_gzipped_uci_garbage(data):
    _check("uci", gzip.compress(data))


@PROPERTY
@given(lines=st.lists(st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=40),
                      min_size=1, max_size=30),
       chunk_bytes=st.sampled_from([16, 200, 1 << 20]), min_df=st.sampled_from([1, 2, 0.3]))
def test_text_round_trip_matches_reference(lines, chunk_bytes, min_df):
    from app.ingest import load_corpus
    from tests.app.ingest._reference import reference_corpus

    options = TextOptions(min_df=min_df)
    expected, vocabulary, kept = reference_corpus(lines, options)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            ingest([("d.txt", io.BytesIO(payload))], root / "c", tmp_root=root / "tmp", options=options, chunk_bytes=chunk_bytes)
        except ValueError as error:
            assert not kept and "empty corpus" in str(error)
            return
        corpus = load_corpus(root / "c")
    assert corpus.vocabulary == vocabulary
    assert corpus.doc_ids == [str(i + 1) for i in kept]
    np.testing.assert_array_equal(corpus.counts.toarray(), expected)
