"""NYTimes-scale fit: 300,000 documents, V = 100,000 (Zipf-shaped), ~100 M tokens, k = 100.

Generates the corpus once into bench/_data/ (gitignored), then fits it in a fresh
subprocess that loads the saved CSR, so the measured peak resident memory is that of
load + fit alone. Prints load+fit time, each stage's time and peak RSS against the
targets (<= 30 s, <= 4 GB on the 2-core development machine).

    python bench/nytimes_scale.py [--dtype float32] [--regenerate]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "bench" / "_data"
N_DOCS, N_WORDS, N_TOPICS, DOC_LENGTH = 300_000, 100_000, 100, 333.0
TARGET_SECONDS, TARGET_RSS_GB = 30.0, 4.0


def corpus_path() -> Path:
    return DATA / f"nytimes_{N_DOCS}x{N_WORDS}_k{N_TOPICS}.npz"


def generate(path: Path) -> None:
    from gpu.synthetic import make_lda_corpus, zipf_weights

    started = time.perf_counter()
    corpus = make_lda_corpus(
        N_DOCS, N_WORDS, N_TOPICS, alpha0=1.0, doc_length=DOC_LENGTH, seed=2024,
        word_weights=zipf_weights(N_WORDS), chunk_docs=2_000,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npz")
    sp.save_npz(partial, corpus.counts, compressed=False)
    np.save(path.with_name(path.stem + "_topics.npy"), corpus.topic_word)
    os.replace(partial, path)
    counts = corpus.counts
    print(f"generated {counts.shape[0]} docs, V={counts.shape[1]}, {int(counts.sum())} tokens, "
          f"nnz={counts.nnz} in {time.perf_counter() - started:.1f} s -> {path}")


def fit_child(path: Path, dtype: str) -> None:
    """Runs in a fresh process: load the CSR, fit, print one JSON line."""
    from gpu import fit_spectral_lda
    from gpu.matching import mean_matched_l1

    started = time.perf_counter()
    counts = sp.load_npz(path).tocsr()
    loaded = time.perf_counter()
    result = fit_spectral_lda(counts, N_TOPICS, 1.0, seed=0, backend="numpy", dtype=dtype)
    finished = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_rss_gb = usage.ru_maxrss / 2**20  # KiB on Linux
    truth = np.load(path.with_name(path.stem + "_topics.npy"))
    print(json.dumps({
        "load_s": loaded - started,
        "fit_s": finished - loaded,
        "stages": result.timings,
        "peak_rss_gb": peak_rss_gb,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "l1": mean_matched_l1(truth, result.topic_word),
        "converged": result.diagnostics["all_converged"],
        "alpha_sum": float(result.alpha.sum()),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fit_child(Path(args.child), args.dtype)
        return
    path = corpus_path()
    load_before = os.getloadavg()[0]
    if args.regenerate or not path.exists():
        generate(path)
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--dtype", args.dtype],
        check=True, capture_output=True, text=True,
    )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    total = figures["load_s"] + figures["fit_s"]
    print(f"nytimes-scale D={N_DOCS} V={N_WORDS} k={N_TOPICS} dtype={args.dtype} cores={os.cpu_count()} "
          f"load average before the run {load_before:.2f} (other processes share these cores)")
    print(f"load {figures['load_s']:.2f} s + fit {figures['fit_s']:.2f} s = {total:.2f} s "
          f"(target <= {TARGET_SECONDS:.0f} s: {'met' if total <= TARGET_SECONDS else 'MISSED'}, "
          f"ratio {total / TARGET_SECONDS:.2f} of target)")
    print(f"  process CPU time {figures['cpu_s']:.1f} s (all threads; wall / CPU = "
          f"{total / figures['cpu_s']:.2f})")
    for stage, seconds in figures["stages"].items():
        print(f"  stage {stage:<14} {seconds:7.2f} s")
    print(f"peak RSS {figures['peak_rss_gb']:.2f} GB (target <= {TARGET_RSS_GB:.0f} GB: "
          f"{'met' if figures['peak_rss_gb'] <= TARGET_RSS_GB else 'MISSED'})")
    print(f"mean matched L1 vs truth {figures['l1']:.3f}; alpha sum {figures['alpha_sum']:.3f}; "
          f"power method converged: {figures['converged']}")


if __name__ == "__main__":
    main()
