"""Each document's first characters are kept with a text corpus (for the explorer)."""
import json

import numpy as np
import scipy.sparse as sp

from app.ingest.chunks import SNIPPET_CHARS
from app.ingest.store import read_snippets


def test_snippets_follow_the_kept_documents_for_every_reader(run_ingest):
    long_text = "alpha beta " * 100  # longer than a snippet
    texts = ["cat dog cat", "", "naïve café dog", long_text, "dog <script>alert(1)</script> cat"]
    expected = {str(i): t[:SNIPPET_CHARS] for i, t in enumerate(texts) if t}
    payloads = {
        "json": [("d.json", json.dumps(texts).encode())],
        "jsonl, chunked": [("d.jsonl", "\n".join(json.dumps({"id": str(i), "text": t}) for i, t in enumerate(texts)).encode())],
    }
    for name, payload in payloads.items():
        for kwargs in ({}, {"chunk_bytes": 20}):
            _, corpus = run_ingest(payload, **kwargs)
            rows = list(range(len(corpus.doc_ids)))
            assert read_snippets(corpus.path, rows) == [expected[d] for d in corpus.doc_ids], (name, kwargs)
    assert len(expected[str(3)]) == SNIPPET_CHARS


def test_plain_text_lines_keep_their_snippets_in_order(run_ingest):
    lines = ["cat dog", "   ", "naïve café dog", "dog\r", "cat " * 200]
    _, corpus = run_ingest([("d.txt", "\n".join(lines).encode())], chunk_bytes=16)
    by_id = dict(zip(corpus.doc_ids, read_snippets(corpus.path, list(range(len(corpus.doc_ids))))))
    assert by_id == {"1": "cat dog", "3": "naïve café dog", "4": "dog", "5": ("cat " * 200)[:SNIPPET_CHARS]}


def test_bag_of_words_corpora_keep_no_snippets(run_ingest, tmp_path):
    counts = sp.csr_matrix(np.array([[1, 2, 0], [0, 1, 3]], dtype=np.int32))
    path = tmp_path / "bow.npz"
    sp.save_npz(path, counts)
    _, corpus = run_ingest([("bow.npz", path.read_bytes()), ("vocab.txt", b"cat\ndog\nfish\n")])
    assert corpus.doc_ids and read_snippets(corpus.path, [0, 1]) is None
