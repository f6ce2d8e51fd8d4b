"""POST/GET/DELETE /v1/corpora: every upload form, statistics, vocabulary, errors."""
from __future__ import annotations

import io
import json
import zipfile

from tests.app.helpers import KEEP_ALL_TERMS, WORDS_DOCS, fit_now, run_now, upload


def test_json_upload_returns_201_location_and_statistics(client):
    response = client.post("/v1/corpora", json=WORDS_DOCS, params={"name": "fruit and pets"})
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/corpora/{body['id']}"
    assert len(body["id"]) == 32 and int(body["id"], 16) >= 0
    assert body["n_documents"] == 40
    assert body["vocabulary_size"] == 10
    assert body["name"] == "fruit and pets"
    assert body["options"]["stop_words"] == "english"
    assert client.get(body["id"] and f"/v1/corpora/{body['id']}").json() == body


def test_json_envelope_carries_options(client):
    docs = [{"id": f"doc{i}", "text": t} for i, t in enumerate(WORDS_DOCS)]
    response = client.post("/v1/corpora", json={"documents": docs, "options": {"min_df": 15}, "name": "env"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["options"]["min_df"] == 15
    assert body["name"] == "env"
    vocabulary = client.get(f"/v1/corpora/{body['id']}/vocabulary").json()
    # each word appears in 10 or 20 documents: min_df=15 keeps the 20-document words only
    assert vocabulary["words"] == ["apple", "banana", "cat", "cherry", "dog", "grape", "horse", "mouse"]


def test_jsonl_body_and_options_query(client):
    lines = "\n".join(json.dumps({"id": f"x{i}", "text": t}) for i, t in enumerate(WORDS_DOCS))
    response = client.post("/v1/corpora", content=lines.encode(), headers={"content-type": "application/x-ndjson"},
                           params={"options": json.dumps({"extra_stop_words": ["apple"]})})
    assert response.status_code == 201, response.text
    words = client.get(f"/v1/corpora/{response.json()['id']}/vocabulary").json()["words"]
    assert "apple" not in words and "banana" in words


def test_multipart_file_with_form_options(client):
    text = "\n".join(WORDS_DOCS).encode()
    response = client.post("/v1/corpora", files={"file": ("docs.txt", text, "text/plain")},
                           data={"options": json.dumps({"min_token_length": 4}), "name": "lines"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["n_documents"] == 40 and body["name"] == "lines"
    words = client.get(f"/v1/corpora/{body['id']}/vocabulary").json()["words"]
    assert "dog" not in words and "apple" in words


def test_csv_body_with_named_columns(client):
    rows = "key,body\n" + "\n".join(f"r{i},{text}" for i, text in enumerate(WORDS_DOCS))
    response = client.post("/v1/corpora", content=rows.encode(), headers={"content-type": "text/csv"},
                           params={"text_column": "body", "id_column": "key"})
    assert response.status_code == 201, response.text
    assert response.json()["n_documents"] == 40
    missing = client.post("/v1/corpora", content=rows.encode(), headers={"content-type": "text/csv"},
                          params={"text_column": "text"})
    assert missing.status_code == 422 and "text" in missing.json()["error"]["message"]


def _ingested_by_a_worker(client, ctx, response) -> dict:
    """An archive upload answers 202 (never ingested in the API); run its job, read the corpus."""
    assert response.status_code == 202, response.text
    body = response.json()
    assert run_now(ctx, body["job"]["id"]).state == "succeeded"
    return client.get(f"/v1/corpora/{body['corpus_id']}").json()


def test_zip_archive_body(client, ctx):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, text in enumerate(WORDS_DOCS[:8]):
            info = zipfile.ZipInfo(f"docs/{i}.txt")
            info.external_attr = 0o100644 << 16  # a regular file (ingestion refuses others)
            archive.writestr(info, text)
    response = client.post("/v1/corpora", content=buffer.getvalue(), headers={"content-type": "application/zip"},
                           params={"options": KEEP_ALL_TERMS})
    assert _ingested_by_a_worker(client, ctx, response)["n_documents"] == 8
    # A small zip, even named as plain text, is never decompressed in the API process.
    disguised = client.post("/v1/corpora", content=buffer.getvalue(), params={"filename": "docs.txt", "options": KEEP_ALL_TERMS},
                            headers={"content-type": "text/plain"})
    assert disguised.status_code == 202, disguised.text


def test_tar_gz_archive_body(client, ctx):
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for i, text in enumerate(WORDS_DOCS[:6]):
            data = text.encode()
            info = tarfile.TarInfo(f"docs/{i}.txt")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    response = client.post("/v1/corpora", content=buffer.getvalue(), headers={"content-type": "application/gzip"},
                           params={"options": KEEP_ALL_TERMS})
    assert _ingested_by_a_worker(client, ctx, response)["n_documents"] == 6
    multipart = client.post("/v1/corpora", files={"file": ("docs.tar.gz", buffer.getvalue(), "application/gzip")},
                            data={"options": KEEP_ALL_TERMS})
    assert _ingested_by_a_worker(client, ctx, multipart)["n_documents"] == 6


def test_large_upload_is_ingested_by_a_worker_job(ctx_factory):
    from fastapi.testclient import TestClient

    from app.main import create_app

    ctx = ctx_factory(inline_ingest_max_bytes=100)
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        response = client.post("/v1/corpora", json={"documents": WORDS_DOCS, "options": {"min_df": 15}})
        assert response.status_code == 202, response.text
        body = response.json()
        assert response.headers["location"] == f"/v1/jobs/{body['job']['id']}"
        assert body["job"]["kind"] == "ingest" and body["job"]["state"] == "queued"
        assert client.get(f"/v1/corpora/{body['corpus_id']}").status_code == 404
        assert run_now(ctx, body["job"]["id"]).state == "succeeded"
        job = client.get(f"/v1/jobs/{body['job']['id']}").json()
        assert job["state"] == "succeeded" and job["progress"]["percent"] == 100.0
        corpus = client.get(f"/v1/corpora/{body['corpus_id']}").json()
        assert corpus["n_documents"] == 40
        assert corpus["options"]["min_df"] == 15 and corpus["vocabulary_size"] == 8
        assert list(ctx.settings.uploads_dir.iterdir()) == []  # staged upload removed


def test_list_vocabulary_paging_and_delete(client, ctx):
    first, second = upload(client), upload(client, WORDS_DOCS[:4])
    listed = [c["id"] for c in client.get("/v1/corpora").json()["corpora"]]
    assert sorted(listed) == sorted([first["id"], second["id"]])
    page = client.get(f"/v1/corpora/{first['id']}/vocabulary", params={"offset": 2, "limit": 3}).json()
    assert page["total"] == 10 and page["words"] == ["cat", "cherry", "dog"]
    assert client.delete(f"/v1/corpora/{second['id']}").status_code == 204
    assert client.get(f"/v1/corpora/{second['id']}").status_code == 404
    assert not ctx.layout.corpus_dir(second["id"]).exists()
    assert client.delete(f"/v1/corpora/{second['id']}").status_code == 404


def test_corpus_with_models_cannot_be_deleted(client, ctx):
    corpus = upload(client)
    model_id, _ = fit_now(ctx, client, corpus["id"])
    response = client.delete(f"/v1/corpora/{corpus['id']}")
    assert response.status_code == 409 and response.json()["error"]["code"] == "corpus_in_use"
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert client.delete(f"/v1/corpora/{corpus['id']}").status_code == 204


def test_bad_uploads_are_4xx_with_the_ingestion_message(client, ctx):
    cases = [
        (dict(content=b"[1, 2", headers={"content-type": "application/json"}), None),
        (dict(content=b"\xff\xfe\xfa", headers={"content-type": "text/plain"}), None),
        (dict(json=["", "   "]), None),
        (dict(json=WORDS_DOCS, params={"options": "{not json"}), "options query parameter"),
        (dict(json=WORDS_DOCS, params={"options": json.dumps({"min_df": 0})}), "min_df"),
        (dict(json=WORDS_DOCS, params={"format": "docx"}), "format='docx'"),
        (dict(content=b"", headers={"content-type": "application/json"}), "empty"),
        (dict(json={"documents": WORDS_DOCS, "name": 5}), "name"),
        (dict(json={"documents": WORDS_DOCS, "colour": "red"}), "colour"),
        (dict(json={"documents": WORDS_DOCS, "options": ["min_df"]}), "options"),
    ]
    for request, expected in cases:
        response = client.post("/v1/corpora", **request)
        assert response.status_code == 422, (request, response.text)
        error = response.json()["error"]
        assert error["message"], request
        if expected:
            assert expected in error["message"], (expected, error)
    assert client.get("/v1/corpora").json()["corpora"] == []
    assert list(ctx.settings.uploads_dir.iterdir()) == []
    assert list((ctx.layout.root / "corpora").iterdir()) == []


def test_multipart_without_file_is_422(client):
    response = client.post("/v1/corpora", data={"name": "x"}, files={"other": (None, "y")})
    assert response.status_code == 422
    assert "no file part" in response.json()["error"]["message"]


def test_unknown_corpus_is_404(client):
    for path in ("/v1/corpora/0123abcd", "/v1/corpora/0123abcd/vocabulary"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == {"code": "not_found", "message": "corpus '0123abcd' does not exist"}


def test_stale_uploads_are_swept_unless_a_job_needs_them(ctx_factory):
    import os

    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.services.corpus_service import sweep_stale_uploads

    ctx = ctx_factory(inline_ingest_max_bytes=100)
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        queued = client.post("/v1/corpora", json=WORDS_DOCS).json()
    uploads = ctx.settings.uploads_dir
    needed = [p for p in uploads.iterdir()]
    assert len(needed) == 1
    orphan = uploads / "deadbeef"
    orphan.mkdir()
    fresh = uploads / "cafebabe"
    fresh.mkdir()
    for folder in (needed[0], orphan):
        os.utime(folder, (1, 1))  # very old
    assert sweep_stale_uploads(ctx, older_than_s=3600) == 1
    assert sorted(p.name for p in uploads.iterdir()) == sorted([needed[0].name, "cafebabe"])
    assert run_now(ctx, queued["job"]["id"]).state == "succeeded"


def test_small_uploads_go_to_a_worker_while_the_inline_slots_are_busy(ctx_factory):
    from fastapi.testclient import TestClient

    from app.main import create_app

    ctx = ctx_factory(inline_ingest_concurrency=1)
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        assert client.post("/v1/corpora", json=WORDS_DOCS).status_code == 201
        assert ctx.inline_ingest_slots.acquire(blocking=False)  # another upload is being ingested inline
        try:
            busy = client.post("/v1/corpora", json=WORDS_DOCS)
        finally:
            ctx.inline_ingest_slots.release()
        assert busy.status_code == 202, busy.text
        assert run_now(ctx, busy.json()["job"]["id"]).state == "succeeded"
        assert client.post("/v1/corpora", json=WORDS_DOCS).status_code == 201  # the slot was given back
