"""Topic quality on real English text: spectral LDA (with and without refinement) against
tomotopy (Gibbs), scikit-learn (batch variational) and gensim (online variational), all
scored by the same functions (gpu.quality) in one run.

Text (``--corpus``), each from a Debian package:
- python3-doc: the reStructuredText sources of the Python documentation (the default);
- linux-doc: those of the Linux kernel documentation (code, hex dumps and Chinese, Japanese
  and Italian translations among the English, which the spectral fit turns into junk
  components); the larger corpus (40k documents, V about 21,000 at the default pruning);
- perl-doc: the POD sources of the Perl documentation. The confirmation corpus: no default
  of gpu/ was chosen on it (docs/decisions.md), so its figures are quoted on their own.
``apt-get install -y python3-doc linux-doc perl-doc``. Documents are consecutive
paragraphs of one file merged until they hold >= 50 words. Tokenised with the service's own
tokenizer (app.ingest, default TextOptions) when present, else scikit-learn's
CountVectorizer; the vocabulary as a user would prune it, from the training documents only:
document frequency >= 3 (``--min-df``) and <= 50% (``--max-df``), no cap (``--max-words``
sets one). Split 80/20 (seeded).

Measures: NPMI of each topic's top 10 words from document co-occurrence in the held-out
documents; held-out per-word log likelihood by document completion; topic diversity;
wall-clock fit time. Targets against tomotopy (500 iterations), on means over the model
seeds: NPMI and held-out likelihood at least tomotopy's in at most 1/10 of its time.
Timings on a shared machine are noisy; the ratios come from one run.

    python bench/quality.py [--corpus python3-doc|linux-doc|perl-doc] [--topics 20 50 100]
                            [--seeds 0 1 2 3 4] [--max-docs 12000] [--tomotopy-iters 500]
                            [--min-df 3] [--max-df 0.5] [--max-words 5000]
                            [--synthetic] [--refine-options '{"n_chunks": 1}'] [--alpha0 1.0]
                            [--skip sklearn gensim cvb0]

Spectral LDA and tomotopy run once per model seed (``--seeds``; the data split stays that of
``--seed``): on this corpus one seed moves either system's NPMI by up to +-0.03 and its
held-out likelihood by up to +-0.01 nats/word, as much as the gaps measured, so the target
lines compare means over the seeds. scikit-learn and gensim run for the first seed only.

``--refine-options`` (JSON) go to gpu.refine.refine_topics for the "spectral+refine" row (the
default SpectralLDA path) to measure variants side by side with the peers; "spectral+cvb0"
is such a variant (``--skip cvb0`` leaves it out).

``--synthetic`` first checks n_topics="auto" / alpha0="auto" on LDA corpora with known
k in {5, 20, 50} (targets: k within +-10%, alpha0 within a factor 1.5).
"""
from __future__ import annotations

import argparse
import glob
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu.estimator import SpectralLDA  # noqa: E402
from gpu.quality import (  # noqa: E402
    heldout_log_likelihood,
    npmi_coherence,
    split_heldout,
    topic_diversity,
)

CORPORA = {  # name: (Debian package, glob of its reStructuredText sources)
    "python3-doc": ("python3-doc", "/usr/share/doc/python3*/html/_sources/**/*.txt"),
    "linux-doc": ("linux-doc", "/usr/share/doc/linux-doc/html/_sources/**/*.txt"),
    "perl-doc": ("perl-doc", "/usr/share/perl/5*/pod/*.pod"),
}
CONFIRMATION_CORPUS = "perl-doc"  # kept out of every tuning loop
TIME_RATIO_TARGET = 0.1  # the spectral fit's time over tomotopy's


def load_documents(min_words: int = 50, max_docs: int | None = None, corpus: str = "python3-doc") -> list[str]:
    """Merge consecutive paragraphs of each documentation source file into >= min_words docs."""
    package, sources = CORPORA[corpus]
    # several /usr/share/doc entries are symlinks to the same tree: read each file once
    files = sorted({str(Path(p).resolve()) for p in glob.glob(sources, recursive=True)})
    if not files:
        raise SystemExit(f"no text found: install it with `apt-get install -y {package}`")
    documents: list[str] = []
    for path in files:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        buffer: list[str] = []
        for paragraph in re.split(r"\n\s*\n", text):
            buffer.append(paragraph)
            if sum(len(p.split()) for p in buffer) >= min_words:
                documents.append("\n".join(buffer))
                buffer = []
    if max_docs is not None and len(documents) > max_docs:
        keep = np.sort(np.random.default_rng(0).choice(len(documents), max_docs, replace=False))
        documents = [documents[i] for i in keep]
    return documents


def ingest_tokenizer():
    """(name, tokenize) with tokenize(train_texts, heldout_texts, max_words, min_df, max_df) ->
    (train counts, held-out counts, vocabulary): app.ingest's tokenizer when it is present
    (the service's own: NFKC, lowercase, letters/digits, English stop words, numbers
    dropped), else scikit-learn's CountVectorizer. Vocabulary from the training documents
    only: document frequency >= min_df and <= max_df (a fraction of them), then the
    ``max_words`` most frequent terms (None: all)."""
    try:
        from app.ingest import TextOptions, vectorize_texts
        from app.ingest.counting import count_chunk
    except ImportError:
        from sklearn.feature_extraction.text import CountVectorizer

        def tokenize_sklearn(train_texts, heldout_texts, max_words, min_df, max_df):
            vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b",
                                         min_df=min_df, max_df=max_df, max_features=max_words)
            train = vectorizer.fit_transform(train_texts)
            return train, vectorizer.transform(heldout_texts), list(vectorizer.get_feature_names_out())

        return "scikit-learn CountVectorizer", tokenize_sklearn

    def tokenize_ingest(train_texts, heldout_texts, max_words, min_df, max_df):
        options = TextOptions()
        chunk = count_chunk(list(train_texts), options)
        df = np.asarray((chunk.counts > 0).sum(axis=0)).ravel()
        frequency = np.asarray(chunk.counts.sum(axis=0)).ravel()
        allowed = np.flatnonzero((df >= min_df) & (df <= max_df * len(train_texts)))
        terms = np.asarray(chunk.terms, dtype=object)
        order = sorted(allowed.tolist(), key=lambda t: (-frequency[t], terms[t]))[:max_words]
        vocabulary = sorted(terms[order].tolist())
        return (vectorize_texts(list(train_texts), vocabulary, options),
                vectorize_texts(list(heldout_texts), vocabulary, options), vocabulary)

    return "app.ingest (TextOptions defaults)", tokenize_ingest


def vectorize(documents: list[str], train_rows: np.ndarray, heldout_rows: np.ndarray, max_words: int | None,
              min_df: int = 3, max_df: float = 0.5):
    """(train, held-out, vocabulary, tokenizer name); documents with < 5 tokens dropped."""
    name, tokenize = ingest_tokenizer()
    train, heldout, vocabulary = tokenize(
        [documents[i] for i in train_rows], [documents[i] for i in heldout_rows], max_words, min_df, max_df
    )
    train, heldout = sp.csr_matrix(train).astype(np.int64), sp.csr_matrix(heldout).astype(np.int64)
    keep_train = np.asarray(train.sum(axis=1)).ravel() >= 5
    keep_heldout = np.asarray(heldout.sum(axis=1)).ravel() >= 5
    return train[keep_train], heldout[keep_heldout], vocabulary, name


def rows_as_token_lists(counts: sp.csr_matrix) -> list[list[int]]:
    out = []
    for d in range(counts.shape[0]):
        start, stop = counts.indptr[d], counts.indptr[d + 1]
        out.append(np.repeat(counts.indices[start:stop], counts.data[start:stop]).tolist())
    return out


CVB0_OPTIONS = {"method": "cvb0", "fit_alpha": "minka", "max_sweeps": 150, "patience": 3}


def fit_spectral(train, k, seed, refine, refine_options=None, alpha0=1.0):
    model = SpectralLDA(k, alpha0=alpha0, seed=seed, backend="numpy", refine=refine, refine_options=refine_options)
    started = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - started
    note = ""
    if refine:
        r = model.diagnostics_["refinement"]
        note = (f"{(refine_options or {}).get('method', 'variational')} sweeps={r['sweeps']} ({r['stopped']}), "
                f"alpha x{r['alpha_scale']:.2f}, final sweeps over all documents: {r['final_sweeps']}")
    return model.topic_word_, model.alpha_, seconds, note


def fit_tomotopy(train, k, seed, iterations, vocabulary):
    import tomotopy as tp

    model = tp.LDAModel(k=k, alpha=0.1, eta=0.01, seed=seed)
    for tokens in rows_as_token_lists(train):
        if tokens:
            model.add_doc([vocabulary[w] for w in tokens])
    started = time.perf_counter()
    model.train(iterations, workers=2)
    seconds = time.perf_counter() - started
    index = {word: i for i, word in enumerate(vocabulary)}
    columns = np.array([index[w] for w in model.used_vocabs])
    topic_word = np.full((k, len(vocabulary)), 1e-12)
    for topic in range(k):
        topic_word[topic, columns] = model.get_topic_word_dist(topic)
    topic_word /= topic_word.sum(axis=1, keepdims=True)
    return topic_word, np.asarray(model.alpha, dtype=np.float64), seconds, f"iterations={iterations}"


def fit_sklearn(train, k, seed, iterations):
    from sklearn.decomposition import LatentDirichletAllocation

    model = LatentDirichletAllocation(n_components=k, learning_method="batch", max_iter=iterations, random_state=seed)
    started = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - started
    topic_word = model.components_ / model.components_.sum(axis=1, keepdims=True)
    return topic_word, np.full(k, model.doc_topic_prior_), seconds, f"max_iter={iterations}"


def fit_gensim(train, k, seed, passes):
    from gensim.models import LdaModel

    corpus = [list(zip(row.indices.tolist(), row.data.tolist())) for row in train]
    started = time.perf_counter()
    model = LdaModel(corpus=corpus, num_topics=k, id2word={i: str(i) for i in range(train.shape[1])},
                     passes=passes, random_state=seed, iterations=50)
    seconds = time.perf_counter() - started
    topic_word = model.get_topics().astype(np.float64)
    topic_word /= topic_word.sum(axis=1, keepdims=True)
    return topic_word, np.asarray(model.alpha, dtype=np.float64), seconds, f"passes={passes}"


def synthetic_selection(seed: int) -> None:
    """n_topics="auto" and alpha0="auto" on LDA corpora with known k (5, 20, 50)."""
    from gpu.matching import mean_matched_l1
    from gpu.synthetic import make_lda_corpus

    for k, n_docs, n_words, alpha0 in [(5, 5000, 1000, 0.5), (20, 10000, 2000, 2.0), (50, 20000, 3000, 1.0)]:
        corpus = make_lda_corpus(n_docs, n_words, k, alpha0=alpha0, doc_length=100, seed=seed + k)
        model = SpectralLDA("auto", alpha0="auto", seed=seed, backend="numpy", refine=False, k_range=(2, 2 * k))
        started = time.perf_counter()
        model.fit(corpus.counts)
        seconds = time.perf_counter() - started
        k_ok = abs(model.n_topics_ - k) <= 0.1 * k
        a_ok = alpha0 / 1.5 <= model.alpha0_ <= alpha0 * 1.5
        print(f"synthetic k={k:3d} alpha0={alpha0:.2f}: auto k={model.n_topics_} ({'ok' if k_ok else 'MISS'}, target +-10%), "
              f"auto alpha0={model.alpha0_:.3f} ({'ok' if a_ok else 'MISS'}, target within x1.5), "
              f"gap ratio {model.diagnostics_['selection']['gap_ratio']:.2f}, k rule {model.diagnostics_['selection']['k_rule']}, "
              f"topic L1 {mean_matched_l1(corpus.topic_word, model.topic_word_):.3f}, fit_s={seconds:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="python3-doc")
    parser.add_argument("--topics", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--max-docs", type=int, default=None)
    parser.add_argument("--max-words", type=int, default=None, help="keep at most this many terms (default: no cap)")
    parser.add_argument("--min-df", type=int, default=3, help="keep terms in at least this many training documents")
    parser.add_argument("--max-df", type=float, default=0.5, help="keep terms in at most this share of them")
    parser.add_argument("--tomotopy-iters", type=int, default=500)
    parser.add_argument("--sklearn-iters", type=int, default=20)
    parser.add_argument("--gensim-passes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/held-out split and the token split")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="model seeds: spectral and tomotopy run once per seed, sklearn and gensim for the first")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tomotopy", "sklearn", "gensim", "cvb0"],
                        help="systems to leave out (cvb0: the spectral+cvb0 variant)")
    parser.add_argument("--synthetic", action="store_true", help="also check k / alpha0 'auto' on synthetic corpora")
    parser.add_argument("--alpha0", type=float, default=1.0, help="SpectralLDA alpha0 for the spectral rows")
    parser.add_argument("--refine-options", type=json.loads, default=None,
                        help='JSON options for gpu.refine.refine_topics in the "spectral+refine" row')
    args = parser.parse_args()
    if args.synthetic:
        synthetic_selection(args.seed)

    documents = load_documents(max_docs=args.max_docs, corpus=args.corpus)
    train_rows, heldout_rows = split_heldout(np.empty((len(documents), 0)), 0.2, seed=args.seed)
    train, heldout, vocabulary, tokenizer = vectorize(documents, train_rows, heldout_rows, args.max_words,
                                                         args.min_df, args.max_df)
    role = ("the confirmation corpus: no default was tuned on it" if args.corpus == CONFIRMATION_CORPUS
            else "a tuning corpus")
    print(f"corpus: {args.corpus} ({role}), tokenizer: {tokenizer}")
    print(f"documents: train {train.shape[0]}, held-out {heldout.shape[0]}; vocabulary {train.shape[1]}; "
          f"train tokens {int(train.sum())} (min_df {args.min_df}, max_df {args.max_df}, max_words {args.max_words})")

    for k in args.topics:
        rows: dict[str, list[tuple[float, float, float, float]]] = {}
        for seed in args.seeds:
            for name, fit in systems_for(train, vocabulary, k, seed, args, first=seed == args.seeds[0]).items():
                topic_word, alpha, seconds, note = fit()
                npmi = npmi_coherence(topic_word, heldout)[1]
                loglik = heldout_log_likelihood(topic_word, alpha, heldout, seed=args.seed)
                rows.setdefault(name, []).append((npmi, loglik, topic_diversity(topic_word), seconds))
                print(f"k={k:3d} seed={seed} {name:16s} npmi={npmi:+.4f} heldout_loglik={loglik:.4f} "
                      f"diversity={rows[name][-1][2]:.3f} fit_s={seconds:8.2f} {note}", flush=True)
        print_summary(k, rows)


def systems_for(train, vocabulary, k, seed, args, first):
    """{name: fit()} for one model seed; scikit-learn and gensim (slow, far from the
    targets) run for the first seed only."""
    systems = {
        "spectral": lambda: fit_spectral(train, k, seed, refine=False, alpha0=args.alpha0),
        "spectral+refine": lambda: fit_spectral(train, k, seed, refine=True, refine_options=args.refine_options,
                                                alpha0=args.alpha0),
    }
    if "cvb0" not in args.skip:
        systems["spectral+cvb0"] = lambda: fit_spectral(train, k, seed, refine=True, refine_options=CVB0_OPTIONS,
                                                        alpha0=args.alpha0)
    if "tomotopy" not in args.skip:
        systems["tomotopy"] = lambda: fit_tomotopy(train, k, seed, args.tomotopy_iters, vocabulary)
    if first and "sklearn" not in args.skip:
        systems["sklearn"] = lambda: fit_sklearn(train, k, seed, args.sklearn_iters)
    if first and "gensim" not in args.skip:
        systems["gensim"] = lambda: fit_gensim(train, k, seed, args.gensim_passes)
    return systems


def print_summary(k: int, rows: dict[str, list[tuple[float, float, float, float]]]) -> None:
    """Mean (min..max) over the model seeds of each system, and the spectral rows against
    tomotopy's means: one seed's gap is within both systems' seed-to-seed spread."""
    for name, runs in rows.items():
        values = np.asarray(runs)
        print(f"k={k:3d} {name:16s} over {len(runs)} seed(s): npmi {values[:, 0].mean():+.4f} "
              f"({values[:, 0].min():+.4f}..{values[:, 0].max():+.4f}), heldout_loglik {values[:, 1].mean():.4f} "
              f"({values[:, 1].min():.4f}..{values[:, 1].max():.4f}), fit_s {values[:, 3].mean():.2f}")
    if "tomotopy" not in rows:
        return
    t_npmi, t_ll, _, t_s = np.asarray(rows["tomotopy"]).mean(axis=0)
    for name in [name for name in ("spectral", "spectral+refine", "spectral+cvb0") if name in rows]:
        npmi, ll, _, seconds = np.asarray(rows[name]).mean(axis=0)
        met = npmi >= t_npmi and ll >= t_ll and seconds <= TIME_RATIO_TARGET * t_s
        print(f"k={k:3d} {name:16s} vs tomotopy (means over seeds): npmi {npmi - t_npmi:+.4f}, "
              f"heldout_loglik {ll - t_ll:+.4f} nats/word, time ratio {seconds / t_s:.3f} "
              f"(targets: gaps >= 0, ratio <= {TIME_RATIO_TARGET}: {'met' if met else 'MISSED'})")


if __name__ == "__main__":
    main()
