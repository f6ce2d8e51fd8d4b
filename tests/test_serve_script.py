"""scripts/serve.sh installs the project only when pyproject.toml changed since the last
install (no pip upgrade, no reinstall on a plain restart). Run on a copy of the script with
a stand-in .venv whose python logs pip calls and whose spectral-topics logs its arguments."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "serve.sh", tmp_path / "scripts" / "serve.sh")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nif [ "$1" = "-m" ]; then echo "$*" >> "{tmp_path}/pip.log"; exit 0; fi\n'
                      f'exec {sys.executable} "$@"\n')
    tool = bin_dir / "spectral-topics"
    tool.write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/serve.log"\n')
    for path in (python, tool):
        path.chmod(0o755)
    return tmp_path


def _start(project: Path) -> None:
    subprocess.run(["bash", "scripts/serve.sh", "--port", "9"], cwd=project, check=True, timeout=60,
                   env={k: v for k, v in os.environ.items() if k != "PYTHON"})


def test_serve_installs_only_when_pyproject_changed(tmp_path):
    project = _project(tmp_path)
    _start(project)
    assert (project / "pip.log").read_text().splitlines() == ["-m pip install --quiet -e ."]
    _start(project)
    _start(project)
    assert len((project / "pip.log").read_text().splitlines()) == 1  # restarts install nothing
    assert (project / "serve.log").read_text().splitlines() == ["serve --port 9"] * 3
    (project / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    _start(project)
    assert len((project / "pip.log").read_text().splitlines()) == 2
    assert "upgrade" not in (project / "pip.log").read_text()
