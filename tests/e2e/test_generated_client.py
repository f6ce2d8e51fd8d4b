"""A client generated from our OpenAPI schema by openapi-python-client works: it uploads a
file, fits, polls, reads topics and exports (zip and npz) against a live ``spectral-topics
serve``, authenticated with a bearer key, without a warning from the generator."""
from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np

from tests.e2e.conftest import REPO

PACKAGE = "spectral_topics_client"


def _generate(served, tmp_path: Path) -> Path:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(httpx.get(f"{served['url']}/openapi.json").json()))
    output = tmp_path / "generated"
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run([str(Path(sys.executable).parent / "openapi-python-client"), "generate",
                           "--path", str(schema), "--output-path", str(output)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert (output / PACKAGE / "__init__.py").is_file()
    return output


def _api_key(served) -> str:
    done = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "--tenant", "generated-client"],
                          env=served["env"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_generated_client_uploads_fits_polls_reads_and_exports(served, tmp_path):
    output = _generate(served, tmp_path)
    sys.path.insert(0, str(output))
    try:
        generated = importlib.import_module(PACKAGE)
        upload = importlib.import_module(f"{PACKAGE}.api.corpora.corpora_upload_files")
        create = importlib.import_module(f"{PACKAGE}.api.models.models_create")
        read_job = importlib.import_module(f"{PACKAGE}.api.jobs.jobs_read")
        topics = importlib.import_module(f"{PACKAGE}.api.models.models_topics")
        export = importlib.import_module(f"{PACKAGE}.api.models.models_export")
        models = importlib.import_module(f"{PACKAGE}.models")
        types = importlib.import_module(f"{PACKAGE}.types")

        client = generated.AuthenticatedClient(base_url=served["url"], token=_api_key(served))
        body = models.CorporaUploadFilesBody(
            file=types.File(payload=io.BytesIO((REPO / "examples" / "docs.jsonl").read_bytes()),
                            file_name="docs.jsonl"))
        corpus = upload.sync(client=client, body=body)
        assert isinstance(corpus, models.CorpusPublic), corpus
        assert corpus.corpus_id == corpus.id and corpus.n_documents == 300

        accepted = create.sync(client=client, body=models.ModelCreate(corpus_id=corpus.corpus_id, n_topics=5, seed=0))
        assert isinstance(accepted, models.ModelAccepted), accepted
        deadline = time.monotonic() + 120
        job = read_job.sync(accepted.job.id, client=client)
        while job.state.value not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = read_job.sync(accepted.job.id, client=client)
        assert job.state.value == "succeeded", job.error_message

        answer = topics.sync(accepted.model_id, client=client, top_n=5)
        assert isinstance(answer, models.TopicsPublic) and len(answer.topics) == 5
        assert all(len(topic.words) == 5 for topic in answer.topics)

        archive = export.sync(accepted.model_id, client=client)
        assert isinstance(archive, types.File), archive
        with zipfile.ZipFile(archive.payload) as zipped:
            assert sorted(zipped.namelist()) == ["doc-topics.csv", "topic-terms.csv"]
        arrays = export.sync(accepted.model_id, client=client, format_=models.ModelsExportFormat.NPZ)
        with np.load(arrays.payload) as loaded:
            assert loaded["topic_word"].shape == (5, corpus.vocabulary_size)

        anonymous = generated.AuthenticatedClient(base_url=served["url"], token="st_wrong_key")
        assert read_job.sync_detailed(accepted.job.id, client=anonymous).status_code == 401
    finally:
        sys.path.remove(str(output))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
