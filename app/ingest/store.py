"""The corpus artifact: an immutable folder written atomically.

    indptr.npy,       the counts: CSR (D, V), int32 indices and counts, as three .npy
    indices.npy,      arrays (see app.ingest.countfiles; format_version 1 stored them
    data.npy          in one counts.npz written by scipy.sparse.save_npz, still read)
    vocabulary.json   list of V terms (column order)
    doc_ids.json      list of D document ids (row order)
    metadata.jsonl    optional: {"row": r, "metadata": {...}} per document with metadata
    corpus.json       {"format_version", "options" (TextOptions), "stats"}
    snippets.txt,     optional (text uploads): the first characters of each document's
    snippet_offsets.npy  text, UTF-8 back to back, and (D + 1,) int64 byte offsets into it
"""
from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from app.artifacts.artifact_files import (
    ArtifactCorrupt,
    atomic_directory,
    directory_checksum,
    file_sha256,
    read_json,
    remove_path,
    verify_checksum,
    write_json,
)
from app.ingest.countfiles import DATA, INDICES, CountsTarget, read_counts
from app.ingest.finalize import BuiltCorpus, metadata_lines
from app.ingest.options import TextOptions

FORMAT_VERSION = 2
VOCABULARY, DOC_IDS, METADATA, MANIFEST = "vocabulary.json", "doc_ids.json", "metadata.jsonl", "corpus.json"
COUNTS_V1 = "counts.npz"
SNIPPETS, SNIPPET_OFFSETS = "snippets.txt", "snippet_offsets.npy"


@dataclass(frozen=True)
class CorpusInfo:
    """What the caller records about a stored corpus."""

    checksum: str
    stats: dict
    options: TextOptions


@dataclass
class Corpus:
    """A loaded corpus: counts int32 CSR (D, V), vocabulary (V,), doc_ids (D,),
    metadata {row: dict} for documents that had metadata."""

    counts: sp.csr_matrix
    vocabulary: list[str]
    doc_ids: list[str]
    options: TextOptions
    stats: dict
    checksum: str
    path: Path
    metadata: dict[int, dict] = field(default_factory=dict)


def write_corpus(built: BuiltCorpus, dest: Path, tmp_root: Path, options: TextOptions) -> CorpusInfo:
    """Write ``built`` to ``dest`` atomically and return its checksum, stats and options."""
    with atomic_directory(Path(dest), Path(tmp_root)) as folder:
        built.counts.fill(CountsTarget.create(folder, built.counts.indptr))
        # Helper threads hash and sync the two large arrays (without the GIL) while this
        # thread encodes the rest; syncing the folder afterwards finds them synced.
        with ThreadPoolExecutor(4) as helpers:
            digests = {name: helpers.submit(file_sha256, folder / name) for name in (INDICES, DATA)}
            synced = [helpers.submit(_sync, folder / name) for name in (INDICES, DATA)]
            _write_strings(folder / VOCABULARY, built.vocabulary)
            _write_strings(folder / DOC_IDS, built.doc_ids)
            if built.metadata:
                (folder / METADATA).write_text(metadata_lines(built.metadata), encoding="utf-8")
            if built.snippets:
                _write_snippets(folder, built.snippets)
            write_json(folder / MANIFEST, {"format_version": FORMAT_VERSION, "options": options.model_dump(mode="json"), "stats": built.stats})
            known = {name: digest.result() for name, digest in digests.items()}
            for done in synced:
                done.result()
        checksum = directory_checksum(folder, known)
    return CorpusInfo(checksum=checksum, stats=built.stats, options=options)


def _write_snippets(folder: Path, snippets: list[str]) -> None:
    encoded = [snippet.encode("utf-8") for snippet in snippets]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    (folder / SNIPPETS).write_bytes(b"".join(encoded))
    np.save(folder / SNIPPET_OFFSETS, offsets)


def read_snippets(path: Path, rows: list[int]) -> list[str] | None:
    """The stored text snippets of documents ``rows`` (row numbers of the counts), or
    None when the corpus keeps none (bags of words, corpora stored before snippets)."""
    path = Path(path)
    if not (path / SNIPPET_OFFSETS).is_file():
        return None
    offsets = np.load(path / SNIPPET_OFFSETS, mmap_mode="r")
    snippets = []
    with open(path / SNIPPETS, "rb") as blob:
        for row in rows:
            start, stop = int(offsets[row]), int(offsets[row + 1])
            blob.seek(start)
            snippets.append(blob.read(stop - start).decode("utf-8", "replace"))
    return snippets


def _sync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


# What json.dumps(..., ensure_ascii=False) escapes in a string.
_JSON_ESCAPED = re.compile(r'[\x00-\x1f"\\]')


def _write_strings(path: Path, strings: list[str]) -> None:
    """Write a list of str exactly as write_json does, joining it directly when no string
    needs escaping (several times faster for hundreds of thousands of ids)."""
    if not strings or _JSON_ESCAPED.search("".join(strings)):
        write_json(path, strings)
        return
    Path(path).write_text('["' + '","'.join(strings) + '"]', encoding="utf-8")


def load_corpus(path: Path, expected_checksum: str | None = None) -> Corpus:
    """Load a stored corpus; with ``expected_checksum`` first verify the files match it.

    Raises ArtifactCorrupt if the folder is missing, corrupt or inconsistent.
    """
    path = Path(path)
    if expected_checksum is not None:
        verify_checksum(path, expected_checksum)
    if not (path / MANIFEST).is_file():
        raise ArtifactCorrupt(f"corpus {path} is missing or incomplete (no {MANIFEST})")
    try:
        manifest = read_json(path / MANIFEST)
        version = manifest.get("format_version")
        if version not in (1, FORMAT_VERSION):
            raise ArtifactCorrupt(f"corpus {path}: unsupported format_version {version!r}")
        vocabulary = read_json(path / VOCABULARY)
        doc_ids = read_json(path / DOC_IDS)
        shape = (len(doc_ids), len(vocabulary))
        counts = sp.load_npz(path / COUNTS_V1).tocsr() if version == 1 else read_counts(path, shape)
        metadata = {}
        if (path / METADATA).is_file():
            with open(path / METADATA, encoding="utf-8") as lines:
                for line in lines:
                    record = json.loads(line)
                    metadata[int(record["row"])] = record["metadata"]
        options = TextOptions.model_validate(manifest["options"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ArtifactCorrupt(f"corpus {path} is unreadable ({type(error).__name__}: {error})") from None
    if counts.shape != shape:
        raise ArtifactCorrupt(f"corpus {path}: counts shape {counts.shape} does not match {len(doc_ids)} ids x {len(vocabulary)} terms")
    if counts.indices.dtype != np.int32 or counts.data.dtype != np.int32:
        raise ArtifactCorrupt(f"corpus {path}: counts must be int32 (found {counts.indices.dtype}, {counts.data.dtype})")
    checksum = expected_checksum or directory_checksum(path)
    return Corpus(counts=counts, vocabulary=vocabulary, doc_ids=doc_ids, options=options,
                  stats=manifest["stats"], checksum=checksum, path=path, metadata=metadata)


def delete_corpus(path: Path) -> None:
    """Remove a stored corpus folder and all its files (no error if already gone)."""
    path = Path(path)
    if path.exists() and not (path / MANIFEST).is_file():
        raise ArtifactCorrupt(f"{path} is not a corpus folder (no {MANIFEST}); refusing to delete it")
    remove_path(path)
