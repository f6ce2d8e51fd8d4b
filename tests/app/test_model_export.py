"""Export read by the tools users have: pandas with default options, numpy.load, pyLDAvis.prepare."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pyLDAvis

from tests.app.helpers import fit_now, upload

# Real terms that pandas' default missing-value list contains, next to ordinary words.
AWKWARD = ["nan", "null", "NA", "None", "NULL", "NaN", "n/a"]
DOCS = [text for i in range(12) for text in (f"apple banana cherry grape {AWKWARD[i % 7]} apple",
                                         f"dog cat mouse horse {AWKWARD[(i + 3) % 7]} dog")]
OPTIONS = {"lowercase": False, "stop_words": None, "min_df": 1, "max_df": 1.0, "min_token_length": 1}


def _fitted(ctx, client):
    corpus = upload(client, docs={"documents": DOCS, "options": OPTIONS})
    model_id, _ = fit_now(ctx, client, corpus["id"], n_topics=2, seed=0)
    vocabulary = client.get(f"/v1/corpora/{corpus['id']}/vocabulary").json()["words"]
    return model_id, vocabulary


def test_csv_terms_survive_pandas_defaults_and_npz_has_every_array(ctx, client):
    model_id, vocabulary = _fitted(ctx, client)
    assert {"nan", "null", "NA", "None", "NULL", "NaN", "n"} <= set(vocabulary)

    response = client.get(f"/v1/models/{model_id}/export", params={"top_n": len(vocabulary)})
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        terms = pd.read_csv(io.BytesIO(archive.read("topic-terms.csv")))
        docs = pd.read_csv(io.BytesIO(archive.read("doc-topics.csv")))
    assert not terms["term"].isna().any() and not docs["doc_id"].isna().any()
    decoded = terms["term"].map(json.loads)
    assert set(decoded) == set(vocabulary)
    assert (decoded == [vocabulary[i] for i in terms["term_id"]]).all()
    assert [json.loads(d) for d in docs["doc_id"]] == [str(i) for i in range(len(DOCS))]
    # read then written back with pandas' defaults: the same cells
    again = pd.read_csv(io.StringIO(terms.to_csv(index=False)))
    assert again["term"].tolist() == terms["term"].tolist()
    for topic, group in terms.groupby("topic"):
        assert abs(group["weight"].sum() - 1) < 1e-9, topic

    response = client.get(f"/v1/models/{model_id}/export", params={"format": "npz"})
    assert response.headers["content-type"] == "application/octet-stream"
    with np.load(io.BytesIO(response.content)) as arrays:  # allow_pickle stays False
        assert arrays["vocabulary"].tolist() == vocabulary
        assert arrays["topic_word"].shape == (2, len(vocabulary))
        assert np.allclose(arrays["topic_word"].sum(axis=1), 1)
        assert arrays["doc_topic"].shape == (len(DOCS), 2) and arrays["alpha"].shape == (2,)
        assert arrays["doc_lengths"].tolist() == [len(d.replace("/", " ").split()) for d in DOCS]
        assert arrays["term_frequency"][vocabulary.index("apple")] == 24
        assert arrays["term_frequency"].sum() == arrays["doc_lengths"].sum()
        assert arrays["labels"].tolist() == ["", ""]


def test_pyldavis_prepare_takes_the_export_as_it_is(ctx, client):
    model_id, vocabulary = _fitted(ctx, client)
    data = client.get(f"/v1/models/{model_id}/export", params={"format": "pyldavis"}).json()
    assert data == client.get(f"/v1/models/{model_id}/pyldavis").json()
    assert data["vocab"] == vocabulary and len(data["doc_lengths"]) == len(DOCS)
    prepared = pyLDAvis.prepare(**data, sort_topics=False, n_jobs=1)
    shown = set(prepared.topic_info["Term"])
    assert {"apple", "dog"} <= shown
    assert len(prepared.topic_coordinates) == 2
