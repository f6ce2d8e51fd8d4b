"""CLI pieces that need no running server: migrate, the progress bar, tables, text files."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.cli import main
from app.client import progress_line, read_texts, topics_table


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


def test_client_command_without_server_fails_cleanly(capsys):
    assert main(["topics", "abc", "--url", "http://127.0.0.1:1"]) == 1
    assert "error:" in capsys.readouterr().err


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
