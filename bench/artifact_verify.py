"""Cost of checking model artifacts against their checksum on read (app.artifacts).

Writes one model folder of the given size (default: D=300,000 documents, V=100,000 words,
k=100 topics: doc_topic 120 MB, topic_word 80 MB) and prints, in milliseconds:

* the first verified read (every file hashed),
* a verified read of the unchanged folder (file identities compared, nothing hashed),
* loading topic_word + alpha without any check, for scale,
* a verified read after one file was touched (hashed again).

    .venv/bin/python bench/artifact_verify.py [--docs 300000] [--words 100000] [--topics 100] [--repeats 200]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from app.artifacts.artifact_files import VerifiedArtifacts
from app.artifacts.model_artifact import DOC_TOPIC, load_alpha, load_topic_word, write_model_artifact


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300_000)
    parser.add_argument("--words", type=int, default=100_000)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    topic_word = rng.dirichlet(np.ones(args.words), size=args.topics)
    alpha = np.ones(args.topics)
    doc_topic = rng.dirichlet(np.ones(args.topics), size=args.docs).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "models" / "m"
        checksum = write_model_artifact(folder, Path(tmp) / "tmp", topic_word=topic_word, alpha=alpha,
                                        doc_topic=doc_topic, meta={})
        size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        verified = VerifiedArtifacts()
        start = time.perf_counter()
        verified.verify(folder, checksum)
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.repeats):
            verified.verify(folder, checksum)
        cached = (time.perf_counter() - start) / args.repeats
        start = time.perf_counter()
        for _ in range(5):
            load_topic_word(folder), load_alpha(folder)
        plain_load = (time.perf_counter() - start) / 5
        path = folder / DOC_TOPIC
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
        start = time.perf_counter()
        verified.verify(folder, checksum)
        touched = time.perf_counter() - start
    print(f"model folder: D={args.docs:,} V={args.words:,} k={args.topics}, {size_mb:,.1f} MB")
    print(f"first verified read (hash all files):      {_ms(first)}  ({size_mb / first:,.0f} MB/s)")
    print(f"verified read, unchanged (identity only):  {_ms(cached)}  (mean of {args.repeats})")
    print(f"load topic_word + alpha, no check:         {_ms(plain_load)}")
    print(f"verified read after a file was touched:    {_ms(touched)}")
    print(f"cached check / plain load: {cached / plain_load:.4f}")


if __name__ == "__main__":
    main()
