"""A small HTTP client of the API for the CLI: upload, fit, poll with a progress bar, print."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

FINAL_STATES = ("succeeded", "failed", "cancelled")


class ClientError(RuntimeError):
    """The API answered with an error (its JSON message is in the text)."""


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise ClientError(f"HTTP {response.status_code} from {response.request.method} {response.request.url.path}: "
                          f"{message}")
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.content


class ApiClient:
    def __init__(self, url: str, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None,
                 api_key: str | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport, headers=headers)

    def close(self) -> None:
        self.http.close()

    def upload(self, path: Path, *, fmt: str | None = None, options: dict | None = None) -> dict:
        data = {"options": json.dumps(options)} if options else {}
        if fmt:
            data["format"] = fmt
        with open(path, "rb") as fh:
            return _check(self.http.post("/v1/corpora", files={"file": (path.name, fh)}, data=data))

    def create_model(self, corpus_id: str, n_topics: int | str, *, alpha0: float | str = 1.0, seed: int = 0,
                     options: dict | None = None, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"corpus_id": corpus_id, "n_topics": n_topics, "alpha0": alpha0, "seed": seed, "options": options or {}}
        return _check(self.http.post("/v1/models", json=body, headers=headers))

    def job(self, job_id: str) -> dict:
        return _check(self.http.get(f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, *, out: TextIO | None = None, poll_s: float = 0.5, timeout_s: float = 3600) -> dict:
        """Poll until the job is final, drawing a progress bar on ``out``."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if out is not None:
                out.write("\r" + progress_line(job))
                out.flush()
            if job["state"] in FINAL_STATES:
                if out is not None:
                    out.write("\n")
                return job
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} is still {job['state']} after {timeout_s} s")
            time.sleep(poll_s)

    def topics(self, model_id: str, top_n: int = 10) -> dict:
        return _check(self.http.get(f"/v1/models/{model_id}/topics", params={"top_n": top_n}))

    def infer(self, model_id: str, texts: list[str]) -> dict:
        return _check(self.http.post(f"/v1/models/{model_id}/infer", json={"texts": texts}))

    def export(self, model_id: str) -> bytes:
        return _check(self.http.get(f"/v1/models/{model_id}/export"))


def progress_line(job: dict, width: int = 30) -> str:
    percent = float(job["progress"]["percent"])
    filled = int(round(width * percent / 100))
    stage = job["progress"]["stage"] or "-"
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}% {job['state']:<9} {stage:<16}"


def topics_table(topics: list[dict], n_words: int = 10) -> str:
    lines = [f"{'topic':>5}  {'alpha':>8}  top words"]
    for topic in topics:
        words = " ".join(w["word"] for w in topic["words"][:n_words])
        lines.append(f"{topic['topic']:>5}  {topic['alpha']:>8.4f}  {words}")
    return "\n".join(lines)


def read_texts(path: Path) -> list[str]:
    """A JSON list of strings (or of {"text": ...}), else one text per non-empty line."""
    raw = path.read_text(encoding="utf-8")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return [line for line in raw.splitlines() if line.strip()]
    if isinstance(value, list):
        return [v["text"] if isinstance(v, dict) else str(v) for v in value]
    raise ValueError(f"{path}: expected a JSON list of texts or one text per line")


def print_json(value: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(value, indent=2) + "\n")
