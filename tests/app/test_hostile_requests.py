"""Hostile requests over a real HTTP connection (uvicorn on a free port): NUL characters,
deeply nested JSON, duplicate Authorization headers. Each answers a 4xx JSON error and the
keep-alive connection stays usable (a 500 would close it)."""
from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.app.helpers import WORDS_DOCS
from tests.app.live_server import serve_api


@pytest.fixture
def live_api(ctx):
    with serve_api(ctx) as url:
        yield url


def _raw_requests(base: str, requests: list[bytes]) -> list[tuple[int, bytes]]:
    """Send ``requests`` one after another on ONE connection; (status, body) of each."""
    host, port = base.removeprefix("http://").split(":")
    answers = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        reader = sock.makefile("rb")
        for request in requests:
            sock.sendall(request)
            status = int(reader.readline().split()[1])
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answers.append((status, reader.read(length)))
    return answers


def _get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode()


def test_nul_characters_answer_404_or_422_and_keep_the_connection(live_api):
    with httpx.Client(base_url=live_api) as http:
        corpus = http.post("/v1/corpora", json=WORDS_DOCS).json()
        body = json.dumps({"corpus_id": "ab\u0000cd", "n_topics": 2})
        model = (f"POST /v1/models HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
        answers = _raw_requests(live_api, [
            _get(f"/v1/corpora/{corpus['id']}%00"), _get("/v1/models?corpus_id=ab%00cd"), model,
            _get("/v1/jobs/ab%00cd"), _get(f"/v1/corpora/{corpus['id']}")])
        assert [status for status, _ in answers] == [404, 422, 422, 404, 200]
        assert "corpus_id" in json.loads(answers[1][1])["error"]["message"]
        assert "corpus_id" in json.loads(answers[2][1])["error"]["message"]
        named = http.post("/v1/corpora", json={"documents": WORDS_DOCS, "name": "a\u0000b"})
        assert named.status_code == 422 and "name" in named.json()["error"]["message"]
        stop = http.post("/v1/corpora", json={"documents": WORDS_DOCS, "options": {"extra_stop_words": ["a\u0000"]}})
        assert stop.status_code in (201, 422)  # stored without the NUL, or refused; never a 500


def test_deeply_nested_json_answers_422_and_keeps_the_connection(live_api):
    deep_body = b'{"a":' * 100_000
    upload = (b"POST /v1/corpora HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(deep_body)}\r\n\r\n".encode() + deep_body)
    answers = _raw_requests(live_api, [upload, _get("/v1/corpora")])
    assert [status for status, _ in answers] == [422, 200]
    assert "nested too deeply" in json.loads(answers[0][1])["error"]["message"]


def test_deep_options_on_upload_and_deep_model_bodies_are_refused(live_api):
    with httpx.Client(base_url=live_api) as http:
        upload = http.post("/v1/corpora", json=WORDS_DOCS, params={"options": "[" * 2000})
        assert upload.status_code == 422 and "nested too deeply" in upload.json()["error"]["message"]
        model = http.post("/v1/models", content=b'{"a":' * 100_000, headers={"content-type": "application/json"})
        assert 400 <= model.status_code < 500


def test_two_authorization_headers_answer_400(live_api):
    answers = _raw_requests(live_api, [
        _get("/v1/corpora", "Authorization: Bearer st_a_b\r\nAuthorization: Bearer st_c_d\r\n"),
        _get("/v1/corpora")])
    assert answers[0][0] == 400 and b"exactly one Authorization header" in answers[0][1]
    assert answers[1][0] == 200
