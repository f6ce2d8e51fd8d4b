"""Benchmark: raw English text -> stored CSR corpus, against scikit-learn's CountVectorizer.

Corpus: the plain-text documentation Debian installs under /usr/share/doc (install
``python3-doc`` for ~12 MB of Python reST sources), split into paragraphs, one document per
paragraph, written once to a text file (one document per line) under the temp folder.

Prints, from the same run on the same machine:
- throughput in MB/s (raw text bytes / wall time, file read through stored corpus) for
  ``app.ingest.ingest`` with worker processes (all cores) and in-process, and for
  CountVectorizer(fit_transform) + save_npz with the equivalent options; ratios; CPU
  seconds of each (work per byte, which other load on a shared machine barely changes),
  the CPU share the worker processes actually got, and the bound for idle cores.
- peak RSS (main process and worker processes) when ingesting an input of one chunk (1x)
  and of ten chunks (10x), each in a fresh process.

Usage: python bench/ingest.py [--repeats 3] [--chunk-mib 2] [--workers N]
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

import numpy as np  # noqa: E402
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


def _burn(n: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - start


def parallel_capacity(n_workers: int) -> float:
    """How many cores' worth of pure-Python work n_workers processes get right now."""
    import multiprocessing
    n = 5_000_000
    one = _burn(n)
    with multiprocessing.get_context("fork").Pool(n_workers) as pool:
        start = time.perf_counter()
        pool.map(_burn, [n] * n_workers)
        elapsed = time.perf_counter() - start
    return n_workers * one / elapsed


def cpu_split() -> tuple[float, float]:
    """CPU time (user + system) of this process, and of its reaped children, so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def cpu_seconds() -> float:
    return sum(cpu_split())


def run_ours(text_file: Path, work: Path, n_workers: int, chunk_bytes: int) -> tuple[float, dict, float]:
    dest = work / f"ours-{n_workers}"
    remove_path(dest)
    main_before, workers_before = cpu_split()
    start = time.perf_counter()
    with open(text_file, "rb") as stream:
        info = ingest([(text_file.name, stream)], dest, tmp_root=work / "tmp", fmt="text", options=OPTIONS,
                      n_workers=n_workers, chunk_bytes=chunk_bytes)
    elapsed = time.perf_counter() - start
    main_after, workers_after = cpu_split()
    info.stats["bench_cpu"] = (main_after - main_before, workers_after - workers_before)
    return elapsed, info.stats, (main_after - main_before) + (workers_after - workers_before)


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
    """Peak resident set of this process image (VmHWM, reset by exec, unlike ru_maxrss,
    which a child inherits from the parent that forked it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_child(text_file: str, n_workers: int, chunk_bytes: int) -> None:
    baseline = _vm_hwm_mib()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-rss-"))
    try:
        elapsed, stats, _ = run_ours(Path(text_file), work, n_workers, chunk_bytes)
    finally:
        remove_path(work)
    print(json.dumps({"baseline_mib": baseline, "main_mib": _vm_hwm_mib(), "seconds": elapsed, "nnz": stats["nnz"]}))


def measure_rss(text_file: str, n_workers: int, chunk_bytes: int) -> dict:
    """Run one ingestion in a fresh process; sample its worker processes' RSS from here
    (a sampling thread inside would change how the builder starts its workers)."""
    import psutil

    child = subprocess.Popen([sys.executable, __file__, "--rss-child", str(text_file), "--workers", str(n_workers),
                              "--chunk-mib", str(chunk_bytes / MIB)], stdout=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak_worker = 0.0
    while child.poll() is None:
        try:
            for worker in process.children(recursive=True):
                peak_worker = max(peak_worker, worker.memory_info().rss / MIB)
        except psutil.Error:
            pass
        time.sleep(0.005)
    output, _ = child.communicate()
    if child.returncode:
        raise RuntimeError(f"rss child failed with {child.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["worker_mib"] = peak_worker
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-mib", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rss-child")
    args = parser.parse_args()
    chunk_bytes = int(args.chunk_mib * MIB)
    if args.rss_child:
        rss_child(args.rss_child, args.workers, chunk_bytes)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        corpus_file = work / "usr-share-doc.txt"
        size, n_docs = build_text_corpus(corpus_file)
        print(f"corpus: {size / MIB:.1f} MiB of text, {n_docs} paragraphs from {DOC_ROOT} (*.txt)")
        print(f"machine: {os.cpu_count()} cores; timings are wall clock, best and median of {args.repeats} "
              f"(noisy: the machine is shared)")

        runs: dict[str, list[tuple[float, float]]] = {"parallel": [], "single": [], "sklearn": []}
        projections = []
        for _ in range(args.repeats):
            t, stats, cpu = run_ours(corpus_file, work, args.workers, chunk_bytes)
            runs["parallel"].append((t, cpu))
            main_cpu, worker_cpu = stats["bench_cpu"]
            projections.append(max(main_cpu, (main_cpu + worker_cpu) / args.workers))
            t, _, cpu = run_ours(corpus_file, work, 1, chunk_bytes)
            runs["single"].append((t, cpu))
            t, sk_counts, sk_vocab, cpu = run_sklearn(corpus_file, work)
            runs["sklearn"].append((t, cpu))
        ours = load_corpus(work / f"ours-{args.workers}")
        overlap = len(set(ours.vocabulary) & set(sk_vocab)) / max(len(set(ours.vocabulary) | set(sk_vocab)), 1)
        print(f"vocabulary: ours {len(ours.vocabulary)} terms, CountVectorizer {len(sk_vocab)} terms, "
              f"Jaccard overlap {overlap:.3f}; ours nnz {ours.counts.nnz}, CountVectorizer nnz {sk_counts.nnz}")

        def line(name, key):
            times = [t for t, _ in runs[key]]
            best, median = min(times), statistics.median(times)
            cpu = min(c for _, c in runs[key])
            print(f"{name:<30} best {size / MIB / best:7.2f} MB/s ({best:5.2f} s)   median {size / MIB / median:7.2f} MB/s"
                  f"   CPU {cpu:5.2f} s ({size / MIB / cpu:6.2f} MB per CPU-second)")
            return best, cpu

        best_parallel, cpu_parallel = line(f"ours, {args.workers} worker processes", "parallel")
        best_single, cpu_single = line("ours, in-process", "single")
        best_sklearn, cpu_sklearn = line("sklearn CountVectorizer", "sklearn")
        print(f"ratio ours({args.workers} workers) / CountVectorizer, wall clock: {best_sklearn / best_parallel:.2f}x   (target >= 3x)")
        print(f"ratio ours(in-process) / CountVectorizer, wall clock: {best_sklearn / best_single:.2f}x")
        print(f"ratio CountVectorizer CPU / ours CPU: in-process {cpu_sklearn / cpu_single:.2f}x, "
              f"{args.workers} workers {cpu_sklearn / cpu_parallel:.2f}x (work per byte, insensitive to other load)")
        projected = min(projections)
        print(f"projection for {args.workers} idle cores from measured CPU (wall >= max(main, total / cores); "
              f"CountVectorizer's wall = its CPU): {size / MIB / projected:.2f} MB/s, "
              f"{cpu_sklearn / projected:.2f}x CountVectorizer (an optimistic bound, not a measurement)")
        print(f"CPU actually available to {args.workers} processes during this run: "
              f"{parallel_capacity(args.workers):.2f} cores (shared machine; ideal {args.workers})")

        one = work / "x1.txt"
        ten = work / "x10.txt"
        size_one = repeat_to_size(corpus_file, one, chunk_bytes)
        size_ten = repeat_to_size(corpus_file, ten, 10 * chunk_bytes)
        for label, path, nbytes in (("1x", one, size_one), ("10x", ten, size_ten)):
            rss = measure_rss(str(path), args.workers, chunk_bytes)
            workers = f"largest worker {rss['worker_mib']:6.1f} MiB" if rss["worker_mib"] else "no workers (one chunk: in-process)"
            print(f"peak RSS {label:>3} input ({nbytes / MIB:5.1f} MiB, chunk {chunk_bytes / MIB:.1f} MiB): "
                  f"main {rss['main_mib']:6.1f} MiB (of which {rss['baseline_mib']:.1f} MiB after imports), {workers}, "
                  f"{nbytes / MIB / rss['seconds']:.2f} MB/s, nnz {rss['nnz']}")
        print("(the 10x input repeats the corpus; peak RSS stays flat because text is held one chunk per process)")
    finally:
        remove_path(work)


if __name__ == "__main__":
    main()
