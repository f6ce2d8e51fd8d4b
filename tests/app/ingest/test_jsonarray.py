"""The JSON array reader on ijson: C backend, locations in errors, limits, nesting."""
import resource

import ijson
import pytest

from app.ingest import IngestLimits
from app.ingest.jsonarray import MAX_DEPTH
from tests.app.ingest._reference import jsonb


def test_ijson_runs_on_its_c_backend():
    assert ijson.backend == "yajl2_c"


def test_metadata_values_and_bom_survive(run_ingest):
    metadata = {"n": 3, "x": 0.5, "big": 12345678901234567890, "none": None, "flag": True,
                "nested": {"list": [1, "two", [3.5, {"deep": False}]]}}
    payload = b"\xef\xbb\xbf \n" + jsonb(["alpha beta", {"id": "k", "text": "gamma delta", "metadata": metadata}])
    _, corpus = run_ingest([("d.json", payload)])
    assert corpus.doc_ids == ["0", "k"]
    assert corpus.metadata == {1: metadata}


@pytest.mark.parametrize("payload, match", [
    (b"", r"d\.json: expected a JSON array of documents, found an empty input"),
    (b" \n\t ", r"d\.json: expected a JSON array of documents, found an empty input"),
    (b'"just text"', r"d\.json: expected a JSON array of documents, found a string"),
    (b"nonsense", r"d\.json: expected a JSON array of documents \(invalid JSON: invalid"),
    (b'["a", "b" "c"]', r"d\.json element 2: invalid JSON \(after array element, I expect ',' or '\]'\)"),
    (b'["a",]', r"d\.json element 1: invalid JSON"),
    (b'["a", NaN]', r"d\.json element 1: invalid JSON"),
    (b'["ok", "bad \xff byte"]', r"d\.json element 1: invalid UTF-8"),
    (b'["a", {"text": "b"', r"d\.json element 1: unexpected end of JSON"),
    (b'["a"] ["b"]', r"d\.json: unexpected data after the JSON array"),
])
def test_errors_name_the_element(assert_fails, payload, match):
    assert_fails([("d.json", payload)], match)


def test_error_after_many_pieces_names_its_element(assert_fails):
    texts = [f"text number {i}" for i in range(40_000)]  # > 64 KiB pieces, > 1 MiB blocks
    payload = jsonb(texts)[:-1] + b', {"text": 5}]'
    assert_fails([("d.json", payload)], r"d\.json element 40000: field 'text' must be a string")
    payload = jsonb(texts)[:-1] + b", {oops}]"
    assert_fails([("d.json", payload)], r"d\.json element 40000: invalid JSON")


def test_deep_nesting_is_refused_in_linear_memory(assert_fails):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deep = b'["a", {"text": "b", "metadata": ' + b"[" * 400_000 + b"]" * 400_000 + b"}]"
    assert_fails([("d.json", deep)], rf"d\.json element 1: invalid JSON \(nested too deeply: more than {MAX_DEPTH} levels\)")
    def nested(levels):  # the document object, its metadata object, then lists
        return b'[{"text": "b", "metadata": {"m": ' + b"[" * (levels - 2) + b"]" * (levels - 2) + b"}}]"

    assert_fails([("d.json", nested(MAX_DEPTH))], r"empty corpus")  # parsed: "b" is shorter than min_token_length
    assert_fails([("d.json", nested(MAX_DEPTH + 1))], r"element 0: invalid JSON \(nested too deeply")
    # ijson.items would hold a prefix string per level: ~1 GB for 20 000 levels.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_an_unterminated_element_stops_at_the_size_limit(assert_fails):
    limits = IngestLimits(max_document_bytes=10)
    endless = b'["ok", "' + b"x" * (3 << 20)  # a string that never ends: never held whole
    assert_fails([("d.json", endless)], r"d\.json element 1: document longer than max_document_bytes=10", limits=limits)
    assert_fails([("d.json", b'["ok", "' + b"x" * 11 + b'"]')], r"d\.json element 1: document longer than max_document_bytes=10",
                 limits=limits)
