"""CLI pieces that need no running server: migrate, the progress bar, tables, text files."""
from __future__ import annotations

import io
import json

import httpx

import pytest
import sqlalchemy as sa

from app.cli import main
from app.client import Client, mixtures_table, progress_line, read_texts, topics_table


def test_migrate_creates_the_embedded_database(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'spectral-topics.db'}")
    assert {"corpora", "models", "jobs", "workers"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_progress_line_and_topics_table():
    job = {"state": "running", "progress": {"stage": "tensor", "percent": 50.0}}
    assert progress_line(job, width=10) == "[#####.....]  50.0% running   tensor          "
    table = topics_table([{"topic": 0, "alpha": 0.25, "words": [{"word": "cat"}, {"word": "dog"}]}])
    assert table.splitlines()[1].split() == ["0", "0.2500", "cat", "dog"]


def test_read_texts_accepts_json_or_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(["one", {"text": "two"}]))
    assert read_texts(path) == ["one", "two"]
    path.write_text("first line\n\nsecond line\n")
    assert read_texts(path) == ["first line", "second line"]
    path.write_text(json.dumps({"texts": []}))
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_texts(path)


def test_client_command_without_server_names_the_url_and_what_to_do(capsys):
    assert main(["topics", "abc", "--url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach http://127.0.0.1:1: is the service running?")
    assert "spectral-topics serve" in err


def test_wait_prints_plain_lines_when_not_on_a_terminal():
    states = iter([("queued", None, 0.0), ("running", "moments", 50.0), ("running", "moments", 50.0),
                   ("succeeded", "saving", 100.0)])

    def handler(request):
        state, stage, percent = next(states)
        return httpx.Response(200, json={"state": state, "progress": {"stage": stage, "percent": percent}})

    out = io.StringIO()
    job = Client("http://api", transport=httpx.MockTransport(handler)).wait("j", out=out, poll_s=0)
    assert job["state"] == "succeeded"
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 3  # the repeated state printed once
    assert lines[-1].endswith("100.0% succeeded saving")


def test_mixtures_table():
    table = mixtures_table([[0.9, 0.1], [0.2, 0.8]], [4, 0], ["apple banana   cherry", "zzz"])
    assert table.splitlines()[1].split() == ["0", "4", "0", "0.900", "0.100", "apple", "banana", "cherry"]
    assert table.splitlines()[2].split()[:3] == ["1", "0", "1"]


def test_compose_commands_are_cli_commands():
    """docker-compose.yml runs our CLI; every command it uses must parse."""
    from pathlib import Path

    import yaml

    from app.cli import _parser

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    commands = [s["command"] for s in compose["services"].values()
                if isinstance(s.get("command"), list) and s["command"][0] == "spectral-topics"]
    assert {c[1] for c in commands} == {"api", "worker"}
    for command in commands:
        args = _parser().parse_args(command[1:])
        assert args.command == command[1]
