"""Benchmark: uploads -> stored CSR corpus through ``app.ingest.ingest`` called the way the
service calls it (app/services/corpus_service.py: one process, default chunking), against
scikit-learn's CountVectorizer for raw text.

Corpus: the plain-text documentation Debian installs under /usr/share/doc (install
``python3-doc`` for ~12 MB of Python reST sources), split into paragraphs, one document per
paragraph, written once under the temp folder as
- plain text, one document per line;
- a JSON array of {"id", "text"} objects (the streaming JSON reader);
- a Matrix Market ``coordinate integer general`` file plus a vocabulary, made from the
  counts of the 10x text input (the bag-of-words reader).

Prints, from the same run on the same machine:
- throughput in MB/s (input bytes / wall time, file read through stored corpus), best and
  median of the repeats, and CPU seconds, for each input kind, and for
  CountVectorizer(fit_transform) + save_npz with the equivalent options on the text; the
  wall-clock and CPU ratios ours / CountVectorizer.
- peak RSS of a fresh process ingesting: text of one chunk (1x) and of ten chunks (10x),
  the JSON array, and the Matrix Market file.

Usage: python bench/ingest.py [--repeats 3] [--chunk-mib 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ijson  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from app.artifacts.artifact_files import remove_path  # noqa: E402
from app.ingest import ENGLISH_STOP_WORDS, TextOptions, ingest, load_corpus  # noqa: E402

DOC_ROOT = Path("/usr/share/doc")
OPTIONS = TextOptions(min_df=2, max_df=0.5)
MIB = 1 << 20


def build_text_corpus(out: Path) -> tuple[int, int]:
    """Write one paragraph per line from every readable .txt file under /usr/share/doc."""
    n_docs = 0
    with open(out, "w", encoding="utf-8") as sink:
        for path in sorted(DOC_ROOT.rglob("*.txt")):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            for paragraph in text.split("\n\n"):
                line = " ".join(paragraph.split())
                if line:
                    sink.write(line + "\n")
                    n_docs += 1
    return out.stat().st_size, n_docs


def repeat_to_size(source: Path, out: Path, size: int) -> int:
    data = source.read_bytes()
    with open(out, "wb") as sink:
        written = 0
        while written < size:
            piece = data[: size - written]
            cut = piece.rfind(b"\n") + 1 if len(piece) < len(data) else len(piece)
            sink.write(piece[:cut])
            written += cut
            if cut == 0:
                break
    return out.stat().st_size


def write_json_array(text_file: Path, out: Path) -> int:
    """The text file's lines as a JSON array of {"id": "p<n>", "text": line} objects."""
    with open(text_file, encoding="utf-8") as lines, open(out, "w", encoding="utf-8") as sink:
        sink.write("[")
        for number, line in enumerate(lines):
            sink.write(("," if number else "") + json.dumps({"id": f"p{number}", "text": line.rstrip("\n")}) + "\n")
        sink.write("]\n")
    return out.stat().st_size


def write_matrix_market(corpus_dir: Path, matrix_out: Path, vocab_out: Path) -> int:
    """A stored corpus' counts as Matrix Market (integer) and its vocabulary, one term a line."""
    corpus = load_corpus(corpus_dir)
    scipy.io.mmwrite(matrix_out, corpus.counts, field="integer")
    vocab_out.write_text("".join(term + "\n" for term in corpus.vocabulary), encoding="utf-8")
    return matrix_out.stat().st_size


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def run_ours(files: list[Path], work: Path, chunk_bytes: int, label: str) -> tuple[float, dict, float]:
    """Ingest ``files`` (one text/JSON file, or a matrix and its vocabulary) as the service
    does: format detected from the names and first bytes, default limits."""
    dest = work / f"ours-{label}"
    remove_path(dest)
    cpu = cpu_seconds()
    start = time.perf_counter()
    streams = [open(path, "rb") for path in files]
    try:
        info = ingest([(path.name, stream) for path, stream in zip(files, streams)], dest, tmp_root=work / "tmp",
                      options=OPTIONS, chunk_bytes=chunk_bytes)
    finally:
        for stream in streams:
            stream.close()
    return time.perf_counter() - start, info.stats, cpu_seconds() - cpu


def count_vectorizer():
    from sklearn.feature_extraction.text import CountVectorizer
    # Same tokens as ours for English text: runs of letters/digits of length >= 2, lowercase,
    # our stop-word list, same document-frequency pruning. (It keeps numbers and skips NFKC.)
    return CountVectorizer(lowercase=True, token_pattern=r"(?u)[^\W_]{2,}", stop_words=sorted(ENGLISH_STOP_WORDS),
                           min_df=OPTIONS.min_df, max_df=OPTIONS.max_df, dtype=np.int32)


def run_sklearn(text_file: Path, work: Path) -> tuple[float, sp.csr_matrix, list[str], float]:
    cpu = cpu_seconds()
    start = time.perf_counter()
    with open(text_file, encoding="utf-8") as lines:
        texts = [line.rstrip("\n") for line in lines]
    vectorizer = count_vectorizer()
    counts = vectorizer.fit_transform(texts)
    keep = np.flatnonzero(np.diff(counts.indptr))
    sp.save_npz(work / "sklearn.npz", counts[keep].tocsr(), compressed=False)
    elapsed = time.perf_counter() - start
    return elapsed, counts, list(vectorizer.get_feature_names_out()), cpu_seconds() - cpu


def _vm_hwm_mib() -> float:
    """Peak resident set of this process image (VmHWM, reset by exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_child(files: list[str], chunk_bytes: int) -> None:
    baseline = _vm_hwm_mib()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-rss-"))
    try:
        elapsed, stats, _ = run_ours([Path(f) for f in files], work, chunk_bytes, "rss")
    finally:
        remove_path(work)
    print(json.dumps({"baseline_mib": baseline, "peak_mib": _vm_hwm_mib(), "seconds": elapsed, "nnz": stats["nnz"]}))


def measure_rss(files: list[Path], chunk_bytes: int) -> dict:
    """Run one ingestion in a fresh process and return its peak RSS and timing."""
    output = subprocess.run([sys.executable, __file__, "--chunk-mib", str(chunk_bytes / MIB), "--rss-child",
                             *map(str, files)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-mib", type=float, default=2.0)
    parser.add_argument("--rss-child", nargs="+")
    args = parser.parse_args()
    chunk_bytes = int(args.chunk_mib * MIB)
    if args.rss_child:
        rss_child(args.rss_child, chunk_bytes)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        corpus_file = work / "usr-share-doc.txt"
        size, n_docs = build_text_corpus(corpus_file)
        one, ten = work / "x1.txt", work / "x10.txt"
        size_one = repeat_to_size(corpus_file, one, chunk_bytes)
        size_ten = repeat_to_size(corpus_file, ten, 10 * chunk_bytes)
        json_file = work / "usr-share-doc.json"
        size_json = write_json_array(corpus_file, json_file)
        run_ours([ten], work, chunk_bytes, "mm-source")
        mm_file, vocab_file = work / "x10.mtx", work / "x10.vocab.txt"
        size_mm = write_matrix_market(work / "ours-mm-source", mm_file, vocab_file)
        size_mm_input = size_mm + vocab_file.stat().st_size
        print(f"corpus: {size / MIB:.1f} MiB of text, {n_docs} paragraphs from {DOC_ROOT} (*.txt); "
              f"as a JSON array of objects {size_json / MIB:.1f} MiB; Matrix Market of the 10x text "
              f"{size_mm / MIB:.1f} MiB (+ vocabulary)")
        print(f"machine: {os.cpu_count()} cores; timings are wall clock, best and median of {args.repeats} "
              f"(noisy: the machine is shared); ingestion runs in one process, as in the service; "
              f"ijson backend {ijson.backend}")

        inputs = {"text": ([corpus_file], size), "json": ([json_file], size_json), "mm": ([mm_file, vocab_file], size_mm_input)}
        runs: dict[str, list[tuple[float, float]]] = {key: [] for key in (*inputs, "sklearn")}
        for _ in range(args.repeats):
            for key, (files, _) in inputs.items():
                t, _, cpu = run_ours(files, work, chunk_bytes, key)
                runs[key].append((t, cpu))
            t, sk_counts, sk_vocab, cpu = run_sklearn(corpus_file, work)
            runs["sklearn"].append((t, cpu))
        ours = load_corpus(work / "ours-text")
        overlap = len(set(ours.vocabulary) & set(sk_vocab)) / max(len(set(ours.vocabulary) | set(sk_vocab)), 1)
        print(f"vocabulary: ours {len(ours.vocabulary)} terms, CountVectorizer {len(sk_vocab)} terms, "
              f"Jaccard overlap {overlap:.3f}; ours nnz {ours.counts.nnz}, CountVectorizer nnz {sk_counts.nnz}")

        def line(name, key, nbytes):
            times = [t for t, _ in runs[key]]
            best, median = min(times), statistics.median(times)
            cpu = min(c for _, c in runs[key])
            print(f"{name:<36} best {nbytes / MIB / best:7.2f} MB/s ({best:5.2f} s)   median {nbytes / MIB / median:7.2f} MB/s"
                  f"   CPU {cpu:5.2f} s ({nbytes / MIB / cpu:6.2f} MB per CPU-second)")
            return best, cpu

        best_text, cpu_text = line("ours, plain text", "text", size)
        line("ours, JSON array of objects", "json", size_json)
        line("ours, Matrix Market + vocabulary", "mm", size_mm_input)
        best_sklearn, cpu_sklearn = line("sklearn CountVectorizer, plain text", "sklearn", size)
        print(f"ratio ours / CountVectorizer on plain text: wall clock {best_sklearn / best_text:.2f}x, "
              f"CPU {cpu_sklearn / cpu_text:.2f}x (work per byte, insensitive to other load)")

        for label, files, nbytes in (("text 1x", [one], size_one), ("text 10x", [ten], size_ten),
                                     ("JSON", [json_file], size_json), ("Matrix Market", [mm_file, vocab_file], size_mm_input)):
            rss = measure_rss(files, chunk_bytes)
            print(f"peak RSS {label:<13} ({nbytes / MIB:5.1f} MiB, chunk {chunk_bytes / MIB:.1f} MiB): "
                  f"{rss['peak_mib']:6.1f} MiB (of which {rss['baseline_mib']:.1f} MiB after imports), "
                  f"{nbytes / MIB / rss['seconds']:.2f} MB/s, nnz {rss['nnz']}")
        print("(the 10x text repeats the corpus; its peak RSS stays near the 1x one because text is held one chunk "
              "at a time; the Matrix Market file is read whole, within max_total_bytes)")
    finally:
        remove_path(work)


if __name__ == "__main__":
    main()
