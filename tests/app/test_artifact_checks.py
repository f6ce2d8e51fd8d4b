"""Model artifacts are verified against their recorded checksum when read: a replaced,
truncated or missing file answers 500 ``artifact_corrupt`` without a path; repeated reads
of an unchanged folder are not hashed again."""
from __future__ import annotations

import os

import numpy as np
import pytest

from app.artifacts import artifact_files
from app.artifacts.model_artifact import DOC_TOPIC, TOPIC_WORD
from tests.app.helpers import fit_now, upload

READS = [("get", "/topics"), ("get", "/export"), ("get", "/documents"), ("post", "/infer")]


def _read(client, model_id, method, suffix):
    kwargs = {"json": {"texts": ["apple banana"]}} if method == "post" else {}
    return getattr(client, method)(f"/v1/models/{model_id}{suffix}", **kwargs)


def _assert_corrupt(client, model_id, data_dir):
    for method, suffix in READS:
        response = _read(client, model_id, method, suffix)
        assert response.status_code == 500, (suffix, response.text)
        error = response.json()["error"]
        assert error["code"] == "artifact_corrupt", suffix
        assert str(data_dir) not in response.text and ".npy" not in response.text and model_id not in error["message"]


@pytest.mark.parametrize("damage", ["replaced", "truncated", "missing", "folder_missing"])
def test_a_damaged_model_artifact_answers_artifact_corrupt(client, ctx, damage):
    model_id, _ = fit_now(ctx, client, upload(client)["id"])
    assert all(_read(client, model_id, m, s).status_code == 200 for m, s in READS)
    folder = ctx.layout.model_dir(model_id)
    path = folder / TOPIC_WORD
    if damage == "replaced":  # same shape, other values: still a valid .npy
        values = np.load(path)
        np.save(path, values[::-1].copy())
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "missing":
        path.unlink()
    else:
        artifact_files.remove_path(folder)
    _assert_corrupt(client, model_id, ctx.layout.root)


def test_unchanged_artifacts_are_hashed_once(client, ctx, monkeypatch):
    model_id, _ = fit_now(ctx, client, upload(client)["id"])
    hashed = []
    original = artifact_files.verify_checksum
    monkeypatch.setattr(artifact_files, "verify_checksum", lambda *a: (hashed.append(a), original(*a))[1])
    for _ in range(3):
        assert client.get(f"/v1/models/{model_id}/topics").status_code == 200
        assert client.get(f"/v1/models/{model_id}/documents").status_code == 200
    assert len(hashed) == 1
    path = ctx.layout.model_dir(model_id) / DOC_TOPIC
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))  # touched: check again
    assert client.get(f"/v1/models/{model_id}/topics").status_code == 200
    assert len(hashed) == 2
