"""The Python client of the API (the CLI uses it too): ``from app.client import Client``.

    with Client("http://127.0.0.1:8000", api_key=None) as client:
        corpus = client.upload("docs.jsonl")                 # or client.upload(["text", ...])
        accepted = client.fit(corpus["corpus_id"], n_topics=5)
        job = client.wait(accepted["job"]["id"])            # polls until succeeded / failed / cancelled
        client.topics(accepted["model_id"], top_n=10)["topics"]
        client.infer(accepted["model_id"], ["a new text"])["doc_topic"]
        client.export(accepted["model_id"], "model.zip")    # also fmt="npz" / "pyldavis"

Every method returns the API's JSON as dicts (``export`` the bytes, also written to the path
given). An error answer raises :class:`ClientError` with the API's code and message; a server
that cannot be reached raises it too, naming the URL and what to do.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

FINAL_STATES = ("succeeded", "failed", "cancelled")


class ClientError(RuntimeError):
    """The API answered with an error (its JSON message is in the text), or could not be reached."""


START_HINT = "is the service running? start it with `spectral-topics serve` (or pass --url / SPECTRAL_TOPICS_URL)"


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


class Client:
    """HTTP client of one API: the CLI's operations as methods (see the module docstring).

    url: the API's base URL; api_key: sent as ``Authorization: Bearer <key>``; timeout: seconds
    per request; transport: an httpx transport (tests).
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", *, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport, headers=headers)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach {self.url}: {START_HINT} ({type(exc).__name__}: {exc})") from exc
        return _check(response)

    def upload(self, source: str | Path | list, *, fmt: str | None = None, options: dict | None = None,
               name: str | None = None) -> dict:
        """Upload a corpus: a file path (any format ingestion reads) or a list of texts /
        ``{"id", "text"}`` objects. Answers the corpus (201) or ``{"corpus_id", "job"}`` (202:
        ingested by a worker, :meth:`wait` for the job); both carry ``corpus_id``."""
        if isinstance(source, list):
            body: dict[str, Any] = {"documents": source}
            if options:
                body["options"] = options
            if name:
                body["name"] = name
            return self._request("POST", "/v1/corpora", json=body)
        path = Path(source)
        data = {"options": json.dumps(options)} if options else {}
        if fmt:
            data["format"] = fmt
        if name:
            data["name"] = name
        with open(path, "rb") as fh:
            return self._request("POST", "/v1/corpora/files", files={"file": (path.name, fh)}, data=data)

    def fit(self, corpus_id: str, n_topics: int | str, *, alpha0: float | str = 1.0, seed: int = 0,
            heldout_fraction: float | None = None, options: dict | None = None,
            idempotency_key: str | None = None) -> dict:
        """Start a fit: ``{"model_id", "job"}``; :meth:`wait` for the job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"corpus_id": corpus_id, "n_topics": n_topics, "alpha0": alpha0, "seed": seed, "options": options or {}}
        if heldout_fraction is not None:
            body["heldout_fraction"] = heldout_fraction
        return self._request("POST", "/v1/models", json=body, headers=headers)

    create_model = fit

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def model(self, model_id: str) -> dict:
        return self._request("GET", f"/v1/models/{model_id}")

    def wait(self, job_id: str, *, out: TextIO | None = None, poll_s: float = 0.5, timeout_s: float = 3600) -> dict:
        """Poll until the job is final and return it. On ``out``: a progress bar redrawn in
        place on a terminal, else one plain line whenever the state, stage or percent changes."""
        deadline = time.monotonic() + timeout_s
        redraw = out is not None and out.isatty()
        last = None
        while True:
            job = self.job(job_id)
            if out is not None:
                line = progress_line(job)
                if redraw:
                    out.write("\r" + line)
                elif line != last:
                    out.write(line.rstrip() + "\n")
                last = line
                out.flush()
            if job["state"] in FINAL_STATES:
                if redraw:
                    out.write("\n")
                return job
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} is still {job['state']} after {timeout_s} s")
            time.sleep(poll_s)

    def topics(self, model_id: str, top_n: int = 10) -> dict:
        return self._request("GET", f"/v1/models/{model_id}/topics", params={"top_n": top_n})

    def infer(self, model_id: str, texts: list[str]) -> dict:
        """``{"doc_topic": (n, k) mixtures, "n_known_tokens": [...]}`` of new texts."""
        return self._request("POST", f"/v1/models/{model_id}/infer", json={"texts": texts})

    def export(self, model_id: str, output: str | Path | None = None, *, fmt: str = "zip",
               top_n: int | None = None) -> Any:
        """The export (``zip``/``npz`` bytes, ``pyldavis`` a dict); also written to ``output``
        when given (the pyLDAvis dict as JSON)."""
        params: dict[str, Any] = {"format": fmt}
        if top_n is not None:
            params["top_n"] = top_n
        data = self._request("GET", f"/v1/models/{model_id}/export", params=params)
        if output is not None:
            Path(output).write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
        return data


ApiClient = Client  # the name the CLI's client had before it was public


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


def mixtures_table(doc_topic: list[list[float]], known: list[int], texts: list[str], width: int = 40) -> str:
    """One row per text: its known tokens, its top topic, the mixture, and the text's start."""
    k = len(doc_topic[0]) if doc_topic else 0
    lines = [f"{'text':>4}  {'known':>5}  {'top':>3}  " + " ".join(f"{f't{i}':>5}" for i in range(k)) + "  start"]
    for i, (row, n_known, text) in enumerate(zip(doc_topic, known, texts)):
        top = max(range(k), key=lambda t: row[t]) if k else -1
        start = " ".join(text.split())[:width]
        lines.append(f"{i:>4}  {n_known:>5}  {top:>3}  " + " ".join(f"{x:5.3f}" for x in row) + f"  {start}")
    return "\n".join(lines)


def print_json(value: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(value, indent=2) + "\n")
