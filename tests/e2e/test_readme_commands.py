"""The README works as written: its curl walk-through, its CLI walk-through and its Python
client example run, in order, against a live ``spectral-topics serve``, from a folder holding
a copy of ``examples/``. Placeholders (<corpus_id>, <model_id>, <job_id>) take the values the
earlier commands answered; a job poll is repeated until the job is final."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from tests.e2e.conftest import REPO

README = (REPO / "README.md").read_text()
CLIENT_COMMANDS = ("submit", "topics", "infer", "export", "job")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _commands(text: str, first_word: str) -> list[str]:
    """Indented command lines starting with ``first_word``; a line ending in a backslash or
    inside an open single quote goes on to the next line."""
    commands, current = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if current is None:
            if not (line.startswith("    ") and stripped.startswith(first_word + " ")):
                continue
            current = stripped
        else:
            current += " " + stripped
        if current.endswith("\\"):
            current = current[:-1].rstrip()
        elif current.count("'") % 2 == 0:
            commands.append(re.sub(r"\s+#[^'\"]*$", "", current))
            current = None
    return commands


def _fill(command: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        command = command.replace(f"<{name}>", value)
    assert "<" not in command.replace("<<", ""), f"unfilled placeholder in {command!r}"
    return command


def _shell(command: str, cwd: Path, env: dict) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def _workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path


def _env(served) -> dict:
    env = dict(served["env"], SPECTRAL_TOPICS_URL=served["url"])
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def test_curl_walk_through(served, tmp_path):
    cwd, env = _workdir(tmp_path), _env(served)
    commands = _commands(_section("Walk-through with curl"), "curl")
    assert len(commands) >= 12, commands
    host = served["url"].removeprefix("http://")
    ids: dict[str, str] = {}
    for command in commands:
        command = _fill(command.replace("localhost:8000", host), ids)
        output = _shell(command, cwd, env)
        if " -o " in command:
            continue
        body = json.loads(output)
        assert "error" not in body, (command, body)
        ids.setdefault("corpus_id", body.get("corpus_id"))
        if "model_id" in body and "job" in body:
            ids.update(model_id=body["model_id"], job_id=body["job"]["id"])
        if "/v1/jobs/" in command:
            deadline = time.monotonic() + 120
            while body["state"] not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
                time.sleep(0.5)
                body = json.loads(_shell(command, cwd, env))
            assert body["state"] == "succeeded", body
        if command.endswith(f"/v1/models/{ids.get('model_id')}"):
            assert body["alpha0"] == 1.0 and abs(sum(body["alpha"]) - body["alpha_sum"]) < 1e-9
            assert body["heldout"]["n_documents"] == body["quality"]["n_heldout_docs"] == 30
            assert body["quality"]["npmi"]["all_documents"]["n_documents"] == 300
        if "/topics" in command:
            themes = [{w["word"] for w in t["words"][:5]} for t in body["topics"]]
            assert len(themes) == 5 and {"telescope", "comet", "galaxy", "planet", "jupiter", "nebula", "orbit",
                                         "meteor", "cosmos", "lens", "gravity", "star", "moon"} & set().union(*themes)
    assert ids["corpus_id"] and ids["model_id"]
    with zipfile.ZipFile(cwd / "model.zip") as archive:
        assert sorted(archive.namelist()) == ["doc-topics.csv", "topic-terms.csv"]
    with np.load(cwd / "model.npz") as arrays:
        assert arrays["topic_word"].shape == (5, 100) and arrays["doc_topic"].shape == (300, 5)
    assert len(json.loads((cwd / "pyldavis.json").read_text())["vocab"]) == 100


def test_cli_walk_through_and_python_client(served, tmp_path):
    cwd, env = _workdir(tmp_path), _env(served)
    commands = [c for c in _commands(_section("Command line"), "spectral-topics")
                if c.split()[1] in CLIENT_COMMANDS and "[" not in c and "_ID" not in c]
    assert [c.split()[1] for c in commands] == ["submit", "topics", "infer", "export", "export", "job"]
    ids: dict[str, str] = {}
    for command in commands:
        if command.split()[1] == "submit":
            done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=180, check=False)
            assert done.returncode == 0, done.stderr
            assert "\r" not in done.stderr and "100.0% succeeded" in done.stderr
            model_line = next(line for line in done.stderr.splitlines() if line.startswith("model "))
            ids["model_id"], ids["job_id"] = model_line.split()[1], model_line.split()[3].rstrip(")")
            assert len(done.stdout.strip().splitlines()) == 6  # header + 5 topics
            continue
        output = _shell(_fill(command, ids), cwd, env)
        if command.split()[1] == "infer":
            rows = output.strip().splitlines()
            assert rows[0].split()[:3] == ["text", "known", "top"] and len(rows) == 4
        if command.split()[1] == "job":
            assert json.loads(output)["state"] == "succeeded"
    with zipfile.ZipFile(cwd / "model.zip") as archive:
        assert "topic-terms.csv" in archive.namelist()
    with np.load(cwd / "model.npz") as arrays:
        assert arrays["vocabulary"].shape == (100,)

    section = _section("Python client")
    code = section[section.index("```python\n") + 10 : section.index("```", section.index("```python\n") + 10)]
    code = code.replace("http://127.0.0.1:8000", served["url"])
    (cwd / "model.zip").unlink()
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 7  # 5 topics, the mixtures, the timings
    assert zipfile.is_zipfile(cwd / "model.zip")
