"""Corpus ingestion: raw documents (JSON, JSONL, text, CSV/TSV, zip, tar.gz) or pre-built
bags of words (UCI, Matrix Market, .npz) -> an immutable corpus artifact (vocabulary, CSR
counts, document ids, options, statistics), and the same tokenizer for new documents.

Policy: documents that are empty, or have no terms left after tokenization, filtering or
vocabulary pruning, are dropped and counted by reason in ``stats["dropped"]``; only an
entirely empty corpus is an error. Bad input raises InvalidInput naming the file, line or
element and the limit broken, and leaves nothing behind.
"""
from app.ingest.analyzer import Analyzer
from app.ingest.formats import FORMATS, detect_format
from app.ingest.options import IngestLimits, TextOptions
from app.ingest.pipeline import ingest
from app.ingest.stopwords import ENGLISH_STOP_WORDS
from app.ingest.store import Corpus, CorpusInfo, delete_corpus, load_corpus
from app.ingest.vectorize import vectorize_texts

__all__ = [
    "Analyzer", "Corpus", "CorpusInfo", "ENGLISH_STOP_WORDS", "FORMATS", "IngestLimits", "TextOptions",
    "delete_corpus", "detect_format", "ingest", "load_corpus", "vectorize_texts",
]
